//! Shared helpers for the integration tests: fixture paths, expected outputs
//! written by `tests/fixtures/make_fixtures.py`, and tolerant comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

use kvcache_wasm::cache::KvCache;
use kvcache_wasm::load::{self, Loaded};
use kvcache_wasm::model::Model;
use kvcache_wasm::{BackendKind, CacheOptions, CacheStrategy, Generator, RunOptions};

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn read_text(path: &str) -> String {
    String::from_utf8(read(path)).unwrap()
}

/// A file `scripts/fetch-model.sh` puts in `models/` (the README's test command runs it).
pub fn fetched(path: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(path);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/fetch-model.sh`",
        p.display()
    );
    p
}

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub prompt_logits_last: Vec<f32>,
    pub greedy_ids: Vec<u32>,
    pub step_logits: Vec<Vec<f32>>,
    pub window: ExpectedWindow,
    /// Written by `make_fixtures.py` (not by `make_family_fixtures.py`).
    #[serde(default)]
    pub layer_windows: Option<ExpectedLayerWindows>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedWindow {
    pub size: usize,
    pub greedy_ids: Vec<u32>,
    pub step_logits: Vec<Vec<f32>>,
}

/// A window in some layers only: `windows[i]` is layer `i`'s (`None`: full attention).
#[derive(Debug, Deserialize)]
pub struct ExpectedLayerWindows {
    pub windows: Vec<Option<usize>>,
    pub greedy_ids: Vec<u32>,
    pub step_logits: Vec<Vec<f32>>,
}

/// The tiny reference models, by name (`make_fixtures.py`, `make_family_fixtures.py`).
pub const TINY: [&str; 5] = [
    "tiny-llama",
    "tiny-gpt2",
    "tiny-llama.gguf",
    "tiny-qwen3",
    "tiny-llama3",
];

pub fn expected(name: &str) -> Expected {
    let path = if name.ends_with(".gguf") {
        format!("{name}.expected.json")
    } else {
        format!("{name}/expected.json")
    };
    serde_json::from_str(&read_text(&path)).unwrap()
}

pub fn load_tiny(name: &str, backend: BackendKind) -> Loaded {
    let device = backend.device();
    let loaded = if name.ends_with(".gguf") {
        load::from_gguf_bytes(read(name), &device)
    } else {
        load::from_hf_files(
            &read_text(&format!("{name}/config.json")),
            read(&format!("{name}/model.safetensors")),
            &read_text(&format!("{name}/tokenizer.json")),
            &device,
        )
    };
    loaded.unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn generator(name: &str, backend: BackendKind, options: CacheOptions) -> Generator {
    Generator::new(load_tiny(name, backend), options).unwrap()
}

/// Greedy, no stop ids: the reference runs ignore EOS.
pub fn greedy(max_new_tokens: usize) -> RunOptions {
    RunOptions {
        max_new_tokens,
        stop_ids: Some(vec![]),
        ..RunOptions::default()
    }
}

/// Greedy generation of `exp`'s prompt, as many tokens as the reference has,
/// from a fresh generator on the default backend (`max_seq_len` 32).
pub fn generate_like_reference(
    name: &str,
    exp: &Expected,
    strategy: kvcache_wasm::CacheStrategy,
    use_cache: bool,
) -> kvcache_wasm::Generation {
    let options = CacheOptions {
        strategy,
        max_seq_len: Some(32),
        use_cache,
        ..CacheOptions::default()
    };
    generator(name, BackendKind::default(), options)
        .generate(&exp.prompt, &greedy(exp.greedy_ids.len()), |_| {})
        .unwrap()
}

/// Largest absolute difference relative to the reference's largest magnitude.
pub fn relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(
        ours.len(),
        reference.len(),
        "logit vectors differ in length"
    );
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    ours.iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

pub fn assert_close(ours: &[f32], reference: &[f32], tolerance: f32, what: &str) {
    let err = relative_error(ours, reference);
    assert!(
        err <= tolerance,
        "{what}: relative error {err:e} exceeds {tolerance:e}"
    );
}

/// The three strategies, the window `window` entries wide without sinks.
pub fn strategies(window: usize) -> [CacheStrategy; 3] {
    [
        CacheStrategy::Concat,
        CacheStrategy::Prealloc,
        CacheStrategy::Window {
            size: window,
            sinks: 0,
        },
    ]
}

/// Cache options for the tiny fixtures: `strategy`, a context of 32, the cache on or off.
pub fn tiny_options(strategy: CacheStrategy, use_cache: bool) -> CacheOptions {
    CacheOptions {
        strategy,
        max_seq_len: Some(32),
        use_cache,
        ..CacheOptions::default()
    }
}

/// Runs `sequence` through `cache` in chunks of the given sizes (the last one
/// repeated until the sequence is consumed), calling `each` with the number of
/// tokens consumed and the logits at the end of every chunk.
pub fn feed_in_chunks(
    model: &Model,
    cache: &mut KvCache,
    sequence: &[u32],
    chunks: &[usize],
    mut each: impl FnMut(usize, Vec<f32>, &KvCache),
) {
    let mut done = 0;
    for i in 0.. {
        if done == sequence.len() {
            break;
        }
        let n = chunks[i.min(chunks.len() - 1)].min(sequence.len() - done);
        let logits = model
            .forward_last(&sequence[done..done + n], cache)
            .unwrap();
        done += n;
        each(done, logits, cache);
    }
}
