//! The cache strategies' measurements (`src/bench/`): the strategy alone, and
//! whole decode steps taking turns, on the tiny reference models.

mod common;

use common::*;
use kvcache_wasm::bench;
use kvcache_wasm::{BackendKind, CacheOptions, CacheStrategy};

#[test]
fn cache_cost_times_every_step_and_refuses_what_does_not_fit() {
    for strategy in [
        CacheStrategy::Concat,
        CacheStrategy::Prealloc,
        CacheStrategy::Window { size: 4, sinks: 0 },
    ] {
        let options = CacheOptions {
            strategy,
            max_seq_len: Some(8),
            ..CacheOptions::default()
        };
        let mut g = generator("tiny-llama", BackendKind::default(), options);
        let first = g.generate("Once upon", &greedy(3), |_| {}).unwrap();
        let position = g.position();
        let ms = bench::cache_cost(&g, 8).unwrap();
        assert_eq!(ms.len(), 8, "{strategy}");
        assert!(ms.iter().all(|&t| t.is_finite() && t >= 0.0), "{ms:?}");
        if strategy.window().is_some() {
            // A window drops old entries, so it runs past maxSeqLen, not past the context.
            assert_eq!(bench::cache_cost(&g, 12).unwrap().len(), 12);
            let context = g.model().config().max_position_embeddings;
            let err = bench::cache_cost(&g, usize::MAX).unwrap_err().to_string();
            let says = format!("the model's context is {context} positions");
            assert!(err.contains(&says), "{err}");
        } else {
            let err = bench::cache_cost(&g, 9).unwrap_err().to_string();
            assert!(err.contains("maxSeqLen is 8"), "{err}");
        }
        let err = bench::cache_cost(&g, 0).unwrap_err().to_string();
        assert!(err.contains("at least one token"), "{err}");
        assert_eq!(g.position(), position, "the measurement has its own caches");
        g.reset();
        assert_eq!(
            g.generate("Once upon", &greedy(3), |_| {}).unwrap().ids,
            first.ids
        );
    }
}

#[test]
fn interleaved_strategies_decode_the_reference_tokens_and_time_every_step() {
    use CacheStrategy::{Concat, Prealloc, Window};
    for name in TINY {
        let exp = expected(name);
        let tokens = exp.greedy_ids.len();
        let window = Window {
            size: exp.window.size,
            sinks: 0,
        };
        let mut g = generator(name, BackendKind::default(), CacheOptions::default());
        let before = g.generate(&exp.prompt, &greedy(3), |_| {}).unwrap();
        let position = g.position();

        let out = bench::interleaved(&g, &exp.prompt, &[Concat, Prealloc, window], tokens).unwrap();
        assert_eq!(out.ids, exp.greedy_ids, "{name}: the first strategy leads");
        assert_eq!(out.strategies, ["concat", "prealloc", "window(6)"]);
        assert_eq!(out.step_ms.len(), 3);
        for ms in &out.step_ms {
            assert_eq!(
                ms.len(),
                tokens - 1,
                "{name}: every decode step, not the prefill"
            );
            assert!(ms.iter().all(|t| t.is_finite() && *t > 0.0), "{ms:?}");
        }
        // Prealloc agrees with concat everywhere; the window parts ways once it drops tokens.
        let window_differs = exp.window.greedy_ids != exp.greedy_ids;
        assert_eq!(out.disagreements > 0, window_differs, "{name}");
        let alone = bench::interleaved(&g, &exp.prompt, &[Concat, Prealloc], tokens).unwrap();
        assert_eq!(alone.disagreements, 0, "{name}");
        let led_by_window = bench::interleaved(&g, &exp.prompt, &[window, Concat], tokens).unwrap();
        assert_eq!(led_by_window.ids, exp.window.greedy_ids, "{name}");

        assert_eq!(
            g.position(),
            position,
            "{name}: the measurement has its own caches"
        );
        g.reset();
        assert_eq!(
            g.generate(&exp.prompt, &greedy(3), |_| {}).unwrap().ids,
            before.ids
        );
    }
}

#[test]
fn interleaved_refuses_what_it_cannot_measure() {
    let g = generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions {
            max_seq_len: Some(8),
            ..CacheOptions::default()
        },
    );
    let refusal = |strategies: &[CacheStrategy], prompt: &str, tokens| {
        bench::interleaved(&g, prompt, strategies, tokens)
            .unwrap_err()
            .to_string()
    };
    let both = [CacheStrategy::Concat, CacheStrategy::Prealloc];
    assert!(refusal(&both, "Once upon a time", 20).contains("maxSeqLen is 8"));
    assert!(refusal(&both, "", 4).contains("prompt is empty"));
    assert!(refusal(&[], "Once", 4).contains("at least one cache strategy"));
    assert!(refusal(&both, "Once", 0).contains("at least one token"));
}

#[test]
fn interleaved_refuses_more_tokens_than_any_context_without_wrapping() {
    let g = generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let caches = [CacheStrategy::Concat, CacheStrategy::Prealloc];
    let err = bench::interleaved(&g, "Once upon", &caches, usize::MAX)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("context full: "), "{err}");
}
