//! The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata,
//! rebuilt as a `tokenizers` BPE model the way Hugging Face's converters build
//! the matching `tokenizer.json`:
//!
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE from the stored tokens and
//!   merges; `tokenizer.ggml.pre` names the pre-tokenizer, whose split regex
//!   llama.cpp compiles in rather than storing (`smollm`, `gpt2`, `llama-bpe`,
//!   `qwen2`).
//! - `tokenizer.ggml.model = llama`: SentencePiece BPE (Gemma, Llama 2,
//!   TinyLlama). The file keeps pieces, scores and token types but no merges;
//!   SentencePiece merges the adjacent pair whose joined piece scores highest,
//!   which is BPE with merges ranked by that score. The merges are derived as
//!   transformers' `convert_slow_tokenizer.generate_merges` derives them, so the
//!   result equals the model's own `tokenizer.json`.

use std::cmp::Ordering;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, NormalizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::weights::gguf::{GgufFile, MetaValue};

/// SentencePiece's token types, as GGUF stores them in `tokenizer.ggml.token_type`.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// SentencePiece's word-boundary mark, standing for a space.
const METASPACE: &str = "\u{2581}";

/// The longest SentencePiece piece accepted, in bytes. Deriving the merges
/// looks up both halves of every split of every piece, so a piece of `n` bytes
/// costs about `n²`: a crafted piece of 1 MB took 90 s, one of 10 MB would take
/// hours. Real pieces are far shorter: Gemma 3's longest is 93 bytes (31 `▁`),
/// Llama 2's 48.
const MAX_PIECE_BYTES: usize = 1024;

/// llama.cpp's `llama-bpe` (Llama 3) split regex; `(?i:…)` spelled out as llama.cpp has it.
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `qwen2` split regex: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.*` fields of a GGUF file that describe its tokenizer.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab<'a> {
    /// `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: &'a str,
    /// The pre-tokenizer's name, for `gpt2`.
    pub pre: Option<&'a str>,
    pub tokens: Vec<&'a str>,
    /// SentencePiece token types (1 normal, 3 control, 4 user-defined, 6 byte); all normal if absent.
    pub types: Option<Vec<i32>>,
    /// SentencePiece piece scores, for `llama`.
    pub scores: Option<Vec<f32>>,
    /// `"left right"` merges, for `gpt2`.
    pub merges: Option<Vec<&'a str>>,
    pub bos: Option<u32>,
    pub add_bos: Option<bool>,
    pub unk: Option<u32>,
    pub add_space_prefix: Option<bool>,
}

impl<'a> GgufVocab<'a> {
    /// Reads the fields from `gguf`'s metadata.
    pub fn read(gguf: &'a GgufFile) -> Result<Self> {
        let present = |key: &str| gguf.metadata(key).is_some();
        let opt_u32 = |key: &str| present(key).then(|| gguf.get_u32(key)).transpose();
        let flag = |key: &str| match gguf.metadata(key) {
            Some(MetaValue::Bool(b)) => Some(*b),
            _ => None,
        };
        Ok(GgufVocab {
            model: gguf.get_str("tokenizer.ggml.model")?,
            pre: present("tokenizer.ggml.pre")
                .then(|| gguf.get_str("tokenizer.ggml.pre"))
                .transpose()?,
            tokens: gguf.get_str_array("tokenizer.ggml.tokens")?,
            types: present("tokenizer.ggml.token_type")
                .then(|| gguf.get_i32_array("tokenizer.ggml.token_type"))
                .transpose()?,
            scores: present("tokenizer.ggml.scores")
                .then(|| gguf.get_f32_array("tokenizer.ggml.scores"))
                .transpose()?,
            merges: present("tokenizer.ggml.merges")
                .then(|| gguf.get_str_array("tokenizer.ggml.merges"))
                .transpose()?,
            bos: opt_u32("tokenizer.ggml.bos_token_id")?,
            add_bos: flag("tokenizer.ggml.add_bos_token"),
            unk: opt_u32("tokenizer.ggml.unknown_token_id")?,
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
        })
    }

    /// The tokenizer these fields describe, and the BOS id to start each
    /// sequence with, if the file asks for one.
    pub(super) fn rebuild(&self) -> Result<(tokenizers::Tokenizer, Option<u32>)> {
        let n = self.tokens.len();
        let types = self.types.clone().unwrap_or_else(|| vec![NORMAL; n]);
        check_len("token types", types.len(), n)?;
        let tokenizer = match self.model {
            "gpt2" => {
                let merges = self.merges.as_ref().ok_or_else(|| {
                    err("this GGUF's byte-level BPE vocabulary (tokenizer.ggml.model = gpt2) has no merges (tokenizer.ggml.merges)")
                })?;
                byte_level_bpe(&self.tokens, merges, &types, self.pre.unwrap_or("default"))?
            }
            "llama" => {
                let scores = self.scores.as_ref().ok_or_else(|| {
                    err("this GGUF's SentencePiece vocabulary (tokenizer.ggml.model = llama) has no scores (tokenizer.ggml.scores), so its merges cannot be rebuilt")
                })?;
                check_len("scores", scores.len(), n)?;
                // llama.cpp's default for SentencePiece vocabularies is to add the space prefix.
                let add_space_prefix = self.add_space_prefix.unwrap_or(true);
                sentencepiece_bpe(&self.tokens, scores, &types, self.unk, add_space_prefix)?
            }
            other => {
                return Err(err(format!(
                    "GGUF tokenizer model `{other}` is not supported (supported: gpt2, the byte-level BPE; llama, SentencePiece)"
                )))
            }
        };
        // llama.cpp adds BOS for SentencePiece vocabularies unless told otherwise.
        let add_bos = self.add_bos.unwrap_or(self.model == "llama");
        if let Some(bos) = self.bos.filter(|&id| id as usize >= n) {
            return Err(err(format!(
                "the BOS id {bos} is not in the vocabulary of {n} tokens"
            )));
        }
        Ok((tokenizer, self.bos.filter(|_| add_bos)))
    }
}

fn check_len(what: &str, len: usize, tokens: usize) -> Result<()> {
    if len == tokens {
        return Ok(());
    }
    Err(err(format!("GGUF has {tokens} tokens but {len} {what}")))
}

fn err(message: impl Into<String>) -> Error {
    Error::Tokenizer(message.into())
}

fn tok_err(context: &str) -> impl FnOnce(tokenizers::Error) -> Error + '_ {
    move |e| err(format!("{context}: {e}"))
}

/// The pre-tokenizer each `tokenizer.ggml.pre` value of a byte-level BPE stands
/// for, the normalizer it needs, and whether whole words in the vocabulary skip
/// the merges (Llama 3's `ignore_merges`).
fn byte_level_pre(pre: &str) -> Result<(PreTokenizerWrapper, Option<NormalizerWrapper>, bool)> {
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tok_err("the pre-tokenizer's regex"))?;
        Ok(PreSequence::new(vec![split.into(), byte_level(false)]).into())
    };
    match pre {
        "gpt2" | "default" => Ok((byte_level(true), None, false)),
        // llama.cpp's smollm: single digits split first, then GPT-2's byte-level regex.
        "smollm" | "starcoder" | "refact" => Ok((
            PreSequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
            None,
            false,
        )),
        "llama-bpe" | "llama3" | "llama-v3" => Ok((split(LLAMA3_SPLIT)?, None, true)),
        // Qwen's tokenizer.json normalizes to NFC first; llama.cpp does not, which
        // only matters for text in decomposed form.
        "qwen2" | "deepseek-r1-qwen" => Ok((split(QWEN2_SPLIT)?, Some(NFC.into()), false)),
        other => Err(err(format!(
            "GGUF pre-tokenizer `{other}` is not supported (supported: gpt2, smollm, llama-bpe, qwen2)"
        ))),
    }
}

/// A byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen) from its tokens and merges.
pub(super) fn byte_level_bpe(
    tokens: &[&str],
    merges: &[&str],
    types: &[i32],
    pre: &str,
) -> Result<tokenizers::Tokenizer> {
    let (pre_tokenizer, normalizer, ignore_merges) = byte_level_pre(pre)?;
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| err(format!("merge `{m}` is not two symbols")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens.iter().map(|t| t.to_string())), merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(tok_err("the BPE model could not be built"))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(normalizer)
        .map_err(tok_err("the normalizer"))?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevel::new(true, true, true)));
    add_listed_tokens(&mut tokenizer, tokens.iter().map(|t| t.to_string()), types)?;
    Ok(tokenizer)
}

/// A SentencePiece BPE vocabulary as the equivalent `tokenizers` BPE: spaces
/// become `▁` (and one is put in front when `add_space_prefix`), pieces missing
/// from the vocabulary fall back to `<0xXX>` byte tokens, and control and
/// user-defined pieces are matched whole in the raw text.
fn sentencepiece_bpe(
    tokens: &[&str],
    scores: &[f32],
    types: &[i32],
    unk: Option<u32>,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer> {
    if let Some((i, t)) = tokens
        .iter()
        .enumerate()
        .find(|(_, t)| t.len() > MAX_PIECE_BYTES)
    {
        return Err(err(format!(
            "token {i} of this GGUF's SentencePiece vocabulary is {} bytes long; pieces longer than \
             {MAX_PIECE_BYTES} bytes are refused (real ones stay under 100 bytes), as deriving \
             the merges from them would take time growing with the square of their length",
            t.len()
        )));
    }
    // llama.cpp's converter writes user-defined pieces with real spaces; the
    // SentencePiece model and tokenizer.json keep them with `▁`.
    let pieces: Vec<String> = tokens
        .iter()
        .zip(types)
        .map(|(t, &ty)| match ty {
            USER_DEFINED => t.replace(' ', METASPACE),
            _ => t.to_string(),
        })
        .collect();
    let vocab = vocab(pieces.iter().cloned());
    let merges = sentencepiece_merges(&pieces, scores, types, &vocab);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        let unk = pieces.get(unk as usize).ok_or_else(|| {
            err(format!(
                "the unknown-token id {unk} is not in the vocabulary"
            ))
        })?;
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder
        .build()
        .map_err(tok_err("the BPE model could not be built"))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    let replace = Replace::new(" ", METASPACE).map_err(tok_err("the normalizer"))?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new(METASPACE.into()).into(), replace.into()]).into()
    } else {
        replace.into()
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(tok_err("the normalizer"))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        DecoderWrapper::Replace(Replace::new(METASPACE, " ").map_err(tok_err("the decoder"))?),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    add_listed_tokens(&mut tokenizer, pieces.into_iter(), types)?;
    Ok(tokenizer)
}

/// transformers' `generate_merges`: every split of every piece into two pieces
/// of the vocabulary, ranked by the joined piece's score, then by the lengths
/// of its left and right parts (all descending; ties keep vocabulary order).
/// Control and user-defined pieces score 0 in a SentencePiece model, above
/// every learned piece; llama.cpp's converter stores -1000 for them instead.
fn sentencepiece_merges(
    pieces: &[String],
    scores: &[f32],
    types: &[i32],
    ids: &Vocab,
) -> Vec<(String, String)> {
    struct Merge {
        score: f32,
        left: u32,
        right: u32,
        left_len: usize,
        right_len: usize,
    }
    let mut merges = Vec::new();
    for (piece, (&score, &ty)) in pieces.iter().zip(scores.iter().zip(types)) {
        let score = if matches!(ty, CONTROL | USER_DEFINED) {
            0.0
        } else {
            score
        };
        let start = merges.len();
        let chars = piece.chars().count();
        // Every split into two non-empty parts: the first `left_len`
        // characters, ending at byte `cut`, then the rest.
        for (left_len, (cut, _)) in piece.char_indices().enumerate().skip(1) {
            let (l, r) = piece.split_at(cut);
            let Some(&left) = ids.get(l) else { continue };
            if let Some(&right) = ids.get(r) {
                merges.push(Merge {
                    score,
                    left,
                    right,
                    left_len,
                    right_len: chars - left_len,
                });
            }
        }
        merges[start..].sort_by_key(|m| (m.left, m.right));
    }
    // A stable sort, descending on (score, left length, right length).
    merges.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(b.left_len.cmp(&a.left_len))
            .then(b.right_len.cmp(&a.right_len))
    });
    merges
        .into_iter()
        .map(|m| {
            (
                pieces[m.left as usize].clone(),
                pieces[m.right as usize].clone(),
            )
        })
        .collect()
}

/// Token → id, the first occurrence of a duplicated token keeping its id.
fn vocab(tokens: impl Iterator<Item = String>) -> Vocab {
    let mut vocab = Vocab::default();
    for (id, token) in tokens.enumerate() {
        vocab.entry(token).or_insert(id as u32);
    }
    vocab
}

/// Control tokens become special added tokens and user-defined ones plain
/// added tokens: both are matched whole in the text before the model runs.
fn add_listed_tokens(
    tokenizer: &mut tokenizers::Tokenizer,
    tokens: impl Iterator<Item = String>,
    types: &[i32],
) -> Result<()> {
    let (mut control, mut user) = (Vec::new(), Vec::new());
    for (token, &ty) in tokens.zip(types) {
        match ty {
            CONTROL => control.push(AddedToken::from(token, true).normalized(false)),
            USER_DEFINED => user.push(AddedToken::from(token, false).normalized(false)),
            _ => {}
        }
    }
    tokenizer
        .add_special_tokens(control)
        .map_err(tok_err("the control tokens"))?;
    tokenizer
        .add_tokens(user)
        .map_err(tok_err("the user-defined tokens"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_rank_by_score_then_by_longer_left_part() {
        let pieces = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let merges = sentencepiece_merges(
            &pieces,
            &scores,
            &[NORMAL; 6],
            &vocab(pieces.iter().cloned()),
        );
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            merges,
            vec![
                pair("b", "c"),
                pair("a", "b"),
                pair("ab", "c"),
                pair("a", "bc")
            ]
        );
    }
}
