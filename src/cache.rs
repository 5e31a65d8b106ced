//! The KV cache: for every layer, the keys and values of the tokens already
//! seen, so that a new token costs one small forward pass instead of a re-run
//! of the whole sequence.
//!
//! Three strategies:
//! - `Concat` grows the buffers by concatenation on every step (the article's version);
//! - `Prealloc` allocates `capacity` slots once and writes new entries in place
//!   ([`crate::slots`], where attention also runs);
//! - `Window` keeps at most `size` entries, dropping the oldest.
//!
//! The position counter (how many tokens the model has consumed) is kept apart
//! from the cache length: with a sliding window the two differ, and positions
//! (RoPE angles, GPT-2's position table) must keep counting.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{s, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::slots::Slots;

/// How a layer's keys and values are stored as the sequence grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStrategy {
    Concat,
    Prealloc,
    Window { size: usize },
}

impl CacheStrategy {
    pub fn name(&self) -> &'static str {
        match self {
            CacheStrategy::Concat => "concat",
            CacheStrategy::Prealloc => "prealloc",
            CacheStrategy::Window { .. } => "window",
        }
    }

    /// Builds a strategy from its name, as the CLI and JS options spell it.
    pub fn parse(name: &str, window: Option<usize>) -> Result<Self> {
        match name {
            "concat" => Ok(CacheStrategy::Concat),
            "prealloc" => Ok(CacheStrategy::Prealloc),
            "window" => {
                let size = window.ok_or_else(|| {
                    Error::invalid("the `window` cache strategy needs a window size")
                })?;
                Ok(CacheStrategy::Window { size })
            }
            other => Err(Error::invalid(format!(
                "unknown cache strategy `{other}` (expected concat, prealloc or window)"
            ))),
        }
    }

    /// The attention span this strategy imposes, if any.
    pub fn window(&self) -> Option<usize> {
        match self {
            CacheStrategy::Window { size } => Some(*size),
            _ => None,
        }
    }
}

impl fmt::Display for CacheStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheStrategy::Window { size } => write!(f, "window({size})"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for CacheStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s, None)
    }
}

/// Keys and values of one layer, each `[kv_heads, len, head_dim]`.
#[derive(Debug)]
pub struct LayerCache {
    strategy: CacheStrategy,
    /// `Concat` and `Window`: exactly the entries held.
    keys: Option<Tensor<3>>,
    values: Option<Tensor<3>>,
    len: usize,
    /// `Prealloc`: the slot buffers, allocated at the first token.
    slots: Option<Slots>,
    capacity: usize,
}

impl LayerCache {
    fn new(strategy: CacheStrategy, capacity: usize) -> Self {
        LayerCache {
            strategy,
            keys: None,
            values: None,
            len: 0,
            slots: None,
            capacity,
        }
    }

    /// Number of tokens whose keys and values this layer holds.
    pub fn len(&self) -> usize {
        self.slots.as_ref().map_or(self.len, Slots::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Prealloc`'s buffers for `kv_heads` heads of size `head_dim`, which
    /// [`crate::attention`] writes and reads in place; `None` for the other strategies.
    pub fn slots(&mut self, kv_heads: usize, head_dim: usize) -> Option<&mut Slots> {
        if self.strategy != CacheStrategy::Prealloc {
            return None;
        }
        let capacity = self.capacity;
        Some(
            self.slots
                .get_or_insert_with(|| Slots::new(kv_heads, head_dim, capacity)),
        )
    }

    /// Stores this step's keys and values (`[kv_heads, n, head_dim]`) and
    /// returns what attention must see: the cached entries followed by the new
    /// ones. For `Concat` and `Window` (`Prealloc` goes through [`Self::slots`]).
    ///
    /// With `Window` the returned tensors may hold more than `size` entries
    /// (the old window plus this chunk); the attention mask hides what falls
    /// outside each query's window, and only the newest `size` are kept.
    pub fn append(&mut self, k: Tensor<3>, v: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let n = k.dims()[1];
        let keys = concat(self.keys.take(), k);
        let values = concat(self.values.take(), v);
        let total = self.len + n;
        if let CacheStrategy::Window { size } = self.strategy {
            let keep_from = total.saturating_sub(size);
            self.len = total - keep_from;
            self.keys = Some(keys.clone().slice(s![.., keep_from..total, ..]));
            self.values = Some(values.clone().slice(s![.., keep_from..total, ..]));
        } else {
            self.len = total;
            self.keys = Some(keys.clone());
            self.values = Some(values.clone());
        }
        (keys, values)
    }

    /// Bytes of the buffers this layer holds right now (for `Prealloc`, the whole allocation).
    pub fn bytes(&self) -> usize {
        let numel = |t: &Option<Tensor<3>>| t.as_ref().map_or(0, |t| t.shape().num_elements());
        let tensors = (numel(&self.keys) + numel(&self.values)) * std::mem::size_of::<f32>();
        tensors + self.slots.as_ref().map_or(0, Slots::bytes)
    }
}

fn concat(old: Option<Tensor<3>>, new: Tensor<3>) -> Tensor<3> {
    match old {
        Some(old) => Tensor::cat(vec![old, new], 1),
        None => new,
    }
}

/// The one check, made before anything runs, that `n` more tokens after `position`
/// fit under the model's `position_limit` (GPT-2's learned position table) and the
/// cache's [`KvCache::max_len`].
pub fn check_fits(
    position: usize,
    n: usize,
    position_limit: Option<usize>,
    max_len: Option<usize>,
) -> Result<()> {
    let total = position + n;
    let full = |why: String, remedy: &str| {
        Err(Error::ContextFull(format!(
            "{total} tokens ({position} so far + {n} new) would not fit: {why}; {remedy}"
        )))
    };
    // First, as neither a larger maxSeqLen nor a window would help here.
    if let Some(limit) = position_limit.filter(|&limit| total > limit) {
        return full(
            format!("the model's learned position table stops at {limit}"),
            "reset, or send fewer tokens",
        );
    }
    if let Some(max_len) = max_len.filter(|&max_len| total > max_len) {
        return full(
            format!("maxSeqLen is {max_len}"),
            "reset, raise maxSeqLen, or use the window strategy",
        );
    }
    Ok(())
}

/// The whole model's cache: one [`LayerCache`] per layer plus the position counter.
#[derive(Debug)]
pub struct KvCache {
    strategy: CacheStrategy,
    layers: Vec<LayerCache>,
    /// Tokens the model has consumed since the last reset (the next token's position).
    position: usize,
    capacity: usize,
    bytes_per_token: usize,
}

impl KvCache {
    /// `capacity` is the longest sequence the cache accepts (and what `Prealloc` allocates).
    pub fn new(config: &ModelConfig, strategy: CacheStrategy, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid(
                "the cache capacity (maxSeqLen) must be at least 1",
            ));
        }
        if let CacheStrategy::Window { size } = strategy {
            if size == 0 || size > capacity {
                return Err(Error::invalid(format!(
                    "window size must be between 1 and maxSeqLen ({capacity}), got {size}"
                )));
            }
        }
        Ok(KvCache {
            strategy,
            layers: (0..config.num_layers)
                .map(|_| LayerCache::new(strategy, capacity))
                .collect(),
            position: 0,
            capacity,
            bytes_per_token: config.kv_bytes_for(1),
        })
    }

    pub fn strategy(&self) -> CacheStrategy {
        self.strategy
    }

    /// Longest sequence accepted; a window cache accepts any length (only positions limit it).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Tokens whose keys and values are held (equal in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by all layers' buffers.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::bytes).sum()
    }

    /// What the textbook formula predicts for the current length:
    /// 2 (K and V) × layers × kv_heads × head_dim × length × 4 bytes.
    pub fn bytes_formula(&self) -> usize {
        self.bytes_per_token * self.len()
    }

    /// Longest sequence this cache holds; `None` for a window, which drops old entries instead.
    pub fn max_len(&self) -> Option<usize> {
        self.strategy.window().is_none().then_some(self.capacity)
    }

    pub fn layer_mut(&mut self, index: usize) -> &mut LayerCache {
        &mut self.layers[index]
    }

    /// Called by the model once all layers have taken `n` new tokens.
    pub fn advance(&mut self, n: usize) {
        self.position += n;
    }

    /// Empties every layer; position back to 0. Buffers are freed, not kept.
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            *layer = LayerCache::new(self.strategy, self.capacity);
        }
        self.position = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(result: Result<()>) -> String {
        match result {
            Err(err @ Error::ContextFull(_)) => err.to_string(),
            other => panic!("expected a ContextFull error, got {other:?}"),
        }
    }

    #[test]
    fn exactly_full_fits_and_one_more_is_refused() {
        assert!(check_fits(30, 2, None, Some(32)).is_ok());
        let msg = refusal(check_fits(30, 3, None, Some(32)));
        assert!(
            msg.contains("maxSeqLen is 32") && msg.contains("window strategy"),
            "{msg}"
        );
    }

    #[test]
    fn position_table_limit_comes_first_and_a_window_does_not_lift_it() {
        let msg = refusal(check_fits(30, 3, Some(32), Some(32)));
        assert!(msg.contains("position table stops at 32; reset"), "{msg}");
        assert!(
            !msg.contains("maxSeqLen"),
            "raising maxSeqLen cannot help: {msg}"
        );
        let msg = refusal(check_fits(40, 1, Some(32), None));
        assert!(msg.contains("position table stops at 32"), "{msg}");
        assert!(check_fits(5000, 1, None, None).is_ok());
    }
}
