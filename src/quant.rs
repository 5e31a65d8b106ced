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

/// Weights per group; every group has its own scale and offset.
pub const GROUP: usize = 32;

/// Output rows whose weights are reused, from cache, across all activation rows.
const ROW_TILE: usize = 16;

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

    /// `x · selfᵀ` for `x` row-major `[n, cols]`: the `[n, rows]` result, row-major.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.cols);
        let groups = self.cols / GROUP;
        let acts = Activations::new(x, self.offsets.is_some());
        let mut out = vec![0.0f32; n * self.rows];
        for tile in (0..self.rows).step_by(ROW_TILE) {
            for r in 0..n {
                let row = r * self.cols..(r + 1) * self.cols;
                let (high, low) = (&acts.high[row.clone()], &acts.low[row]);
                let xs = &acts.scales[r * groups..(r + 1) * groups];
                for o in tile..(tile + ROW_TILE).min(self.rows) {
                    let w = &self.q[o * self.cols..(o + 1) * self.cols];
                    let ws = &self.scales[o * groups..(o + 1) * groups];
                    let mut y = dot(w, ws, high, low, xs);
                    if let Some(offsets) = &self.offsets {
                        let sums = &acts.sums[r * groups..(r + 1) * groups];
                        let off = &offsets[o * groups..(o + 1) * groups];
                        y += off.iter().zip(sums).map(|(a, b)| a * b).sum::<f32>();
                    }
                    out[r * self.rows + o] = y;
                }
            }
        }
        out
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
    fn new(x: &[f32], with_sums: bool) -> Self {
        let mut acts = Activations {
            high: vec![0; x.len()],
            low: vec![0; x.len()],
            scales: Vec::with_capacity(x.len() / GROUP),
            sums: Vec::with_capacity(if with_sums { x.len() / GROUP } else { 0 }),
        };
        let groups = x
            .chunks_exact(GROUP)
            .zip(acts.high.chunks_exact_mut(GROUP))
            .zip(acts.low.chunks_exact_mut(GROUP));
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

/// `Σ_g ws[g] · xs[g] · (w_g · (high_g + low_g / 2¹⁵))` over one weight row and one activation row.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn dot(w: &[i8], ws: &[f32], high: &[i16], low: &[i16], xs: &[f32]) -> f32 {
    use core::arch::wasm32::*;
    let (mut total_high, mut total_low) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for (g, &scale) in ws.iter().enumerate() {
        let at = g * GROUP..(g + 1) * GROUP;
        let (w, h, l) = (&w[at.clone()], &high[at.clone()], &low[at]);
        // SAFETY: `w` holds 32 i8 (two v128), `h` and `l` 32 i16 (four v128
        // each); v128_load has no alignment requirement.
        let (acc_high, acc_low) = unsafe {
            let wp = w.as_ptr() as *const v128;
            let (w0, w1) = (v128_load(wp), v128_load(wp.add(1)));
            let w16 = [
                i16x8_extend_low_i8x16(w0),
                i16x8_extend_high_i8x16(w0),
                i16x8_extend_low_i8x16(w1),
                i16x8_extend_high_i8x16(w1),
            ];
            let dot4 = |x: *const v128| {
                i32x4_add(
                    i32x4_add(
                        i32x4_dot_i16x8(w16[0], v128_load(x)),
                        i32x4_dot_i16x8(w16[1], v128_load(x.add(1))),
                    ),
                    i32x4_add(
                        i32x4_dot_i16x8(w16[2], v128_load(x.add(2))),
                        i32x4_dot_i16x8(w16[3], v128_load(x.add(3))),
                    ),
                )
            };
            (
                dot4(h.as_ptr() as *const v128),
                dot4(l.as_ptr() as *const v128),
            )
        };
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

/// Portable form of the same sum; the compiler vectorizes the 8-lane integer loops.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn dot(w: &[i8], ws: &[f32], high: &[i16], low: &[i16], xs: &[f32]) -> f32 {
    let (mut total_high, mut total_low) = (0.0f32, 0.0f32);
    for (g, &scale) in ws.iter().enumerate() {
        let at = g * GROUP..(g + 1) * GROUP;
        let w = &w[at.clone()];
        let dot8 = |x: &[i16]| {
            let mut acc = [0i32; 8];
            for (j, (&a, &b)) in w.iter().zip(x).enumerate() {
                acc[j % 8] += a as i32 * b as i32;
            }
            acc.iter().sum::<i32>() as f32
        };
        let s = scale * xs[g];
        total_high += dot8(&high[at.clone()]) * s;
        total_low += dot8(&low[at]) * s;
    }
    total_high + total_low / LOW
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    // wasm-pack test runs these in the browser too: there the SIMD `dot` is the one tested.
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    fn uniform(rng: &mut ChaCha8Rng) -> f32 {
        (rng.next_u32() as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32
    }

    fn random_matrix(rows: usize, cols: usize, has_offsets: bool, seed: u64) -> QuantMatrix {
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
        // Rows not a multiple of the tile, one and several activation rows, with and without offsets.
        for (rows, cols, n, has_offsets) in
            [(37, 64, 1, true), (20, 96, 5, false), (3, 32, 2, true)]
        {
            let m = random_matrix(rows, cols, has_offsets, rows as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut x: Vec<f32> = (0..n * cols).map(|_| uniform(&mut rng) * 3.0).collect();
            x[..GROUP].fill(0.0); // an all-zero group has scale 0
            let got = m.matmul(&x, n);
            let want = reference(&m, &x, n);
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            let err = got
                .iter()
                .zip(&want)
                .map(|(&g, w)| (g as f64 - w).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                err / norm < 1e-6,
                "{rows}x{cols}, n={n}: relative error {}",
                err / norm
            );
        }
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
