//! `x · Wᵀ` for many activation rows at once (a prompt, the cache-off
//! baseline): each tile of weight rows is dequantized to `f32` once and
//! multiplied with every activation row, [`R`] activation rows by [`O`]
//! weight rows at a time, so that each vector load feeds several
//! multiply-adds. The integer kernel ([`super::kernel`]) spends two 16-bit
//! products per weight on every row (the two parts of the activations) and
//! reads each weight once per row; here each weight is read and converted
//! once per tile and then costs one `f32` multiply-add per row. For a single
//! row the integer kernel reads less and wins; from [`FROM_ROWS`] rows on,
//! this does. Both agree to `f32` rounding.
//!
//! The dot products come in two forms: wasm SIMD128 (`f32x4`) when the build
//! targets it, and a portable loop over 4-lane arrays elsewhere (natively,
//! prompts from 16 rows on go to burn's GEMM instead, see
//! `DENSE_FROM_ROWS` in `src/model/layers.rs`).

use super::QuantMatrix;
use crate::pool;

/// Activation rows from which [`QuantMatrix::matmul`] takes this path. On
/// x86-64 the integer kernel fetches its weights ahead into cache and wins up
/// to the 16 rows from which the model hands prompts to burn's GEMM; in wasm
/// the tiles won from 4 rows, measured before the kernel fetched ahead there
/// too (docs/performance.md, steps 2 and 7).
pub const FROM_ROWS: usize = if cfg!(target_arch = "x86_64") { 16 } else { 4 };
/// Weight rows dequantized at a time: a tile of up to a few thousand columns
/// stays in L2 while every activation row passes over it.
const TILE: usize = 16;
/// Activation rows of one block of dot products (`matmul_tiled` has an arm for
/// each height up to 4).
const R: usize = 4;
/// Weight rows of one block of dot products: `R × O` accumulators of four
/// lanes, plus the `R + O` vectors loaded per step, fit the 16 vector
/// registers of x86-64 that a wasm engine maps SIMD128 to.
const O: usize = 2;

impl QuantMatrix {
    /// `x · selfᵀ` for `x` row-major `[n, cols]`, through dequantized tiles.
    pub(super) fn matmul_tiled(&self, x: &[f32], n: usize) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        debug_assert_eq!(x.len(), n * cols);
        let scratch = || Vec::with_capacity(TILE.min(rows) * cols);
        pool::by_row_tiles(
            (rows, cols, n),
            TILE,
            scratch,
            |tile: &mut Vec<f32>, range, mut out| {
                for first in range.clone().step_by(TILE) {
                    let end = (first + TILE).min(range.end);
                    tile.clear();
                    for o in first..end {
                        self.row_into(o, tile);
                    }
                    for r in (0..n).step_by(R) {
                        let rb = (n - r).min(R);
                        let xs = &x[r * cols..(r + rb) * cols];
                        let mut put = |i: usize, o: usize, y: f32| out.put(r + i, first + o, y);
                        match rb {
                            4 => blocks::<4>(xs, tile, cols, &mut put),
                            3 => blocks::<3>(xs, tile, cols, &mut put),
                            2 => blocks::<2>(xs, tile, cols, &mut put),
                            _ => blocks::<1>(xs, tile, cols, &mut put),
                        }
                    }
                }
            },
        )
    }
}

/// The dot products of `RB` activation rows `xs` with every weight row of
/// `tile` (rows of `cols`, `cols` a multiple of 4), [`O`] weight rows at a
/// time, handed to `put(activation row, weight row, value)`.
#[inline(always)]
fn blocks<const RB: usize>(
    xs: &[f32],
    tile: &[f32],
    cols: usize,
    put: &mut impl FnMut(usize, usize, f32),
) {
    assert!(xs.len() == RB * cols && tile.len().is_multiple_of(cols) && cols.is_multiple_of(4));
    let rows = tile.len() / cols;
    let mut o = 0;
    while o < rows {
        let ob = (rows - o).min(O);
        let ws = &tile[o * cols..(o + ob) * cols];
        if ob == O {
            emit(o, Target::dots::<RB, O>(xs, ws, cols), put);
        } else {
            for j in 0..ob {
                emit(
                    o + j,
                    Target::dots::<RB, 1>(xs, &ws[j * cols..(j + 1) * cols], cols),
                    put,
                );
            }
        }
        o += ob;
    }
}

#[inline(always)]
fn emit<const RB: usize, const OB: usize>(
    o: usize,
    sums: [[f32; OB]; RB],
    put: &mut impl FnMut(usize, usize, f32),
) {
    for (i, row) in sums.iter().enumerate() {
        for (j, &y) in row.iter().enumerate() {
            put(i, o + j, y);
        }
    }
}

/// `RB × OB` dot products over `cols`, the rows laid end to end in `xs` and `ws`.
trait Dots {
    fn dots<const RB: usize, const OB: usize>(
        xs: &[f32],
        ws: &[f32],
        cols: usize,
    ) -> [[f32; OB]; RB];
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
type Target = wasm::Simd128;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
type Target = Portable;

/// Four-lane sums per pair, which the compiler keeps in vector registers.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
struct Portable;

impl Dots for Portable {
    #[inline(always)]
    fn dots<const RB: usize, const OB: usize>(
        xs: &[f32],
        ws: &[f32],
        cols: usize,
    ) -> [[f32; OB]; RB] {
        let mut acc = [[[0.0f32; 4]; OB]; RB];
        for i in (0..cols).step_by(4) {
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = &xs[r * cols + i..][..4];
                for (o, acc) in acc.iter_mut().enumerate() {
                    let w = &ws[o * cols + i..][..4];
                    for lane in 0..4 {
                        acc[lane] += x[lane] * w[lane];
                    }
                }
            }
        }
        acc.map(|row| row.map(|lanes| (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::Dots;
    use core::arch::wasm32::*;

    /// `f32x4.mul` and `f32x4.add` on four columns at a time.
    pub struct Simd128;

    impl Dots for Simd128 {
        #[inline(always)]
        fn dots<const RB: usize, const OB: usize>(
            xs: &[f32],
            ws: &[f32],
            cols: usize,
        ) -> [[f32; OB]; RB] {
            let mut acc = [[f32x4_splat(0.0); OB]; RB];
            let (x, w) = (xs.as_ptr(), ws.as_ptr());
            for i in (0..cols).step_by(4) {
                // SAFETY: `blocks` checked that `xs` holds RB rows and `ws` OB rows of `cols`
                // numbers, `cols` a multiple of 4, so every load reads 4 numbers inside them;
                // v128_load has no alignment requirement.
                unsafe {
                    let wv: [v128; OB] =
                        core::array::from_fn(|o| v128_load(w.add(o * cols + i) as *const v128));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xv = v128_load(x.add(r * cols + i) as *const v128);
                        for (acc, &wv) in acc.iter_mut().zip(&wv) {
                            *acc = f32x4_add(*acc, f32x4_mul(xv, wv));
                        }
                    }
                }
            }
            acc.map(|row| {
                row.map(|v| {
                    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
                        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
                })
            })
        }
    }
}
