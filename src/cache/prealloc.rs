//! `Prealloc`: room for `max_len` entries, allocated when the cache is built.
//! Each step writes its entries into the next free slots and attention reads
//! the filled ones where they lie: no allocation and no copy of the cache per
//! step, at the price of holding the whole `max_len` from the start.

use super::precision::KvDtype;
use super::rows::{Chunk, Slots};
use crate::attention::{self, Heads, Mask};
use crate::error::Result;

#[derive(Debug)]
pub struct Prealloc {
    heads: Heads,
    /// Filled from slot 0 on: slots `..held` hold positions `0..held`.
    pub(super) slots: Slots,
}

impl Prealloc {
    pub fn new(heads: Heads, max_len: usize, dtype: KvDtype) -> Result<Self> {
        Ok(Prealloc {
            heads,
            slots: Slots::allocate(heads, max_len, dtype)?,
        })
    }

    /// See [`super::LayerCache::attend`]. The caller has checked that the new
    /// entries fit ([`super::KvCache::max_len`]).
    pub(super) fn attend(&mut self, start: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let new = Chunk::new(k, v, self.heads);
        let Slots { rows, held } = &mut self.slots;
        assert!(
            *held + new.n <= rows.slots(),
            "prealloc overflow: the caller checks the room first"
        );
        rows.write(*held, new, 0..new.n);
        *held += new.n;
        let filled = rows.run(0, *held, start + new.n - *held);
        attention::over_rows(q, start, self.heads, Mask::CAUSAL, &[filled])
    }
}
