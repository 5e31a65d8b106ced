#![allow(dead_code)]

//! What each fuzz target does with one input: hand it to the engine the way a
//! user's file or options would arrive. A returned error is the expected
//! outcome for almost every input; a panic is a bug. Shared by the cargo-fuzz
//! targets (fuzz/fuzz_targets/) and the seeded mutation pass that the test
//! command runs on stable Rust (tests/fuzz.rs), which also reads the seeds.

use kvcache_wasm::config::ModelConfig;
use kvcache_wasm::load;
use kvcache_wasm::tokenizer::Tokenizer;
use kvcache_wasm::weights::safetensors::SafetensorsFile;
use kvcache_wasm::{BackendKind, CacheOptions, Generator, RunOptions};
use kvcache_wasm::{ModelOptions, PrefillOptions};

/// A format: its name, what to do with one input, and its seed inputs (the fixtures).
pub type Format = (&'static str, fn(&[u8]), &'static [&'static [u8]]);

/// Every format.
pub const FORMATS: [Format; 5] = [
    ("gguf", gguf, &[include_bytes!("../tests/fixtures/tiny-llama.gguf")]),
    (
        "safetensors",
        safetensors,
        &[
            include_bytes!("../tests/fixtures/tiny-llama/model.safetensors"),
            include_bytes!("../tests/fixtures/tiny-gpt2/model.safetensors"),
        ],
    ),
    (
        "config_json",
        config_json,
        &[
            include_bytes!("../tests/fixtures/tiny-llama/config.json"),
            include_bytes!("../tests/fixtures/tiny-gpt2/config.json"),
            include_bytes!("../tests/fixtures/llama-3.2-1b-config.json"),
        ],
    ),
    (
        "tokenizer_json",
        tokenizer_json,
        &[
            include_bytes!("../tests/fixtures/tiny-llama/tokenizer.json"),
            include_bytes!("../tests/fixtures/tiny-tokenizer.json"),
        ],
    ),
    (
        "options",
        options,
        &[
            br#"{"cache":"window","window":8,"maxSeqLen":32,"useCache":false,"backend":"ndarray","seed":3}"#,
            br#"{"maxTokens":5,"temperature":0.7,"topK":3,"topP":0.9,"seed":4,"stopIds":[1,2],"chat":true,"systemPrompt":"hi"}"#,
        ],
    ),
];

const LLAMA_CONFIG: &str = include_str!("../tests/fixtures/tiny-llama/config.json");
const LLAMA_TOKENIZER: &str = include_str!("../tests/fixtures/tiny-llama/tokenizer.json");

fn device() -> burn::tensor::Device {
    BackendKind::default().device()
}

/// A model that loaded from fuzzed bytes must also run: two tokens.
fn run(loaded: load::Loaded) {
    if let Ok(mut g) = Generator::new(loaded, CacheOptions::default()) {
        let options = RunOptions {
            max_new_tokens: 2,
            ..RunOptions::default()
        };
        let _ = g.generate("Hello, world", &options, |_| {});
    }
}

/// A whole `.gguf` file: header, metadata, config, tokenizer and weights.
pub fn gguf(data: &[u8]) {
    if let Ok(loaded) = load::from_gguf_bytes(data.to_vec(), &device()) {
        run(loaded);
    }
}

/// A `model.safetensors`: every tensor read, then tiny-llama built from it.
pub fn safetensors(data: &[u8]) {
    if let Ok(file) = SafetensorsFile::from_bytes(data.to_vec()) {
        for name in file.names() {
            let _ = file.tensor(&name);
        }
    }
    if let Ok(loaded) = load::from_hf_files(LLAMA_CONFIG, data.to_vec(), LLAMA_TOKENIZER, &device())
    {
        run(loaded);
    }
}

/// A `config.json`.
pub fn config_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ModelConfig::from_hf_json(text);
    }
}

/// A `tokenizer.json`: built, then used both ways.
pub fn tokenizer_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokenizer) = Tokenizer::from_json(text) {
        if let Ok(ids) = tokenizer.encode("Hello, world! <|im_start|> 123 héllo") {
            let _ = tokenizer.decode(&ids);
        }
        let _ = tokenizer.decode(&[0, 1, 2, u32::MAX]);
    }
}

/// The options of the JS API and the CLI, as JSON: model options and run options.
pub fn options(data: &[u8]) {
    if let Ok(options) = serde_json::from_slice::<ModelOptions>(data) {
        let _ = options.cache_options();
        let _ = options.backend();
    }
    if let Ok(options) = serde_json::from_slice::<PrefillOptions>(data) {
        let _ = options.run_options();
    }
}
