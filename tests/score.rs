//! `score(text)`: teacher-forced negative log-likelihoods, through the cache
//! token by token and in one uncached causal pass, against each other on the
//! tiny fixtures and against the numpy reference on the real SmolLM2
//! (`tests/fixtures/smollm2_reference.py` wrote `smollm2-score-expected.json`).

mod common;

use kvcache_wasm::load;
use kvcache_wasm::{BackendKind, CacheOptions, CacheStrategy, Generator, Score};
use serde::Deserialize;

const TEXT: &str = "Once upon a time there was a cat.";

/// Largest difference between two nll vectors relative to the reference's largest value.
fn relative(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "nll lengths differ");
    let scale = reference.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
    ours.iter()
        .zip(reference)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn assert_consistent(score: &Score, g: &Generator, text: &str) {
    assert_eq!(score.ids, g.tokenizer().encode_prompt(text, true).unwrap());
    assert_eq!(score.nll.len(), score.ids.len() - 1);
    assert!(score.nll.iter().all(|x| x.is_finite() && *x > 0.0));
    let mean = score.nll.iter().sum::<f64>() / score.nll.len() as f64;
    assert!((score.perplexity - mean.exp()).abs() <= 1e-12 * score.perplexity);
    // The sequence now holds the text, its last token pending.
    assert_eq!(g.position(), score.ids.len() - 1);
}

#[test]
fn cached_and_uncached_scores_agree_on_every_tiny_fixture() {
    for name in common::TINY.iter().chain(&["tiny-gemma3"]) {
        let mut g = common::generator(
            name,
            BackendKind::default(),
            common::tiny_options(CacheStrategy::Concat, true),
        );
        let cached = g.score(TEXT).unwrap();
        assert!(cached.ids.len() > 10, "{name}: {:?}", cached.ids);
        assert_consistent(&cached, &g, TEXT);
        g.set_use_cache(false).unwrap();
        let uncached = g.score(TEXT).unwrap();
        assert_consistent(&uncached, &g, TEXT);
        assert_eq!(uncached.ids, cached.ids);
        let err = relative(&cached.nll, &uncached.nll);
        assert!(err < 1e-4, "{name}: cached vs uncached nll {err:e}");

        // A window of 4 changes what each prediction sees, the same way with the cache and without.
        let window = CacheStrategy::Window { size: 4, sinks: 0 };
        g.set_options(common::tiny_options(window, true)).unwrap();
        let windowed = g.score(TEXT).unwrap();
        g.set_use_cache(false).unwrap();
        let windowed_uncached = g.score(TEXT).unwrap();
        let err = relative(&windowed.nll, &windowed_uncached.nll);
        assert!(err < 1e-4, "{name}: windowed cached vs uncached {err:e}");
        assert!(
            relative(&windowed.nll, &cached.nll) > 1e-3,
            "{name}: a window of 4 should change the scores"
        );
    }
}

#[test]
fn texts_that_cannot_be_scored_are_clear_errors_and_change_nothing() {
    let mut g = common::generator(
        "tiny-gpt2",
        BackendKind::default(),
        common::tiny_options(CacheStrategy::Prealloc, true),
    );
    g.generate("Once", &common::greedy(3), |_| {}).unwrap();
    let position = g.position();
    let long = "Once upon a time there was a cat. ".repeat(4);
    for (text, says) in [
        ("", "at least two tokens"),
        ("O", "at least two tokens"),
        (long.as_str(), "context full"),
        (&"x".repeat(100_000), "more than 32 tokens can hold"),
    ] {
        let err = g.score(text).unwrap_err().to_string();
        assert!(err.contains(says), "{text:.20}: {err}");
        assert_eq!(
            g.position(),
            position,
            "a failed score changed the sequence"
        );
    }
    // The generator still works, and scoring after a run starts afresh.
    let score = g.score(TEXT).unwrap();
    assert_consistent(&score, &g, TEXT);
}

/// `score_start`, `score_step` a few predictions at a time and `score_finish`.
fn score_in_steps(g: &mut Generator, text: &str, step: usize) -> Score {
    let total = g.score_start(text).unwrap();
    let mut left = total;
    let mut steps = 0;
    while left > 0 {
        let next = g.score_step(step).unwrap();
        assert_eq!(
            next,
            left.saturating_sub(step),
            "each step makes `step` predictions"
        );
        left = next;
        steps += 1;
    }
    assert_eq!(steps, total.div_ceil(step));
    g.score_finish().unwrap()
}

#[test]
fn scoring_in_steps_gives_what_one_call_gives() {
    for name in common::TINY.iter().chain(&["tiny-gemma3"]) {
        let window = CacheStrategy::Window { size: 4, sinks: 0 };
        for strategy in [CacheStrategy::Concat, CacheStrategy::Prealloc, window] {
            let options = common::tiny_options(strategy, true);
            let mut g = common::generator(name, BackendKind::default(), options);
            let whole = g.score(TEXT).unwrap();
            for step in [1, 3, 1000] {
                let stepped = score_in_steps(&mut g, TEXT, step);
                assert_eq!(stepped, whole, "{name}, {strategy:?}, steps of {step}");
                assert_consistent(&stepped, &g, TEXT);
            }
        }
        // Without the cache, the first step makes every prediction (one causal pass).
        let mut g = common::generator(
            name,
            BackendKind::default(),
            common::tiny_options(CacheStrategy::Concat, false),
        );
        let whole = g.score(TEXT).unwrap();
        g.score_start(TEXT).unwrap();
        assert_eq!(g.score_step(1).unwrap(), 0, "{name}: uncached, all at once");
        assert_eq!(g.score_finish().unwrap(), whole);
    }
}

#[test]
fn scoring_steps_out_of_turn_are_clear_errors() {
    let mut g = common::generator(
        "tiny-llama",
        BackendKind::default(),
        common::tiny_options(CacheStrategy::Concat, true),
    );
    let says = |r: Result<usize, kvcache_wasm::Error>, what: &str| {
        let err = r.unwrap_err().to_string();
        assert!(err.contains(what), "expected {what:?}, got {err}");
    };
    says(g.score_step(4), "no scoring in progress");
    assert!(g
        .score_finish()
        .unwrap_err()
        .to_string()
        .contains("no scoring in progress"));

    let total = g.score_start(TEXT).unwrap();
    says(g.score_step(0), "at least 1");
    assert_eq!(g.score_step(2).unwrap(), total - 2);
    let err = g.score_finish().unwrap_err().to_string();
    assert!(
        err.contains(&format!("{} predictions are left", total - 2)),
        "{err}"
    );
    // The scoring goes on after both refusals.
    assert_eq!(g.score_step(2).unwrap(), total - 4);
    assert_eq!(g.position(), 4);

    // A run in between changes the sequence: the scoring ends, and says so.
    g.generate("Once", &common::greedy(2), |_| {}).unwrap();
    says(g.score_step(2), "the sequence changed since scoreStart");
    says(g.score_step(2), "no scoring in progress");
    // So does a reset; a new start scores afresh.
    g.score_start(TEXT).unwrap();
    g.score_step(3).unwrap();
    g.reset();
    says(g.score_step(2), "no scoring in progress");
    let whole = g.score(TEXT).unwrap();
    assert_eq!(score_in_steps(&mut g, TEXT, 5), whole);
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    ids: Vec<u32>,
    nll: Vec<f64>,
    perplexity: f64,
}

#[test]
fn smollm2_score_matches_the_numpy_reference() {
    let reference: Reference =
        serde_json::from_str(&common::read_text("smollm2-score-expected.json")).unwrap();
    let bytes = std::fs::read(common::fetched("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let loaded = load::from_gguf_bytes(bytes, &BackendKind::default().device()).unwrap();
    let mut g = Generator::new(
        loaded,
        CacheOptions {
            max_seq_len: Some(128),
            ..CacheOptions::default()
        },
    )
    .unwrap();
    let cached = g.score(&reference.text).unwrap();
    assert_eq!(cached.ids, reference.ids);
    let err = (cached.perplexity - reference.perplexity).abs() / reference.perplexity;
    assert!(
        err < 1e-3,
        "perplexity {} vs the reference's {} (relative error {err:e})",
        cached.perplexity,
        reference.perplexity
    );
    let err = relative(&cached.nll, &reference.nll);
    assert!(err < 1e-3, "nll vs the reference: relative error {err:e}");

    g.set_use_cache(false).unwrap();
    let uncached = g.score(&reference.text).unwrap();
    let err = relative(&cached.nll, &uncached.nll);
    assert!(err < 1e-4, "cached vs uncached nll {err:e}");
}
