//! The KV cache: for every layer, the keys and values of the tokens already
//! seen, so that a new token costs one small forward pass instead of a re-run
//! of the whole sequence.
//!
//! - [`CacheStrategy`] is the user's choice; [`plan_layers`] turns it, with the
//!   model's own per-layer windows, into one [`LayerPlan`] per layer.
//! - [`LayerCache`] keeps one layer's entries as its plan says, one file per
//!   strategy: [`concat`] (new buffers every step), [`prealloc`] (slots
//!   allocated once, written in place), [`window`] (a ring of the newest
//!   entries, and optionally the first ones: attention sinks). All three hold
//!   rows ([`rows`]) in the user's [`KvDtype`] ([`precision`]: `f32`, `f16`
//!   or `int8` with block scales) and share one attention over them
//!   ([`crate::attention::over_rows`]).
//! - [`KvCache`] is the model's cache: its layers, and the position counter
//!   (how many tokens the model has consumed), kept apart from the lengths,
//!   since a window drops entries while positions (RoPE angles, GPT-2's
//!   position table) keep counting.

pub mod concat;
pub mod prealloc;
pub mod precision;
pub mod rows;
pub mod window;

use std::fmt;
use std::ops::Range;

use crate::attention::{Heads, Mask};
use crate::config::ModelConfig;
use crate::error::{Error, Result};

use concat::Concat;
use prealloc::Prealloc;
pub use precision::KvDtype;
use rows::Rows;
use window::Window;

/// How the user wants keys and values kept as the sequence grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStrategy {
    Concat,
    Prealloc,
    /// The newest `size` entries, and the first `sinks` (attention sinks) kept for good.
    Window {
        size: usize,
        sinks: usize,
    },
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
                Ok(CacheStrategy::Window { size, sinks: 0 })
            }
            other => Err(Error::invalid(format!(
                "unknown cache strategy `{other}` (expected concat, prealloc or window)"
            ))),
        }
    }

    /// The window size, for `Window`.
    pub fn window(&self) -> Option<usize> {
        match self {
            CacheStrategy::Window { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// Attention sinks kept besides the window (0 without a window).
    pub fn sinks(&self) -> usize {
        match self {
            CacheStrategy::Window { sinks, .. } => *sinks,
            _ => 0,
        }
    }

    /// This window strategy keeping the first `sinks` entries too; `sinks`
    /// must be smaller than the window, and 0 for the other strategies.
    pub fn with_sinks(self, sinks: usize) -> Result<Self> {
        match self {
            CacheStrategy::Window { size, .. } => {
                check_sinks(size, sinks)?;
                Ok(CacheStrategy::Window { size, sinks })
            }
            _ if sinks == 0 => Ok(self),
            other => Err(Error::invalid(format!(
                "sinks only apply with the window strategy (cache is \"{}\")",
                other.name()
            ))),
        }
    }
}

impl fmt::Display for CacheStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheStrategy::Window { size, sinks: 0 } => write!(f, "window({size})"),
            CacheStrategy::Window { size, sinks } => write!(f, "window({size}, {sinks} sinks)"),
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

/// Attention sinks must be fewer than the window's entries.
pub fn check_sinks(size: usize, sinks: usize) -> Result<()> {
    if sinks >= size {
        return Err(Error::invalid(format!(
            "sinks must be smaller than the window ({size}), got {sinks}"
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
    /// The newest `size` entries, in a ring, and the first `sinks` entries,
    /// kept for good; attention sees only them.
    Window { size: usize, sinks: usize },
}

impl LayerPlan {
    /// Which keys this layer's queries see (the same with the cache off).
    pub fn mask(&self) -> Mask {
        match self {
            LayerPlan::Window { size, sinks } => Mask::window(*size).with_sinks(*sinks),
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

    /// Entries the layer holds at its fullest: its longest sequence, or a
    /// window's entries and sinks.
    pub fn most_held(&self) -> usize {
        match self {
            LayerPlan::Concat { max_len } | LayerPlan::Prealloc { max_len } => *max_len,
            LayerPlan::Window { size, sinks } => size + sinks,
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
        check_sinks(size, strategy.sinks())?;
    }
    Ok((0..config.num_layers)
        .map(|layer| plan_layer(config.layer_window(layer), strategy, max_seq_len))
        .collect())
}

/// A layer with a window of the model's own keeps that window (without
/// sinks: the model was trained so), unless the user's window is no larger,
/// which then applies with its sinks; any other layer follows the user's
/// strategy, holding up to `max_seq_len` entries.
pub fn plan_layer(
    own_window: Option<usize>,
    strategy: CacheStrategy,
    max_seq_len: usize,
) -> LayerPlan {
    match (own_window, strategy) {
        (Some(own), CacheStrategy::Window { size, sinks }) if size <= own => {
            LayerPlan::Window { size, sinks }
        }
        (Some(own), _) => LayerPlan::Window {
            size: own,
            sinks: 0,
        },
        (None, CacheStrategy::Concat) => LayerPlan::Concat {
            max_len: max_seq_len,
        },
        (None, CacheStrategy::Prealloc) => LayerPlan::Prealloc {
            max_len: max_seq_len,
        },
        (None, CacheStrategy::Window { size, sinks }) => LayerPlan::Window { size, sinks },
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
    /// Builds the layer's cache, storing rows as `dtype`; `Prealloc`'s slots
    /// and the `Window`'s ring are allocated here.
    pub fn new(plan: LayerPlan, heads: Heads, dtype: KvDtype) -> Result<Self> {
        Ok(match plan {
            LayerPlan::Concat { .. } => LayerCache::Concat(Concat::new(heads, dtype)),
            LayerPlan::Prealloc { max_len } => {
                LayerCache::Prealloc(Prealloc::new(heads, max_len, dtype)?)
            }
            LayerPlan::Window { size, sinks } => {
                LayerCache::Window(Window::new(heads, size, sinks, dtype)?)
            }
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
            LayerCache::Prealloc(Prealloc { slots, .. }) => slots.held,
            LayerCache::Window(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the buffers held right now: `Concat`'s hold exactly its
    /// entries; `Prealloc`'s slots and the `Window`'s ring (and sinks) count
    /// whole, from the cache's construction on, filled or not.
    pub fn bytes(&self) -> usize {
        match self {
            LayerCache::Concat(c) => c.bytes(),
            LayerCache::Prealloc(Prealloc { slots, .. }) => slots.rows.bytes(),
            LayerCache::Window(w) => w.bytes(),
        }
    }

    /// Forgets every entry: `Concat` frees its buffers, the others keep theirs.
    pub fn reset(&mut self) {
        match self {
            LayerCache::Concat(c) => c.reset(),
            LayerCache::Prealloc(Prealloc { slots, .. }) => slots.held = 0,
            LayerCache::Window(w) => w.reset(),
        }
    }

    /// Where the entries held after `position` tokens lie, oldest first, as
    /// rows and a range of their slots.
    fn held_parts(&self, position: usize) -> Vec<(&Rows, Range<usize>)> {
        match self {
            LayerCache::Concat(c) => c.rows.iter().map(|rows| (rows, 0..rows.slots())).collect(),
            LayerCache::Prealloc(Prealloc { slots, .. }) => vec![(&slots.rows, 0..slots.held)],
            LayerCache::Window(w) => w.held_parts(position).to_vec(),
        }
    }

    /// Entries a layer planned as `plan` holds after `position` tokens.
    fn held_after(plan: LayerPlan, position: usize) -> usize {
        match plan {
            LayerPlan::Window { size, sinks } => {
                position.min(sinks) + position.saturating_sub(sinks).min(size)
            }
            _ => position,
        }
    }

    /// A copy of the entries held after `position` tokens, in their stored
    /// form, oldest first: one slot per entry (see [`KvCache::held_rows`]).
    fn held_rows(&self, heads: Heads, dtype: KvDtype, position: usize) -> Result<Rows> {
        let parts = self.held_parts(position);
        let held = parts.iter().map(|(_, slots)| slots.len()).sum();
        let mut out = Rows::allocate(heads, held, dtype)?;
        let mut to = 0;
        for (rows, slots) in parts {
            out.copy_slots(to, rows, slots.clone());
            to += slots.len();
        }
        Ok(out)
    }

    /// Puts back entries [`Self::held_rows`] copied, after `position` tokens;
    /// the caller has checked that they fit.
    fn restore_rows(&mut self, held: Rows, position: usize) {
        self.reset();
        match self {
            LayerCache::Concat(c) => c.rows = (held.slots() > 0).then_some(held),
            LayerCache::Prealloc(Prealloc { slots, .. }) => {
                slots.rows.copy_slots(0, &held, 0..held.slots());
                slots.held = held.slots();
            }
            LayerCache::Window(w) => w.restore(&held, position),
        }
    }
}

/// The whole model's cache: one [`LayerCache`] per layer, and the position counter.
#[derive(Debug)]
pub struct KvCache {
    heads: Heads,
    dtype: KvDtype,
    plans: Vec<LayerPlan>,
    layers: Vec<LayerCache>,
    /// Tokens the model has consumed since the last reset (the next token's position).
    position: usize,
}

impl KvCache {
    /// One layer cache per plan, for attention shaped `heads`, storing rows as `dtype`.
    pub fn new(heads: Heads, plans: &[LayerPlan], dtype: KvDtype) -> Result<Self> {
        Ok(KvCache {
            heads,
            dtype,
            plans: plans.to_vec(),
            layers: plans
                .iter()
                .map(|&plan| LayerCache::new(plan, heads, dtype))
                .collect::<Result<_>>()?,
            position: 0,
        })
    }

    /// The cache of a model whose layers follow `strategy`, as [`plan_layers`] plans them.
    pub fn with_strategy(
        config: &ModelConfig,
        strategy: CacheStrategy,
        dtype: KvDtype,
        max_seq_len: usize,
    ) -> Result<Self> {
        KvCache::new(
            Heads::of(config),
            &plan_layers(config, strategy, max_seq_len)?,
            dtype,
        )
    }

    /// How the rows are stored.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    pub fn heads(&self) -> Heads {
        self.heads
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
    /// kv_heads × the bytes of one row of head_dim numbers per entry, summed
    /// over the layers (with every layer alike, 2 × layers × kv_heads ×
    /// length × row bytes). A row is head_dim × 4 bytes in `f32`, × 2 in
    /// `f16`, and head_dim + 2 × ⌈head_dim / 32⌉ in `int8` (a byte per number
    /// and an `f16` scale per block of 32): [`KvDtype::row_bytes`].
    pub fn bytes_formula(&self) -> usize {
        let per_entry = 2 * self.heads.kv * self.dtype.row_bytes(self.heads.dim);
        self.layers
            .iter()
            .map(|layer| per_entry * layer.len())
            .sum()
    }

    /// A copy of every layer's entries in their stored form (the cache's
    /// dtype, `int8` scales included), oldest first, one slot per entry: what a
    /// snapshot saves. [`Rows::to_bytes`] turns one into bytes and
    /// [`Rows::from_bytes`] back.
    pub fn held_rows(&self) -> Result<Vec<Rows>> {
        self.layers
            .iter()
            .map(|layer| layer.held_rows(self.heads, self.dtype, self.position))
            .collect()
    }

    /// Puts back what [`Self::held_rows`] copied after `position` tokens from
    /// a cache with the same plans and dtype. Checked first: on error nothing
    /// changes.
    pub fn restore_rows(&mut self, position: usize, layers: Vec<Rows>) -> Result<()> {
        if layers.len() != self.layers.len() {
            return Err(Error::invalid(format!(
                "the cache has {} layers, the entries given are for {}",
                self.layers.len(),
                layers.len()
            )));
        }
        for (i, (plan, rows)) in self.plans.iter().zip(&layers).enumerate() {
            let held = LayerCache::held_after(*plan, position);
            if plan.max_len().is_some_and(|max_len| position > max_len) {
                return Err(Error::invalid(format!(
                    "position {position} is past layer {i}'s {} entries",
                    plan.max_len().unwrap_or(0)
                )));
            }
            if !rows.fits(self.heads, self.dtype, held) {
                return Err(Error::invalid(format!(
                    "layer {i}'s entries do not match the cache: it holds {held} {} entries of {} heads × {} after {position} tokens",
                    self.dtype, self.heads.kv, self.heads.dim
                )));
            }
        }
        for (layer, rows) in self.layers.iter_mut().zip(layers) {
            layer.restore_rows(rows, position);
        }
        self.position = position;
        Ok(())
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
        use CacheStrategy::{Concat, Prealloc};
        let plan = |own, strategy| plan_layer(own, strategy, 100);
        let window = |size, sinks| LayerPlan::Window { size, sinks };
        let user = |size, sinks| CacheStrategy::Window { size, sinks };
        assert_eq!(plan(None, Concat), LayerPlan::Concat { max_len: 100 });
        assert_eq!(plan(None, Prealloc), LayerPlan::Prealloc { max_len: 100 });
        assert_eq!(plan(None, user(8, 2)), window(8, 2));
        // The model's own window stays, whatever the user's strategy ...
        assert_eq!(plan(Some(16), Concat), window(16, 0));
        assert_eq!(plan(Some(16), Prealloc), window(16, 0));
        // ... and the smaller of the two windows wins, with its sinks if it is the user's.
        assert_eq!(plan(Some(16), user(8, 2)), window(8, 2));
        assert_eq!(plan(Some(16), user(16, 2)), window(16, 2));
        assert_eq!(plan(Some(16), user(32, 2)), window(16, 0));
    }

    #[test]
    fn sinks_need_a_window_larger_than_them() {
        let window = CacheStrategy::Window { size: 4, sinks: 0 };
        assert_eq!(
            window.with_sinks(3).unwrap(),
            CacheStrategy::Window { size: 4, sinks: 3 }
        );
        assert_eq!(
            window.with_sinks(3).unwrap().to_string(),
            "window(4, 3 sinks)"
        );
        let err = window.with_sinks(4).unwrap_err().to_string();
        assert!(
            err.contains("sinks must be smaller than the window (4), got 4"),
            "{err}"
        );
        assert_eq!(
            CacheStrategy::Concat.with_sinks(0).unwrap(),
            CacheStrategy::Concat
        );
        let err = CacheStrategy::Prealloc
            .with_sinks(2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks only apply with the window strategy"),
            "{err}"
        );
    }

    #[test]
    fn a_window_holds_its_sinks_and_its_newest_entries() {
        let plan = LayerPlan::Window { size: 4, sinks: 2 };
        let held: Vec<usize> = [0, 1, 2, 5, 6, 7, 20]
            .into_iter()
            .map(|p| LayerCache::held_after(plan, p))
            .collect();
        assert_eq!(held, [0, 1, 2, 5, 6, 6, 6]);
    }

    #[test]
    fn a_cache_holds_what_its_shortest_non_window_layer_holds() {
        let plans = [
            LayerPlan::Window { size: 4, sinks: 0 },
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
