//! `x · Wᵀ` over a [`QuantMatrix`]: the activations become integers per group
//! too, so the inner loop is an integer dot product.
//!
//! The dot product comes in three forms chosen by the target: wasm SIMD128 at
//! compile time, AVX2 on x86-64 at run time (`is_x86_feature_detected!`; with
//! AVX-VNNI's fused multiply-add where the CPU has it), and a portable loop
//! elsewhere. All of them sum the same integers, so they differ by `f32`
//! rounding at most.

use super::{tiled, Ints, QuantMatrix, NIBBLE_GROUP};
use crate::pool;

/// Output rows whose weights are reused, from cache, across all activation rows.
const ROW_TILE: usize = 16;

/// How many weight rows ahead of the one being multiplied the kernel fetches
/// into cache. A decode reads every weight once, from memory, and the
/// hardware's own prefetching left the loop waiting for it; rows fetched this
/// far ahead have arrived when their turn comes (docs/performance.md, step 7).
const FETCH_AHEAD: usize = 64;

impl QuantMatrix {
    /// `x · selfᵀ` for `x` row-major `[n, cols]`: the `[n, rows]` result,
    /// row-major. From [`tiled::FROM_ROWS`] rows on through dequantized tiles
    /// ([`tiled`]), below through the integer dot product.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        if n >= tiled::FROM_ROWS {
            return self.matmul_tiled(x, n);
        }
        self.matmul_integer(x, n)
    }

    /// `x · selfᵀ` through the integer dot product, whatever `n`.
    fn matmul_integer(&self, x: &[f32], n: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            use std::arch::is_x86_feature_detected as has;
            // SAFETY: the CPU has AVX2, and AVX-VNNI where that form is taken, just checked.
            return unsafe {
                match (self.width, has!("avxvnni")) {
                    (16, true) => self.matmul_avx_vnni::<16>(x, n),
                    (_, true) => self.matmul_avx_vnni::<32>(x, n),
                    (16, false) => self.matmul_avx2::<16>(x, n),
                    (_, false) => self.matmul_avx2::<32>(x, n),
                }
            };
        }
        match self.width {
            16 => self.matmul_with::<16, Target>(x, n),
            _ => self.matmul_with::<32, Target>(x, n),
        }
    }

    /// [`Self::matmul_with`] compiled for AVX2, so that [`x86::Avx2`]'s intrinsics inline.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn matmul_avx2<const W: usize>(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with::<W, x86::Avx2<x86::Madd>>(x, n)
    }

    /// [`Self::matmul_avx2`] with AVX-VNNI's `vpdpwssd` for `vpmaddwd` and `vpaddd`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn matmul_avx_vnni<const W: usize>(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with::<W, x86::Avx2<x86::Vnni>>(x, n)
    }

    /// `x · selfᵀ` in groups of `W` through the dot product `D`, on the
    /// integers in the form the matrix holds them (Q4_0's nibbles less 8).
    #[inline(always)]
    fn matmul_with<const W: usize, D: Dot>(&self, x: &[f32], n: usize) -> Vec<f32> {
        let cols = self.cols;
        match &self.q {
            Ints::Bytes(q) => {
                self.matmul_rows::<W, D, _>(x, n, |o| Bytes(&q[o * cols..(o + 1) * cols]))
            }
            Ints::Nibbles { packed, zero } => {
                let row = |o: usize| &packed[o * cols / 2..(o + 1) * cols / 2];
                match zero {
                    0 => self.matmul_rows::<W, D, _>(x, n, |o| Nibbles::<0>(row(o))),
                    _ => self.matmul_rows::<W, D, _>(x, n, |o| Nibbles::<8>(row(o))),
                }
            }
        }
    }

    /// [`Self::matmul_with`] over the weight rows `ints(o)` gives.
    #[inline(always)]
    fn matmul_rows<const W: usize, D: Dot, Q: RowInts>(
        &self,
        x: &[f32],
        n: usize,
        ints: impl Fn(usize) -> Q + Sync + Send,
    ) -> Vec<f32> {
        debug_assert_eq!((x.len(), self.width), (n * self.cols, W));
        let (rows, cols, groups) = (self.rows, self.cols, self.cols / W);
        let acts = Activations::new::<W>(x, self.offsets.is_some());
        pool::by_row_tiles(
            (rows, cols, n),
            ROW_TILE,
            || (),
            |_, range, mut out| {
                D::enter(|| {
                    // The first rows at once, then each row's as the row `FETCH_AHEAD` before it starts.
                    self.fetch_rows(range.start..(range.start + FETCH_AHEAD).min(range.end));
                    for tile in range.clone().step_by(ROW_TILE) {
                        let end = (tile + ROW_TILE).min(range.end);
                        for r in 0..n {
                            let x = Row {
                                high: &acts.high[r * cols..(r + 1) * cols],
                                low: &acts.low[r * cols..(r + 1) * cols],
                                scales: &acts.scales[r * groups..(r + 1) * groups],
                            };
                            for o in tile..end {
                                if r == 0 && o + FETCH_AHEAD < range.end {
                                    self.fetch_rows(o + FETCH_AHEAD..o + FETCH_AHEAD + 1);
                                }
                                let w = WeightRow {
                                    q: ints(o),
                                    scales: &self.scales[o * groups..(o + 1) * groups],
                                };
                                let mut y = D::dot::<W, Q>(w, &x);
                                if let Some(offsets) = &self.offsets {
                                    // A plain sum: 8 interleaved ones made wasm decode 9 % slower
                                    // (docs/performance.md, "A regression found by bisection").
                                    let sums = &acts.sums[r * groups..(r + 1) * groups];
                                    let off = &offsets[o * groups..(o + 1) * groups];
                                    y += off.iter().zip(sums).map(|(a, b)| a * b).sum::<f32>();
                                }
                                out.put(r, o, y);
                            }
                        }
                    }
                })
            },
        )
    }
}

impl QuantMatrix {
    /// Starts bringing `rows`' integers, scales and offsets into cache.
    #[inline(always)]
    fn fetch_rows(&self, rows: std::ops::Range<usize>) {
        if rows.is_empty() {
            return;
        }
        let groups = self.cols / self.width;
        let bytes: &[u8] = match &self.q {
            Ints::Bytes(q) => bytemuck::cast_slice(q),
            Ints::Nibbles { packed, .. } => packed,
        };
        let row_bytes = bytes.len() / self.rows;
        fetch_lines(&bytes[rows.start * row_bytes..rows.end * row_bytes]);
        let at = rows.start * groups..rows.end * groups;
        fetch_lines(bytemuck::cast_slice(&self.scales[at.clone()]));
        if let Some(offsets) = &self.offsets {
            fetch_lines(bytemuck::cast_slice(&offsets[at]));
        }
    }
}

/// Bytes in a cache line of the CPUs we run on.
const LINE: usize = 64;

/// Starts bringing the cache lines of `bytes` in: on x86-64 by a prefetch
/// for each, which does not wait for the line; elsewhere (WebAssembly has no
/// prefetch) by loading a byte of each, which the engine cannot drop (a load
/// may trap) and which keeps several lines in flight at once where the
/// multiplication's own loads would ask for them one after another.
#[inline(always)]
fn fetch_lines(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..bytes.len()).step_by(LINE) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of x86-64, and `at` is within `bytes`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(at) as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut seen = 0u8;
        for at in (0..bytes.len()).step_by(LINE) {
            // SAFETY: `at` is within `bytes`; volatile, so that the compiler keeps the load.
            seen ^= unsafe { core::ptr::read_volatile(bytes.as_ptr().add(at)) };
        }
        core::hint::black_box(seen);
    }
}

/// One weight row: `scales[g] · q` over group `g`, its integers as `Q` holds them.
struct WeightRow<'a, Q> {
    q: Q,
    scales: &'a [f32],
}

/// A weight row's integers as the matrix holds them: each form knows how to
/// widen a group of them to 16 bits in registers and multiply it with both
/// parts of the activations, once per target.
trait RowInts: Copy {
    /// How many integers the row has.
    #[cfg(target_arch = "x86_64")]
    fn len(self) -> usize;

    /// `(q_g · high_g, q_g · low_g)` over group `g` of `W`; `high` and `low`
    /// are the whole activation row's parts. The portable form.
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "simd128"),
        allow(dead_code)
    )]
    fn group_dot<const W: usize>(self, g: usize, high: &[i16], low: &[i16]) -> (i32, i32);

    /// The same, each product spread over the four lanes of an `i32x4`.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn group_dot_simd128<const W: usize>(
        self,
        g: usize,
        high: &[i16],
        low: &[i16],
    ) -> (core::arch::wasm32::v128, core::arch::wasm32::v128);

    /// The same over eight lanes, accumulated by `M`, unchecked: the caller
    /// has checked the lengths ([`check_lengths`]) and that the CPU has AVX2
    /// (and what `M` needs).
    #[cfg(target_arch = "x86_64")]
    unsafe fn group_dot_avx2<const W: usize, M: x86::Mac>(
        self,
        g: usize,
        high: *const i16,
        low: *const i16,
    ) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i);
}

/// A row of [`Ints::Bytes`].
#[derive(Clone, Copy)]
struct Bytes<'a>(&'a [i8]);

/// A row of [`Ints::Nibbles`] whose integers are the nibbles less `ZERO`
/// (0 or 8, a constant so that the kernel subtracts only when needed).
#[derive(Clone, Copy)]
struct Nibbles<'a, const ZERO: i16>(&'a [u8]);

impl RowInts for Bytes<'_> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn len(self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn group_dot<const W: usize>(self, g: usize, high: &[i16], low: &[i16]) -> (i32, i32) {
        let at = g * W..(g + 1) * W;
        let (q, high, low) = (&self.0[at.clone()], &high[at.clone()], &low[at]);
        let (mut acc_high, mut acc_low) = ([0i32; 8], [0i32; 8]);
        for (j, ((&q, &h), &l)) in q.iter().zip(high).zip(low).enumerate() {
            acc_high[j % 8] += q as i32 * h as i32;
            acc_low[j % 8] += q as i32 * l as i32;
        }
        (acc_high.iter().sum(), acc_low.iter().sum())
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    fn group_dot_simd128<const W: usize>(
        self,
        g: usize,
        high: &[i16],
        low: &[i16],
    ) -> (core::arch::wasm32::v128, core::arch::wasm32::v128) {
        use core::arch::wasm32::*;
        let (mut acc_high, mut acc_low) = (i32x4_splat(0), i32x4_splat(0));
        for at in (g * W..(g + 1) * W).step_by(16) {
            let (q, h, l) = (&self.0[at..at + 16], &high[at..at + 16], &low[at..at + 16]);
            // SAFETY: `q` holds 16 i8 (one v128), `h` and `l` 16 i16 (two v128 each);
            // v128_load has no alignment requirement.
            unsafe {
                let q = v128_load(q.as_ptr() as *const v128);
                let q = [i16x8_extend_low_i8x16(q), i16x8_extend_high_i8x16(q)];
                acc_high = i32x4_add(acc_high, wasm::dot16(q, h.as_ptr() as *const v128));
                acc_low = i32x4_add(acc_low, wasm::dot16(q, l.as_ptr() as *const v128));
            }
        }
        (acc_high, acc_low)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn group_dot_avx2<const W: usize, M: x86::Mac>(
        self,
        g: usize,
        high: *const i16,
        low: *const i16,
    ) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
        use std::arch::x86_64::*;
        let (mut acc_high, mut acc_low) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for at in (g * W..(g + 1) * W).step_by(16) {
            let q = _mm_loadu_si128(self.0.as_ptr().add(at) as *const __m128i);
            let q = _mm256_cvtepi8_epi16(q);
            let (h, l) = (x86::load16(high, at), x86::load16(low, at));
            (acc_high, acc_low) = (M::mac(acc_high, q, h), M::mac(acc_low, q, l));
        }
        (acc_high, acc_low)
    }
}

/// The nibbles are widened to 16 bits before they are split, so one widening
/// serves two weights and the split is a 16-bit `and` and shift.
impl<const ZERO: i16> RowInts for Nibbles<'_, ZERO> {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn len(self) -> usize {
        self.0.len() * 2
    }

    #[inline(always)]
    fn group_dot<const W: usize>(self, g: usize, high: &[i16], low: &[i16]) -> (i32, i32) {
        debug_assert_eq!(W, 32);
        let bytes = &self.0[g * NIBBLE_GROUP..(g + 1) * NIBBLE_GROUP];
        let (high, low) = (&high[g * 32..(g + 1) * 32], &low[g * 32..(g + 1) * 32]);
        let (mut acc_high, mut acc_low) = ([0i32; 8], [0i32; 8]);
        for (j, &b) in bytes.iter().enumerate() {
            let (q0, q1) = (
                (b & 0x0F) as i32 - ZERO as i32,
                (b >> 4) as i32 - ZERO as i32,
            );
            acc_high[j % 8] += q0 * high[j] as i32 + q1 * high[j + 16] as i32;
            acc_low[j % 8] += q0 * low[j] as i32 + q1 * low[j + 16] as i32;
        }
        (acc_high.iter().sum(), acc_low.iter().sum())
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    fn group_dot_simd128<const W: usize>(
        self,
        g: usize,
        high: &[i16],
        low: &[i16],
    ) -> (core::arch::wasm32::v128, core::arch::wasm32::v128) {
        use core::arch::wasm32::*;
        debug_assert_eq!(W, 32);
        let bytes = &self.0[g * NIBBLE_GROUP..(g + 1) * NIBBLE_GROUP];
        let (h, l) = (&high[g * 32..(g + 1) * 32], &low[g * 32..(g + 1) * 32]);
        // SAFETY: `bytes` holds one v128, `h` and `l` 32 i16 (four v128 each);
        // v128_load has no alignment requirement.
        unsafe {
            let b = v128_load(bytes.as_ptr() as *const v128);
            let (b0, b1) = (u16x8_extend_low_u8x16(b), u16x8_extend_high_u8x16(b));
            let mask = i16x8_splat(0x0F);
            let less_zero = |q: v128| match ZERO {
                0 => q,
                _ => i16x8_sub(q, i16x8_splat(ZERO)),
            };
            // Weights 0..16 are the low nibbles, 16..32 the high ones.
            let first = [less_zero(v128_and(b0, mask)), less_zero(v128_and(b1, mask))];
            let second = [less_zero(u16x8_shr(b0, 4)), less_zero(u16x8_shr(b1, 4))];
            let (h, l) = (h.as_ptr() as *const v128, l.as_ptr() as *const v128);
            let acc_high = i32x4_add(wasm::dot16(first, h), wasm::dot16(second, h.add(2)));
            let acc_low = i32x4_add(wasm::dot16(first, l), wasm::dot16(second, l.add(2)));
            (acc_high, acc_low)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn group_dot_avx2<const W: usize, M: x86::Mac>(
        self,
        g: usize,
        high: *const i16,
        low: *const i16,
    ) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
        use std::arch::x86_64::*;
        debug_assert_eq!(W, 32);
        let b = _mm_loadu_si128(self.0.as_ptr().add(g * NIBBLE_GROUP) as *const __m128i);
        let b = _mm256_cvtepu8_epi16(b);
        // Weights 0..16 are the low nibbles, 16..32 the high ones.
        let mut first = _mm256_and_si256(b, _mm256_set1_epi16(0x0F));
        let mut second = _mm256_srli_epi16(b, 4);
        if ZERO != 0 {
            first = _mm256_sub_epi16(first, _mm256_set1_epi16(ZERO));
            second = _mm256_sub_epi16(second, _mm256_set1_epi16(ZERO));
        }
        let at = g * 32;
        let acc_high = M::mac(_mm256_setzero_si256(), first, x86::load16(high, at));
        let acc_low = M::mac(_mm256_setzero_si256(), first, x86::load16(low, at));
        (
            M::mac(acc_high, second, x86::load16(high, at + 16)),
            M::mac(acc_low, second, x86::load16(low, at + 16)),
        )
    }
}

/// One activation row: `scales[g] · (high + low / 2¹⁵)` over group `g`.
struct Row<'a> {
    high: &'a [i16],
    low: &'a [i16],
    scales: &'a [f32],
}

/// `Σ_g w.scales[g] · x.scales[g] · (w.q_g · (x.high_g + x.low_g / 2¹⁵))`
/// over one weight row and one activation row, in groups of `W`.
trait Dot {
    fn dot<const W: usize, Q: RowInts>(w: WeightRow<Q>, x: &Row) -> f32;

    /// `tile()` (a matmul's rows through [`Dot::dot`]) where `dot`'s instructions
    /// inline. A tile another thread of the pool takes is called by rayon, outside
    /// the function that chose this form for the CPU, so a form that needs CPU
    /// features enables them again here.
    #[inline(always)]
    fn enter<R>(tile: impl FnOnce() -> R) -> R {
        tile()
    }
}

/// Activation rows as integers per group: `x = scale · (high + low / 2¹⁵)`,
/// with each group's exact sum for the offset term.
struct Activations {
    high: Vec<i16>,
    low: Vec<i16>,
    scales: Vec<f32>,
    sums: Vec<f32>,
}

/// `low`'s weight relative to `high`.
const LOW: f32 = 32768.0;

impl Activations {
    /// `x` in groups of `W`.
    fn new<const W: usize>(x: &[f32], with_sums: bool) -> Self {
        let mut acts = Activations {
            high: vec![0; x.len()],
            low: vec![0; x.len()],
            scales: Vec::with_capacity(x.len() / W),
            sums: Vec::with_capacity(if with_sums { x.len() / W } else { 0 }),
        };
        let groups = x
            .chunks_exact(W)
            .zip(acts.high.chunks_exact_mut(W))
            .zip(acts.low.chunks_exact_mut(W));
        for ((xg, high), low) in groups {
            let max = crate::elementwise::max_abs(xg);
            if max > 0.0 {
                split_group(xg, i16::MAX as f32 / max, high, low);
            }
            acts.scales.push(max / i16::MAX as f32);
            if with_sums {
                acts.sums.push(xg.iter().sum());
            }
        }
        acts
    }
}

/// `high` and `low` of one group `xg`, `inv` its scale's inverse: `t = x · inv`
/// rounded, and what rounding left out, times [`LOW`], rounded (both saturate
/// at the `i16` range, as `as i16` does).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn split_group(xg: &[f32], inv: f32, high: &mut [i16], low: &mut [i16]) {
    for ((h, l), v) in high.iter_mut().zip(low.iter_mut()).zip(xg) {
        let t = v * inv;
        let rounded = round(t);
        *h = rounded as i16;
        *l = round((t - rounded) * LOW) as i16;
    }
}

/// [`split_group`] eight numbers at a time in wasm SIMD128 (docs/performance.md,
/// step 8); the same arithmetic, so the same integers.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn split_group(xg: &[f32], inv: f32, high: &mut [i16], low: &mut [i16]) {
    use core::arch::wasm32::*;
    assert!(xg.len().is_multiple_of(8) && high.len() == xg.len() && low.len() == xg.len());
    let (inv, magic, scale_low) = (f32x4_splat(inv), f32x4_splat(MAGIC), f32x4_splat(LOW));
    let round = |t: v128| f32x4_sub(f32x4_add(t, magic), magic);
    let split = |v: v128| {
        let t = f32x4_mul(v, inv);
        let rounded = round(t);
        let rest = round(f32x4_mul(f32x4_sub(t, rounded), scale_low));
        (i32x4_trunc_sat_f32x4(rounded), i32x4_trunc_sat_f32x4(rest))
    };
    for at in (0..xg.len()).step_by(8) {
        // SAFETY: `at + 8 <= len` for all three (checked above); no alignment needed.
        unsafe {
            let (h0, l0) = split(v128_load(xg.as_ptr().add(at) as *const v128));
            let (h1, l1) = split(v128_load(xg.as_ptr().add(at + 4) as *const v128));
            v128_store(
                high.as_mut_ptr().add(at) as *mut v128,
                i16x8_narrow_i32x4(h0, h1),
            );
            v128_store(
                low.as_mut_ptr().add(at) as *mut v128,
                i16x8_narrow_i32x4(l0, l1),
            );
        }
    }
}

/// `1.5 · 2²³`: adding and removing it rounds half to even for `|t| < 2²²`,
/// leaving no fraction bits.
const MAGIC: f32 = 12_582_912.0;

/// Rounds half to even for `|t| < 2²²` by adding and removing 1.5 · 2²³, which
/// leaves no fraction bits; `round_ties_even` is a libm call on baseline x86-64.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn round(t: f32) -> f32 {
    (t + MAGIC) - MAGIC
}

/// The dot product the build targets: wasm SIMD128, or the portable loop (x86-64
/// takes [`x86::Avx2`] instead when the CPU has it).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
type Target = wasm::Simd128;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
type Target = Portable;

/// Checks once per row what the unchecked loads of the AVX2 form rely on:
/// both rows are `groups · W` long, with one scale per group.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn check_lengths<const W: usize, Q: RowInts>(w: &WeightRow<Q>, x: &Row) {
    let groups = x.scales.len();
    assert!(x.high.len() == groups * W && x.low.len() == groups * W);
    assert!(w.q.len() == groups * W && w.scales.len() == groups);
}

/// Portable form; the compiler vectorizes the 8-lane integer loops.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
struct Portable;

impl Dot for Portable {
    #[inline(always)]
    fn dot<const W: usize, Q: RowInts>(w: WeightRow<Q>, x: &Row) -> f32 {
        let (mut total_high, mut total_low) = (0.0f32, 0.0f32);
        for (g, &scale) in w.scales.iter().enumerate() {
            let (high, low) = w.q.group_dot::<W>(g, x.high, x.low);
            let s = scale * x.scales[g];
            total_high += high as f32 * s;
            total_low += low as f32 * s;
        }
        total_high + total_low / LOW
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::{Dot, Row, RowInts, WeightRow, LOW};
    use core::arch::wasm32::*;

    /// `i32x4.dot_i16x8_s` on the weights widened to 16 bits.
    pub struct Simd128;

    /// `Σ q · x` over 16 weights widened to two `i16x8` and the 16 `i16` at
    /// `x`, in four lanes.
    ///
    /// # Safety
    /// `x` points at 16 readable `i16`.
    #[inline(always)]
    pub unsafe fn dot16(q: [v128; 2], x: *const v128) -> v128 {
        i32x4_add(
            i32x4_dot_i16x8(q[0], v128_load(x)),
            i32x4_dot_i16x8(q[1], v128_load(x.add(1))),
        )
    }

    impl Dot for Simd128 {
        // `inline`, not `inline(always)`: docs/performance.md, "A regression found by bisection".
        #[inline]
        fn dot<const W: usize, Q: RowInts>(w: WeightRow<Q>, x: &Row) -> f32 {
            let groups = w.scales.len();
            assert!(x.scales.len() == groups);
            let inv_low = f32x4_splat(1.0 / LOW);
            let mut total = f32x4_splat(0.0);
            let mut g = 0;
            // Four groups at a time: their sums side by side in one vector, so that the
            // conversion and the scales take one instruction for the four.
            while g + 4 <= groups {
                let (h0, l0) = w.q.group_dot_simd128::<W>(g, x.high, x.low);
                let (h1, l1) = w.q.group_dot_simd128::<W>(g + 1, x.high, x.low);
                let (h2, l2) = w.q.group_dot_simd128::<W>(g + 2, x.high, x.low);
                let (h3, l3) = w.q.group_dot_simd128::<W>(g + 3, x.high, x.low);
                let high = f32x4_convert_i32x4(lane_sums(h0, h1, h2, h3));
                let low = f32x4_convert_i32x4(lane_sums(l0, l1, l2, l3));
                let v = f32x4_add(high, f32x4_mul(low, inv_low));
                // SAFETY: groups g..g + 4 are within both rows' scales (checked above).
                let s = unsafe {
                    f32x4_mul(
                        v128_load(w.scales.as_ptr().add(g) as *const v128),
                        v128_load(x.scales.as_ptr().add(g) as *const v128),
                    )
                };
                total = f32x4_add(total, f32x4_mul(v, s));
                g += 4;
            }
            let mut tail = 0.0;
            while g < groups {
                let (h, l) = w.q.group_dot_simd128::<W>(g, x.high, x.low);
                let v = f32x4_add(
                    f32x4_convert_i32x4(h),
                    f32x4_mul(f32x4_convert_i32x4(l), inv_low),
                );
                let v = f32x4_mul(v, f32x4_splat(w.scales[g] * x.scales[g]));
                tail += f32x4_extract_lane::<0>(v)
                    + f32x4_extract_lane::<1>(v)
                    + f32x4_extract_lane::<2>(v)
                    + f32x4_extract_lane::<3>(v);
                g += 1;
            }
            f32x4_extract_lane::<0>(total)
                + f32x4_extract_lane::<1>(total)
                + f32x4_extract_lane::<2>(total)
                + f32x4_extract_lane::<3>(total)
                + tail
        }
    }

    /// The lane sums of `a`, `b`, `c` and `d`, in that order.
    #[inline(always)]
    fn lane_sums(a: v128, b: v128, c: v128, d: v128) -> v128 {
        let ab = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(a, b),
            i32x4_shuffle::<2, 6, 3, 7>(a, b),
        );
        let cd = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(c, d),
            i32x4_shuffle::<2, 6, 3, 7>(c, d),
        );
        i32x4_add(
            i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
            i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{check_lengths, Dot, Row, RowInts, WeightRow, LOW};
    use std::arch::x86_64::*;

    /// Weights widened to 16 bits, multiplied with the activations' parts
    /// through `M`. Only for [`super::QuantMatrix::matmul_avx2`] and
    /// [`super::QuantMatrix::matmul_avx_vnni`], which check the CPU first.
    pub struct Avx2<M>(std::marker::PhantomData<M>);

    /// `acc + Σ` over each pair of adjacent 16-bit lanes of `a · b`, in eight `i32` lanes.
    pub trait Mac {
        /// # Safety
        /// The CPU has what the form needs.
        unsafe fn mac(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

        /// `f()` in a function compiled with the CPU features the form needs, so
        /// that the intrinsics `f` reaches inline.
        ///
        /// # Safety
        /// The CPU has them.
        unsafe fn enter<R>(f: impl FnOnce() -> R) -> R;
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn with_avx_vnni<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// `vpmaddwd` then `vpaddd` (AVX2).
    pub struct Madd;

    /// `vpdpwssd`, the two fused (AVX-VNNI).
    pub struct Vnni;

    impl Mac for Madd {
        #[inline(always)]
        unsafe fn mac(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }

        #[inline(always)]
        unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
            with_avx2(f)
        }
    }

    impl Mac for Vnni {
        #[inline(always)]
        unsafe fn mac(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            _mm256_dpwssd_avx_epi32(acc, a, b)
        }

        #[inline(always)]
        unsafe fn enter<R>(f: impl FnOnce() -> R) -> R {
            with_avx_vnni(f)
        }
    }

    /// The 16 `i16` at `x + at`.
    ///
    /// # Safety
    /// They are readable, and the CPU has AVX.
    #[inline(always)]
    pub unsafe fn load16(x: *const i16, at: usize) -> __m256i {
        _mm256_loadu_si256(x.add(at) as *const __m256i)
    }

    /// `total` plus group `g`'s products, scaled: `high + low / 2¹⁵` in one
    /// fused multiply-add, then another for the scale.
    ///
    /// # Safety
    /// As [`RowInts::group_dot_avx2`], and the CPU has FMA. A function rather
    /// than a closure: a closure is not compiled for AVX2, so the intrinsics
    /// would not inline.
    #[inline(always)]
    unsafe fn add_group<const W: usize, Q: RowInts, M: Mac>(
        w: &WeightRow<Q>,
        x: &Row,
        g: usize,
        total: __m256,
    ) -> __m256 {
        let (acc_high, acc_low) =
            w.q.group_dot_avx2::<W, M>(g, x.high.as_ptr(), x.low.as_ptr());
        let s = _mm256_set1_ps(w.scales.get_unchecked(g) * x.scales.get_unchecked(g));
        let inv_low = _mm256_set1_ps(1.0 / LOW);
        let v = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(acc_low),
            inv_low,
            _mm256_cvtepi32_ps(acc_high),
        );
        _mm256_fmadd_ps(v, s, total)
    }

    impl<M: Mac> Dot for Avx2<M> {
        #[inline(always)]
        fn enter<R>(tile: impl FnOnce() -> R) -> R {
            // SAFETY: only chosen by matmul_avx2 and matmul_avx_vnni, on a CPU with what M needs.
            unsafe { M::enter(tile) }
        }

        #[inline(always)]
        fn dot<const W: usize, Q: RowInts>(w: WeightRow<Q>, x: &Row) -> f32 {
            check_lengths::<W, Q>(&w, x);
            // SAFETY: only reached from matmul_avx2, on a CPU with AVX2; every group's loads
            // stay within both rows, whose lengths check_lengths has checked.
            unsafe {
                // Even and odd groups into separate sums, so that two additions are in flight.
                let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let groups = w.scales.len();
                for g in (0..groups - groups % 2).step_by(2) {
                    even = add_group::<W, Q, M>(&w, x, g, even);
                    odd = add_group::<W, Q, M>(&w, x, g + 1, odd);
                }
                if groups % 2 == 1 {
                    even = add_group::<W, Q, M>(&w, x, groups - 1, even);
                }
                let total = _mm256_add_ps(even, odd);
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), total);
                lanes.iter().sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{random_4_bit, random_matrix, uniform};
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    // scripts/test-wasm.sh runs these in the browser too: there the SIMD `dot` is the one tested.
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// `x · Wᵀ` in f64 from the dequantized weights: the reference.
    fn reference(m: &QuantMatrix, x: &[f32], n: usize) -> Vec<f64> {
        let [rows, cols] = m.shape();
        let w = m.dequantize();
        let mut out = vec![0.0; n * rows];
        for r in 0..n {
            for o in 0..rows {
                out[r * rows + o] = (0..cols)
                    .map(|i| x[r * cols + i] as f64 * w[o * cols + i] as f64)
                    .sum();
            }
        }
        out
    }

    /// The activations' two parts are the formula's integers on every target
    /// (wasm's SIMD128 form included), ties, saturation and all.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn activations_are_split_as_the_formula_says() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut x: Vec<f32> = (0..32 * 8).map(|_| uniform(&mut rng) * 3.0).collect();
        // Halfway cases (t = k + 0.5 with the group's max 32767) and a zero group.
        x[..32]
            .iter_mut()
            .enumerate()
            .for_each(|(j, v)| *v = j as f32 + 0.5);
        x[31] = 32767.0;
        x[32..64].iter_mut().for_each(|v| *v = 0.0);
        for (w, acts) in [
            (32, Activations::new::<32>(&x, true)),
            (16, Activations::new::<16>(&x, false)),
        ] {
            for (g, xg) in x.chunks_exact(w).enumerate() {
                let max = xg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert_eq!(acts.scales[g], max / i16::MAX as f32);
                for (j, &v) in xg.iter().enumerate() {
                    let (t, at) = (v * (i16::MAX as f32 / max), g * w + j);
                    let (h, l) = if max > 0.0 {
                        let rounded = t.round_ties_even();
                        (
                            rounded as i16,
                            ((t - rounded) * LOW).round_ties_even() as i16,
                        )
                    } else {
                        (0, 0)
                    };
                    assert_eq!((acts.high[at], acts.low[at]), (h, l), "width {w}, x = {v}");
                }
            }
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn matmul_of_a_matrix_without_rows_is_empty() {
        // No rows to fetch ahead either: nothing to divide the integers' bytes among.
        let m = QuantMatrix::new([0, 32], 32, vec![], vec![], None);
        for n in [1, 5] {
            let x = vec![1.0f32; n * 32];
            assert_eq!(m.matmul(&x, n), Vec::<f32>::new());
            assert_eq!(m.matmul_integer(&x, n), Vec::<f32>::new());
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn matmul_matches_dequantized_f64_reference() {
        // Rows not a multiple of the tiles, one and several activation rows (enough for the
        // tiled path, with a partial block of rows), with and without offsets; the last two
        // large enough to be split over threads (`crate::pool`, feature `threads`).
        for (rows, cols, width, n, has_offsets) in [
            (37, 64, 32, 1, true),
            (20, 96, 32, 5, false),
            (3, 32, 32, 2, true),
            (19, 48, 16, 3, false),
            (5, 64, 16, 1, true),
            (37, 64, 32, 11, true),
            (17, 48, 16, 6, false),
            (300, 256, 32, 1, true),
            (300, 256, 32, 5, false),
        ] {
            let mut matrices = vec![random_matrix([rows, cols], width, has_offsets, rows as u64)];
            if width == 32 {
                // Held in 4 bits: Q4_1's unsigned nibbles and Q4_0's less 8.
                let zero = if has_offsets { 0 } else { 8 };
                matrices.push(random_4_bit([rows, cols], zero, has_offsets, rows as u64));
            }
            for m in matrices {
                check_against_reference(&m, n);
            }
        }
    }

    /// Every form of the matmul on `m` and `n` random activation rows against the `f64` reference.
    fn check_against_reference(m: &QuantMatrix, n: usize) {
        let [rows, cols] = m.shape();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut x: Vec<f32> = (0..n * cols).map(|_| uniform(&mut rng) * 3.0).collect();
        x[..32].fill(0.0); // an all-zero group has scale 0
        let want = reference(m, &x, n);
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        // What `matmul` dispatches to, the integer dot product this machine runs (SIMD128,
        // AVX2), its portable form, and the dequantized tiles, whatever `n`.
        let portable = match m.width {
            16 => m.matmul_with::<16, Portable>(&x, n),
            _ => m.matmul_with::<32, Portable>(&x, n),
        };
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))] // AVX2's form added below
        let mut forms = vec![
            ("dispatched", m.matmul(&x, n)),
            ("integer", m.matmul_integer(&x, n)),
            ("portable", portable),
            ("tiled", m.matmul_tiled(&x, n)),
        ];
        // AVX2 without VNNI too, which `matmul_integer` skips on a CPU with both.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, just checked.
            let avx2 = unsafe {
                match m.width {
                    16 => m.matmul_avx2::<16>(&x, n),
                    _ => m.matmul_avx2::<32>(&x, n),
                }
            };
            forms.push(("avx2", avx2));
        }
        for (how, got) in forms {
            let err = got
                .iter()
                .zip(&want)
                .map(|(&g, w)| (g as f64 - w).powi(2))
                .sum::<f64>()
                .sqrt();
            let bits = if m.is_4_bit() { 4 } else { 8 };
            assert!(
                err / norm < 1e-6,
                "{how} {rows}x{cols} in {bits} bits, n={n}: relative error {}",
                err / norm
            );
        }
    }
}
