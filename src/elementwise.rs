//! Elementwise math over slices, written so that the compiler vectorizes it
//! (wasm SIMD128, SSE/AVX natively): `exp` for the softmax, and the gated
//! MLPs' `act(gate) · up` (SwiGLU's SiLU, GeGLU's tanh GELU) in one pass.
//!
//! The standard library's `f32::exp` is a call into libm for each number, which
//! no compiler turns into vector code; the softmax of a long prompt and the
//! MLP of every layer made it about 6% of a forward pass in wasm. [`exp`] is
//! Cephes' `expf` (range reduction by `ln 2`, a degree-6 polynomial), within
//! 2 ulp of the exact value; the tests check it against `f64`.

/// `e^x`, within 2 ulp; below -87.3 it stays at `e^-87.3` (about 1.2e-38, not
/// 0), above 88 at `e^88`, and NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and removing 1.5 · 2²³ rounds to an integer (ties to even) in
    // plain float arithmetic, which vectorizes where `round` would not.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from its bits: n is within -126..=127 after the clamp, a normal exponent.
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// `x ← exp(x - shift)` for each `x`, returning their sum (a softmax's
/// denominator when `shift` is the maximum).
pub fn exp_shifted(xs: &mut [f32], shift: f32) -> f32 {
    for x in xs.iter_mut() {
        *x = exp(*x - shift);
    }
    sum(xs)
}

/// The largest of `xs` (`-inf` for none), without `f32::max`'s NaN handling,
/// which wasm can only call libm's `fmaxf` for.
pub fn max(xs: &[f32]) -> f32 {
    lanes(xs, f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
        .into_iter()
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// The largest `|x|` of `xs` (0 for none), as [`max`].
pub fn max_abs(xs: &[f32]) -> f32 {
    lanes(xs, 0.0, |m, x| if x.abs() > m { x.abs() } else { m })
        .into_iter()
        .fold(0.0, |m, x| if x > m { x } else { m })
}

/// `a · b`, in eight running sums the compiler turns into SIMD lanes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `Σ xs`, in eight running sums.
pub fn sum(xs: &[f32]) -> f32 {
    lanes(xs, 0.0, |s, x| s + x).iter().sum()
}

/// Folds `xs` into eight lanes by `f` (each lane starting at `init`), so that
/// the loop is eight independent folds the compiler can put in vector lanes.
#[inline(always)]
fn lanes(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> [f32; 8] {
    let mut acc = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = f(*a, x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a = f(*a, x);
    }
    acc
}

/// The activation of a gated MLP's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// SiLU, `x · σ(x)` (Llama's SwiGLU).
    Silu,
    /// GELU in its tanh form, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`
    /// (Gemma's GeGLU; PyTorch's `gelu(approximate="tanh")`), computed as
    /// `x · σ(2√(2/π) · (x + 0.044715 x³))`, the same function.
    GeluTanh,
}

/// `gate ← act(gate) · up`, elementwise.
pub fn gated(act: Gate, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    match act {
        Gate::Silu => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = *g / (1.0 + exp(-*g)) * u;
            }
        }
        Gate::GeluTanh => {
            // 2·√(2/π)
            const K: f32 = std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::SQRT_2;
            for (g, &u) in gate.iter_mut().zip(up) {
                let x = *g;
                *g = x / (1.0 + exp(-K * (x + 0.044_715 * x * x * x))) * u;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an `f32` and the exact `f64`.
    fn ulps(ours: f32, exact: f64) -> f64 {
        let ulp = (exact as f32).abs() * f32::EPSILON;
        (ours as f64 - exact).abs() / ulp as f64
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_softmax_and_mlp_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
            x += 0.001_37;
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_saturates_and_keeps_nan() {
        assert!(exp(-1000.0) < 1.3e-38 && exp(-1000.0) > 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), exp(-1000.0));
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(88.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn exp_shifted_returns_the_sum_of_what_it_wrote() {
        let mut xs: Vec<f32> = (0..19).map(|i| i as f32 * 0.37 - 3.0).collect();
        // `x - 2` as the function computes it, in `f32`.
        let expected: Vec<f64> = xs.iter().map(|&x| ((x - 2.0) as f64).exp()).collect();
        let total = exp_shifted(&mut xs, 2.0);
        for (ours, exact) in xs.iter().zip(&expected) {
            assert!(ulps(*ours, *exact) <= 2.0, "{ours} vs {exact}");
        }
        let exact_total: f64 = expected.iter().sum();
        assert!(((total as f64 - exact_total) / exact_total).abs() < 1e-6);
    }

    #[test]
    fn max_and_max_abs_see_every_number_and_the_tail() {
        for len in [0, 1, 7, 8, 9, 23] {
            let xs: Vec<f32> = (0..len).map(|i| ((i * 7919) % 13) as f32 - 6.5).collect();
            let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let a = xs.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            assert_eq!(max(&xs), m, "{len}");
            assert_eq!(max_abs(&xs), a, "{len}");
            let s: f32 = xs.iter().sum();
            assert!((sum(&xs) - s).abs() < 1e-4, "{len}");
        }
        assert_eq!(max(&[-3.0, -1.0, -2.0]), -1.0);
        assert_eq!(max_abs(&[1.0, -9.0, 3.0]), 9.0);
    }

    #[test]
    fn gates_match_their_definitions_in_f64() {
        let xs: Vec<f32> = (0..400).map(|i| i as f32 * 0.05 - 10.0).collect();
        let up: Vec<f32> = (0..400).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let gelu = |x: f64| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        };
        for (act, f) in [
            (Gate::Silu, &silu as &dyn Fn(f64) -> f64),
            (Gate::GeluTanh, &gelu),
        ] {
            let mut g = xs.clone();
            gated(act, &mut g, &up);
            for ((&ours, &x), &u) in g.iter().zip(&xs).zip(&up) {
                let exact = f(x as f64) * u as f64;
                let err = (ours as f64 - exact).abs();
                assert!(
                    err <= 1e-6 * exact.abs().max(1.0),
                    "{act:?} at {x}: {ours} vs {exact}"
                );
            }
        }
    }
}
