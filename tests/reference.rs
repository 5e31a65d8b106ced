//! Our tokenizer, logits and greedy tokens against the independent numpy
//! reference (`tests/fixtures/make_fixtures.py`), for every model format and
//! backend; the cache strategies step by step are in `tests/cache.rs`.

mod common;

use common::*;
use kvcache_wasm::cache::{plan_layers, CacheStrategy};
use kvcache_wasm::{BackendKind, CacheOptions};

const TOLERANCE: f32 = 1e-4;

fn strategies(window: usize) -> Vec<(CacheStrategy, bool)> {
    vec![
        (CacheStrategy::Concat, false),
        (CacheStrategy::Concat, true),
        (CacheStrategy::Prealloc, true),
        (
            CacheStrategy::Window {
                size: window,
                sinks: 0,
            },
            false,
        ),
        (
            CacheStrategy::Window {
                size: window,
                sinks: 0,
            },
            true,
        ),
    ]
}

#[test]
fn tokenizer_matches_reference_ids() {
    for name in TINY {
        let loaded = load_tiny(name, BackendKind::default());
        let exp = expected(name);
        assert_eq!(
            loaded.tokenizer.encode(&exp.prompt).unwrap(),
            exp.prompt_ids,
            "{name}"
        );
        assert_eq!(
            loaded.tokenizer.decode(&exp.prompt_ids).unwrap(),
            exp.prompt,
            "{name}"
        );
    }
}

/// Without a cache the whole sequence is recomputed each step; the logits
/// must still be the reference's.
#[test]
fn uncached_logits_match_reference() {
    for backend in BackendKind::available() {
        for name in TINY {
            let loaded = load_tiny(name, backend);
            let exp = expected(name);
            let plans = plan_layers(loaded.model.config(), CacheStrategy::Concat, 64).unwrap();
            let mut ids = exp.prompt_ids.clone();
            for (step, reference) in exp.step_logits.iter().enumerate() {
                let logits = loaded.model.forward_last_uncached(&ids, &plans).unwrap();
                assert_close(
                    &logits,
                    reference,
                    TOLERANCE,
                    &format!("{name} {} no cache step {step}", backend.name()),
                );
                ids.push(exp.greedy_ids[step]);
            }
        }
    }
}

/// End to end through the generator: text in, greedy ids out, cache on and off.
#[test]
fn greedy_generation_matches_reference_for_every_strategy() {
    for name in TINY {
        let exp = expected(name);
        for (strategy, use_cache) in strategies(exp.window.size) {
            let options = CacheOptions {
                strategy,
                max_seq_len: Some(32),
                use_cache,
                ..CacheOptions::default()
            };
            let mut g = generator(name, BackendKind::default(), options);
            let out = g
                .generate(&exp.prompt, &greedy(exp.greedy_ids.len()), |_| {})
                .unwrap();
            let want = if strategy.window().is_some() {
                &exp.window.greedy_ids
            } else {
                &exp.greedy_ids
            };
            assert_eq!(&out.ids, want, "{name} {strategy} cache={use_cache}");
            assert_eq!(out.prompt_ids, exp.prompt_ids);
            assert_eq!(out.step_ms.len(), out.ids.len());
        }
    }
}
