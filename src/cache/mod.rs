//! The KV cache: for every layer, the keys and values of the tokens already
//! seen, so that a new token costs one small forward pass instead of a re-run
//! of the whole sequence.
//!
//! - [`CacheStrategy`] is the user's choice; [`plan_layers`] turns it, with the
//!   model's own per-layer windows, into one [`LayerPlan`] per layer.
//! - [`LayerCache`] keeps one layer's entries as its plan says, one file per
//!   strategy: [`concat`] (new buffers every step), [`prealloc`] (slots
//!   allocated once, written in place), [`window`] (a ring of the newest
//!   entries). All three hold plain rows ([`rows`]) and share one attention
//!   over them ([`crate::attention::over_rows`]).
//! - [`KvCache`] is the model's cache: its layers, and the position counter
//!   (how many tokens the model has consumed), kept apart from the lengths,
//!   since a window drops entries while positions (RoPE angles, GPT-2's
//!   position table) keep counting.

pub mod concat;
pub mod entries;
pub mod prealloc;
pub mod rows;
pub mod window;

use std::fmt;

use crate::attention::{Heads, Mask};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
pub use entries::LayerEntries;

use concat::Concat;
use prealloc::Prealloc;
use window::Window;

/// How the user wants keys and values kept as the sequence grows.
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

    /// The window size, for `Window`.
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

/// A window size must be between 1 and `max_seq_len`.
pub fn check_window(size: usize, max_seq_len: usize) -> Result<()> {
    if size == 0 || size > max_seq_len {
        return Err(Error::invalid(format!(
            "window must be between 1 and maxSeqLen ({max_seq_len}), got {size}"
        )));
    }
    Ok(())
}

/// How one layer keeps its keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPlan {
    /// New buffers every step, up to `max_len` entries.
    Concat { max_len: usize },
    /// `max_len` slots, allocated up front.
    Prealloc { max_len: usize },
    /// The newest `size` entries, in a ring; attention sees only them.
    Window { size: usize },
}

impl LayerPlan {
    /// Which keys this layer's queries see (the same with the cache off).
    pub fn mask(&self) -> Mask {
        match self {
            LayerPlan::Window { size } => Mask::window(*size),
            _ => Mask::CAUSAL,
        }
    }

    /// Longest sequence the layer holds; `None` for a window, which drops old entries instead.
    pub fn max_len(&self) -> Option<usize> {
        match self {
            LayerPlan::Concat { max_len } | LayerPlan::Prealloc { max_len } => Some(*max_len),
            LayerPlan::Window { .. } => None,
        }
    }
}

/// One plan per layer, each as [`plan_layer`] decides from the model's own
/// window for it ([`ModelConfig::layer_window`]).
pub fn plan_layers(
    config: &ModelConfig,
    strategy: CacheStrategy,
    max_seq_len: usize,
) -> Result<Vec<LayerPlan>> {
    if let Some(size) = strategy.window() {
        check_window(size, max_seq_len)?;
    }
    Ok((0..config.num_layers)
        .map(|layer| plan_layer(config.layer_window(layer), strategy, max_seq_len))
        .collect())
}

/// A layer with a window of the model's own keeps that window, narrowed by the
/// user's window if that is smaller; any other layer follows the user's
/// strategy, holding up to `max_seq_len` entries.
pub fn plan_layer(
    own_window: Option<usize>,
    strategy: CacheStrategy,
    max_seq_len: usize,
) -> LayerPlan {
    match (own_window, strategy) {
        (Some(own), _) => LayerPlan::Window {
            size: strategy.window().map_or(own, |user| user.min(own)),
        },
        (None, CacheStrategy::Concat) => LayerPlan::Concat {
            max_len: max_seq_len,
        },
        (None, CacheStrategy::Prealloc) => LayerPlan::Prealloc {
            max_len: max_seq_len,
        },
        (None, CacheStrategy::Window { size }) => LayerPlan::Window { size },
    }
}

/// Longest sequence that layers planned so hold (the shortest of their
/// limits); `None` when every layer is a window.
pub fn max_len(plans: &[LayerPlan]) -> Option<usize> {
    plans.iter().filter_map(LayerPlan::max_len).min()
}

/// One layer's cache, kept as its [`LayerPlan`] says.
#[derive(Debug)]
pub enum LayerCache {
    Concat(Concat),
    Prealloc(Prealloc),
    Window(Window),
}

impl LayerCache {
    /// Builds the layer's cache; `Prealloc`'s slots and the `Window`'s ring are allocated here.
    pub fn new(plan: LayerPlan, heads: Heads) -> Result<Self> {
        Ok(match plan {
            LayerPlan::Concat { .. } => LayerCache::Concat(Concat::new(heads)),
            LayerPlan::Prealloc { max_len } => LayerCache::Prealloc(Prealloc::new(heads, max_len)?),
            LayerPlan::Window { size } => LayerCache::Window(Window::new(heads, size)?),
        })
    }

    /// Stores the keys and values of `n` new tokens at positions
    /// `start..start + n` and returns their queries' attention over what this
    /// layer lets them see. `q` is `[heads, n, head_dim]`, `k` and `v` are
    /// `[kv_heads, n, head_dim]`; the result is shaped like `q`.
    pub fn attend(&mut self, start: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        match self {
            LayerCache::Concat(c) => c.attend(start, q, k, v),
            LayerCache::Prealloc(c) => c.attend(start, q, k, v),
            LayerCache::Window(c) => c.attend(start, q, k, v),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        match self {
            LayerCache::Concat(c) => c.len(),
            LayerCache::Prealloc(Prealloc { slots, .. })
            | LayerCache::Window(Window { slots, .. }) => slots.held,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the buffers held right now: `Concat`'s hold exactly its
    /// entries; `Prealloc`'s slots and the `Window`'s ring count whole, from
    /// the cache's construction on, filled or not.
    pub fn bytes(&self) -> usize {
        match self {
            LayerCache::Concat(c) => c.bytes(),
            LayerCache::Prealloc(Prealloc { slots, .. })
            | LayerCache::Window(Window { slots, .. }) => slots.rows.bytes(),
        }
    }

    /// Forgets every entry: `Concat` frees its buffers, the others keep theirs.
    pub fn reset(&mut self) {
        match self {
            LayerCache::Concat(c) => c.reset(),
            LayerCache::Prealloc(Prealloc { slots, .. })
            | LayerCache::Window(Window { slots, .. }) => slots.held = 0,
        }
    }
}

/// The whole model's cache: one [`LayerCache`] per layer, and the position counter.
#[derive(Debug)]
pub struct KvCache {
    heads: Heads,
    plans: Vec<LayerPlan>,
    layers: Vec<LayerCache>,
    /// Tokens the model has consumed since the last reset (the next token's position).
    position: usize,
}

impl KvCache {
    /// One layer cache per plan, for attention shaped `heads`.
    pub fn new(heads: Heads, plans: &[LayerPlan]) -> Result<Self> {
        Ok(KvCache {
            heads,
            plans: plans.to_vec(),
            layers: plans
                .iter()
                .map(|&plan| LayerCache::new(plan, heads))
                .collect::<Result<_>>()?,
            position: 0,
        })
    }

    /// The cache of a model whose layers follow `strategy`, as [`plan_layers`] plans them.
    pub fn with_strategy(
        config: &ModelConfig,
        strategy: CacheStrategy,
        max_seq_len: usize,
    ) -> Result<Self> {
        KvCache::new(
            Heads::of(config),
            &plan_layers(config, strategy, max_seq_len)?,
        )
    }

    pub fn plans(&self) -> &[LayerPlan] {
        &self.plans
    }

    /// The next token's position.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Entries held by the layer holding most.
    pub fn len(&self) -> usize {
        self.layers.iter().map(LayerCache::len).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held, layer by layer.
    pub fn layer_lens(&self) -> Vec<usize> {
        self.layers.iter().map(LayerCache::len).collect()
    }

    /// Bytes held by all layers' buffers.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerCache::bytes).sum()
    }

    /// What the textbook formula gives for the entries held: 2 (K and V) ×
    /// kv_heads × head_dim × 4 bytes per entry, summed over the layers (with
    /// every layer alike, 2 × layers × kv_heads × head_dim × length × 4).
    pub fn bytes_formula(&self) -> usize {
        let per_entry = 2 * self.heads.kv * self.heads.dim * size_of::<f32>();
        self.layers
            .iter()
            .map(|layer| per_entry * layer.len())
            .sum()
    }

    /// Longest sequence this cache holds; `None` when every layer is a window.
    pub fn max_len(&self) -> Option<usize> {
        max_len(&self.plans)
    }

    /// The layer caches, for a forward pass of tokens at positions from [`Self::position`] on.
    pub(crate) fn layers_mut(&mut self) -> &mut [LayerCache] {
        &mut self.layers
    }

    /// Moves the position past the `n` tokens a forward pass has just run
    /// through every layer. The one place the position changes, apart from a reset.
    pub(crate) fn advance(&mut self, n: usize) {
        self.position += n;
    }

    /// Empties every layer; position back to 0.
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            layer.reset();
        }
        self.position = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_follows_the_user_unless_the_model_windows_it() {
        use CacheStrategy::{Concat, Prealloc, Window};
        let plan = |own, strategy| plan_layer(own, strategy, 100);
        assert_eq!(plan(None, Concat), LayerPlan::Concat { max_len: 100 });
        assert_eq!(plan(None, Prealloc), LayerPlan::Prealloc { max_len: 100 });
        assert_eq!(
            plan(None, Window { size: 8 }),
            LayerPlan::Window { size: 8 }
        );
        // The model's own window stays, whatever the user's strategy ...
        assert_eq!(plan(Some(16), Concat), LayerPlan::Window { size: 16 });
        assert_eq!(plan(Some(16), Prealloc), LayerPlan::Window { size: 16 });
        // ... and the smaller of the two windows wins.
        assert_eq!(
            plan(Some(16), Window { size: 8 }),
            LayerPlan::Window { size: 8 }
        );
        assert_eq!(
            plan(Some(16), Window { size: 32 }),
            LayerPlan::Window { size: 16 }
        );
    }

    #[test]
    fn a_cache_holds_what_its_shortest_non_window_layer_holds() {
        let plans = [
            LayerPlan::Window { size: 4 },
            LayerPlan::Prealloc { max_len: 50 },
            LayerPlan::Concat { max_len: 30 },
        ];
        assert_eq!(max_len(&plans), Some(30));
        assert_eq!(max_len(&plans[..1]), None);
    }

    #[test]
    fn window_sizes_outside_one_to_max_seq_len_are_refused() {
        assert!(check_window(1, 8).is_ok() && check_window(8, 8).is_ok());
        for size in [0, 9] {
            let err = check_window(size, 8).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "window must be between 1 and maxSeqLen (8), got {size}"
                )),
                "{err}"
            );
        }
    }
}
