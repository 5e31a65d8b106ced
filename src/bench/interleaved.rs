//! Whole decode steps of the real model with several cache strategies taking
//! turns token by token, so that whatever the machine does meanwhile falls on
//! all of them alike: the strategies compared where the weights' matrix
//! products dominate.

use serde::Serialize;
use web_time::Instant;

use crate::cache::{CacheStrategy, KvCache};
use crate::error::{Error, Result};
use crate::generate::Generator;
use crate::sampling::argmax;

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
    /// How many times a strategy's logits picked another token than the first
    /// strategy's, over the prefill and every decode step, each strategy counted apart.
    pub disagreements: usize,
}

/// Greedy generation of `tokens` new tokens after `prompt` with `generator`'s
/// model and one fresh cache per strategy (of the generator's maxSeqLen and kvDtype), all
/// fed the same tokens. Each decode step runs every strategy once, in an order
/// that rotates from step to step (A B, B A, …), and times each: the same work
/// as `Generator::step` apart from sampling and detokenizing. The generator's
/// own sequence and cache are left as they are.
pub fn interleaved(
    generator: &Generator,
    prompt: &str,
    strategies: &[CacheStrategy],
    tokens: usize,
) -> Result<Interleaved> {
    if strategies.is_empty() || tokens == 0 {
        return Err(Error::invalid(
            "name at least one cache strategy and ask for at least one token",
        ));
    }
    let prompt = generator.tokenizer().encode_prompt(prompt, true)?;
    if prompt.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty: give at least one token of text",
        ));
    }
    let (model, max_seq_len) = (generator.model(), generator.max_seq_len());
    let config = model.config();
    let mut caches = strategies
        .iter()
        .map(|&strategy| {
            KvCache::with_strategy(config, strategy, generator.options().kv_dtype, max_seq_len)
        })
        .collect::<Result<Vec<_>>>()?;
    // The last token is picked but never fed.
    for cache in &caches {
        model.check_room(0, prompt.len().saturating_add(tokens - 1), cache.max_len())?;
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
        .map(|index| run(index, &mut caches, &prompt).map(|(id, _)| id))
        .collect::<Result<Vec<_>>>()?;
    out.disagreements += firsts.iter().filter(|&&p| p != firsts[0]).count();
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
