//! Hostile input never panics (in wasm a panic crashes the engine): every
//! truncation of a tokenizer.json, tokenizers the `tokenizers` crate would
//! panic on, GGUF headers with absurd sizes or non-finite numbers, configs
//! with impossible numbers, prompts far past the context. Each gives a clear
//! error naming what is wrong, and nothing is allocated from a size before it
//! is checked.

mod common;

use common::*;
use kvcache_wasm::load;
use kvcache_wasm::tokenizer::Tokenizer;
use kvcache_wasm::{BackendKind, CacheOptions, Generator, RunOptions};

fn device() -> burn::tensor::Device {
    BackendKind::default().device()
}

fn load_gguf_err(bytes: Vec<u8>) -> String {
    match load::from_gguf_bytes(bytes, &device()) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e.to_string(),
    }
}

fn load_hf_err(config: &str) -> String {
    let weights = read("tiny-llama/model.safetensors");
    let tokenizer = read_text("tiny-llama/tokenizer.json");
    match load::from_hf_files(config, weights, &tokenizer, &device()) {
        Ok(_) => panic!("loading should have failed: {config}"),
        Err(e) => e.to_string(),
    }
}

/// Where the metadata key `key` (a length-prefixed string) ends in a GGUF.
fn key_end(bytes: &[u8], key: &str) -> usize {
    let mut pattern = (key.len() as u64).to_le_bytes().to_vec();
    pattern.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .unwrap_or_else(|| panic!("{key} is not in the fixture"));
    at + pattern.len()
}

/// The GGUF fixture with the 4-byte value of metadata `key` (a u32 or f32) replaced.
fn gguf_with(key: &str, value: [u8; 4]) -> Vec<u8> {
    let mut bytes = read("tiny-llama.gguf");
    let at = key_end(&bytes, key);
    // The key, then the value's type (u32), then the value.
    let value_at = at + 4;
    bytes[value_at..value_at + 4].copy_from_slice(&value);
    bytes
}

#[test]
fn every_truncation_of_a_tokenizer_json_is_an_error() {
    for name in ["tiny-llama/tokenizer.json", "tiny-tokenizer.json"] {
        let json = read_text(name);
        for end in (0..json.len()).filter(|&end| json.is_char_boundary(end)) {
            let err = Tokenizer::from_json(&json[..end])
                .map(|_| ())
                .expect_err("a truncated tokenizer.json was accepted");
            assert!(
                err.to_string().contains("tokenizer.json is not valid JSON"),
                "{name} cut at {end}: {err}"
            );
        }
    }
}

#[test]
fn tokenizers_the_tokenizers_crate_panics_on_are_refused() {
    let json = read_text("tiny-llama/tokenizer.json");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // A syntax error inside "decoder" made the crate panic ("Helper").
    assert!(
        value["decoder"].is_object(),
        "the fixture has a decoder to break"
    );
    let at = json.find("\"decoder\"").unwrap();
    let comma = at + json[at..].find(',').unwrap();
    let broken = format!("{}{}", &json[..comma], &json[comma + 1..]);
    let err = Tokenizer::from_json(&broken).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json is not valid JSON"), "{err}");
    // A `Precompiled` normalizer whose character map the crate trusts.
    for normalizer in [
        serde_json::json!({"type": "Precompiled", "precompiled_charsmap": 5}),
        serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "NFC"}, {"type": "Precompiled", "precompiled_charsmap": "AAAA"}
        ]}),
    ] {
        let mut edited = value.clone();
        edited["normalizer"] = normalizer;
        let err = Tokenizer::from_json(&edited.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "the `Precompiled` normalizer (a SentencePiece character map) is not supported"
            ),
            "{err}"
        );
    }
}

#[test]
fn a_gguf_tokenizer_error_does_not_mention_tokenizer_json() {
    // The first merge of the GGUF's own tokenizer made to join two symbols whose join is
    // not in the vocabulary: the rebuilt tokenizer is refused, and the message is about the
    // GGUF's vocabulary, not a tokenizer.json.
    let mut edited = read("tiny-llama.gguf");
    // After the key: the type (u32), the element type (u32), the count (u64), then the first
    // string's length (u64) and bytes.
    let first = key_end(&edited, "tokenizer.ggml.merges") + 4 + 4 + 8 + 8;
    edited[first] = if edited[first] == b'Z' { b'Y' } else { b'Z' };
    let err = load_gguf_err(edited);
    assert!(
        err.contains("tokenizer: the BPE model could not be built"),
        "{err}"
    );
    assert!(!err.contains("tokenizer.json"), "{err}");
}

#[test]
fn absurd_sizes_in_a_gguf_header_are_refused_before_allocating() {
    for (key, value, says) in [
        (
            "llama.attention.head_count",
            0xFFFF_FFF0u32,
            "num_heads 4294967280 is larger than any model's",
        ),
        (
            "llama.attention.head_count",
            1 << 24,
            "num_heads 16777216 is larger than any model's",
        ),
        (
            "llama.rope.dimension_count",
            0xFFFF_FFF0,
            "head_dim 4294967280 is larger than any model's",
        ),
        (
            "llama.embedding_length",
            1 << 30,
            "hidden_size 1073741824 is larger than any model's",
        ),
        (
            "llama.block_count",
            1 << 20,
            "num_layers 1048576 is larger than any model's",
        ),
        (
            "llama.context_length",
            u32::MAX,
            "max_position_embeddings 4294967295 is larger than any model's",
        ),
        (
            "llama.vocab_size",
            u32::MAX,
            "vocab_size 4294967295 is larger than any model's",
        ),
    ] {
        let err = load_gguf_err(gguf_with(key, value.to_le_bytes()));
        assert!(err.contains(says), "{key} = {value}: {err}");
    }
}

#[test]
fn non_finite_numbers_in_a_gguf_are_refused() {
    for (key, value, says) in [
        (
            "llama.rope.freq_base",
            f32::NAN,
            "rope_theta must be a finite number > 0, got NaN",
        ),
        (
            "llama.rope.freq_base",
            f32::INFINITY,
            "rope_theta must be a finite number > 0, got inf",
        ),
        (
            "llama.rope.freq_base",
            0.0,
            "rope_theta must be a finite number > 0, got 0",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            f32::NAN,
            "the norm epsilon must be a finite number between 0 and 1",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            -1.0,
            "the norm epsilon must be a finite number between 0 and 1 (exclusive), got -1",
        ),
    ] {
        let err = load_gguf_err(gguf_with(key, value.to_le_bytes()));
        assert!(err.contains(says), "{key} = {value}: {err}");
    }
}

#[test]
fn impossible_numbers_in_a_config_json_are_refused() {
    let config: serde_json::Value =
        serde_json::from_str(&read_text("tiny-llama/config.json")).unwrap();
    for (key, value, says) in [
        (
            "rope_theta",
            serde_json::json!(0.0),
            "rope_theta must be a finite number > 0, got 0",
        ),
        (
            "rope_theta",
            serde_json::json!(-1.0),
            "rope_theta must be a finite number > 0, got -1",
        ),
        (
            "rms_norm_eps",
            serde_json::json!(-1.0),
            "the norm epsilon must be a finite number between 0 and 1 (exclusive), got -1",
        ),
        (
            "rms_norm_eps",
            serde_json::json!(1e300),
            "the norm epsilon must be a finite number between 0 and 1 (exclusive), got 1e300",
        ),
        (
            "num_attention_heads",
            serde_json::json!(1u64 << 24),
            "is larger than any model's",
        ),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "linear", "factor": -2.0}),
            "rope_scaling.factor must be a finite number > 0, got -2",
        ),
    ] {
        let mut edited = config.clone();
        edited[key] = value.clone();
        let err = load_hf_err(&edited.to_string());
        assert!(err.contains(says), "{key} = {value}: {err}");
    }
}

#[test]
fn a_huge_prompt_is_refused_before_it_is_tokenized() {
    let mut g = Generator::new(
        load_tiny("tiny-llama", BackendKind::default()),
        CacheOptions::default(),
    )
    .unwrap();
    let huge = "Once upon a time ".repeat(2_500_000); // 42.5 MB
    let err = g
        .generate(&huge, &RunOptions::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("context full: the prompt is 42500000 bytes, more than 128 tokens can hold"),
        "{err}"
    );
    let exp = expected("tiny-llama");
    let options = RunOptions {
        max_new_tokens: exp.greedy_ids.len(),
        stop_ids: Some(vec![]),
        ..RunOptions::default()
    };
    assert_eq!(
        g.generate(&exp.prompt, &options, |_| {}).unwrap().ids,
        exp.greedy_ids
    );
}

#[test]
fn gguf_messages_show_binary_key_bytes_escaped() {
    let mut edited = read("tiny-llama.gguf");
    let end = key_end(&edited, "general.name");
    // "general.name" → "general.\u{1}ame", and its value type → 99 (unknown).
    edited[end - 4] = 0x01;
    edited[end..end + 4].copy_from_slice(&99u32.to_le_bytes());
    let err = load_gguf_err(edited);
    assert!(err.contains(r"general.\u{1}ame"), "{err}");
    assert!(!err.contains('\u{1}'), "{err}");
}
