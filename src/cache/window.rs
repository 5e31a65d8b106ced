//! `Window`: the newest `size` entries, in a ring of `size` slots allocated
//! when the cache is built, and optionally the first `sinks` entries (attention
//! sinks, as StreamingLLM keeps them) in slots of their own, kept for good.
//! An entry at position `p` past the sinks lives in ring slot `p % size`,
//! where it replaces the one `size` positions older, which no query can see
//! any more. Positions keep counting (RoPE angles stay absolute): only what is
//! held is bounded.

use std::ops::Range;

use super::precision::KvDtype;
use super::rows::{Chunk, Rows, Slots};
use crate::attention::{self, Heads, Mask, Run};
use crate::error::Result;

#[derive(Debug)]
pub struct Window {
    heads: Heads,
    /// `size` slots holding the positions just before the next token's (from `sinks` on).
    pub(super) slots: Slots,
    size: usize,
    /// Positions `0..sinks`, slot `p` holding position `p`; no slots without sinks.
    pub(super) sinks: Slots,
}

impl Window {
    pub fn new(heads: Heads, size: usize, sinks: usize, dtype: KvDtype) -> Result<Self> {
        Ok(Window {
            heads,
            slots: Slots::allocate(heads, size, dtype)?,
            size,
            sinks: Slots::allocate(heads, sinks, dtype)?,
        })
    }

    /// See [`super::LayerCache::attend`]. Attention runs first, over what the
    /// sinks and the ring hold and the new chunk, so that every query sees
    /// exactly its window even when the chunk is longer than the ring; then
    /// the chunk's entries take their places. The chunk is read as the ring
    /// stores it (encoded first, unless the ring holds `f32`), so that its
    /// queries see what the other strategies' would.
    pub(super) fn attend(&mut self, start: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let new = Chunk::new(k, v, self.heads);
        let dtype = self.slots.rows.dtype();
        let encoded = (dtype != KvDtype::F32).then(|| Rows::copy_of(new, self.heads, dtype));
        let new_run = encoded
            .as_ref()
            .map_or_else(|| new.run(start), |rows| rows.run(0, new.n, start));
        let [sunk, older, newer] = self.held_runs(start);
        let runs = [sunk, older, newer, new_run];
        let mask = Mask::window(self.size).with_sinks(self.sinks.rows.slots());
        let out = attention::over_rows(q, start, self.heads, mask, &runs);
        self.store(start, new);
        out
    }

    /// What the sinks and the ring hold before position `start`, as runs:
    /// the sinks, then the ring from its oldest entry's slot to the end, then
    /// from slot 0.
    fn held_runs(&self, start: usize) -> [Run<'_>; 3] {
        let [(sinks, first), (ring, older), (_, newer)] = self.held_parts(start);
        let oldest = start - self.slots.held;
        [
            sinks.run(first.start, first.len(), 0),
            ring.run(older.start, older.len(), oldest),
            ring.run(newer.start, newer.len(), oldest + older.len()),
        ]
    }

    /// Where the entries held before position `position` lie, oldest first:
    /// the sinks' slots, then the ring's two runs of slots.
    pub(super) fn held_parts(&self, position: usize) -> [(&Rows, Range<usize>); 3] {
        let [(from, to_end), (_, rest)] = self.ring_slots(position, self.slots.held);
        [
            (&self.sinks.rows, 0..self.sinks.held),
            (&self.slots.rows, from..from + to_end),
            (&self.slots.rows, 0..rest),
        ]
    }

    /// Where `held` ring entries at the positions just before `position` lie,
    /// oldest first, as `(first slot, count)`: from the oldest entry's slot to
    /// the end of the ring, then from slot 0.
    fn ring_slots(&self, position: usize, held: usize) -> [(usize, usize); 2] {
        let from = (position - held) % self.size;
        let to_end = held.min(self.size - from);
        [(from, to_end), (0, held - to_end)]
    }

    /// Writes the entries of `new` (positions `start..start + n`) into their
    /// slots: those before `sinks` into the sinks' slots, the newest `size`
    /// of the others into the ring.
    fn store(&mut self, start: usize, new: Chunk) {
        let sunk = self.sinks.rows.slots().saturating_sub(start).min(new.n);
        if sunk > 0 {
            self.sinks.rows.write(start, new, 0..sunk);
            self.sinks.held += sunk;
        }
        let kept = (new.n - sunk).min(self.size);
        let first = new.n - kept;
        let slot = (start + first) % self.size;
        let to_end = kept.min(self.size - slot);
        let Slots { rows, held } = &mut self.slots;
        rows.write(slot, new, first..first + to_end);
        rows.write(0, new, first + to_end..new.n);
        *held = (*held + new.n - sunk).min(self.size);
    }

    /// Entries held: the sinks and the ring's.
    pub(super) fn len(&self) -> usize {
        self.sinks.held + self.slots.held
    }

    /// Bytes of the ring's and the sinks' slots, filled or not.
    pub(super) fn bytes(&self) -> usize {
        self.slots.rows.bytes() + self.sinks.rows.bytes()
    }

    pub(super) fn reset(&mut self) {
        self.slots.held = 0;
        self.sinks.held = 0;
    }

    /// Puts back the entries held before `position`, oldest first, as
    /// [`Self::held_parts`] lists them; the caller has checked the count.
    pub(super) fn restore(&mut self, held: &Rows, position: usize) {
        let sunk = position.min(self.sinks.rows.slots());
        self.sinks.rows.copy_slots(0, held, 0..sunk);
        self.sinks.held = sunk;
        let ring = held.slots() - sunk;
        let mut from = sunk;
        for (to, n) in self.ring_slots(position, ring) {
            self.slots.rows.copy_slots(to, held, from..from + n);
            from += n;
        }
        self.slots.held = ring;
    }
}
