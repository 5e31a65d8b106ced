//! The entries a cache holds, copied out in position order and put back: what
//! a snapshot ([`crate::snapshot`]) saves and restores. A restored cache holds
//! the same rows in the same slots as the one copied, so the next step
//! computes exactly what it would have.

use std::slice;

use super::rows::{Chunk, Rows};
use super::{KvCache, LayerCache};
use crate::error::{Error, Result};

/// One layer's entries for its newest `n` positions (`position - n..position`),
/// oldest first: keys and values `[kv_heads, n, head_dim]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerEntries {
    pub n: usize,
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

impl LayerCache {
    /// Copies of the held entries, oldest first.
    pub fn entries(&self, position: usize) -> LayerEntries {
        let n = self.len();
        let (keys, values) = match self {
            LayerCache::Concat(c) => c.rows().map_or((Vec::new(), Vec::new()), |rows| {
                rows.read(slice::from_ref(&(0..n)))
            }),
            LayerCache::Prealloc(c) => c.slots.rows.read(slice::from_ref(&(0..n))),
            LayerCache::Window(w) => {
                let [older, newer] = w.held_slots(position);
                w.slots.rows.read(&[older, newer])
            }
        };
        LayerEntries { n, keys, values }
    }

    /// Empties the layer and puts `entries` back, as positions
    /// `position - entries.n..position`. The caller has checked the sizes
    /// ([`KvCache::check_entries`]).
    fn put_back(&mut self, position: usize, entries: &LayerEntries) {
        self.reset();
        if entries.n == 0 {
            return;
        }
        let chunk = Chunk {
            keys: &entries.keys,
            values: &entries.values,
            n: entries.n,
        };
        match self {
            LayerCache::Concat(c) => c.set_rows(Rows::copy_of(chunk, c.heads())),
            LayerCache::Prealloc(c) => {
                c.slots.rows.write(0, chunk, 0..entries.n);
                c.slots.held = entries.n;
            }
            LayerCache::Window(w) => w.store(position - entries.n, chunk),
        }
    }
}

impl KvCache {
    /// Every layer's held entries, oldest first.
    pub fn entries(&self) -> Vec<LayerEntries> {
        self.layers
            .iter()
            .map(|layer| layer.entries(self.position))
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
            // A layer holds every position so far; a window, the newest up to its size.
            let expected = match plan {
                super::LayerPlan::Window { size } => position.min(*size),
                _ => position,
            };
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
        for (layer, e) in self.layers.iter_mut().zip(entries) {
            layer.put_back(position, e);
        }
        self.position = position;
        Ok(())
    }
}
