//! Our logits and greedy tokens against the independent numpy reference
//! (`tests/fixtures/make_fixtures.py`), for every model format, backend and
//! cache strategy.

mod common;

use common::*;
use kvcache_wasm::{BackendKind, CacheStrategy, GeneratorOptions, KvCache};

const TOLERANCE: f32 = 1e-4;

fn strategies(window: usize) -> Vec<(CacheStrategy, bool)> {
    vec![
        (CacheStrategy::Concat, false),
        (CacheStrategy::Concat, true),
        (CacheStrategy::Prealloc, true),
        (CacheStrategy::Window { size: window }, false),
        (CacheStrategy::Window { size: window }, true),
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

/// Prefill, then decode the reference's greedy tokens one at a time through
/// the cache, comparing the logits of every step.
#[test]
fn step_logits_match_reference_with_every_cache_strategy() {
    for backend in BackendKind::available() {
        for name in TINY {
            let loaded = load_tiny(name, backend);
            let exp = expected(name);
            for (strategy, _) in strategies(exp.window.size)
                .into_iter()
                .filter(|(_, cached)| *cached)
            {
                let (greedy_ids, step_logits) = match strategy {
                    CacheStrategy::Window { .. } => {
                        (&exp.window.greedy_ids, &exp.window.step_logits)
                    }
                    _ => (&exp.greedy_ids, &exp.step_logits),
                };
                let mut cache = KvCache::new(loaded.model.config(), strategy, 64).unwrap();
                let mut logits = loaded
                    .model
                    .forward_last(&exp.prompt_ids, Some(&mut cache), strategy.window())
                    .unwrap();
                for (step, reference) in step_logits.iter().enumerate() {
                    let what = format!("{name} {} {strategy} step {step}", backend.name());
                    assert_close(&logits, reference, TOLERANCE, &what);
                    logits = loaded
                        .model
                        .forward_last(
                            &greedy_ids[step..step + 1],
                            Some(&mut cache),
                            strategy.window(),
                        )
                        .unwrap();
                }
                let held = exp.prompt_ids.len() + greedy_ids.len();
                let expected_len = strategy.window().map_or(held, |w| held.min(w));
                assert_eq!(cache.len(), expected_len, "{name} {strategy}");
                assert_eq!(cache.position(), held, "{name} {strategy}");
            }
        }
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
            let mut ids = exp.prompt_ids.clone();
            for (step, reference) in exp.step_logits.iter().enumerate() {
                let logits = loaded.model.forward_last(&ids, None, None).unwrap();
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
            let options = GeneratorOptions {
                strategy,
                max_seq_len: Some(32),
                use_cache,
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
