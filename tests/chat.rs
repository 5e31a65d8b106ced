//! Chat prompts against the real templates rendered by Jinja2
//! (`tests/fixtures/chat_reference.py`): SmolLM2's from its GGUF, Qwen3's,
//! Gemma 3's and Llama 3's from their `tokenizer_config.json` (fetched by
//! `scripts/fetch-model.sh`). We recognise each template's family and write
//! the turns ourselves; the text must be the template's to the character.

mod common;

use std::collections::HashMap;

use serde::Deserialize;

use kvcache_wasm::tokenizer::{ChatFamily, ChatMessage, ChatTemplate, NoChat, Role};
use kvcache_wasm::weights::gguf::GgufFile;

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct Case {
    messages: Vec<Message>,
    text: String,
}

#[derive(Deserialize)]
struct Expected {
    bos_token: Option<String>,
    cases: Vec<Case>,
}

fn template_source(model: &str) -> String {
    if model == "smollm2" {
        let gguf = GgufFile::from_bytes(
            std::fs::read(common::fetched("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap(),
        )
        .unwrap();
        return gguf.get_str("tokenizer.chat_template").unwrap().to_string();
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fetched(&format!(
            "tokenizers/{model}/tokenizer_config.json"
        )))
        .unwrap(),
    )
    .unwrap();
    config["chat_template"].as_str().unwrap().to_string()
}

fn messages(case: &Case) -> Vec<ChatMessage<'_>> {
    case.messages
        .iter()
        .map(|m| ChatMessage {
            role: match m.role.as_str() {
                "system" => Role::System,
                "user" => Role::User,
                _ => Role::Assistant,
            },
            content: &m.content,
        })
        .collect()
}

#[test]
fn real_templates_are_written_exactly() {
    let mut all: HashMap<String, Expected> =
        serde_json::from_str(&common::read_text("chat-expected.json")).unwrap();
    for (model, family) in [
        ("smollm2", ChatFamily::ChatMl),
        ("qwen3", ChatFamily::ChatMl),
        ("gemma3", ChatFamily::Gemma),
        ("llama3", ChatFamily::Llama3),
    ] {
        let expected = all.remove(model).unwrap();
        let template =
            ChatTemplate::detect(&template_source(model), expected.bos_token.as_deref()).unwrap();
        assert_eq!(template.family(), family, "{model}");
        for case in &expected.cases {
            let messages = messages(case);
            assert_eq!(template.render(&messages, true), case.text, "{model}");
            // A conversation ending in a user turn after a reply is the
            // conversation before it, the reply, its end-of-turn token and
            // `next_turn`: what a chat that keeps its cache appends.
            let n = messages.len();
            if n >= 3 && messages[n - 2].role == Role::Assistant {
                let (reply, user) = (messages[n - 2], messages[n - 1]);
                let before = template.render(&messages[..n - 2], true);
                let continued = format!(
                    "{before}{}{}{}",
                    reply.content,
                    family.end_of_turn(),
                    template.next_turn(user.content)
                );
                assert_eq!(continued, case.text, "{model}: one more turn");
            }
        }
    }
}

#[test]
fn a_model_without_a_template_cannot_chat() {
    let gguf =
        GgufFile::from_bytes(std::fs::read(common::fetched("gemma-3-270m-q4_k_m.gguf")).unwrap())
            .unwrap();
    let t = kvcache_wasm::tokenizer::Tokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(t.chat_template().unwrap_err(), &NoChat::Missing);
    let err = t.chat_prompt("Hi", None).unwrap_err().to_string();
    assert!(
        err.contains("no chat template") && err.contains("Gemma"),
        "{err}"
    );
}
