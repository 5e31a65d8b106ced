//! What a cache strategy costs per token apart from the weights: every
//! layer's cache update plus attention over what it holds, with the model's
//! shapes and made-up queries, keys and values. A decode step is mostly the
//! weights' matrix products, and whole steps timed run against run vary by
//! more than the strategies differ; this shows the strategies' own cost and
//! how it grows with the sequence.

use web_time::Instant;

use crate::attention::Heads;
use crate::cache::{self, LayerCache};
use crate::error::{Error, Result};
use crate::generate::Generator;

/// Milliseconds of each of `tokens` one-token steps through fresh layer
/// caches planned (and stored) as `generator`'s, from empty. The generator's own sequence
/// and cache are left as they are.
pub fn cache_cost(generator: &Generator, tokens: usize) -> Result<Vec<f64>> {
    let plans = generator.plans();
    if tokens == 0 {
        return Err(Error::invalid("ask for at least one token"));
    }
    if let Some(max_len) = cache::max_len(plans).filter(|&max_len| tokens > max_len) {
        return Err(Error::ContextFull(format!(
            "{tokens} tokens would not fit: maxSeqLen is {max_len}"
        )));
    }
    // Windows hold no more than their size, but positions stop at the model's context.
    let context = generator.model().config().max_position_embeddings;
    if tokens > context {
        return Err(Error::ContextFull(format!(
            "{tokens} tokens would not fit: the model's context is {context} positions"
        )));
    }
    let heads = Heads::of(generator.model().config());
    let mut layers = plans
        .iter()
        .map(|&plan| LayerCache::new(plan, heads, generator.options().kv_dtype))
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
