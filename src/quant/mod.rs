//! Weight matrices kept as small integers in groups, and the matmul that reads them.
//!
//! Every block of llama.cpp's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and K-quants
//! (Q2_K to Q6_K) is made of groups of 32 weights (16 for Q2_K, Q3_K and
//! Q6_K) that are `scale · q + offset` with small integers `q`, so all of them
//! convert to this one form without changing a weight. A decode step
//! multiplies one row by every weight once, so its speed is set by the bytes
//! it reads: 1.125 to 1.25 per weight with one byte per `q` (plus the
//! offsets of the asymmetric formats), against 4 for `f32`. The 4-bit
//! formats (Q4_0, Q4_1, Q4_K) keep two `q` to a byte, 0.625 to 0.75 bytes per
//! weight ([`Ints::Nibbles`]).
//!
//! The activations become integers too, so the inner loop is an integer dot
//! product (`i32x4.dot_i16x8_s` in wasm SIMD) on weights widened to 16 bits in
//! registers: per group, a scale and two 16-bit parts,
//! `x ≈ scale · (high + low / 2¹⁵)`. One part alone would be faster but costs
//! about 1e-4 of the logits; with both the error is below `f32` rounding, so
//! results match the dense `f32` path. burn has no kernel for this (its
//! quantized matmul dequantizes first), so it runs on host memory; both of our
//! backends are CPU backends, and the hop costs a copy of the activations.
//!
//! Many rows at once (a prompt, the cache-off baseline) reuse each weight, and
//! there dequantizing a tile of weights to `f32` once and multiplying it with
//! every row is faster ([`tiled`]).
//!
//! [`blocks`] reads llama.cpp's block layouts into groups; [`kernel`] multiplies
//! one or a few rows, [`tiled`] many.

pub mod blocks;
mod kernel;
mod tiled;

use blocks::GroupBlock;

use crate::budget;
use crate::error::Result;

/// A `[rows, cols]` matrix (PyTorch's `[out, in]`) of small integers `q`,
/// each row cut into groups of `width` weights with one scale (and offset) each.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    /// Weights per group: 32, or 16 for the K-quants whose sub-blocks are 16 wide.
    width: usize,
    q: Ints,
    scales: Vec<f32>,
    /// `None` for the symmetric formats, whose offsets are all zero.
    offsets: Option<Vec<f32>>,
}

/// Group widths the kernels are built for.
pub const WIDTHS: [usize; 2] = [16, 32];

/// The integers `q` of a matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
enum Ints {
    /// One to a byte.
    Bytes(Vec<i8>),
    /// Two to a byte, as `q + zero` in `0..16` with `zero` 0 (Q4_1, Q4_K) or
    /// 8 (Q4_0), in groups of 32: group `g` in bytes `16g..16g + 16`, its
    /// weight `j` in the low nibble of byte `j` and weight `j + 16` in the
    /// high nibble (llama.cpp's Q4_0 layout).
    Nibbles { packed: Vec<u8>, zero: i8 },
}

/// Bytes of packed nibbles per group of 32 weights.
const NIBBLE_GROUP: usize = 16;

impl Ints {
    fn bytes(&self) -> usize {
        match self {
            Ints::Bytes(q) => q.len(),
            Ints::Nibbles { packed, .. } => packed.len(),
        }
    }
}

impl QuantMatrix {
    /// From row-major weights `q` of a `[rows, cols]` matrix and one scale
    /// (and offset) per `width` of them; `width` is 16 or 32 and divides `cols`.
    pub fn new(
        [rows, cols]: [usize; 2],
        width: usize,
        q: Vec<i8>,
        scales: Vec<f32>,
        offsets: Option<Vec<f32>>,
    ) -> Self {
        assert_eq!(q.len(), rows * cols);
        Self::with_ints([rows, cols], width, Ints::Bytes(q), scales, offsets)
    }

    fn with_ints(
        [rows, cols]: [usize; 2],
        width: usize,
        q: Ints,
        scales: Vec<f32>,
        offsets: Option<Vec<f32>>,
    ) -> Self {
        assert!(WIDTHS.contains(&width) && cols.is_multiple_of(width));
        assert_eq!(scales.len(), rows * cols / width);
        assert!(offsets.as_ref().is_none_or(|o| o.len() == scales.len()));
        if let Ints::Nibbles { packed, zero } = &q {
            assert!(width == 32 && packed.len() == rows * cols / 2 && [0, 8].contains(zero));
        }
        QuantMatrix {
            rows,
            cols,
            width,
            q,
            scales,
            offsets,
        }
    }

    /// A zeroed `[rows, cols]` matrix in the groups of `B` (two weights to a
    /// byte when `B` has [`GroupBlock::NIBBLES`]), for [`Self::unpack_blocks`]
    /// to fill; `cols` is a multiple of the block's length. Allocated within
    /// the memory budget; `what` names the matrix if memory runs out.
    pub fn for_blocks<B: GroupBlock>(
        rows: usize,
        cols: usize,
        what: impl Fn() -> String,
    ) -> Result<Self> {
        let n = rows * cols;
        let groups = n / B::WIDTH;
        let q = match B::NIBBLES {
            Some(zero) => Ints::Nibbles {
                packed: budget::vec_filled(&what, n / 2, 0u8)?,
                zero,
            },
            None => Ints::Bytes(budget::vec_filled(&what, n, 0i8)?),
        };
        let scales = budget::vec_filled(&what, groups, 0.0)?;
        let offsets = match B::OFFSETS {
            true => Some(budget::vec_filled(&what, groups, 0.0)?),
            false => None,
        };
        Ok(Self::with_ints([rows, cols], B::WIDTH, q, scales, offsets))
    }

    /// Unpacks the whole blocks of `B` in `raw` into blocks `first..` of the
    /// matrix (counted row-major, as the file stores them).
    pub fn unpack_blocks<B: GroupBlock>(&mut self, first: usize, raw: &[u8]) {
        debug_assert_eq!(self.width, B::WIDTH);
        let per_block = B::LEN / B::WIDTH;
        let mut unpacked = [0i8; 256];
        for (i, block) in blocks::read::<B>(raw).enumerate() {
            let b = first + i;
            let at = b * per_block..(b + 1) * per_block;
            let offsets = match &mut self.offsets {
                Some(offsets) => &mut offsets[at.clone()],
                None => &mut [][..],
            };
            let q = match &mut self.q {
                Ints::Bytes(q) => &mut q[b * B::LEN..(b + 1) * B::LEN],
                Ints::Nibbles { .. } => &mut unpacked[..B::LEN],
            };
            block.unpack(q, &mut self.scales[at], offsets);
            if let Ints::Nibbles { packed, zero } = &mut self.q {
                let packed = &mut packed[b * B::LEN / 2..(b + 1) * B::LEN / 2];
                pack_nibbles(&unpacked[..B::LEN], *zero, packed);
            }
        }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes held, for memory figures.
    pub fn bytes(&self) -> usize {
        self.q.bytes() + 4 * (self.scales.len() + self.offsets.as_ref().map_or(0, Vec::len))
    }

    /// Whether the weights are held two to a byte.
    pub fn is_4_bit(&self) -> bool {
        matches!(self.q, Ints::Nibbles { .. })
    }

    /// Row `r` as `f32`, appended to `out`: an embedding lookup, a row of a
    /// dequantized tile (`tiled`) or of [`Self::dequantize`].
    pub fn row_into(&self, r: usize, out: &mut Vec<f32>) {
        let groups = self.cols / self.width;
        let at = out.len();
        out.resize(at + self.cols, 0.0);
        let row = &mut out[at..];
        let first = r * groups;
        let scales = &self.scales[first..first + groups];
        let offsets = self.offsets.as_ref().map(|o| &o[first..first + groups]);
        match &self.q {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Ints::Bytes(q) => {
                let q = &q[r * self.cols..(r + 1) * self.cols];
                simd128::bytes(q, self.width, scales, offsets, row);
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            Ints::Bytes(q) => {
                let q = &q[r * self.cols..(r + 1) * self.cols];
                dequant_groups(q, self.width, scales, offsets, row, |q| q as f32);
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Ints::Nibbles { packed, zero } => {
                let packed = &packed[r * self.cols / 2..(r + 1) * self.cols / 2];
                simd128::nibbles(packed, *zero, scales, offsets, row);
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            Ints::Nibbles { packed, zero } => {
                let packed = &packed[r * self.cols / 2..(r + 1) * self.cols / 2];
                let zero = *zero as f32;
                let groups = packed
                    .chunks_exact(NIBBLE_GROUP)
                    .zip(row.chunks_exact_mut(2 * NIBBLE_GROUP));
                for (g, (bytes, out)) in groups.enumerate() {
                    // Weights 0..16 are the low nibbles, 16..32 the high ones.
                    let (low, high) = out.split_at_mut(NIBBLE_GROUP);
                    let (scale, offset) = (&scales[g..g + 1], offsets.map(|o| &o[g..g + 1]));
                    let w = NIBBLE_GROUP;
                    dequant_groups(bytes, w, scale, offset, low, |b| (b & 0x0F) as f32 - zero);
                    dequant_groups(bytes, w, scale, offset, high, |b| (b >> 4) as f32 - zero);
                }
            }
        }
    }

    /// The whole matrix as row-major `f32`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            self.row_into(r, &mut out);
        }
        out
    }

    /// A matrix whose row `i` is this one's row `order[i]`, allocated within
    /// the memory budget; `what` names it if memory runs out.
    pub fn select_rows(&self, order: &[usize], what: impl Fn() -> String) -> Result<Self> {
        let what: &dyn Fn() -> String = &what;
        let groups = self.cols / self.width;
        let q = match &self.q {
            Ints::Bytes(q) => Ints::Bytes(pick_rows(q, self.cols, order, what)?),
            Ints::Nibbles { packed, zero } => Ints::Nibbles {
                packed: pick_rows(packed, self.cols / 2, order, what)?,
                zero: *zero,
            },
        };
        Ok(QuantMatrix {
            rows: order.len(),
            cols: self.cols,
            width: self.width,
            q,
            scales: pick_rows(&self.scales, groups, order, what)?,
            offsets: (self.offsets.as_deref())
                .map(|o| pick_rows(o, groups, order, what))
                .transpose()?,
        })
    }
}

/// Rows `order` of the row-major `v`, `per_row` values each, within the memory budget.
fn pick_rows<T: Copy>(
    v: &[T],
    per_row: usize,
    order: &[usize],
    what: &dyn Fn() -> String,
) -> Result<Vec<T>> {
    let mut out = budget::vec_with_capacity(what, order.len() * per_row)?;
    for &r in order {
        out.extend_from_slice(&v[r * per_row..(r + 1) * per_row]);
    }
    Ok(out)
}

/// Groups of 32 integers `q` into 16 bytes each, as [`Ints::Nibbles`] holds them.
fn pack_nibbles(q: &[i8], zero: i8, packed: &mut [u8]) {
    for (q, bytes) in q
        .chunks_exact(32)
        .zip(packed.chunks_exact_mut(NIBBLE_GROUP))
    {
        let (low, high) = q.split_at(NIBBLE_GROUP);
        for ((b, &l), &h) in bytes.iter_mut().zip(low).zip(high) {
            debug_assert!((0..16).contains(&(l + zero)) && (0..16).contains(&(h + zero)));
            *b = (l + zero) as u8 | ((h + zero) as u8) << 4;
        }
    }
}

/// [`dequant`] over groups of `width`: `dst[i] = q(src[i]) · scale + offset`,
/// the offset added only where there is one (so a `-0.0` stays `-0.0`), in a
/// loop per form that the compiler vectorizes.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dequant_groups<T: Copy>(
    src: &[T],
    width: usize,
    scales: &[f32],
    offsets: Option<&[f32]>,
    dst: &mut [f32],
    q: impl Fn(T) -> f32,
) {
    let groups = src.chunks_exact(width).zip(dst.chunks_exact_mut(width));
    match offsets {
        Some(offsets) => {
            for ((src, dst), (&scale, &m)) in groups.zip(scales.iter().zip(offsets)) {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = q(s) * scale + m;
                }
            }
        }
        None => {
            for ((src, dst), &scale) in groups.zip(scales) {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = q(s) * scale;
                }
            }
        }
    }
}

/// [`QuantMatrix::row_into`]'s loops in wasm SIMD128, 16 weights at a time
/// (docs/performance.md, step 8). The same arithmetic as [`dequant`], so the
/// same bits.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    /// Stores `q · scale (+ offset)` for the 16 integers in `q` (four `i32x4`) at `dst`.
    ///
    /// # Safety
    /// `dst` points at 16 writable `f32`.
    #[inline(always)]
    unsafe fn store16(q: [v128; 4], scale: f32, offset: Option<f32>, dst: *mut f32) {
        let scale = f32x4_splat(scale);
        for (i, q) in q.into_iter().enumerate() {
            let y = f32x4_mul(f32x4_convert_i32x4(q), scale);
            let y = match offset {
                Some(m) => f32x4_add(y, f32x4_splat(m)),
                None => y,
            };
            v128_store(dst.add(4 * i) as *mut v128, y);
        }
    }

    /// The four `i32x4` of eight `i16` lanes pairs `a`, `b`.
    #[inline(always)]
    fn widen(a: v128, b: v128) -> [v128; 4] {
        [
            i32x4_extend_low_i16x8(a),
            i32x4_extend_high_i16x8(a),
            i32x4_extend_low_i16x8(b),
            i32x4_extend_high_i16x8(b),
        ]
    }

    /// A row of [`super::Ints::Bytes`] in groups of `width` (a multiple of 16).
    pub fn bytes(q: &[i8], width: usize, scales: &[f32], offsets: Option<&[f32]>, row: &mut [f32]) {
        assert!(
            width.is_multiple_of(16) && q.len() == row.len() && q.len() == scales.len() * width
        );
        assert!(offsets.is_none_or(|o| o.len() == scales.len()));
        for at in (0..q.len()).step_by(16) {
            let g = at / width;
            let offset = offsets.map(|o| o[g]);
            // SAFETY: `at + 16 <= q.len() == row.len()` (the lengths are multiples of 16);
            // v128_load has no alignment requirement.
            unsafe {
                let v = v128_load(q.as_ptr().add(at) as *const v128);
                let v = widen(i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
                store16(v, scales[g], offset, row.as_mut_ptr().add(at));
            }
        }
    }

    /// A row of [`super::Ints::Nibbles`] (groups of 32: 16 bytes, weight `j` in
    /// the low nibble of byte `j`, weight `j + 16` in the high one), less `zero`.
    pub fn nibbles(
        packed: &[u8],
        zero: i8,
        scales: &[f32],
        offsets: Option<&[f32]>,
        row: &mut [f32],
    ) {
        assert!(packed.len() * 2 == row.len() && packed.len() == scales.len() * 16);
        assert!(offsets.is_none_or(|o| o.len() == scales.len()));
        let (mask, zero) = (u8x16_splat(0x0F), i8x16_splat(zero));
        for (g, &scale) in scales.iter().enumerate() {
            let offset = offsets.map(|o| o[g]);
            // SAFETY: group g's 16 bytes are within `packed`, its 32 numbers within `row`.
            unsafe {
                let b = v128_load(packed.as_ptr().add(16 * g) as *const v128);
                // 0..16 less 0 or 8 fits an i8.
                let low = i8x16_sub(v128_and(b, mask), zero);
                let high = i8x16_sub(u8x16_shr(b, 4), zero);
                let dst = row.as_mut_ptr().add(32 * g);
                for (half, v) in [low, high].into_iter().enumerate() {
                    let v = widen(i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
                    store16(v, scale, offset, dst.add(16 * half));
                }
            }
        }
    }
}

/// The one formula from a group to `f32`, shared with the GGUF dequantizers so
/// both give the same bits as llama.cpp (`q · d`, or `q · d + m`).
#[inline]
pub fn dequant(q: i8, scale: f32, offset: Option<f32>) -> f32 {
    match offset {
        Some(m) => q as f32 * scale + m,
        None => q as f32 * scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    pub(super) fn uniform(rng: &mut ChaCha8Rng) -> f32 {
        (rng.next_u32() as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32
    }

    pub(super) fn random_matrix(
        [rows, cols]: [usize; 2],
        width: usize,
        has_offsets: bool,
        seed: u64,
    ) -> QuantMatrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups = rows * cols / width;
        let q = (0..rows * cols).map(|_| rng.next_u32() as i8).collect();
        let scales = (0..groups).map(|_| uniform(&mut rng) * 0.1).collect();
        let offsets = has_offsets.then(|| (0..groups).map(|_| uniform(&mut rng) * 0.2).collect());
        QuantMatrix::new([rows, cols], width, q, scales, offsets)
    }

    /// A random matrix of weights held two to a byte, `q + zero` in `0..16`.
    pub(super) fn random_4_bit(
        [rows, cols]: [usize; 2],
        zero: i8,
        has_offsets: bool,
        seed: u64,
    ) -> QuantMatrix {
        let m = random_matrix([rows, cols], 32, has_offsets, seed);
        let Ints::Bytes(q) = &m.q else { unreachable!() };
        let q: Vec<i8> = q.iter().map(|&q| (q as u8 % 16) as i8 - zero).collect();
        let mut packed = vec![0; rows * cols / 2];
        pack_nibbles(&q, zero, &mut packed);
        let q = Ints::Nibbles { packed, zero };
        QuantMatrix::with_ints([rows, cols], 32, q, m.scales, m.offsets)
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn select_rows_and_row_into_agree_with_dequantize() {
        let m = random_matrix([4, 64], 16, true, 3);
        let picked = m.select_rows(&[2, 0], String::new).unwrap();
        let (all, mut row) = (m.dequantize(), Vec::new());
        picked.row_into(1, &mut row);
        assert_eq!(row, all[..64]);
        assert_eq!(picked.dequantize()[..64], all[128..192]);
        assert_eq!(picked.shape(), [2, 64]);
    }

    /// Each form's `row_into` (wasm's SIMD128 loops, the portable ones elsewhere)
    /// gives the bits of [`dequant`] on every weight.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn row_into_gives_the_bits_of_dequant_for_every_form() {
        let (rows, cols) = (3, 96);
        let mut forms = Vec::new();
        for offsets in [false, true] {
            forms.push(random_matrix([rows, cols], 16, offsets, 5));
            forms.push(random_matrix([rows, cols], 32, offsets, 6));
            forms.push(random_4_bit([rows, cols], 0, offsets, 7));
            forms.push(random_4_bit([rows, cols], 8, offsets, 8));
        }
        for m in forms {
            let q: Vec<i8> = match &m.q {
                Ints::Bytes(q) => q.clone(),
                Ints::Nibbles { packed, zero } => packed
                    .chunks_exact(NIBBLE_GROUP)
                    .flat_map(|g| {
                        let low = g.iter().map(|b| (b & 0x0F) as i8 - zero);
                        low.chain(g.iter().map(|b| (b >> 4) as i8 - zero))
                    })
                    .collect(),
            };
            for r in 0..rows {
                let mut row = vec![7.0];
                m.row_into(r, &mut row);
                assert_eq!(row[0], 7.0, "row_into appends");
                for (c, got) in row[1..].iter().enumerate() {
                    let g = (r * cols + c) / m.width;
                    let offset = m.offsets.as_ref().map(|o| o[g]);
                    let want = dequant(q[r * cols + c], m.scales[g], offset);
                    assert_eq!(got.to_bits(), want.to_bits(), "{m:?} at {r}, {c}");
                }
            }
        }
    }

    /// Every 4-bit block unpacks into nibbles that dequantize as the block itself does.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn four_bit_blocks_are_held_in_nibbles_without_changing_a_weight() {
        fn check<B: GroupBlock>(seed: u64) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (rows, cols) = (3, 2 * B::LEN);
            let mut raw = vec![0u8; rows * cols / B::LEN * size_of::<B>()];
            rng.fill_bytes(&mut raw);
            // Finite f16 scales: clear the exponent's top bit of every byte pair's high byte.
            for b in raw.iter_mut().skip(1).step_by(2) {
                *b &= 0b1011_1111;
            }
            let mut m = QuantMatrix::for_blocks::<B>(rows, cols, String::new).unwrap();
            m.unpack_blocks::<B>(0, &raw);
            assert!(m.is_4_bit());
            assert_eq!(
                m.bytes(),
                rows * cols / 2 + 4 * (rows * cols / 32) * (1 + B::OFFSETS as usize)
            );
            let mut want = vec![0f32; rows * cols];
            blocks::dequantize::<B>(&raw, &mut want);
            let got = m.dequantize();
            assert!(got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            let mut row = Vec::new();
            m.select_rows(&[2], String::new)
                .unwrap()
                .row_into(0, &mut row);
            assert_eq!(row, want[2 * cols..]);
        }
        check::<blocks::BlockQ4_0>(1);
        check::<blocks::BlockQ4_1>(2);
        check::<blocks::BlockQ4K>(3);
    }
}
