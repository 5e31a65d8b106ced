//! Deterministic random weights. Explicitly seeded (a wasm build without an
//! entropy source would otherwise give the same "random" weights every load,
//! silently), and one stream per tensor name.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::budget;
use crate::error::Result;

/// `len` values for tensor `name`, uniform in `[-a, a]` with standard
/// deviation `std` (a = std·√3), within the memory budget.
pub fn uniform(seed: u64, name: &str, len: usize, std: f32) -> Result<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
    let a = std * 3f32.sqrt();
    let mut values = budget::vec_with_capacity(|| crate::weights::tensor_as_f32(name), len)?;
    values.extend((0..len).map(|_| {
        let unit = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32; // [0, 1)
        (2.0 * unit - 1.0) * a
    }));
    Ok(values)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
