//! Attention sinks (`CacheStrategy::Window { size, sinks }`): the first tokens
//! stay visible besides the window. Against the numpy reference
//! (`tests/fixtures/sinks_reference.py`) cached and uncached, fed one token at
//! a time and in chunks, in every precision; Gemma 3's local layers; held rows
//! put back.

mod common;

use serde::Deserialize;

use common::*;
use kvcache_wasm::cache::{plan_layers, CacheStrategy, KvCache, KvDtype, LayerPlan};
use kvcache_wasm::{BackendKind, CacheOptions};

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct SinksExpected {
    window: usize,
    sinks: usize,
    #[serde(rename = "tiny-llama")]
    llama: SinksRun,
    #[serde(rename = "tiny-gpt2")]
    gpt2: SinksRun,
}

#[derive(Deserialize)]
struct SinksRun {
    greedy_ids: Vec<u32>,
    step_logits: Vec<Vec<f32>>,
}

/// As tests/precision.rs states them.
fn bound(dtype: KvDtype) -> f32 {
    match dtype {
        KvDtype::F32 => TOLERANCE,
        KvDtype::F16 => 5e-3,
        KvDtype::Int8 => 1e-1,
    }
}

#[test]
fn sinks_match_the_numpy_reference_cached_and_uncached() {
    let reference: SinksExpected = serde_json::from_str(&read_text("sinks-expected.json")).unwrap();
    let strategy = CacheStrategy::Window {
        size: reference.window,
        sinks: reference.sinks,
    };
    for backend in BackendKind::available() {
        for (name, run) in [
            ("tiny-llama", &reference.llama),
            ("tiny-gpt2", &reference.gpt2),
        ] {
            let loaded = load_tiny(name, backend);
            let model = &loaded.model;
            let exp = expected(name);
            let prompt = exp.prompt_ids.len();
            let plans = plan_layers(model.config(), strategy, 32).unwrap();
            assert!(plans.iter().all(|&p| p
                == LayerPlan::Window {
                    size: reference.window,
                    sinks: reference.sinks
                }));
            let sequence: Vec<u32> = exp
                .prompt_ids
                .iter()
                .chain(&run.greedy_ids)
                .copied()
                .collect();
            let sequence = &sequence[..prompt + run.step_logits.len() - 1];
            let want = |at: usize| &run.step_logits[at - prompt];
            let what = |how: &str, at| format!("{name} {} {how} after {at} tokens", backend.name());
            for at in prompt..=sequence.len() {
                let logits = model
                    .forward_last_uncached(&sequence[..at], &plans)
                    .unwrap();
                assert_close(&logits, want(at), TOLERANCE, &what("uncached", at));
            }
            for dtype in KvDtype::ALL {
                for chunks in [vec![prompt, 1], vec![sequence.len()], vec![1, 7, 1]] {
                    let mut cache = KvCache::new(
                        kvcache_wasm::attention::Heads::of(model.config()),
                        &plans,
                        dtype,
                    )
                    .unwrap();
                    feed_in_chunks(model, &mut cache, sequence, &chunks, |done, logits, _| {
                        if done >= prompt {
                            let how = format!("{dtype} cached in chunks of {chunks:?}");
                            assert_close(&logits, want(done), bound(dtype), &what(&how, done));
                        }
                    });
                    // The sinks and the newest `window` entries, nothing else.
                    let held = reference.sinks + reference.window;
                    assert_eq!(cache.layer_lens(), vec![held; plans.len()]);
                    let row = dtype.row_bytes(model.config().head_dim);
                    let per_entry = 2 * model.config().num_kv_heads * row;
                    assert_eq!(cache.bytes(), plans.len() * held * per_entry);
                    assert_eq!(cache.bytes(), cache.bytes_formula());
                }
            }
        }
    }
}

#[test]
fn the_generator_follows_the_reference_with_sinks() {
    let reference: SinksExpected = serde_json::from_str(&read_text("sinks-expected.json")).unwrap();
    for (name, run) in [
        ("tiny-llama", &reference.llama),
        ("tiny-gpt2", &reference.gpt2),
    ] {
        let exp = expected(name);
        for use_cache in [true, false] {
            let options = CacheOptions {
                strategy: CacheStrategy::Window {
                    size: reference.window,
                    sinks: reference.sinks,
                },
                max_seq_len: Some(32),
                use_cache,
                ..CacheOptions::default()
            };
            let out = generator(name, BackendKind::default(), options)
                .generate(&exp.prompt, &greedy(run.greedy_ids.len()), |_| {})
                .unwrap();
            assert_eq!(out.ids, run.greedy_ids, "{name} cache {use_cache}");
        }
    }
}

/// Gemma 3's local layers (window 4) take the user's window and its sinks
/// when it is no larger than theirs, and keep their own without sinks when
/// it is larger; cached and uncached agree either way.
#[test]
fn gemma_local_layers_take_sinks_only_with_the_users_window() {
    let loaded = load_tiny("tiny-gemma3", BackendKind::default());
    let model = &loaded.model;
    let config = model.config();
    let ids: Vec<u32> = (10..30).collect();
    for (size, sinks, local) in [(3, 1, (3, 1)), (6, 2, (4, 0))] {
        let strategy = CacheStrategy::Window { size, sinks };
        let plans = plan_layers(config, strategy, 64).unwrap();
        let (size_l, sinks_l) = local;
        assert_eq!(
            plans[0],
            LayerPlan::Window {
                size: size_l,
                sinks: sinks_l
            }
        );
        assert_eq!(
            plans[5],
            LayerPlan::Window { size, sinks },
            "the global layer"
        );
        let mut cache = KvCache::with_strategy(config, strategy, KvDtype::F32, 64).unwrap();
        let mut logits = model.forward_last(&ids[..5], &mut cache).unwrap();
        for at in 5..ids.len() {
            let uncached = model.forward_last_uncached(&ids[..at], &plans).unwrap();
            assert_close(
                &logits,
                &uncached,
                TOLERANCE,
                &format!("{strategy} at {at}"),
            );
            logits = model.forward_last(&ids[at..at + 1], &mut cache).unwrap();
        }
        // Without the sinks, the global layer's output differs.
        let plain = plan_layers(config, CacheStrategy::Window { size, sinks: 0 }, 64).unwrap();
        let a = model.forward_last_uncached(&ids, &plans).unwrap();
        let b = model.forward_last_uncached(&ids, &plain).unwrap();
        assert!(relative_error(&a, &b) > 1e-3, "{strategy}");
    }
}

#[test]
fn held_rows_with_sinks_put_back_continue_exactly() {
    let loaded = load_tiny("tiny-llama", BackendKind::default());
    let model = &loaded.model;
    let config = model.config();
    let strategy = CacheStrategy::Window { size: 3, sinks: 2 };
    let ids: Vec<u32> = (10..30).collect();
    for dtype in KvDtype::ALL {
        // Before the sinks are full, inside the window, and well past it.
        for at in [1, 4, 11] {
            let mut cache = KvCache::with_strategy(config, strategy, dtype, 64).unwrap();
            model.forward_last(&ids[..at], &mut cache).unwrap();
            let held = cache.held_rows().unwrap();
            let expected = model.forward_last(&ids[at..at + 2], &mut cache).unwrap();
            let mut fresh = KvCache::with_strategy(config, strategy, dtype, 64).unwrap();
            fresh.restore_rows(at, held).unwrap();
            assert_eq!(fresh.position(), at);
            let got = model.forward_last(&ids[at..at + 2], &mut fresh).unwrap();
            assert_eq!(got, expected, "{dtype} after {at}");
        }
    }
}
