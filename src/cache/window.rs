//! `Window`: the newest `size` entries, in a ring of `size` slots allocated
//! when the cache is built. The entry at position `p` lives in slot
//! `p % size`, where it replaces the one `size` positions older, which no
//! query can see any more. Positions keep counting: only what is held is
//! bounded.

use std::ops::Range;

use super::rows::{Chunk, Slots};
use crate::attention::{self, Heads, Mask, Run};
use crate::error::Result;

#[derive(Debug)]
pub struct Window {
    heads: Heads,
    /// `size` slots holding the positions just before the next token's.
    pub(super) slots: Slots,
    size: usize,
}

impl Window {
    pub fn new(heads: Heads, size: usize) -> Result<Self> {
        Ok(Window {
            heads,
            slots: Slots::allocate(heads, size)?,
            size,
        })
    }

    /// See [`super::LayerCache::attend`]. Attention runs first, over what the
    /// ring holds and the new chunk, so that every query sees exactly its
    /// window even when the chunk is longer than the ring; then the chunk's
    /// newest entries take the oldest slots.
    pub(super) fn attend(&mut self, start: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let new = Chunk::new(k, v, self.heads);
        let [older, newer] = self.held_runs(start);
        let runs = [older, newer, new.run(start)];
        let out = attention::over_rows(q, start, self.heads, Mask::window(self.size), &runs);
        self.store(start, new);
        out
    }

    /// What the ring holds, positions `start - held..start`, as two runs of
    /// slots: from the oldest entry's slot to the end, then from slot 0.
    fn held_runs(&self, start: usize) -> [Run<'_>; 2] {
        let [older, newer] = self.held_slots(start);
        let oldest = start - self.slots.held;
        let rows = &self.slots.rows;
        [
            rows.run(older.start, older.len(), oldest),
            rows.run(0, newer.len(), oldest + older.len()),
        ]
    }

    /// The slots of [`Self::held_runs`], oldest first.
    pub(super) fn held_slots(&self, start: usize) -> [Range<usize>; 2] {
        let held = self.slots.held;
        let from = (start - held) % self.size;
        let to_end = held.min(self.size - from);
        [from..from + to_end, 0..held - to_end]
    }

    /// Writes the newest `size` entries of `new` (positions `start..start + n`) into their slots.
    pub(super) fn store(&mut self, start: usize, new: Chunk) {
        let kept = new.n.min(self.size);
        let first = new.n - kept;
        let slot = (start + first) % self.size;
        let to_end = kept.min(self.size - slot);
        let Slots { rows, held } = &mut self.slots;
        rows.write(slot, new, first..first + to_end);
        rows.write(0, new, first + to_end..new.n);
        *held = (*held + new.n).min(self.size);
    }
}
