//! What the KV cache itself costs per token, apart from the weights: every
//! layer's cache update plus attention over what the cache holds, for a model's
//! shape, with made-up queries, keys and values.
//!
//! A SmolLM2 decode step takes about 15 ms, almost all of it in the weight
//! matmuls; the cache's part is well under 1 ms at a few hundred tokens. Whole
//! steps timed run against run vary by more than that, so they cannot tell the
//! strategies apart; this measurement can, and shows how each one grows with
//! the sequence.

use burn::tensor::{Device, Tensor, TensorData};
use web_time::Instant;

use crate::attention::attend;
use crate::cache::{self, CacheStrategy, KvCache};
use crate::config::ModelConfig;
use crate::error::Result;

/// Milliseconds of each of `tokens` one-token decode steps, cache and attention
/// only, starting from an empty cache of `capacity` slots.
pub fn measure(
    config: &ModelConfig,
    strategy: CacheStrategy,
    capacity: usize,
    tokens: usize,
    device: &Device,
) -> Result<Vec<f64>> {
    let mut cache = KvCache::new(config, strategy, capacity)?;
    cache::check_fits(0, tokens, None, cache.max_len())?;
    let (heads, kv_heads, dim) = (config.num_heads, config.num_kv_heads, config.head_dim);
    // A few distinct inputs, made once, so that making them is not timed.
    let inputs: Vec<Tensor<3>> = (0..4)
        .map(|i| {
            let shape = if i == 0 {
                [heads, 1, dim]
            } else {
                [kv_heads, 1, dim]
            };
            let n = shape.iter().product::<usize>();
            let values = (0..n)
                .map(|j| ((j * 7 + i * 13) as f32 * 0.37).sin())
                .collect();
            Tensor::from_data(TensorData::new(values, shape), device)
        })
        .collect();
    let window = strategy.window();
    let mut step_ms = Vec::with_capacity(tokens);
    for _ in 0..tokens {
        let position = cache.position();
        let started = Instant::now();
        let mut out = None;
        for layer in 0..config.num_layers {
            let (k, v) = (&inputs[1 + layer % 2], &inputs[2 + layer % 2]);
            let layer_cache = Some(cache.layer_mut(layer));
            out = Some(attend(
                inputs[0].clone(),
                k.clone(),
                v.clone(),
                layer_cache,
                position,
                window,
            ));
        }
        // Reading a result waits for it, should a backend ever run lazily.
        if let Some(out) = out {
            out.into_data();
        }
        step_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        cache.advance(1);
    }
    Ok(step_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;

    #[test]
    fn one_timing_per_token_and_a_full_cache_is_refused() {
        let mut config = ModelConfig::gpt2_124m();
        config.num_layers = 2;
        let device = BackendKind::default().device();
        for strategy in [
            CacheStrategy::Concat,
            CacheStrategy::Prealloc,
            CacheStrategy::Window { size: 4 },
        ] {
            let ms = measure(&config, strategy, 8, 8, &device).unwrap();
            assert_eq!(ms.len(), 8, "{strategy}");
            assert!(ms.iter().all(|&t| t.is_finite() && t >= 0.0), "{ms:?}");
        }
        let err = measure(&config, CacheStrategy::Prealloc, 8, 9, &device).unwrap_err();
        assert!(err.to_string().contains("maxSeqLen is 8"), "{err}");
        // A window drops old entries, so it runs past its capacity.
        assert_eq!(
            measure(&config, CacheStrategy::Window { size: 4 }, 8, 12, &device)
                .unwrap()
                .len(),
            12
        );
    }
}
