//! Where every strategy keeps a layer's entries: a key buffer and a value
//! buffer of plain `f32` rows, laid out `[kv_heads, slots, head_dim]`, that
//! attention reads in place ([`crate::attention::Run`]).

use std::ops::Range;

use crate::attention::{Heads, Run};
use crate::error::{Error, Result};

/// Keys and values of one layer: `slots` rows of `dim` values per K/V head.
#[derive(Debug)]
pub struct Rows {
    keys: Vec<f32>,
    values: Vec<f32>,
    kv: usize,
    dim: usize,
    slots: usize,
}

/// Rows allocated once, for strategies whose storage does not grow
/// (`Prealloc`, `Window`), and how many entries they hold.
#[derive(Debug)]
pub struct Slots {
    pub rows: Rows,
    pub held: usize,
}

impl Slots {
    /// `slots` empty slots per K/V head: see [`Rows::allocate`].
    pub fn allocate(heads: Heads, slots: usize) -> Result<Self> {
        Ok(Slots {
            rows: Rows::allocate(heads, slots)?,
            held: 0,
        })
    }
}

/// The keys and values of the tokens of one forward pass, `[kv_heads, n, head_dim]` each.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub n: usize,
}

impl<'a> Chunk<'a> {
    pub fn new(keys: &'a [f32], values: &'a [f32], heads: Heads) -> Self {
        Chunk {
            keys,
            values,
            n: keys.len() / (heads.kv * heads.dim),
        }
    }

    /// The chunk as a run of positions `start..start + n`, for attention.
    pub fn run(&self, start: usize) -> Run<'a> {
        Run::chunk(self.keys, self.values, self.n, start)
    }
}

impl Rows {
    /// Zeroed buffers of `slots` rows per head, allocated up front. The size is
    /// checked and the allocation fallible: a cache too large for this machine
    /// is an error saying how many bytes it asked for, not an abort.
    pub fn allocate(heads: Heads, slots: usize) -> Result<Self> {
        let count = heads
            .kv
            .checked_mul(slots)
            .and_then(|n| n.checked_mul(heads.dim))
            .filter(|n| n.checked_mul(2 * size_of::<f32>()).is_some());
        let too_large = |count: Option<usize>| {
            let bytes = count.map_or_else(
                || format!("{} × {slots} × {} × 8", heads.kv, heads.dim),
                |n| (2 * n * size_of::<f32>()).to_string(),
            );
            Error::invalid(format!(
                "the KV cache needs {bytes} bytes for {slots} entries per layer, which this machine could not allocate: lower maxSeqLen or the window size"
            ))
        };
        let Some(count) = count else {
            return Err(too_large(None));
        };
        let zeroed = || -> Result<Vec<f32>> {
            let mut buffer = Vec::new();
            buffer
                .try_reserve_exact(count)
                .map_err(|_| too_large(Some(count)))?;
            buffer.resize(count, 0.0);
            Ok(buffer)
        };
        Ok(Rows {
            keys: zeroed()?,
            values: zeroed()?,
            kv: heads.kv,
            dim: heads.dim,
            slots,
        })
    }

    /// New buffers holding a copy of `chunk`, one slot per row.
    pub fn copy_of(chunk: Chunk, heads: Heads) -> Rows {
        Rows::joined(None, chunk, heads.kv, heads.dim)
    }

    /// New buffers holding these rows followed by `chunk`'s, one slot per row,
    /// as `torch.cat` would make them.
    pub fn followed_by(&self, chunk: Chunk) -> Rows {
        Rows::joined(Some(self), chunk, self.kv, self.dim)
    }

    fn joined(old: Option<&Rows>, chunk: Chunk, kv: usize, dim: usize) -> Rows {
        let held = old.map_or(0, |rows| rows.slots);
        let slots = held + chunk.n;
        let join = |old: Option<&[f32]>, new: &[f32]| {
            let mut buffer = Vec::with_capacity(kv * slots * dim);
            for h in 0..kv {
                if let Some(old) = old {
                    buffer.extend_from_slice(&old[h * held * dim..(h + 1) * held * dim]);
                }
                buffer.extend_from_slice(&new[h * chunk.n * dim..(h + 1) * chunk.n * dim]);
            }
            buffer
        };
        Rows {
            keys: join(old.map(|rows| &rows.keys[..]), chunk.keys),
            values: join(old.map(|rows| &rows.values[..]), chunk.values),
            kv,
            dim,
            slots,
        }
    }

    /// Copies rows `rows` of `chunk` into slots `slot..`, for every head.
    pub fn write(&mut self, slot: usize, chunk: Chunk, rows: Range<usize>) {
        let dim = self.dim;
        let count = rows.len() * dim;
        for h in 0..self.kv {
            let to = (h * self.slots + slot) * dim;
            let from = (h * chunk.n + rows.start) * dim;
            self.keys[to..to + count].copy_from_slice(&chunk.keys[from..from + count]);
            self.values[to..to + count].copy_from_slice(&chunk.values[from..from + count]);
        }
    }

    /// Slots `from..from + len`, whose first entry is at position `position`, for attention.
    pub fn run(&self, from: usize, len: usize, position: usize) -> Run<'_> {
        Run {
            keys: &self.keys,
            values: &self.values,
            slots: self.slots,
            from,
            len,
            position,
        }
    }

    /// Copies of the keys and values in `ranges` of slots, in that order:
    /// `[kv_heads, n, head_dim]` each, `n` the ranges' total length.
    pub fn read(&self, ranges: &[Range<usize>]) -> (Vec<f32>, Vec<f32>) {
        let n: usize = ranges.iter().map(Range::len).sum();
        let copy = |buffer: &[f32]| {
            let mut out = Vec::with_capacity(self.kv * n * self.dim);
            for h in 0..self.kv {
                for range in ranges {
                    let from = (h * self.slots + range.start) * self.dim;
                    out.extend_from_slice(&buffer[from..from + range.len() * self.dim]);
                }
            }
            out
        };
        (copy(&self.keys), copy(&self.values))
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes of both buffers, every slot counted, filled or not.
    pub fn bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * size_of::<f32>()
    }
}
