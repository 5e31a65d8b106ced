//! What the KV cache itself costs per token, apart from the weights: every
//! layer's cache update plus attention over what the cache holds, for a model's
//! shape, with made-up queries, keys and values.
//!
//! A SmolLM2 decode step takes about 15 ms, almost all of it in the weight
//! matmuls; the cache's part is 0.5-2 ms at a couple of hundred tokens. Whole
//! steps timed run against run vary by more than that, so they cannot tell the
//! strategies apart; this measurement can, and shows how each one grows with
//! the sequence.

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use web_time::Instant;

use crate::attention::attend;
use crate::cache::{self, CacheStrategy, KvCache};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::argmax;

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

/// Whole decode steps with several cache strategies in turn: see [`interleaved`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interleaved {
    /// The strategies, in the order given.
    pub strategies: Vec<String>,
    /// The greedy tokens, picked from the first strategy's logits and fed to all of them.
    pub ids: Vec<u32>,
    /// Per strategy, the milliseconds of each decode step (the prefill is not timed).
    pub step_ms: Vec<Vec<f64>>,
    /// Steps at which a strategy's logits picked another token than the first strategy's.
    pub disagreements: usize,
}

/// Greedy generation of `tokens` new tokens after `prompt` with one cache per
/// strategy, all fed the same tokens. Each decode step runs every strategy
/// once, in an order that rotates from step to step (A B, B A, …), and times
/// each: the same work as `Generator::step` apart from sampling and detokenizing.
pub fn interleaved(
    model: &Model,
    strategies: &[CacheStrategy],
    capacity: usize,
    prompt: &[u32],
    tokens: usize,
) -> Result<Interleaved> {
    if strategies.is_empty() || tokens == 0 {
        return Err(Error::invalid(
            "name at least one cache strategy and ask for at least one token",
        ));
    }
    let mut caches = strategies
        .iter()
        .map(|&strategy| KvCache::new(model.config(), strategy, capacity))
        .collect::<Result<Vec<_>>>()?;
    let limit = model.position_limit();
    for cache in &caches {
        cache::check_fits(0, prompt.len() + tokens, limit, cache.max_len())?;
    }
    let run = |index: usize, caches: &mut [KvCache], ids: &[u32]| {
        let window = strategies[index].window();
        let started = Instant::now();
        let logits = model.forward_last(ids, Some(&mut caches[index]), window)?;
        Ok::<_, Error>((argmax(&logits), started.elapsed().as_secs_f64() * 1000.0))
    };
    let mut out = Interleaved {
        strategies: strategies.iter().map(ToString::to_string).collect(),
        ids: Vec::with_capacity(tokens),
        step_ms: vec![Vec::with_capacity(tokens); strategies.len()],
        disagreements: 0,
    };
    let firsts = (0..strategies.len())
        .map(|index| run(index, &mut caches, prompt).map(|(id, _)| id))
        .collect::<Result<Vec<_>>>()?;
    let mut id = firsts[0];
    for step in 0..tokens {
        out.ids.push(id);
        if step + 1 == tokens {
            break;
        }
        let mut picks = vec![0; strategies.len()];
        for turn in 0..strategies.len() {
            let index = (turn + step) % strategies.len();
            let (pick, ms) = run(index, &mut caches, &[id])?;
            picks[index] = pick;
            out.step_ms[index].push(ms);
        }
        out.disagreements += picks.iter().filter(|&&p| p != picks[0]).count();
        id = picks[0];
    }
    Ok(out)
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
