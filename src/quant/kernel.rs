//! `x · Wᵀ` over a [`QuantMatrix`]: the activations become integers per group
//! too, so the inner loop is an integer dot product.

use super::QuantMatrix;

/// Output rows whose weights are reused, from cache, across all activation rows.
const ROW_TILE: usize = 16;

impl QuantMatrix {
    /// `x · selfᵀ` for `x` row-major `[n, cols]`: the `[n, rows]` result, row-major.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        match self.width {
            16 => self.matmul_groups_of::<16>(x, n),
            _ => self.matmul_groups_of::<32>(x, n),
        }
    }

    fn matmul_groups_of<const W: usize>(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!((x.len(), self.width), (n * self.cols, W));
        let groups = self.cols / W;
        let acts = Activations::new::<W>(x, self.offsets.is_some());
        let mut out = vec![0.0f32; n * self.rows];
        for tile in (0..self.rows).step_by(ROW_TILE) {
            for r in 0..n {
                let row = r * self.cols..(r + 1) * self.cols;
                let (high, low) = (&acts.high[row.clone()], &acts.low[row]);
                let xs = &acts.scales[r * groups..(r + 1) * groups];
                for o in tile..(tile + ROW_TILE).min(self.rows) {
                    let w = &self.q[o * self.cols..(o + 1) * self.cols];
                    let ws = &self.scales[o * groups..(o + 1) * groups];
                    let mut y = dot::<W>(w, ws, high, low, xs);
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

/// `Σ_g ws[g] · xs[g] · (w_g · (high_g + low_g / 2¹⁵))` over one weight row
/// and one activation row, in groups of `W`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn dot<const W: usize>(w: &[i8], ws: &[f32], high: &[i16], low: &[i16], xs: &[f32]) -> f32 {
    use core::arch::wasm32::*;
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

/// Portable form of the same sum; the compiler vectorizes the 8-lane integer loops.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn dot<const W: usize>(w: &[i8], ws: &[f32], high: &[i16], low: &[i16], xs: &[f32]) -> f32 {
    let (mut total_high, mut total_low) = (0.0f32, 0.0f32);
    for (g, &scale) in ws.iter().enumerate() {
        let at = g * W..(g + 1) * W;
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
        // Rows not a multiple of the tile, one and several activation rows, with and without offsets.
        for (rows, cols, width, n, has_offsets) in [
            (37, 64, 32, 1, true),
            (20, 96, 32, 5, false),
            (3, 32, 32, 2, true),
            (19, 48, 16, 3, false),
            (5, 64, 16, 1, true),
        ] {
            let m = random_matrix([rows, cols], width, has_offsets, rows as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut x: Vec<f32> = (0..n * cols).map(|_| uniform(&mut rng) * 3.0).collect();
            x[..32].fill(0.0); // an all-zero group has scale 0
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
}
