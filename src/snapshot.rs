//! A saved sequence: the tokens, the position and every layer's held cache
//! entries, with the settings they were made under and the model's
//! [fingerprint](crate::fingerprint), so that a generator can be put back
//! exactly where it was ([`crate::Generator::restore`]) — later, or in a new
//! generator of the same model.
//!
//! The bytes ([`CacheSnapshot::to_bytes`]), all integers little-endian:
//!
//! | field | bytes |
//! |---|---|
//! | magic `KVCSNAP\0` | 8 |
//! | format version ([`FORMAT_VERSION`]) | u32 |
//! | model fingerprint | u64 |
//! | strategy: 0 concat, 1 prealloc, 2 window; window size (0 unless window) | u8, u32 |
//! | maxSeqLen; use cache (0 or 1) | u32, u8 |
//! | kvDtype: 0 f32, 1 f16, 2 int8; sinks | u8, u32 |
//! | kv heads; head dim | u32, u32 |
//! | position; token count `t`; `t` token ids | u32, u32, `t` × u32 |
//! | the chat conversation the tokens hold: 0 none; 1 with the template's system prompt; 2 with its own, then the prompt's UTF-8 length `s` and bytes | u8; u32, `s` |
//! | layer count `l` (0 with the cache off); per layer: entries `n`, then keys and values as the cache stores them ([`crate::cache::rows::Rows::to_bytes`]: `n·kv` rows each of f32, f16, or int8 with every row's f16 scales after the numbers) | u32; u32, 2 × `n·kv·row_bytes(dim)` |
//! | checksum: [`crate::fingerprint::hash`] of every byte before it | u64 |
//!
//! Reading checks every length against the bytes left before allocating, so
//! truncated or damaged bytes are an error, never a huge allocation.

use crate::cache::rows::Rows;
use crate::cache::{CacheStrategy, KvDtype};
use crate::error::{Error, Result};
use crate::fingerprint;
use crate::generate::Conversation;

pub const MAGIC: &[u8; 8] = b"KVCSNAP\0";
/// The format this engine writes, and the only one it reads: version 1 had
/// another checksum and fingerprint hash, version 2 every entry as f32, and
/// version 3 no chat conversation.
pub const FORMAT_VERSION: u32 = 4;

/// The generator settings that decide what a cache holds: a snapshot only
/// restores into a generator with the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    pub strategy: CacheStrategy,
    pub kv_dtype: KvDtype,
    pub max_seq_len: usize,
    pub use_cache: bool,
}

impl std::fmt::Display for SnapshotSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.use_cache {
            write!(f, "cache {} {}", self.strategy, self.kv_dtype)?;
        } else {
            f.write_str("no cache")?;
        }
        write!(f, ", maxSeqLen {}", self.max_seq_len)
    }
}

/// See the [module](self).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSnapshot {
    /// The fingerprint of the model it was taken from.
    pub fingerprint: u64,
    pub settings: SnapshotSettings,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Every token of the sequence: the `position` the model has consumed,
    /// then any not yet run (the last sampled token, or a prompt given with
    /// `max_new_tokens` 0).
    pub tokens: Vec<u32>,
    /// Tokens the model has consumed: the next token's position.
    pub position: usize,
    /// The chat conversation the tokens hold, which a `chat` turn after the
    /// restore continues (`None`: not a chat, or a new one starts).
    pub conversation: Option<Conversation>,
    /// Each layer's held entries as the cache stores them, oldest first (none
    /// with the cache off).
    pub layers: Vec<Rows>,
}

impl CacheSnapshot {
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries: usize = self.layers.iter().map(Rows::bytes).sum();
        let mut out =
            Vec::with_capacity(64 + 4 * self.tokens.len() + 4 * self.layers.len() + entries);
        let u32_of = |n: usize| u32::try_from(n).expect("sizes fit in u32");
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        let (tag, window) = match self.settings.strategy {
            CacheStrategy::Concat => (0u8, 0),
            CacheStrategy::Prealloc => (1, 0),
            CacheStrategy::Window { size, .. } => (2, size),
        };
        let dtype = KvDtype::ALL
            .iter()
            .position(|&d| d == self.settings.kv_dtype)
            .expect("one of ALL") as u8;
        out.push(tag);
        out.extend_from_slice(&u32_of(window).to_le_bytes());
        out.extend_from_slice(&u32_of(self.settings.max_seq_len).to_le_bytes());
        out.push(self.settings.use_cache as u8);
        out.push(dtype);
        out.extend_from_slice(&u32_of(self.settings.strategy.sinks()).to_le_bytes());
        for n in [
            self.kv_heads,
            self.head_dim,
            self.position,
            self.tokens.len(),
        ] {
            out.extend_from_slice(&u32_of(n).to_le_bytes());
        }
        for id in &self.tokens {
            out.extend_from_slice(&id.to_le_bytes());
        }
        match &self.conversation {
            None => out.push(0),
            Some(Conversation { system: None }) => out.push(1),
            Some(Conversation {
                system: Some(prompt),
            }) => {
                out.push(2);
                out.extend_from_slice(&u32_of(prompt.len()).to_le_bytes());
                out.extend_from_slice(prompt.as_bytes());
            }
        }
        out.extend_from_slice(&u32_of(self.layers.len()).to_le_bytes());
        for layer in &self.layers {
            out.extend_from_slice(&u32_of(layer.slots()).to_le_bytes());
            out.extend(layer.to_bytes());
        }
        let checksum = fingerprint::hash(&[&out]);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Reads [`Self::to_bytes`]'s bytes, refusing anything else with an error
    /// saying what is wrong: not a snapshot, a newer format, truncated or
    /// damaged bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::Snapshot(format!(
                "these {} bytes are not a KV cache snapshot (they do not start with \"KVCSNAP\")",
                bytes.len()
            )));
        }
        let mut r = Reader {
            bytes,
            at: MAGIC.len(),
        };
        let version = r.u32("the format version")?;
        if version > FORMAT_VERSION {
            return Err(Error::Snapshot(format!(
                "the snapshot's format version is {version}, newer than this engine reads ({FORMAT_VERSION}): load it with a newer kvcache-wasm"
            )));
        }
        if version < FORMAT_VERSION {
            return Err(Error::Snapshot(format!(
                "the snapshot's format version is {version}, from an older kvcache-wasm: take the snapshot again"
            )));
        }
        let Some(body) = bytes.len().checked_sub(8).filter(|&n| n >= r.at) else {
            return Err(truncated("the checksum", 8, bytes.len() - r.at));
        };
        let stored = u64::from_le_bytes(bytes[body..].try_into().expect("8 bytes"));
        if fingerprint::hash(&[&bytes[..body]]) != stored {
            return Err(Error::Snapshot(
                "the bytes are truncated or damaged (their checksum does not match)".into(),
            ));
        }
        r.bytes = &bytes[..body];
        let fingerprint = r.u64("the model fingerprint")?;
        let strategy = match (r.u8("the strategy")?, r.u32("the window size")? as usize) {
            (0, _) => CacheStrategy::Concat,
            (1, _) => CacheStrategy::Prealloc,
            (2, size) => CacheStrategy::Window { size, sinks: 0 },
            (tag, _) => return Err(Error::Snapshot(format!("unknown cache strategy {tag}"))),
        };
        let max_seq_len = r.u32("maxSeqLen")? as usize;
        let use_cache = match r.u8("useCache")? {
            0 => false,
            1 => true,
            other => return Err(Error::Snapshot(format!("useCache is {other}, not 0 or 1"))),
        };
        let (dtype, sinks) = (r.u8("kvDtype")?, r.u32("sinks")? as usize);
        let kv_dtype = *KvDtype::ALL
            .get(dtype as usize)
            .ok_or_else(|| Error::Snapshot(format!("unknown kvDtype {dtype}")))?;
        let strategy = strategy
            .with_sinks(sinks)
            .map_err(|e| Error::Snapshot(format!("its settings are not valid: {e}")))?;
        let kv_heads = r.u32("the kv head count")? as usize;
        let head_dim = r.u32("the head dim")? as usize;
        let position = r.u32("the position")? as usize;
        let count = r.u32("the token count")? as usize;
        let tokens = r.u32s(count, "the tokens")?;
        if position > tokens.len() {
            return Err(Error::Snapshot(format!(
                "position {position} is past the {} tokens",
                tokens.len()
            )));
        }
        let conversation = match r.u8("the chat conversation")? {
            0 => None,
            1 => Some(Conversation { system: None }),
            2 => {
                let len = r.u32("the system prompt's length")? as usize;
                let text = std::str::from_utf8(r.take(len, "the system prompt")?).map_err(|e| {
                    Error::Snapshot(format!("the system prompt is not UTF-8 ({e})"))
                })?;
                Some(Conversation {
                    system: Some(text.to_string()),
                })
            }
            other => {
                return Err(Error::Snapshot(format!(
                    "unknown chat conversation tag {other}"
                )))
            }
        };
        let layer_count = r.u32("the layer count")? as usize;
        // Each layer takes at least its 4-byte count.
        r.check(layer_count.saturating_mul(4), "the layers")?;
        let entry_bytes = kv_heads
            .saturating_mul(kv_dtype.row_bytes(head_dim))
            .saturating_mul(2);
        let layers = (0..layer_count)
            .map(|i| {
                let n = r.u32("a layer's entry count")? as usize;
                let what = format!("layer {i}'s entries");
                let bytes = r.take(n.saturating_mul(entry_bytes), &what)?;
                Rows::from_bytes(kv_heads, head_dim, kv_dtype, n, bytes).map_err(|e| match e {
                    Error::InvalidArgument(problem) => {
                        Error::Snapshot(format!("{what}: {problem}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if r.at != r.bytes.len() {
            return Err(Error::Snapshot(format!(
                "{} unexpected bytes after the last layer",
                r.bytes.len() - r.at
            )));
        }
        Ok(CacheSnapshot {
            fingerprint,
            settings: SnapshotSettings {
                strategy,
                kv_dtype,
                max_seq_len,
                use_cache,
            },
            kv_heads,
            head_dim,
            tokens,
            position,
            conversation,
            layers,
        })
    }
}

fn truncated(what: &str, needs: usize, left: usize) -> Error {
    Error::Snapshot(format!(
        "the bytes are truncated: {what} needs {needs} bytes, {left} are left"
    ))
}

/// Reads little-endian fields, checking each length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn check(&self, n: usize, what: &str) -> Result<()> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(truncated(what, n, left));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        self.check(n, what)?;
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32s(&mut self, n: usize, what: &str) -> Result<Vec<u32>> {
        let bytes = self.take(n.saturating_mul(4), what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }
}
