//! Weight matrices kept as 8-bit integers in groups of 32, and the matmul that reads them.
//!
//! Every 32-element block of llama.cpp's Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, and
//! every 32-element group of Q4_K and Q5_K, is `scale · q + offset` with small
//! integers `q`, so all of them convert to this one form without changing a
//! weight. A decode step multiplies one row by every weight once, so its speed
//! is set by the bytes it reads: 1.25 per weight here (plus 4 per 32 for the
//! offsets of the asymmetric formats), against 4 for `f32`.
//!
//! The activations become integers too, so the inner loop is an integer dot
//! product (`i32x4.dot_i16x8_s` in wasm SIMD): per group of 32, a scale and two
//! 16-bit parts, `x ≈ scale · (high + low / 2¹⁵)`. One part alone would be
//! faster but costs about 1e-4 of the logits; with both the error is below
//! `f32` rounding, so results match the dense `f32` path. burn has no kernel for this
//! (its quantized matmul dequantizes first), so it runs on host memory; both of
//! our backends are CPU backends, and the hop costs a copy of the activations.
//!
//! [`blocks`] reads llama.cpp's block layouts into groups; [`kernel`] multiplies.

pub mod blocks;
mod kernel;

use blocks::GroupBlock;

/// Weights per group; every group has its own scale and offset.
pub const GROUP: usize = 32;

/// One group of 32 weights, `scale · q[i] + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    pub scale: f32,
    pub offset: f32,
    pub q: [i8; GROUP],
}

impl Default for Group {
    fn default() -> Self {
        Group {
            scale: 0.0,
            offset: 0.0,
            q: [0; GROUP],
        }
    }
}

/// A `[rows, cols]` matrix (PyTorch's `[out, in]`), each row `cols / 32` groups.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    /// `None` for the symmetric formats, whose offsets are all zero.
    offsets: Option<Vec<f32>>,
}

impl QuantMatrix {
    /// From the row-major groups of a `[rows, cols]` matrix; `cols` must be a
    /// multiple of 32 and `groups` yield exactly `rows · cols / 32` items.
    /// With `has_offsets` false every offset is taken to be zero.
    pub fn from_groups(
        rows: usize,
        cols: usize,
        has_offsets: bool,
        groups: impl IntoIterator<Item = Group>,
    ) -> Self {
        let n = rows * cols / GROUP;
        let mut m = QuantMatrix {
            rows,
            cols,
            q: Vec::with_capacity(rows * cols),
            scales: Vec::with_capacity(n),
            offsets: has_offsets.then(|| Vec::with_capacity(n)),
        };
        for g in groups {
            m.q.extend_from_slice(&g.q);
            m.scales.push(g.scale);
            if let Some(offsets) = &mut m.offsets {
                offsets.push(g.offset);
            }
        }
        debug_assert!(cols.is_multiple_of(GROUP) && m.scales.len() == n);
        m
    }

    /// From the blocks of `B` in `raw`, row-major, for a `[rows, cols]`
    /// matrix whose `cols` is a multiple of the block's length.
    pub fn from_blocks<B: GroupBlock>(rows: usize, cols: usize, raw: &[u8]) -> Self {
        let per_block = B::LEN / GROUP;
        let groups = blocks::read::<B>(raw).flat_map(|block| {
            let mut groups = [Group::default(); 8];
            block.groups(&mut groups[..per_block]);
            groups.into_iter().take(per_block)
        });
        Self::from_groups(rows, cols, B::OFFSETS, groups)
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
        let groups = self.cols / GROUP;
        for g in r * groups..(r + 1) * groups {
            let q = &self.q[g * GROUP..(g + 1) * GROUP];
            let offset = self.offsets.as_ref().map(|o| o[g]);
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
        let groups = self.cols / GROUP;
        let pick = |v: &[f32]| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&r| v[r * groups..(r + 1) * groups].iter().copied())
                .collect()
        };
        QuantMatrix {
            rows: order.len(),
            cols: self.cols,
            q: order
                .iter()
                .flat_map(|&r| self.q[r * self.cols..(r + 1) * self.cols].iter().copied())
                .collect(),
            scales: pick(&self.scales),
            offsets: self.offsets.as_deref().map(pick),
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
        rows: usize,
        cols: usize,
        has_offsets: bool,
        seed: u64,
    ) -> QuantMatrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups: Vec<Group> = (0..rows * cols / GROUP)
            .map(|_| Group {
                scale: uniform(&mut rng) * 0.1,
                offset: if has_offsets {
                    uniform(&mut rng) * 0.2
                } else {
                    0.0
                },
                q: std::array::from_fn(|_| rng.next_u32() as i8),
            })
            .collect();
        QuantMatrix::from_groups(rows, cols, has_offsets, groups)
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn select_rows_and_row_into_agree_with_dequantize() {
        let m = random_matrix(4, 64, true, 3);
        let picked = m.select_rows(&[2, 0]);
        let (all, mut row) = (m.dequantize(), Vec::new());
        picked.row_into(1, &mut row);
        assert_eq!(row, all[..64]);
        assert_eq!(picked.dequantize()[..64], all[128..192]);
        assert_eq!(picked.shape(), [2, 64]);
    }
}
