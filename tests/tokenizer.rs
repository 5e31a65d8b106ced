//! Tokenizers against independent data: GPT-2's published ids, the
//! tokenizer.json that the `tokenizers` Python package built from GPT-2's
//! files, and the ids that package gives with the real Gemma 3, Llama 3 and
//! Qwen3 tokenizers (`tests/fixtures/tokenizer_reference.py`), which we must
//! reproduce from their tokenizer.json, from the real Gemma 3 GGUF's
//! SentencePiece metadata, and from the byte-level vocabularies with the
//! `llama-bpe` and `qwen2` pre-tokenizers of a GGUF.

mod common;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use kvcache_wasm::load::GPT2_MERGES;
use kvcache_wasm::tokenizer::{GgufVocab, Tokenizer};
use kvcache_wasm::weights::gguf::GgufFile;

fn gpt2_json() -> Tokenizer {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/gpt2/tokenizer.json"
    ))
    .unwrap();
    Tokenizer::from_json(&json).unwrap()
}

#[test]
fn gpt2_known_ids() {
    let t = Tokenizer::gpt2_from_merges(GPT2_MERGES).unwrap();
    assert_eq!(t.encode("Hello, I am").unwrap(), vec![15496, 11, 314, 716]);
    assert_eq!(t.encode("<|endoftext|>").unwrap(), vec![50256]);
    assert_eq!(t.bos(), None);
    t.check_vocab_fits(50257).unwrap();
    assert!(t.check_vocab_fits(50256).is_err());
}

/// The tokenizer rebuilt from the merges alone (what the wasm embeds) behaves
/// exactly like the full tokenizer.json written by scripts/make_gpt2_tokenizer.py.
#[test]
fn gpt2_from_merges_equals_the_converted_tokenizer_json() {
    let (from_merges, from_json) = (
        Tokenizer::gpt2_from_merges(GPT2_MERGES).unwrap(),
        gpt2_json(),
    );
    let samples = [
        "Hello, I am a language model,",
        "  spaces\tand\nnewlines  ",
        "Numbers 1234567 and 3.14159, café naïve Zürich",
        "日本語のテキスト 🦀🚀 emoji",
        "It's they're we'll I'd <|endoftext|> after",
    ];
    for text in samples {
        let ids = from_json.encode(text).unwrap();
        assert_eq!(from_merges.encode(text).unwrap(), ids, "{text:?}");
        assert_eq!(from_merges.decode(&ids).unwrap(), text);
    }
    for id in 0..50257u32 {
        assert_eq!(
            from_merges.decode(&[id]).unwrap(),
            from_json.decode(&[id]).unwrap(),
            "id {id}"
        );
    }
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    prompt_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Family {
    cases: Vec<Case>,
}

fn expected(family: &str) -> Family {
    let mut all: HashMap<String, Family> =
        serde_json::from_str(&common::read_text("tokenizer-expected.json")).unwrap();
    all.remove(family).unwrap()
}

fn real_tokenizer_json(family: &str) -> String {
    std::fs::read_to_string(common::fetched(&format!(
        "tokenizers/{family}/tokenizer.json"
    )))
    .unwrap()
}

fn assert_reproduces(t: &Tokenizer, family: &str, how: &str) {
    for case in expected(family).cases {
        let what = format!("{family} ({how}) on {:?}", case.text);
        assert_eq!(t.encode(&case.text).unwrap(), case.ids, "{what}");
        // HF puts a BOS in front even of text that starts with one; we do not
        // double it (a chat template writes its own).
        let prompt_ids = match (t.bos(), case.ids.first()) {
            (Some(bos), Some(&first)) if first == bos => case.ids.clone(),
            _ => case.prompt_ids,
        };
        assert_eq!(
            t.encode_prompt(&case.text, true).unwrap(),
            prompt_ids,
            "{what}, as a prompt"
        );
    }
}

#[test]
fn real_tokenizer_jsons_match_the_python_library() {
    for family in ["gemma3", "llama3", "qwen3"] {
        let t = Tokenizer::from_json(&real_tokenizer_json(family)).unwrap();
        assert_reproduces(&t, family, "tokenizer.json");
    }
}

/// Gemma 3's SentencePiece vocabulary as the real GGUF stores it (pieces,
/// scores, types; no merges) gives the ids of its tokenizer.json.
#[test]
fn gemma3_gguf_tokenizer_matches_its_tokenizer_json() {
    let bytes = std::fs::read(common::fetched("gemma-3-270m-q4_k_m.gguf")).unwrap();
    let gguf = GgufFile::from_bytes(bytes).unwrap();
    let t = Tokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(t.bos(), Some(2));
    assert_reproduces(&t, "gemma3", "rebuilt from the GGUF");
    assert_eq!(
        t.decode(&expected("gemma3").cases[16].ids).unwrap(),
        expected("gemma3").cases[16].text,
        "the emoji decode back"
    );
}

/// A byte-level vocabulary (tokens in id order, control tokens marked, merges
/// as `left right`) as a GGUF would list it, taken from a tokenizer.json.
fn byte_level_fields(json: &Value) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let model = &json["model"];
    let mut by_id: Vec<(u32, String, i32)> = model["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| (id.as_u64().unwrap() as u32, t.clone(), 1))
        .collect();
    for added in json["added_tokens"].as_array().unwrap() {
        let id = added["id"].as_u64().unwrap() as u32;
        if by_id.iter().all(|(i, _, _)| *i != id) {
            by_id.push((id, added["content"].as_str().unwrap().to_string(), 3));
        }
    }
    by_id.sort();
    assert!(by_id
        .iter()
        .enumerate()
        .all(|(i, (id, _, _))| i as u32 == *id));
    let merges = model["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            pair => format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
        })
        .collect();
    let (tokens, types) = by_id.into_iter().map(|(_, t, ty)| (t, ty)).unzip();
    (tokens, types, merges)
}

/// llama.cpp's `llama-bpe` and `qwen2` pre-tokenizers over the real Llama 3 and
/// Qwen3 vocabularies give the ids of their tokenizer.json.
#[test]
fn llama_bpe_and_qwen2_pre_tokenizers_match_the_tokenizer_jsons() {
    for (family, pre) in [("llama3", "llama-bpe"), ("qwen3", "qwen2")] {
        let json: Value = serde_json::from_str(&real_tokenizer_json(family)).unwrap();
        let (tokens, types, merges) = byte_level_fields(&json);
        let vocab = GgufVocab {
            model: "gpt2",
            pre: Some(pre),
            tokens: tokens.iter().map(String::as_str).collect(),
            types: Some(types),
            merges: Some(merges.iter().map(String::as_str).collect()),
            ..GgufVocab::default()
        };
        let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
        assert_reproduces(&t, family, pre);
    }
}

#[test]
fn unknown_pre_tokenizers_and_sentencepiece_without_scores_are_refused() {
    let tokens = vec!["<unk>", "a"];
    let vocab = GgufVocab {
        model: "gpt2",
        pre: Some("tekken"),
        tokens: tokens.clone(),
        merges: Some(vec![]),
        ..GgufVocab::default()
    };
    let err = Tokenizer::from_gguf_vocab(&vocab).unwrap_err().to_string();
    assert!(
        err.contains("`tekken`") && err.contains("llama-bpe"),
        "{err}"
    );
    let vocab = GgufVocab {
        model: "llama",
        tokens,
        ..GgufVocab::default()
    };
    let err = Tokenizer::from_gguf_vocab(&vocab).unwrap_err().to_string();
    assert!(err.contains("no scores"), "{err}");
}

/// Deriving a SentencePiece vocabulary's merges looks up both halves of every
/// split of every piece, which took time growing with the square of a piece's
/// length: a crafted piece a megabyte long took minutes. Pieces up to 1024
/// bytes (ten times the longest real one) are accepted; a longer one is
/// refused at once, by its index and length.
#[test]
fn sentencepiece_pieces_past_1024_bytes_are_refused() {
    // "a", "b", then "ab" doubled nine times: 2, 4, ..., 1024 bytes, each the
    // merge of two of the one before.
    let doubled: Vec<String> = (0..10).map(|k| "ab".repeat(1 << k)).collect();
    let mut tokens = vec!["<unk>", "a", "b"];
    tokens.extend(doubled.iter().map(String::as_str));
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
    let vocab = GgufVocab {
        model: "llama",
        tokens: tokens.clone(),
        scores: Some(scores.clone()),
        unk: Some(0),
        add_space_prefix: Some(false),
        ..GgufVocab::default()
    };
    let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert_eq!(doubled[9].len(), 1024);
    assert_eq!(t.encode(&doubled[9]).unwrap(), [12]);
    assert_eq!(t.encode(&"ab".repeat(3)).unwrap(), [4, 3]);

    let long = "a".repeat(1 << 20);
    tokens[11] = &long;
    let err = Tokenizer::from_gguf_vocab(&GgufVocab { tokens, ..vocab })
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "tokenizer: token 11 of this GGUF's SentencePiece vocabulary is 1048576 bytes long; \
         pieces longer than 1024 bytes are refused (real ones stay under 100 bytes), as \
         deriving the merges from them would take time growing with the square of their length"
    );
}
