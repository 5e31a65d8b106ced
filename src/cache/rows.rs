//! Where every strategy keeps a layer's entries: a key buffer and a value
//! buffer of rows in the cache's [`KvDtype`], laid out `[kv_heads, slots,
//! head_dim]`, that attention reads in place ([`crate::attention::Run`]).

use std::ops::Range;

use super::precision::{Buffer, KvDtype};
use crate::attention::{Heads, Run};
use crate::error::{Error, Result};

/// Keys and values of one layer: `slots` rows of `dim` numbers per K/V head.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    keys: Buffer,
    values: Buffer,
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
    pub fn allocate(heads: Heads, slots: usize, dtype: KvDtype) -> Result<Self> {
        Ok(Slots {
            rows: Rows::allocate(heads, slots, dtype)?,
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
    pub fn allocate(heads: Heads, slots: usize, dtype: KvDtype) -> Result<Self> {
        let rows = heads
            .kv
            .checked_mul(slots)
            .filter(|n| n.checked_mul(2 * dtype.row_bytes(heads.dim)).is_some());
        let too_large = |rows: Option<usize>| {
            let bytes = rows.map_or_else(
                || {
                    format!(
                        "{} × {slots} × 2 × {}",
                        heads.kv,
                        dtype.row_bytes(heads.dim)
                    )
                },
                |n| (2 * n * dtype.row_bytes(heads.dim)).to_string(),
            );
            Error::invalid(format!(
                "the KV cache needs {bytes} bytes for {slots} entries per layer, which this machine could not allocate: lower maxSeqLen or the window size"
            ))
        };
        let Some(rows) = rows else {
            return Err(too_large(None));
        };
        let zeroed = || Buffer::zeroed(dtype, rows, heads.dim).ok_or_else(|| too_large(Some(rows)));
        Ok(Rows {
            keys: zeroed()?,
            values: zeroed()?,
            kv: heads.kv,
            dim: heads.dim,
            slots,
        })
    }

    /// New buffers holding `chunk`, encoded as `dtype`, one slot per row.
    pub fn copy_of(chunk: Chunk, heads: Heads, dtype: KvDtype) -> Rows {
        Rows::joined(None, chunk, heads.kv, heads.dim, dtype)
    }

    /// New buffers holding these rows followed by `chunk`'s, one slot per row,
    /// as `torch.cat` would make them.
    pub fn followed_by(&self, chunk: Chunk) -> Rows {
        Rows::joined(Some(self), chunk, self.kv, self.dim, self.dtype())
    }

    fn joined(old: Option<&Rows>, chunk: Chunk, kv: usize, dim: usize, dtype: KvDtype) -> Rows {
        let held = old.map_or(0, |rows| rows.slots);
        let slots = held + chunk.n;
        let join = |old: Option<&Buffer>, new: &[f32]| {
            let mut buffer = Buffer::with_capacity(dtype, kv * slots, dim);
            for h in 0..kv {
                if let Some(old) = old {
                    buffer.push_stored(old, h * held..(h + 1) * held, dim);
                }
                buffer.push_encoded(&new[h * chunk.n * dim..(h + 1) * chunk.n * dim], dim);
            }
            buffer
        };
        Rows {
            keys: join(old.map(|rows| &rows.keys), chunk.keys),
            values: join(old.map(|rows| &rows.values), chunk.values),
            kv,
            dim,
            slots,
        }
    }

    /// Encodes rows `rows` of `chunk` into slots `slot..`, for every head.
    pub fn write(&mut self, slot: usize, chunk: Chunk, rows: Range<usize>) {
        let dim = self.dim;
        let count = rows.len() * dim;
        for h in 0..self.kv {
            let to = h * self.slots + slot;
            let from = (h * chunk.n + rows.start) * dim;
            self.keys.write(to, &chunk.keys[from..from + count], dim);
            self.values
                .write(to, &chunk.values[from..from + count], dim);
        }
    }

    /// Copies slots `from` of `other` (same heads and dtype), as stored, into slots `to..`.
    pub fn copy_slots(&mut self, to: usize, other: &Rows, from: Range<usize>) {
        for h in 0..self.kv {
            let rows = h * other.slots + from.start..h * other.slots + from.end;
            let at = h * self.slots + to;
            self.keys.copy_rows(at, &other.keys, rows.clone(), self.dim);
            self.values.copy_rows(at, &other.values, rows, self.dim);
        }
    }

    /// Slots `from..from + len`, whose first entry is at position `position`, for attention.
    pub fn run(&self, from: usize, len: usize, position: usize) -> Run<'_> {
        Run {
            keys: self.keys.encoded(),
            values: self.values.encoded(),
            slots: self.slots,
            from,
            len,
            position,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether these are `slots` rows of `heads`' K/V shape, stored as `dtype`.
    pub fn fits(&self, heads: Heads, dtype: KvDtype, slots: usize) -> bool {
        (self.kv, self.dim, self.dtype(), self.slots) == (heads.kv, heads.dim, dtype, slots)
    }

    /// Both buffers' stored form as little-endian bytes: the keys, then the
    /// values, each as [`Buffer::to_bytes`] writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.keys.to_bytes();
        out.extend(self.values.to_bytes());
        out
    }

    /// `slots` rows per K/V head, `kv` heads of `dim` numbers, stored as
    /// `dtype`, from the bytes [`Self::to_bytes`] wrote; an error unless the
    /// length is exact.
    pub fn from_bytes(
        kv: usize,
        dim: usize,
        dtype: KvDtype,
        slots: usize,
        bytes: &[u8],
    ) -> Result<Rows> {
        let rows = kv
            .checked_mul(slots)
            .ok_or_else(|| Error::invalid(format!("{slots} entries per layer is too many")))?;
        let half = rows
            .checked_mul(dtype.row_bytes(dim))
            .filter(|&n| n.checked_mul(2) == Some(bytes.len()));
        let Some(half) = half else {
            return Err(Error::invalid(format!(
                "{} bytes do not hold {slots} {dtype} entries of {} heads × {}",
                bytes.len(),
                kv,
                dim
            )));
        };
        let (keys, values) = bytes.split_at(half);
        Ok(Rows {
            keys: Buffer::from_bytes(dtype, rows, dim, keys)?,
            values: Buffer::from_bytes(dtype, rows, dim, values)?,
            kv,
            dim,
            slots,
        })
    }

    pub fn dtype(&self) -> KvDtype {
        self.keys.dtype()
    }

    /// Bytes of both buffers, scales included, every slot counted, filled or not.
    pub fn bytes(&self) -> usize {
        self.keys.bytes() + self.values.bytes()
    }
}
