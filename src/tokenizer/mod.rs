//! Text ↔ token ids through the `tokenizers` crate: a Hugging Face
//! `tokenizer.json`, or the tokenizer a GGUF file describes, rebuilt from its
//! metadata ([`gguf`]); the model's chat template ([`chat`]); and streaming
//! decode ([`stream`]).

mod chat;
mod gguf;
mod stream;

pub use chat::{ChatFamily, ChatMessage, ChatTemplate, NoChat, Role};
pub use gguf::GgufVocab;
pub use stream::TextStream;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// One past the largest id the tokenizer can produce.
    id_limit: usize,
    /// Bytes of the longest token's text (at least 1): no token stands for
    /// more text than this, which bounds how many tokens a text needs.
    longest_token: usize,
    /// Prepended to a sequence's first prompt when the model expects it
    /// (Gemma's and Llama 3's GGUFs do; SmolLM2 and GPT-2 do not).
    bos: Option<u32>,
    /// The model's chat template, or why it has none we can use.
    chat: std::result::Result<ChatTemplate, NoChat>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("id_limit", &self.id_limit)
            .field("bos", &self.bos)
            .field("chat", &self.chat)
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

/// What the `tokenizers` crate cannot be handed safely: it panics (a crash in
/// wasm) on text that is not JSON at some places (a syntax error inside
/// `"decoder"`), and on a malformed `Precompiled` normalizer, whose
/// SentencePiece character map it trusts. So the text must parse as JSON, and
/// `Precompiled` normalizers (which none of our models use) are refused.
fn check_json(json: &str, source: &str) -> Result<()> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Tokenizer(format!("{source} is not valid JSON: {e}")))?;
    fn precompiled(normalizer: &serde_json::Value) -> bool {
        normalizer.get("type").and_then(serde_json::Value::as_str) == Some("Precompiled")
            || normalizer
                .get("normalizers")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|inner| inner.iter().any(precompiled))
    }
    if value.get("normalizer").is_some_and(precompiled) {
        return Err(Error::Tokenizer(format!(
            "{source}: the `Precompiled` normalizer (a SentencePiece character map) is not supported"
        )));
    }
    Ok(())
}

impl Tokenizer {
    fn new(inner: tokenizers::Tokenizer, bos: Option<u32>) -> Self {
        let vocab = inner.get_vocab(true);
        let id_limit = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let longest_token = vocab.keys().map(String::len).max().unwrap_or(0).max(1);
        Tokenizer {
            inner,
            id_limit,
            longest_token,
            bos,
            chat: Err(NoChat::Missing),
        }
    }

    /// From the text of a Hugging Face `tokenizer.json`. Its chat template,
    /// if any, is in `tokenizer_config.json`: see [`Self::set_chat_template_from_config`].
    pub fn from_json(json: &str) -> Result<Self> {
        check_json(json, "tokenizer.json")?;
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| tok_err("tokenizer.json could not be read", e))?;
        // The post-processor of a tokenizer.json says whether a BOS starts each sequence.
        let bos = inner
            .encode("", true)
            .ok()
            .and_then(|e| e.get_ids().first().copied());
        Ok(Self::new(inner, bos))
    }

    /// Rebuilds the tokenizer llama.cpp stores in GGUF metadata
    /// (`tokenizer.ggml.*`: byte-level BPE or SentencePiece), with the chat
    /// template of `tokenizer.chat_template`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let vocab = GgufVocab::read(file)?;
        let mut tokenizer = Self::from_gguf_vocab(&vocab)?;
        if file.metadata("tokenizer.chat_template").is_some() {
            let bos = vocab.bos.and_then(|id| tokenizer.inner.id_to_token(id));
            tokenizer.chat =
                ChatTemplate::detect(file.get_str("tokenizer.chat_template")?, bos.as_deref());
        }
        Ok(tokenizer)
    }

    /// The tokenizer that GGUF tokenizer fields describe.
    pub fn from_gguf_vocab(vocab: &GgufVocab) -> Result<Self> {
        let (inner, bos) = vocab.rebuild()?;
        Ok(Self::new(inner, bos))
    }

    /// GPT-2's tokenizer from its merges file (`vocab.bpe`) alone: GPT-2's
    /// vocabulary is the 256 byte symbols in `bytes_to_unicode` order, then one
    /// token per merge in merge order, then `<|endoftext|>`. Embedding only the
    /// merges keeps 350 KB (gzipped) out of the wasm binary.
    pub fn gpt2_from_merges(merges_file: &str) -> Result<Self> {
        let merges: Vec<&str> = merges_file
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("#version"))
            .collect();
        let mut tokens: Vec<String> = byte_symbols().into_iter().map(String::from).collect();
        for merge in &merges {
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| Error::Tokenizer(format!("merge `{merge}` is not two symbols")))?;
            tokens.push(format!("{left}{right}"));
        }
        tokens.push("<|endoftext|>".into());
        let mut types = vec![1; tokens.len()];
        *types.last_mut().unwrap() = 3;
        let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let inner = gguf::byte_level_bpe(&token_refs, &merges, &types, "gpt2")?;
        Ok(Self::new(inner, None))
    }

    /// A Hugging Face tokenizer: `tokenizer.json`, with the chat template of
    /// `tokenizer_config.json` when the caller has that file.
    pub fn from_hf(tokenizer_json: &str, tokenizer_config_json: Option<&str>) -> Result<Self> {
        let mut tokenizer = Self::from_json(tokenizer_json)?;
        if let Some(config) = tokenizer_config_json {
            tokenizer.set_chat_template_from_config(config)?;
        }
        Ok(tokenizer)
    }

    /// Takes the chat template from the text of a Hugging Face
    /// `tokenizer_config.json` (`chat_template`, a string or a list of named
    /// templates of which `default` is used; `bos_token`).
    pub fn set_chat_template_from_config(&mut self, config_json: &str) -> Result<()> {
        let config: Value = serde_json::from_str(config_json)
            .map_err(|e| tok_err("tokenizer_config.json is not valid JSON", e))?;
        let template = match config.get("chat_template") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str),
            _ => None,
        };
        let bos = match config.get("bos_token") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Object(t)) => t.get("content").and_then(Value::as_str),
            _ => None,
        };
        self.chat = match template {
            Some(template) => ChatTemplate::detect(template, bos),
            None => Err(NoChat::Missing),
        };
        Ok(())
    }

    /// One past the largest id the tokenizer knows: a model whose vocabulary
    /// is padded past it (Qwen3's 151936 against 151669) must not pick those ids.
    pub fn id_limit(&self) -> usize {
        self.id_limit
    }

    /// Fails when the tokenizer can produce ids the model has no embedding for.
    pub fn check_vocab_fits(&self, model_vocab: usize) -> Result<()> {
        if self.id_limit > model_vocab {
            return Err(Error::Tokenizer(format!(
                "the tokenizer has ids up to {} but the model's vocabulary has only {model_vocab} entries; they do not belong together",
                self.id_limit - 1
            )));
        }
        Ok(())
    }

    /// Fails, without tokenizing, when `text` cannot fit in `tokens` tokens:
    /// a token stands for at most the longest token's bytes, so a longer text
    /// needs more. Keeps a huge prompt from being tokenized in full only to be
    /// refused afterwards.
    pub fn check_text_fits(&self, text: &str, tokens: usize) -> Result<()> {
        let most = (tokens as u64).saturating_mul(self.longest_token as u64);
        if text.len() as u64 > most {
            return Err(Error::ContextFull(format!(
                "the prompt is {} bytes, more than {tokens} tokens can hold (at most {most} bytes: {} per token at most with this tokenizer)",
                text.len(),
                self.longest_token
            )));
        }
        Ok(())
    }

    /// Token ids of `text`, with no BOS or other special tokens added
    /// (special tokens written in the text, like `<|im_start|>`, are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err("encoding failed", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included as text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.id_limit) {
            return Err(Error::invalid(format!(
                "token id {bad} is not in the tokenizer's vocabulary"
            )));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err("decoding failed", e))
    }

    /// The ids of a prompt: [`encode`](Self::encode), with the model's BOS in
    /// front when the prompt starts a sequence and the model expects one.
    pub fn encode_prompt(&self, text: &str, starts_sequence: bool) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if let (Some(bos), true) = (self.bos, starts_sequence) {
            if !ids.is_empty() && ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// The BOS id prepended to a sequence's first prompt, if the model wants one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The id of a token written out, such as a chat template's end-of-turn marker.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The model's chat template, or why it cannot chat.
    pub fn chat_template(&self) -> std::result::Result<&ChatTemplate, &NoChat> {
        self.chat.as_ref()
    }

    /// A one-message chat in the model's template, ending where the
    /// assistant's reply begins; `system` replaces the template's default
    /// system message, if it has one.
    pub fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String> {
        let template = self.chat.as_ref().map_err(NoChat::error)?;
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(ChatMessage {
                role: Role::System,
                content: system,
            });
        }
        messages.push(ChatMessage {
            role: Role::User,
            content: user,
        });
        Ok(template.render(&messages, true))
    }
}

/// GPT-2's printable stand-ins for the 256 bytes, in its vocabulary's order:
/// printable bytes keep their own character, the others map past U+00FF.
fn byte_symbols() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let kept = (0..256)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32);
    let moved = (256..)
        .take((0..256).filter(|&b| !printable(b)).count())
        .filter_map(char::from_u32);
    kept.chain(moved).collect()
}
