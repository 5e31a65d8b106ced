//! The entries a cache holds, copied out in position order and put back: what
//! a snapshot ([`crate::snapshot`]) saves and restores. A restored cache holds
//! the same rows in the same slots as the one copied, so the next step
//! computes exactly what it would have.

use super::rows::{Chunk, Rows};
use super::{KvCache, LayerCache};
use crate::error::{Error, Result};

/// One layer's `n` held entries, oldest first (with attention sinks, the
/// sinks then the newest positions), decoded to `f32`: keys and values
/// `[kv_heads, n, head_dim]` each. Decoding and encoding again gives back the
/// stored `f16` and `int8` rows exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerEntries {
    pub n: usize,
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

impl KvCache {
    /// Every layer's held entries, oldest first.
    pub fn entries(&self) -> Result<Vec<LayerEntries>> {
        self.held_rows()?
            .iter()
            .map(|rows| {
                let (keys, values) = rows.decoded();
                Ok(LayerEntries {
                    n: rows.slots(),
                    keys,
                    values,
                })
            })
            .collect()
    }

    /// Fails, changing nothing, unless `entries` could be what this cache
    /// held at `position`: one per layer, each no more than the layer keeps,
    /// and no more than `position`, with `[kv_heads, n, head_dim]` rows.
    pub fn check_entries(&self, position: usize, entries: &[LayerEntries]) -> Result<()> {
        if entries.len() != self.layers.len() {
            return Err(Error::Snapshot(format!(
                "it has {} layers, this model {}",
                entries.len(),
                self.layers.len()
            )));
        }
        let row = self.heads.kv * self.heads.dim;
        for (i, (e, plan)) in entries.iter().zip(&self.plans).enumerate() {
            if plan.max_len().is_some_and(|most| position > most) {
                return Err(Error::Snapshot(format!(
                    "it is at position {position}, past the {} entries this cache's layer {i} holds",
                    plan.max_len().unwrap_or(0)
                )));
            }
            let expected = LayerCache::held_after(*plan, position);
            if e.n != expected {
                return Err(Error::Snapshot(format!(
                    "its layer {i} holds {} entries at position {position}, where this cache holds {expected}",
                    e.n
                )));
            }
            if e.keys.len() != e.n * row || e.values.len() != e.n * row {
                return Err(Error::Snapshot(format!(
                    "its layer {i} has {} keys and {} values for {} entries of {row}",
                    e.keys.len(),
                    e.values.len(),
                    e.n
                )));
            }
        }
        Ok(())
    }

    /// Empties the cache and puts `entries` back, the position set to
    /// `position`. On error ([`Self::check_entries`]) nothing changes.
    pub fn restore(&mut self, position: usize, entries: &[LayerEntries]) -> Result<()> {
        self.check_entries(position, entries)?;
        let rows = entries
            .iter()
            .map(|e| {
                let chunk = Chunk {
                    keys: &e.keys,
                    values: &e.values,
                    n: e.n,
                };
                Rows::copy_of(chunk, self.heads, self.dtype)
            })
            .collect();
        self.restore_rows(position, rows)
    }
}
