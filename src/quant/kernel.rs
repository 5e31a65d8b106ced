//! `x · Wᵀ` over a [`QuantMatrix`]: the activations become integers per group
//! too, so the inner loop is an integer dot product.
//!
//! The dot product comes in three forms chosen by the target: wasm SIMD128 at
//! compile time, AVX2 on x86-64 at run time (`is_x86_feature_detected!`), and a
//! portable loop elsewhere. All three sum the same integers, so they differ by
//! `f32` rounding at most.

use super::{tiled, QuantMatrix};

/// Output rows whose weights are reused, from cache, across all activation rows.
const ROW_TILE: usize = 16;

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
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, just checked.
            return unsafe {
                match self.width {
                    16 => self.matmul_avx2::<16>(x, n),
                    _ => self.matmul_avx2::<32>(x, n),
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
    #[target_feature(enable = "avx2")]
    unsafe fn matmul_avx2<const W: usize>(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with::<W, x86::Avx2>(x, n)
    }

    #[inline(always)]
    fn matmul_with<const W: usize, D: Dot>(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!((x.len(), self.width), (n * self.cols, W));
        let (rows, cols, groups) = (self.rows, self.cols, self.cols / W);
        let acts = Activations::new::<W>(x, self.offsets.is_some());
        let mut out = vec![0.0f32; n * rows];
        for tile in (0..rows).step_by(ROW_TILE) {
            let end = (tile + ROW_TILE).min(rows);
            for r in 0..n {
                let x = Row {
                    high: &acts.high[r * cols..(r + 1) * cols],
                    low: &acts.low[r * cols..(r + 1) * cols],
                    scales: &acts.scales[r * groups..(r + 1) * groups],
                };
                for o in tile..end {
                    let w = WeightRow {
                        q: &self.q[o * cols..(o + 1) * cols],
                        scales: &self.scales[o * groups..(o + 1) * groups],
                    };
                    let mut y = D::dot::<W>(w, &x);
                    if let Some(offsets) = &self.offsets {
                        // A plain sum: 8 interleaved ones made wasm decode 9 % slower
                        // (docs/performance.md, "A regression found by bisection").
                        let sums = &acts.sums[r * groups..(r + 1) * groups];
                        let off = &offsets[o * groups..(o + 1) * groups];
                        y += off.iter().zip(sums).map(|(a, b)| a * b).sum::<f32>();
                    }
                    out[r * rows + o] = y;
                }
            }
        }
        out
    }
}

/// One weight row: `scales[g] · q` over group `g`.
struct WeightRow<'a> {
    q: &'a [i8],
    scales: &'a [f32],
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
    fn dot<const W: usize>(w: WeightRow, x: &Row) -> f32;
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
            let max = xg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if max > 0.0 {
                let inv = i16::MAX as f32 / max;
                for ((h, l), v) in high.iter_mut().zip(low.iter_mut()).zip(xg) {
                    let t = v * inv;
                    let rounded = round(t);
                    *h = rounded as i16;
                    *l = round((t - rounded) * LOW) as i16;
                }
            }
            acts.scales.push(max / i16::MAX as f32);
            if with_sums {
                acts.sums.push(xg.iter().sum());
            }
        }
        acts
    }
}

/// Rounds half to even for `|t| < 2²²` by adding and removing 1.5 · 2²³, which
/// leaves no fraction bits; `round_ties_even` is a libm call on baseline x86-64.
#[inline]
fn round(t: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
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
fn check_lengths<const W: usize>(w: &WeightRow, x: &Row) {
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
    fn dot<const W: usize>(w: WeightRow, x: &Row) -> f32 {
        let (mut total_high, mut total_low) = (0.0f32, 0.0f32);
        for (g, &scale) in w.scales.iter().enumerate() {
            let at = g * W..(g + 1) * W;
            let q = &w.q[at.clone()];
            let dot8 = |x: &[i16]| {
                let mut acc = [0i32; 8];
                for (j, (&a, &b)) in q.iter().zip(x).enumerate() {
                    acc[j % 8] += a as i32 * b as i32;
                }
                acc.iter().sum::<i32>() as f32
            };
            let s = scale * x.scales[g];
            total_high += dot8(&x.high[at.clone()]) * s;
            total_low += dot8(&x.low[at]) * s;
        }
        total_high + total_low / LOW
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::{Dot, Row, WeightRow, LOW};
    use core::arch::wasm32::*;

    /// `i32x4.dot_i16x8_s` on the weights widened to 16 bits.
    pub struct Simd128;

    impl Dot for Simd128 {
        // `inline`, not `inline(always)`: as before the regression the comment above names.
        #[inline]
        fn dot<const W: usize>(w: WeightRow, x: &Row) -> f32 {
            let (w, ws, high, low, xs) = (w.q, w.scales, x.high, x.low, x.scales);
            let (mut total_high, mut total_low) = (f32x4_splat(0.0), f32x4_splat(0.0));
            for (g, &scale) in ws.iter().enumerate() {
                let (mut acc_high, mut acc_low) = (i32x4_splat(0), i32x4_splat(0));
                for at in (g * W..(g + 1) * W).step_by(16) {
                    let (w, h, l) = (&w[at..at + 16], &high[at..at + 16], &low[at..at + 16]);
                    // SAFETY: `w` holds 16 i8 (one v128), `h` and `l` 16 i16 (two v128
                    // each); v128_load has no alignment requirement.
                    unsafe {
                        let w = v128_load(w.as_ptr() as *const v128);
                        let (w0, w1) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
                        let dot2 = |x: *const v128| {
                            i32x4_add(
                                i32x4_dot_i16x8(w0, v128_load(x)),
                                i32x4_dot_i16x8(w1, v128_load(x.add(1))),
                            )
                        };
                        acc_high = i32x4_add(acc_high, dot2(h.as_ptr() as *const v128));
                        acc_low = i32x4_add(acc_low, dot2(l.as_ptr() as *const v128));
                    }
                }
                let s = f32x4_splat(scale * xs[g]);
                total_high = f32x4_add(total_high, f32x4_mul(f32x4_convert_i32x4(acc_high), s));
                total_low = f32x4_add(total_low, f32x4_mul(f32x4_convert_i32x4(acc_low), s));
            }
            let total = f32x4_add(total_high, f32x4_div(total_low, f32x4_splat(LOW)));
            f32x4_extract_lane::<0>(total)
                + f32x4_extract_lane::<1>(total)
                + f32x4_extract_lane::<2>(total)
                + f32x4_extract_lane::<3>(total)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{check_lengths, Dot, Row, WeightRow, LOW};
    use std::arch::x86_64::*;

    /// `vpmaddwd` on 16 weights widened to 16 bits at a time. Only for
    /// [`super::QuantMatrix::matmul_avx2`], which checks the CPU first.
    pub struct Avx2;

    impl Dot for Avx2 {
        #[inline(always)]
        fn dot<const W: usize>(w: WeightRow, x: &Row) -> f32 {
            check_lengths::<W>(&w, x);
            // SAFETY: only reached from matmul_avx2, on a CPU with AVX2; every load reads
            // `at..at + 16` with `at + 16 <= groups · W`, the length of both rows (check_lengths).
            unsafe {
                let (mut total_high, mut total_low) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for (g, (&scale, &xs)) in w.scales.iter().zip(x.scales).enumerate() {
                    let (mut acc_high, mut acc_low) =
                        (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for k in 0..W / 16 {
                        let at = g * W + k * 16;
                        let q = _mm_loadu_si128(w.q.as_ptr().add(at) as *const __m128i);
                        let q = _mm256_cvtepi8_epi16(q);
                        let h = _mm256_loadu_si256(x.high.as_ptr().add(at) as *const __m256i);
                        let l = _mm256_loadu_si256(x.low.as_ptr().add(at) as *const __m256i);
                        acc_high = _mm256_add_epi32(acc_high, _mm256_madd_epi16(q, h));
                        acc_low = _mm256_add_epi32(acc_low, _mm256_madd_epi16(q, l));
                    }
                    let s = _mm256_set1_ps(scale * xs);
                    total_high =
                        _mm256_add_ps(total_high, _mm256_mul_ps(_mm256_cvtepi32_ps(acc_high), s));
                    total_low =
                        _mm256_add_ps(total_low, _mm256_mul_ps(_mm256_cvtepi32_ps(acc_low), s));
                }
                let total =
                    _mm256_add_ps(total_high, _mm256_div_ps(total_low, _mm256_set1_ps(LOW)));
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), total);
                lanes.iter().sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{random_matrix, uniform};
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    // wasm-pack test runs these in the browser too: there the SIMD `dot` is the one tested.
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

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn matmul_matches_dequantized_f64_reference() {
        // Rows not a multiple of the tile nor of ROWS, one and several activation rows, with and
        // without offsets.
        // Rows not a multiple of the tiles either, and enough activation rows for the tiled path
        // (with a partial block of rows).
        for (rows, cols, width, n, has_offsets) in [
            (37, 64, 32, 1, true),
            (20, 96, 32, 5, false),
            (3, 32, 32, 2, true),
            (19, 48, 16, 3, false),
            (5, 64, 16, 1, true),
            (37, 64, 32, 11, true),
            (17, 48, 16, 6, false),
        ] {
            let m = random_matrix([rows, cols], width, has_offsets, rows as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut x: Vec<f32> = (0..n * cols).map(|_| uniform(&mut rng) * 3.0).collect();
            x[..32].fill(0.0); // an all-zero group has scale 0
            let want = reference(&m, &x, n);
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            // What `matmul` dispatches to, the integer dot product this machine runs (SIMD128,
            // AVX2), its portable form, and the dequantized tiles, whatever `n`.
            let portable = match width {
                16 => m.matmul_with::<16, Portable>(&x, n),
                _ => m.matmul_with::<32, Portable>(&x, n),
            };
            for (how, got) in [
                ("dispatched", m.matmul(&x, n)),
                ("integer", m.matmul_integer(&x, n)),
                ("portable", portable),
                ("tiled", m.matmul_tiled(&x, n)),
            ] {
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, w)| (g as f64 - w).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!(
                    err / norm < 1e-6,
                    "{how} {rows}x{cols}, n={n}: relative error {}",
                    err / norm
                );
            }
        }
    }
}
