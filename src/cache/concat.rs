//! `Concat`, the KV-cache article's version: every step makes new buffers
//! holding the entries so far followed by the new ones, as `torch.cat` does.
//! It holds exactly what the formula counts, and pays a copy of the whole
//! cache per step.

use super::precision::KvDtype;
use super::rows::{Chunk, Rows};
use crate::attention::{self, Heads, Mask};

#[derive(Debug)]
pub struct Concat {
    heads: Heads,
    dtype: KvDtype,
    /// `None` until the first call, and after a reset.
    pub(super) rows: Option<Rows>,
}

impl Concat {
    pub fn new(heads: Heads, dtype: KvDtype) -> Self {
        Concat {
            heads,
            dtype,
            rows: None,
        }
    }

    /// See [`super::LayerCache::attend`].
    pub(super) fn attend(&mut self, start: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let new = Chunk::new(k, v, self.heads);
        let rows = match &self.rows {
            // First call: the new entries are the whole cache.
            None => Rows::copy_of(new, self.heads, self.dtype),
            // Later calls: new buffers, the cached entries then the new ones.
            Some(cached) => cached.followed_by(new),
        };
        let rows = self.rows.insert(rows);
        let len = rows.slots();
        let all = rows.run(0, len, start + new.n - len);
        attention::over_rows(q, start, self.heads, Mask::CAUSAL, &[all])
    }

    pub(super) fn len(&self) -> usize {
        self.rows.as_ref().map_or(0, Rows::slots)
    }

    pub(super) fn bytes(&self) -> usize {
        self.rows.as_ref().map_or(0, Rows::bytes)
    }

    /// Frees the buffers.
    pub(super) fn reset(&mut self) {
        self.rows = None;
    }
}
