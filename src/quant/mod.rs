//! Weight matrices kept as 8-bit integers in groups, and the matmul that reads them.
//!
//! Every block of llama.cpp's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and K-quants
//! (Q2_K to Q6_K) is made of groups of 32 weights (16 for Q2_K, Q3_K and
//! Q6_K) that are `scale · q + offset` with small integers `q`, so all of them
//! convert to this one form without changing a weight. A decode step
//! multiplies one row by every weight once, so its speed is set by the bytes
//! it reads: 1.125 to 1.25 per weight here (plus the offsets of the asymmetric
//! formats), against 4 for `f32`.
//!
//! The activations become integers too, so the inner loop is an integer dot
//! product (`i32x4.dot_i16x8_s` in wasm SIMD): per group, a scale and two
//! 16-bit parts, `x ≈ scale · (high + low / 2¹⁵)`. One part alone would be
//! faster but costs about 1e-4 of the logits; with both the error is below
//! `f32` rounding, so results match the dense `f32` path. burn has no kernel for this
//! (its quantized matmul dequantizes first), so it runs on host memory; both of
//! our backends are CPU backends, and the hop costs a copy of the activations.
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

/// A `[rows, cols]` matrix (PyTorch's `[out, in]`) of small integers `q`,
/// each row cut into groups of `width` weights with one scale (and offset) each.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    /// Weights per group: 32, or 16 for the K-quants whose sub-blocks are 16 wide.
    width: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    /// `None` for the symmetric formats, whose offsets are all zero.
    offsets: Option<Vec<f32>>,
}

/// Group widths the kernels are built for.
pub const WIDTHS: [usize; 2] = [16, 32];

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
        assert!(WIDTHS.contains(&width) && cols.is_multiple_of(width));
        assert_eq!(q.len(), rows * cols);
        assert_eq!(scales.len(), rows * cols / width);
        assert!(offsets.as_ref().is_none_or(|o| o.len() == scales.len()));
        QuantMatrix {
            rows,
            cols,
            width,
            q,
            scales,
            offsets,
        }
    }

    /// A zeroed `[rows, cols]` matrix in the groups of `B`, for
    /// [`Self::unpack_blocks`] to fill; `cols` is a multiple of the block's
    /// length. `None` when memory runs out.
    pub fn for_blocks<B: GroupBlock>(rows: usize, cols: usize) -> Option<Self> {
        let n = rows * cols;
        let groups = n / B::WIDTH;
        let q = zeroed::<i8>(n)?;
        let scales = zeroed::<f32>(groups)?;
        let offsets = match B::OFFSETS {
            true => Some(zeroed::<f32>(groups)?),
            false => None,
        };
        Some(Self::new([rows, cols], B::WIDTH, q, scales, offsets))
    }

    /// Unpacks the whole blocks of `B` in `raw` into blocks `first..` of the
    /// matrix (counted row-major, as the file stores them).
    pub fn unpack_blocks<B: GroupBlock>(&mut self, first: usize, raw: &[u8]) {
        debug_assert_eq!(self.width, B::WIDTH);
        let per_block = B::LEN / B::WIDTH;
        for (i, block) in blocks::read::<B>(raw).enumerate() {
            let b = first + i;
            let at = b * per_block..(b + 1) * per_block;
            let offsets = match &mut self.offsets {
                Some(offsets) => &mut offsets[at.clone()],
                None => &mut [][..],
            };
            block.unpack(
                &mut self.q[b * B::LEN..(b + 1) * B::LEN],
                &mut self.scales[at],
                offsets,
            );
        }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes held, for memory figures.
    pub fn bytes(&self) -> usize {
        self.q.len() + 4 * (self.scales.len() + self.offsets.as_ref().map_or(0, Vec::len))
    }

    /// Row `r` as `f32`, appended to `out` (an embedding lookup).
    pub fn row_into(&self, r: usize, out: &mut Vec<f32>) {
        let (groups, w) = (self.cols / self.width, self.width);
        for g in r * groups..(r + 1) * groups {
            let offset = self.offsets.as_ref().map(|o| o[g]);
            let q = &self.q[g * w..(g + 1) * w];
            out.extend(q.iter().map(|&q| dequant(q, self.scales[g], offset)));
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

    /// A matrix whose row `i` is this one's row `order[i]`.
    pub fn select_rows(&self, order: &[usize]) -> Self {
        let groups = self.cols / self.width;
        let pick = |v: &[f32]| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&r| v[r * groups..(r + 1) * groups].iter().copied())
                .collect()
        };
        QuantMatrix {
            rows: order.len(),
            cols: self.cols,
            width: self.width,
            q: order
                .iter()
                .flat_map(|&r| self.q[r * self.cols..(r + 1) * self.cols].iter().copied())
                .collect(),
            scales: pick(&self.scales),
            offsets: self.offsets.as_deref().map(pick),
        }
    }
}

/// `n` zeros, allocated fallibly so that running out of memory in the browser is an error, not an abort.
fn zeroed<T: Clone + Default>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, T::default());
    Some(v)
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

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn select_rows_and_row_into_agree_with_dequantize() {
        let m = random_matrix([4, 64], 16, true, 3);
        let picked = m.select_rows(&[2, 0]);
        let (all, mut row) = (m.dequantize(), Vec::new());
        picked.row_into(1, &mut row);
        assert_eq!(row, all[..64]);
        assert_eq!(picked.dequantize()[..64], all[128..192]);
        assert_eq!(picked.shape(), [2, 64]);
    }
}
