//! The KV cache (`src/cache/`) against the independent numpy reference
//! (`tests/fixtures/make_fixtures.py`): the same teacher-forced scenario over
//! every strategy and per-layer plan, cached and uncached, fed one token at a
//! time or in chunks longer than the window, on every model and backend.

mod common;

use common::*;
use kvcache_wasm::attention::Heads;
use kvcache_wasm::cache::{KvCache, KvDtype, LayerPlan};
use kvcache_wasm::model::Model;
use kvcache_wasm::BackendKind;

const TOLERANCE: f32 = 1e-4;

/// A set of per-layer plans and the reference run it must reproduce.
struct Case {
    name: &'static str,
    plans: Vec<LayerPlan>,
    greedy_ids: Vec<u32>,
    step_logits: Vec<Vec<f32>>,
}

fn cases(exp: &Expected, layers: usize) -> Vec<Case> {
    let max_len = 64;
    let uniform = |plan| vec![plan; layers];
    let w = exp.window.size;
    let full = |name, plan| Case {
        name,
        plans: uniform(plan),
        greedy_ids: exp.greedy_ids.clone(),
        step_logits: exp.step_logits.clone(),
    };
    // Layers with a window in the reference get one; the others follow `other`.
    let mixed = |name, other: LayerPlan, reference: &ExpectedLayerWindows| Case {
        name,
        plans: reference
            .windows
            .iter()
            .map(|window| window.map_or(other, |size| LayerPlan::Window { size, sinks: 0 }))
            .collect(),
        greedy_ids: reference.greedy_ids.clone(),
        step_logits: reference.step_logits.clone(),
    };
    let mut cases = vec![
        full("concat", LayerPlan::Concat { max_len }),
        full("prealloc", LayerPlan::Prealloc { max_len }),
        Case {
            name: "window",
            plans: uniform(LayerPlan::Window { size: w, sinks: 0 }),
            greedy_ids: exp.window.greedy_ids.clone(),
            step_logits: exp.window.step_logits.clone(),
        },
    ];
    if let Some(reference) = &exp.layer_windows {
        cases.push(mixed(
            "window + concat",
            LayerPlan::Concat { max_len },
            reference,
        ));
        cases.push(mixed(
            "window + prealloc",
            LayerPlan::Prealloc { max_len },
            reference,
        ));
    }
    cases
}

/// Runs `sequence` through a fresh cache in chunks of the given sizes (the
/// last one repeated until the sequence is consumed), and returns the logits
/// at the end of each chunk with the number of tokens consumed by then.
fn cached_run(
    model: &Model,
    plans: &[LayerPlan],
    sequence: &[u32],
    chunks: &[usize],
) -> Vec<(usize, Vec<f32>)> {
    let mut cache = KvCache::new(Heads::of(model.config()), plans, KvDtype::F32).unwrap();
    let mut out = Vec::new();
    feed_in_chunks(
        model,
        &mut cache,
        sequence,
        chunks,
        |done, logits, cache| {
            assert_eq!(cache.position(), done);
            out.push((done, logits));
        },
    );
    let lens = cache.layer_lens();
    for (plan, len) in plans.iter().zip(lens) {
        let held = match plan {
            LayerPlan::Window { size, .. } => sequence.len().min(*size),
            _ => sequence.len(),
        };
        assert_eq!(len, held, "{plan:?}");
    }
    out
}

#[test]
fn every_plan_matches_the_reference_cached_and_uncached() {
    let mut mixed = 0;
    for backend in BackendKind::available() {
        for name in TINY {
            let loaded = load_tiny(name, backend);
            let model = &loaded.model;
            let exp = expected(name);
            let prompt = exp.prompt_ids.len();
            let window = exp.window.size;
            mixed += usize::from(exp.layer_windows.is_some());
            for case in cases(&exp, model.config().num_layers) {
                let what = |how: &str, at: usize| {
                    format!(
                        "{name} {} {} {how}, after {at} tokens",
                        backend.name(),
                        case.name
                    )
                };
                // The reference's logits for the end of `sequence[..at]`, where it has them.
                let reference = |at: usize| case.step_logits.get(at.checked_sub(prompt)?);
                let sequence: Vec<u32> = exp
                    .prompt_ids
                    .iter()
                    .chain(&case.greedy_ids)
                    .copied()
                    .collect();
                let sequence = &sequence[..prompt + case.step_logits.len() - 1];

                // No cache: the whole sequence each time, masked as the plans say.
                for at in prompt..=sequence.len() {
                    let logits = model
                        .forward_last_uncached(&sequence[..at], &case.plans)
                        .unwrap();
                    assert_close(
                        &logits,
                        reference(at).unwrap(),
                        TOLERANCE,
                        &what("uncached", at),
                    );
                }
                // The cache, fed as a generator feeds it (the prompt, then one
                // token at a time), and in chunks longer than the window: the
                // whole run at once, and a short chunk then a long one.
                for chunks in [vec![prompt, 1], vec![prompt + 10], vec![3, window + 3, 1]] {
                    for (at, logits) in cached_run(model, &case.plans, sequence, &chunks) {
                        if let Some(expected) = reference(at) {
                            let how = format!("cached in chunks of {chunks:?}");
                            assert_close(&logits, expected, TOLERANCE, &what(&how, at));
                        }
                    }
                }
            }
        }
    }
    assert!(mixed >= 3, "the mixed-plan references are there");
}

#[test]
fn bytes_and_lengths_follow_the_plans() {
    let loaded = load_tiny("tiny-llama", BackendKind::default());
    let config = loaded.model.config();
    // 2 (K, V) × 2 kv heads × 16 head_dim × 4 bytes = 256 bytes per entry and layer.
    let per_entry = 2 * config.num_kv_heads * config.head_dim * 4;
    assert_eq!(per_entry, 256);
    let plans = [
        LayerPlan::Window { size: 4, sinks: 0 },
        LayerPlan::Prealloc { max_len: 20 },
    ];
    let mut cache = KvCache::new(Heads::of(config), &plans, KvDtype::F32).unwrap();
    // Allocated with the cache: the ring's 4 slots and prealloc's 20.
    assert_eq!(cache.bytes(), per_entry * (4 + 20));
    assert_eq!((cache.len(), cache.bytes_formula()), (0, 0));
    loaded
        .model
        .forward_last(&[5, 6, 7, 8, 9, 10], &mut cache)
        .unwrap();
    assert_eq!(cache.layer_lens(), [4, 6]);
    assert_eq!(cache.len(), 6);
    assert_eq!(cache.bytes_formula(), per_entry * (4 + 6));
    assert_eq!(cache.bytes(), per_entry * (4 + 20));
    assert_eq!(cache.max_len(), Some(20));
    cache.reset();
    assert_eq!(
        (cache.position(), cache.len(), cache.bytes()),
        (0, 0, per_entry * 24)
    );

    let mut concat = KvCache::new(
        Heads::of(config),
        &[LayerPlan::Concat { max_len: 20 }; 2],
        KvDtype::F32,
    )
    .unwrap();
    assert_eq!(concat.bytes(), 0);
    loaded.model.forward_last(&[5, 6, 7], &mut concat).unwrap();
    assert_eq!(concat.bytes(), concat.bytes_formula());
    assert_eq!(concat.bytes(), 2 * per_entry * 3);
    concat.reset();
    assert_eq!(concat.bytes(), 0, "concat frees its buffers");
}

#[test]
fn a_full_cache_refuses_more_tokens_and_changes_nothing() {
    let loaded = load_tiny("tiny-llama", BackendKind::default());
    let config = loaded.model.config();
    let mut cache = KvCache::new(
        Heads::of(config),
        &[LayerPlan::Prealloc { max_len: 8 }; 2],
        KvDtype::F32,
    )
    .unwrap();
    loaded
        .model
        .forward_last(&[5, 6, 7, 8, 9, 10], &mut cache)
        .unwrap();
    let err = loaded
        .model
        .forward_last(&[1, 2, 3], &mut cache)
        .unwrap_err();
    assert!(err.to_string().contains("maxSeqLen is 8"), "{err}");
    assert_eq!((cache.position(), cache.len()), (6, 6));
    // A window runs on, up to the model's context (128 positions).
    let mut window = KvCache::new(
        Heads::of(config),
        &[LayerPlan::Window { size: 4, sinks: 0 }; 2],
        KvDtype::F32,
    )
    .unwrap();
    for _ in 0..16 {
        loaded
            .model
            .forward_last(&[5, 6, 7, 8, 9, 10, 11, 12], &mut window)
            .unwrap();
    }
    assert_eq!((window.position(), window.len()), (128, 4));
    let err = loaded.model.forward_last(&[5], &mut window).unwrap_err();
    assert!(
        err.to_string()
            .contains("the model's context is 128 positions"),
        "{err}"
    );
}

#[test]
#[cfg(target_pointer_width = "64")]
fn a_cache_too_large_to_allocate_is_an_error() {
    let loaded = load_tiny("tiny-llama", BackendKind::default());
    let heads = Heads::of(loaded.model.config());
    let err = KvCache::new(
        heads,
        &[LayerPlan::Prealloc {
            max_len: usize::MAX / 4,
        }; 2],
        KvDtype::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("could not allocate"), "{err}");
    let slots: usize = 1 << 44;
    let err = KvCache::new(
        heads,
        &[LayerPlan::Window {
            size: slots,
            sinks: 0,
        }; 2],
        KvDtype::F32,
    )
    .unwrap_err();
    let msg = err.to_string();
    let bytes = 2 * heads.kv * heads.dim * 4 * slots;
    assert!(
        msg.contains(&format!("needs {bytes} bytes")) && msg.contains("could not allocate"),
        "{msg}"
    );
}
