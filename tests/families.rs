//! Gemma 3, Qwen3 and Llama 3 (rope scaling `llama3`) against the numpy
//! references of `tests/fixtures/make_family_fixtures.py`: tiny random models
//! whose logits must match at every step, cached with every strategy and
//! uncached, and whose greedy ids must match through the generator. The tiny
//! Gemma 3 has local layers with a window (4) smaller than its prompt, and
//! comes twice: in HF form and as the GGUF llama.cpp's converter would write
//! (norms plus 1), the same weights, so the two must agree with each other.

mod common;

use common::*;
use kvcache_wasm::cache::{plan_layers, CacheStrategy, KvCache, KvDtype};
use kvcache_wasm::{Architecture, BackendKind};

const TOLERANCE: f32 = 1e-4;

/// Fixture name, and the name of the expected outputs it must give.
const FAMILIES: [(&str, &str); 4] = [
    ("tiny-gemma3", "tiny-gemma3"),
    ("tiny-gemma3.gguf", "tiny-gemma3"),
    ("tiny-qwen3", "tiny-qwen3"),
    ("tiny-llama3", "tiny-llama3"),
];

/// The reference's run for `strategy`: the user's window caps every layer.
fn reference(exp: &Expected, strategy: CacheStrategy) -> (&Vec<u32>, &Vec<Vec<f32>>) {
    match strategy {
        CacheStrategy::Window { .. } => (&exp.window.greedy_ids, &exp.window.step_logits),
        _ => (&exp.greedy_ids, &exp.step_logits),
    }
}

#[test]
fn configs_and_prompt_ids_are_the_references() {
    for (name, exp_name) in FAMILIES {
        let loaded = load_tiny(name, BackendKind::default());
        let exp = expected(exp_name);
        let want = match exp_name {
            "tiny-gemma3" => Architecture::Gemma3,
            "tiny-qwen3" => Architecture::Qwen3,
            _ => Architecture::Llama,
        };
        let config = loaded.model.config();
        assert_eq!(config.architecture, want, "{name}");
        assert_eq!(
            loaded.tokenizer.encode_prompt(&exp.prompt, true).unwrap(),
            exp.prompt_ids,
            "{name}"
        );
        if want == Architecture::Gemma3 {
            let windows: Vec<_> = (0..6).map(|i| config.layer_window(i)).collect();
            assert_eq!(windows, [Some(4), Some(4), Some(4), Some(4), Some(4), None]);
            assert_eq!(config.rope_of(true).0, 10_000.0, "{name}: local RoPE base");
            assert_eq!(
                config.rope_of(false).0,
                1_000_000.0,
                "{name}: global RoPE base"
            );
        }
    }
}

/// Prefill, then the reference's greedy tokens one at a time through the
/// cache, comparing the logits of every step.
#[test]
fn cached_step_logits_match_the_reference_with_every_strategy() {
    for backend in BackendKind::available() {
        for (name, exp_name) in FAMILIES {
            let loaded = load_tiny(name, backend);
            let exp = expected(exp_name);
            let config = loaded.model.config();
            for strategy in strategies(exp.window.size) {
                let (greedy_ids, step_logits) = reference(&exp, strategy);
                let mut cache = KvCache::with_strategy(config, strategy, KvDtype::F32, 64).unwrap();
                let mut logits = loaded
                    .model
                    .forward_last(&exp.prompt_ids, &mut cache)
                    .unwrap();
                for (step, want) in step_logits.iter().enumerate() {
                    let what = format!("{name} {} {strategy} step {step}", backend.name());
                    assert_close(&logits, want, TOLERANCE, &what);
                    logits = loaded
                        .model
                        .forward_last(&greedy_ids[step..step + 1], &mut cache)
                        .unwrap();
                }
                // Local layers hold their own window at most; the others what the strategy keeps.
                let held = exp.prompt_ids.len() + greedy_ids.len();
                let lens = cache.layer_lens();
                for (layer, len) in lens.iter().enumerate() {
                    let cap = [config.layer_window(layer), strategy.window()]
                        .into_iter()
                        .flatten()
                        .min();
                    assert_eq!(
                        *len,
                        cap.map_or(held, |w| held.min(w)),
                        "{name} {strategy} layer {layer}"
                    );
                }
                assert_eq!(cache.position(), held, "{name} {strategy}");
            }
        }
    }
}

/// Without a cache the whole sequence is recomputed each step, each layer
/// masked as its plan says; the logits must still be the reference's.
#[test]
fn uncached_logits_match_the_reference() {
    for backend in BackendKind::available() {
        for (name, exp_name) in FAMILIES {
            let loaded = load_tiny(name, backend);
            let exp = expected(exp_name);
            for strategy in [
                CacheStrategy::Concat,
                CacheStrategy::Window {
                    size: exp.window.size,
                    sinks: 0,
                },
            ] {
                let (greedy_ids, step_logits) = reference(&exp, strategy);
                let plans = plan_layers(loaded.model.config(), strategy, 64).unwrap();
                let mut ids = exp.prompt_ids.clone();
                for (step, want) in step_logits.iter().enumerate() {
                    let logits = loaded.model.forward_last_uncached(&ids, &plans).unwrap();
                    let what = format!("{name} {} {strategy} no cache step {step}", backend.name());
                    assert_close(&logits, want, TOLERANCE, &what);
                    ids.push(greedy_ids[step]);
                }
            }
        }
    }
}

/// End to end through the generator: text in, greedy ids out, cache on and off.
#[test]
fn greedy_generation_matches_the_reference_cached_and_uncached() {
    for (name, exp_name) in FAMILIES {
        let exp = expected(exp_name);
        for strategy in strategies(exp.window.size) {
            for use_cache in [true, false] {
                let out = generate_like_reference(name, &exp, strategy, use_cache);
                let (want, _) = reference(&exp, strategy);
                assert_eq!(&out.ids, want, "{name} {strategy} cache={use_cache}");
                assert_eq!(out.prompt_ids, exp.prompt_ids, "{name}");
            }
        }
    }
}

/// The converter's GGUF (norms stored plus 1, scaled by as stored) and the HF
/// form (scaled by 1 + w) are the same model.
#[test]
fn gemma3_gguf_and_hf_forms_give_the_same_logits() {
    let exp = expected("tiny-gemma3");
    let [hf, gguf] = ["tiny-gemma3", "tiny-gemma3.gguf"].map(|name| {
        let loaded = load_tiny(name, BackendKind::default());
        let plans = plan_layers(loaded.model.config(), CacheStrategy::Concat, 64).unwrap();
        loaded
            .model
            .forward_last_uncached(&exp.prompt_ids, &plans)
            .unwrap()
    });
    assert_close(&gguf, &hf, 1e-5, "tiny-gemma3: GGUF against HF");
}
