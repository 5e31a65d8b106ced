//! Text ↔ token ids through the `tokenizers` crate (HF `tokenizer.json`),
//! or a tokenizer rebuilt from GGUF metadata; plus the ChatML template and
//! streaming decode.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::weights::gguf::{GgufFile, MetaValue};

/// SmolLM2's default system prompt, used when a chat has none.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// One past the largest id the tokenizer can produce.
    id_limit: usize,
    /// Prepended to a sequence's first prompt when the model expects it
    /// (Llama 3 does; SmolLM2 and GPT-2 do not).
    bos: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("id_limit", &self.id_limit)
            .finish()
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

impl Tokenizer {
    /// From the text of a Hugging Face `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| tok_err("tokenizer.json could not be read", e))?;
        let id_limit = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        // The post-processor of a tokenizer.json says whether a BOS starts each sequence.
        let bos = inner
            .encode("", true)
            .ok()
            .and_then(|e| e.get_ids().first().copied());
        Ok(Tokenizer {
            inner,
            id_limit,
            bos,
        })
    }

    /// Rebuilds the byte-level BPE tokenizer llama.cpp stores in GGUF metadata
    /// (`tokenizer.ggml.*`), as the equivalent `tokenizer.json`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "GGUF tokenizer model `{model}` is not supported (supported: gpt2, the byte-level BPE)"
            )));
        }
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
        let merges = gguf.get_str_array("tokenizer.ggml.merges")?;
        let types = match gguf.metadata("tokenizer.ggml.token_type") {
            Some(_) => gguf.get_i32_array("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "GGUF has {} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let pre = match gguf.metadata("tokenizer.ggml.pre") {
            Some(_) => gguf.get_str("tokenizer.ggml.pre")?,
            None => "default",
        };
        let json = bpe_tokenizer_json(&tokens, &merges, &types, pre)?;
        let mut tokenizer = Self::from_json(&json.to_string())?;
        let add_bos = matches!(
            gguf.metadata("tokenizer.ggml.add_bos_token"),
            Some(MetaValue::Bool(true))
        );
        tokenizer.bos = match gguf.metadata("tokenizer.ggml.bos_token_id") {
            Some(_) if add_bos => Some(gguf.get_u32("tokenizer.ggml.bos_token_id")?),
            _ => None,
        };
        Ok(tokenizer)
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
        Self::from_json(&bpe_tokenizer_json(&token_refs, &merges, &types, "gpt2")?.to_string())
    }

    /// Fails when the tokenizer can produce ids the model has no embedding for.
    pub fn check_fits(&self, model_vocab: usize) -> Result<()> {
        if self.id_limit > model_vocab {
            return Err(Error::Tokenizer(format!(
                "the tokenizer has ids up to {} but the model's vocabulary has only {model_vocab} entries; they do not belong together",
                self.id_limit - 1
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

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The ChatML prompt instruct models like SmolLM2 were trained on, ending
    /// where the assistant's reply begins.
    pub fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String> {
        if self.token_id("<|im_start|>").is_none() || self.token_id("<|im_end|>").is_none() {
            return Err(Error::invalid(
                "chat needs a model whose tokenizer has ChatML tokens (<|im_start|>, <|im_end|>); this one does not",
            ));
        }
        let system = system.unwrap_or(DEFAULT_SYSTEM_PROMPT);
        Ok(format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        ))
    }
}

/// The pre-tokenizer each `tokenizer.ggml.pre` value stands for.
fn pre_tokenizer(pre: &str) -> Result<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match pre {
        "gpt2" | "default" => Ok(byte_level),
        // llama.cpp's smollm: single digits split first, then GPT-2's byte-level regex.
        "smollm" | "starcoder" | "refact" => Ok(json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        })),
        other => Err(Error::Tokenizer(format!(
            "GGUF pre-tokenizer `{other}` is not supported (supported: smollm, gpt2)"
        ))),
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

fn bpe_tokenizer_json(tokens: &[&str], merges: &[&str], types: &[i32], pre: &str) -> Result<Value> {
    const CONTROL: i32 = 3;
    const USER_DEFINED: i32 = 4;
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.to_string(), json!(id)))
        .collect();
    let added: Vec<Value> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == CONTROL || ty == USER_DEFINED)
        .map(|(id, (t, &ty))| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": ty == CONTROL})
        })
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }
    }))
}

/// Turns generated ids into text piece by piece. A character split across
/// byte-level tokens is held back until it is complete, so streamed pieces
/// concatenate to exactly the decoded whole.
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// The new text that `id` completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}')
            || text.len() <= self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let piece = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(piece)
    }

    /// What is left once generation ends (an incomplete character, if any).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let text = tokenizer.decode(&self.ids)?;
        let piece = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        Ok(piece)
    }
}
