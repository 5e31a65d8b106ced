//! Generator behaviour: reset, seeds, streaming, cache figures.

mod common;

use common::*;
use kvcache_wasm::{BackendKind, CacheOptions, CacheStrategy, RunOptions, SamplingParams};

fn sampled(seed: u64) -> RunOptions {
    RunOptions {
        max_new_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            seed,
        },
        stop_ids: Some(vec![]),
        ..RunOptions::default()
    }
}

#[test]
fn reset_then_generate_again_gives_identical_output() {
    for name in TINY {
        for strategy in [
            CacheStrategy::Concat,
            CacheStrategy::Prealloc,
            CacheStrategy::Window { size: 6, sinks: 0 },
        ] {
            let mut g = generator(
                name,
                BackendKind::default(),
                CacheOptions {
                    strategy,
                    ..CacheOptions::default()
                },
            );
            // Prealloc's slots and the window's ring are allocated with the
            // cache and kept by a reset; concat allocates as it grows.
            let config = g.model().config();
            let per_entry = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 4;
            let allocated = match strategy {
                CacheStrategy::Concat => 0,
                CacheStrategy::Prealloc => per_entry * g.max_seq_len(),
                CacheStrategy::Window { size, .. } => per_entry * size,
            };
            assert_eq!(
                g.cache_bytes(),
                allocated,
                "{name} {strategy} before any run"
            );
            let first = g.generate("Once upon a time", &greedy(10), |_| {}).unwrap();
            assert!(g.cache_len() > 0 && g.position() > 0);
            g.reset();
            assert_eq!(
                (g.cache_len(), g.position(), g.cache_bytes()),
                (0, 0, allocated),
                "{name} {strategy}"
            );
            let second = g.generate("Once upon a time", &greedy(10), |_| {}).unwrap();
            assert_eq!(first.ids, second.ids, "{name} {strategy}");
            assert_eq!(first.text, second.text);
        }
    }
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let mut g = generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let mut run = |seed| {
        g.reset();
        g.generate("Once upon a time", &sampled(seed), |_| {})
            .unwrap()
            .ids
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn streamed_pieces_add_up_to_the_text() {
    let mut g = generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let mut streamed = String::new();
    let mut positions = Vec::new();
    let out = g
        .generate("Once upon a time", &greedy(16), |t| {
            streamed.push_str(&t.text);
            positions.push(t.position);
        })
        .unwrap();
    assert_eq!(streamed, out.text);
    assert_eq!(out.text, g.tokenizer().decode(&out.ids).unwrap());
    assert_eq!(positions, (6..22).collect::<Vec<_>>());
}

#[test]
fn cache_figures_follow_the_formula() {
    let exp = expected("tiny-llama");
    // 2 (K, V) × 2 layers × 2 kv heads × 16 head_dim × 4 bytes = 512 bytes per token.
    for (strategy, held_per_token_cap) in [
        (CacheStrategy::Concat, None),
        (CacheStrategy::Prealloc, Some(32)),
        (CacheStrategy::Window { size: 6, sinks: 0 }, None),
    ] {
        let options = CacheOptions {
            strategy,
            max_seq_len: Some(32),
            ..CacheOptions::default()
        };
        let mut g = generator("tiny-llama", BackendKind::default(), options);
        g.generate(&exp.prompt, &greedy(10), |_| {}).unwrap();
        let len = g.cache_len();
        let want_len = match strategy {
            CacheStrategy::Window { size, .. } => size,
            _ => exp.prompt_ids.len() + 9,
        };
        assert_eq!(len, want_len, "{strategy}");
        assert_eq!(g.cache_bytes_formula(), 512 * len, "{strategy}");
        let held = held_per_token_cap.map_or(512 * len, |cap| 512 * cap);
        assert_eq!(
            g.cache_bytes(),
            held,
            "{strategy}: prealloc holds its whole buffer"
        );
    }
}

#[test]
fn no_cache_holds_nothing_and_matches_cached_output() {
    let exp = expected("tiny-gpt2");
    let mut g = generator("tiny-gpt2", BackendKind::default(), CacheOptions::default());
    let cached = g.generate(&exp.prompt, &greedy(12), |_| {}).unwrap();
    g.set_use_cache(false).unwrap();
    let uncached = g.generate(&exp.prompt, &greedy(12), |_| {}).unwrap();
    assert_eq!(cached.ids, uncached.ids);
    assert_eq!((uncached.cache_len, uncached.cache_bytes), (0, 0));
    assert_eq!(g.position(), exp.prompt_ids.len() + 11);
}

#[test]
fn a_second_prompt_continues_the_sequence_until_reset() {
    let mut g = generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let first = g.generate("Once upon", &greedy(3), |_| {}).unwrap();
    let before = g.position();
    let second = g.generate(" a time", &greedy(3), |_| {}).unwrap();
    // The last sampled token of the first run, the new prompt, then two decode steps.
    assert_eq!(g.position(), before + 1 + second.prompt_ids.len() + 2);
    assert_eq!(first.ids.len(), 3);
}

#[test]
fn a_run_stopped_by_its_first_token_still_times_its_prefill() {
    let exp = expected("tiny-llama.gguf");
    let mut g = generator(
        "tiny-llama.gguf",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let first = exp.greedy_ids[0];
    let out = g
        .generate(
            &exp.prompt,
            &RunOptions {
                stop_ids: Some(vec![first]),
                ..greedy(8)
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(out.stop_reason, Some(kvcache_wasm::StopReason::StopToken));
    assert!(out.ids.is_empty() && out.step_ms.is_empty());
    assert_eq!(
        out.cache_len,
        out.prompt_ids.len(),
        "the prompt was computed"
    );
    assert!(out.prefill_ms > 0.0, "its time is kept: {}", out.prefill_ms);
}

#[test]
fn a_run_of_no_tokens_computes_nothing_and_the_next_run_computes_its_prompt() {
    let exp = expected("tiny-llama.gguf");
    let mut g = generator(
        "tiny-llama.gguf",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let none = g.generate(&exp.prompt, &greedy(0), |_| {}).unwrap();
    assert_eq!((none.prefilled, none.reused, g.position()), (0, 0, 0));
    let next = g.generate(" and", &greedy(1), |_| {}).unwrap();
    assert_eq!(
        (next.prefilled, next.reused),
        (none.prompt_ids.len() + next.prompt_ids.len(), 0)
    );
}

#[test]
fn step_by_step_equals_generate() {
    let exp = expected("tiny-llama.gguf");
    let mut g = generator(
        "tiny-llama.gguf",
        BackendKind::default(),
        CacheOptions::default(),
    );
    let mut ids = vec![g.prefill(&exp.prompt, &greedy(16)).unwrap().unwrap().id];
    while let Some(t) = g.step().unwrap() {
        ids.push(t.id);
    }
    assert_eq!(ids, exp.greedy_ids);
    assert!(g.step().unwrap().is_none(), "a finished run stays finished");
}

#[test]
fn bos_is_added_only_where_the_model_asks_for_it() {
    use kvcache_wasm::tokenizer::Tokenizer;
    // SmolLM2-style tokenizers (the fixtures) add nothing.
    let plain = load_tiny("tiny-llama", BackendKind::default()).tokenizer;
    assert_eq!(plain.bos(), None);
    assert_eq!(
        plain.encode_prompt("Once upon a time", true).unwrap(),
        expected("tiny-llama").prompt_ids
    );
    // A Llama 3-style post-processor that puts <|im_start|> (id 1) first.
    let mut json: serde_json::Value =
        serde_json::from_str(&read_text("tiny-tokenizer.json")).unwrap();
    json["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}}
    });
    let with_bos = Tokenizer::from_json(&json.to_string()).unwrap();
    assert_eq!(with_bos.bos(), Some(1));
    let ids = with_bos.encode_prompt("Once upon a time", true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(&ids[1..], &expected("tiny-llama").prompt_ids[..]);
    assert_eq!(
        with_bos.encode_prompt("Once upon a time", false).unwrap(),
        expected("tiny-llama").prompt_ids
    );
}
