//! Tokenizers against independent data: GPT-2's published ids, and the
//! tokenizer.json that the `tokenizers` Python package built from GPT-2's files.

mod common;

use kvcache_wasm::load::GPT2_MERGES;
use kvcache_wasm::tokenizer::Tokenizer;

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
    assert_eq!(t.token_id("<|endoftext|>"), Some(50256));
    assert_eq!(t.encode("<|endoftext|>").unwrap(), vec![50256]);
    assert_eq!(t.bos(), None);
    t.check_fits(50257).unwrap();
    assert!(t.check_fits(50256).is_err());
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
