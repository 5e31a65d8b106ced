//! What the KV cache itself costs per token, apart from the weights: every
//! layer's cache update plus attention over what the cache holds, for a model's
//! shape, with made-up queries, keys and values.
//!
//! A SmolLM2 decode step takes about 15 ms, almost all of it in the weight
//! matmuls; the cache's part is 0.5-2 ms at a couple of hundred tokens. Whole
//! steps timed run against run vary by more than that, so they cannot tell the
//! strategies apart; this measurement can, and shows how each one grows with
//! the sequence.

use serde::Serialize;
use web_time::Instant;

use crate::attention::Heads;
use crate::cache::{self, CacheStrategy, KvCache, LayerCache, LayerPlan};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::argmax;

/// Milliseconds of each of `tokens` one-token decode steps, cache and attention
/// only, through layer caches planned as `plans`, from empty.
pub fn measure(config: &ModelConfig, plans: &[LayerPlan], tokens: usize) -> Result<Vec<f64>> {
    if let Some(max_len) = cache::max_len(plans).filter(|&max_len| tokens > max_len) {
        return Err(Error::ContextFull(format!(
            "{tokens} tokens would not fit: maxSeqLen is {max_len}"
        )));
    }
    let heads = Heads::of(config);
    let mut layers = plans
        .iter()
        .map(|&plan| LayerCache::new(plan, heads))
        .collect::<Result<Vec<_>>>()?;
    // A few distinct inputs, made once, so that making them is not timed.
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            let n = if i == 0 { heads.query } else { heads.kv } * heads.dim;
            (0..n)
                .map(|j| ((j * 7 + i * 13) as f32 * 0.37).sin())
                .collect()
        })
        .collect();
    let mut step_ms = Vec::with_capacity(tokens);
    for position in 0..tokens {
        let started = Instant::now();
        for (i, layer) in layers.iter_mut().enumerate() {
            let (k, v) = (&inputs[1 + i % 2], &inputs[2 + i % 2]);
            std::hint::black_box(layer.attend(position, &inputs[0], k, v));
        }
        step_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(step_ms)
}

/// Whole decode steps with several cache strategies in turn: see [`interleaved`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
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
    max_seq_len: usize,
    prompt: &[u32],
    tokens: usize,
) -> Result<Interleaved> {
    if strategies.is_empty() || tokens == 0 {
        return Err(Error::invalid(
            "name at least one cache strategy and ask for at least one token",
        ));
    }
    let config = model.config();
    let mut caches = strategies
        .iter()
        .map(|&strategy| KvCache::with_strategy(config, strategy, max_seq_len))
        .collect::<Result<Vec<_>>>()?;
    for cache in &caches {
        model.check_room(0, prompt.len() + tokens, cache.max_len())?;
    }
    let run = |index: usize, caches: &mut [KvCache], ids: &[u32]| {
        let started = Instant::now();
        let logits = model.forward_last(ids, &mut caches[index])?;
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

    #[test]
    fn one_timing_per_token_and_a_full_cache_is_refused() {
        let mut config = ModelConfig::gpt2_124m();
        config.num_layers = 2;
        for strategy in [
            CacheStrategy::Concat,
            CacheStrategy::Prealloc,
            CacheStrategy::Window { size: 4 },
        ] {
            let plans = cache::plan_layers(&config, strategy, 8).unwrap();
            let ms = measure(&config, &plans, 8).unwrap();
            assert_eq!(ms.len(), 8, "{strategy}");
            assert!(ms.iter().all(|&t| t.is_finite() && t >= 0.0), "{ms:?}");
        }
        let plans = cache::plan_layers(&config, CacheStrategy::Prealloc, 8).unwrap();
        let err = measure(&config, &plans, 9).unwrap_err();
        assert!(err.to_string().contains("maxSeqLen is 8"), "{err}");
        // A window drops old entries, so it runs past maxSeqLen.
        let plans = cache::plan_layers(&config, CacheStrategy::Window { size: 4 }, 8).unwrap();
        assert_eq!(measure(&config, &plans, 12).unwrap().len(), 12);
    }
}
