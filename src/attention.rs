//! Scaled dot-product attention, the math only: softmax(q·kᵀ·scale + mask)·v
//! with grouped-query attention (GQA) and a causal mask, optionally limited to
//! a sliding window. It knows nothing of caches: it is given queries, and keys
//! and values with the positions they sit at.
//!
//! [`over_rows`] reads rows of keys and values where they are: as the KV cache
//! holds them (`f32`, or `f16`/`int8` decoded row by row), or the forward
//! pass's own ([`Run::chunk`]), for the cache-off baseline and a prompt alike
//! ([`Run`]s of consecutive positions).

use std::ops::Range;

use crate::cache::precision::Encoded;
use crate::config::ModelConfig;
use crate::elementwise;

/// The shape of one layer's multi-head attention, and its scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heads {
    /// Query heads.
    pub query: usize,
    /// Key/value heads: fewer than `query` is grouped-query attention, query
    /// head `i` reading K/V head `i / (query / kv)`.
    pub kv: usize,
    /// Size of one head's query, key and value vectors.
    pub dim: usize,
    /// What q·k is multiplied by before the softmax (1/√dim unless the model says otherwise).
    pub scale: f32,
}

impl Heads {
    pub fn of(config: &ModelConfig) -> Self {
        Heads {
            query: config.num_heads,
            kv: config.num_kv_heads,
            dim: config.head_dim,
            scale: config.attention_scale(),
        }
    }

    /// Query heads per K/V head.
    pub fn group(&self) -> usize {
        self.query / self.kv
    }
}

/// Which keys a query may see: never a later position (causal), and with a
/// window of `w`, only the `w` newest positions up to its own, besides the
/// first `sinks` positions (attention sinks, kept visible for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mask {
    pub window: Option<usize>,
    /// Positions `0..sinks` stay visible to every later query; only with a window.
    pub sinks: usize,
}

impl Mask {
    /// Every earlier position and the query's own.
    pub const CAUSAL: Mask = Mask {
        window: None,
        sinks: 0,
    };

    /// The query's own position and the `size - 1` before it.
    pub fn window(size: usize) -> Mask {
        Mask {
            window: Some(size),
            sinks: 0,
        }
    }

    /// This window, and positions `0..sinks` too.
    pub fn with_sinks(self, sinks: usize) -> Mask {
        Mask { sinks, ..self }
    }

    /// Whether a query at position `query` sees the key at position `key`.
    pub fn visible(&self, query: usize, key: usize) -> bool {
        key <= query && (key < self.sinks || self.window.is_none_or(|w| key + w > query))
    }

    /// The parts of `keys` (a range of positions) that a query at `query`
    /// sees, in order: the sinks part and the window part (either may be empty).
    fn visible_parts(&self, query: usize, keys: Range<usize>) -> [Range<usize>; 2] {
        let clip = |seen: Range<usize>| {
            let start = keys.start.max(seen.start).min(keys.end);
            start..keys.end.min(seen.end).max(start)
        };
        let nothing = keys.start..keys.start;
        match self.window {
            Some(w) if (query + 1).saturating_sub(w) > self.sinks => [
                clip(0..self.sinks),
                clip((query + 1).saturating_sub(w)..query + 1),
            ],
            // No window, or one reaching back into the sinks: everything up to the query.
            _ => [clip(0..query + 1), nothing],
        }
    }
}

/// Keys and values of consecutive positions, read in place from buffers laid
/// out `[kv_heads, slots, dim]` (`f32` rows, or rows as the cache stores them):
/// rows `from..from + len` of every head, the first of them at position `position`.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub keys: Encoded<'a>,
    pub values: Encoded<'a>,
    /// Rows per head in the buffer.
    pub slots: usize,
    pub from: usize,
    pub len: usize,
    pub position: usize,
}

impl<'a> Run<'a> {
    /// Rows `0..n` of a `[kv_heads, n, dim]` chunk of `f32`s, at positions `position..position + n`.
    pub fn chunk(keys: &'a [f32], values: &'a [f32], n: usize, position: usize) -> Self {
        Run {
            keys: Encoded::F32(keys),
            values: Encoded::F32(values),
            slots: n,
            from: 0,
            len: n,
            position,
        }
    }

    /// The buffer rows of head `kv`'s keys and values at the positions in `part`.
    fn rows(&self, kv: usize, part: &Range<usize>) -> Range<usize> {
        let first = kv * self.slots + self.from + (part.start - self.position);
        first..first + part.len()
    }

    fn positions(&self) -> Range<usize> {
        self.position..self.position + self.len
    }
}

/// Attention of `n` new queries at positions `start..start + n` over keys and
/// values held as [`Run`]s (together they must hold every position the mask
/// lets a query see). `q` is `[heads.query, n, dim]`; returns the same shape.
///
/// One query row at a time: its scores against the visible keys, a softmax,
/// then the weighted sum of the matching values. Each head's rows are read
/// front to back, and nothing is copied; rows stored other than as `f32`
/// are decoded one at a time into a scratch row.
pub fn over_rows(q: &[f32], start: usize, heads: Heads, mask: Mask, runs: &[Run]) -> Vec<f32> {
    let dim = heads.dim;
    let n = q.len() / (heads.query * dim);
    let mut out = vec![0.0f32; q.len()];
    // Heads are independent: split over the pool's threads for many queries
    // (a prompt, the cache-off baseline); a decode step's one query is done
    // sooner than its heads would be handed out.
    let work = if n > 1 { q.len() * (start + n) } else { 0 };
    crate::pool::by_parts(&mut out, n * dim, work, |head, out| {
        let (mut weights, mut scratch) = (Vec::new(), vec![0.0f32; dim]);
        let kv = head / heads.group();
        for t in 0..n {
            let position = start + t;
            let query = &q[(head * n + t) * dim..][..dim];
            let visible = runs.iter().flat_map(|run| {
                let parts = mask.visible_parts(position, run.positions());
                parts.map(|part| (run, run.rows(kv, &part)))
            });
            weights.clear();
            for (run, rows) in visible.clone() {
                scores(
                    run.keys,
                    rows,
                    query,
                    heads.scale,
                    &mut weights,
                    &mut scratch,
                );
            }
            let total = softmax_in_place(&mut weights);
            let row = &mut out[t * dim..][..dim];
            let mut weight = weights.iter().map(|w| w / total);
            for (run, rows) in visible {
                weighted_sum(run.values, rows, &mut weight, row, &mut scratch);
            }
        }
    });
    out
}

/// Appends `query · key × scale` for each key row in `rows`.
#[inline]
fn scores(
    keys: Encoded,
    rows: Range<usize>,
    query: &[f32],
    scale: f32,
    out: &mut Vec<f32>,
    scratch: &mut [f32],
) {
    let dim = query.len();
    match keys {
        Encoded::F32(keys) => out.extend(
            keys[rows.start * dim..rows.end * dim]
                .chunks_exact(dim)
                .map(|key| elementwise::dot(query, key) * scale),
        ),
        stored => out.extend(rows.map(|r| {
            stored.decode_row(r, scratch);
            elementwise::dot(query, scratch) * scale
        })),
    }
}

/// `row += weight · value` for each value row in `rows`, taking the weights in turn.
#[inline]
fn weighted_sum(
    values: Encoded,
    rows: Range<usize>,
    weights: &mut impl Iterator<Item = f32>,
    row: &mut [f32],
    scratch: &mut [f32],
) {
    let dim = row.len();
    match values {
        Encoded::F32(values) => {
            for (value, w) in values[rows.start * dim..rows.end * dim]
                .chunks_exact(dim)
                .zip(weights)
            {
                add_scaled(row, w, value);
            }
        }
        stored => {
            for (r, w) in rows.zip(weights) {
                stored.decode_row(r, scratch);
                add_scaled(row, w, scratch);
            }
        }
    }
}

/// `x ← exp(x - max x)`, returning the sum (the softmax's denominator).
fn softmax_in_place(x: &mut [f32]) -> f32 {
    elementwise::exp_shifted(x, elementwise::max(x))
}

/// `row += weight · value`.
#[inline]
fn add_scaled(row: &mut [f32], weight: f32, value: &[f32]) {
    for (r, v) in row.iter_mut().zip(value) {
        *r += weight * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(mask: Mask, queries: Range<usize>, keys: Range<usize>) -> Vec<String> {
        queries
            .map(|q| {
                keys.clone()
                    .map(|k| if mask.visible(q, k) { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn causal_mask_hides_the_future() {
        assert_eq!(pattern(Mask::CAUSAL, 0..3, 0..3), ["#..", "##.", "###"]);
    }

    #[test]
    fn window_mask_hides_the_distant_past() {
        assert_eq!(
            pattern(Mask::window(2), 0..4, 0..4),
            ["#...", "##..", ".##.", "..##"]
        );
        // A decode step at position 5 over keys at positions 3, 4 and 5.
        assert_eq!(pattern(Mask::window(2), 5..6, 3..6), [".##"]);
    }

    #[test]
    fn sinks_stay_visible_besides_the_window() {
        assert_eq!(
            pattern(Mask::window(2).with_sinks(1), 0..5, 0..5),
            ["#....", "##...", "###..", "#.##.", "#..##"]
        );
    }

    const MASKS: [Mask; 6] = [
        Mask::CAUSAL,
        Mask {
            window: Some(1),
            sinks: 0,
        },
        Mask {
            window: Some(3),
            sinks: 0,
        },
        Mask {
            window: Some(1),
            sinks: 1,
        },
        Mask {
            window: Some(3),
            sinks: 2,
        },
        Mask {
            window: Some(2),
            sinks: 5,
        },
    ];

    #[test]
    fn the_visible_parts_of_a_run_are_what_the_mask_shows() {
        for mask in MASKS {
            for query in 0..12 {
                for keys in [0..0, 0..4, 2..9, 5..12, 10..12] {
                    let parts = mask.visible_parts(query, keys.clone());
                    let expected: Vec<usize> =
                        keys.clone().filter(|&k| mask.visible(query, k)).collect();
                    for part in &parts {
                        assert!(keys.start <= part.start && part.end <= keys.end);
                    }
                    assert_eq!(
                        parts.into_iter().flatten().collect::<Vec<_>>(),
                        expected,
                        "{mask:?} {query} {keys:?}"
                    );
                }
            }
        }
    }

    /// Deterministic test values.
    fn values(count: usize, salt: usize) -> Vec<f32> {
        (0..count)
            .map(|i| ((i * 7 + salt * 13) as f32 * 0.37).sin())
            .collect()
    }

    /// The textbook definition in f64, over keys and values `[kv, len, dim]` at
    /// positions `0..len`, for the last `n` positions' queries.
    fn reference(q: &[f32], k: &[f32], v: &[f32], heads: Heads, mask: Mask) -> Vec<f32> {
        let dim = heads.dim;
        let n = q.len() / (heads.query * dim);
        let len = k.len() / (heads.kv * dim);
        let mut out = Vec::new();
        for head in 0..heads.query {
            let h = head / heads.group();
            for t in 0..n {
                let position = len - n + t;
                let query = &q[(head * n + t) * dim..][..dim];
                let seen: Vec<usize> = (0..len).filter(|&j| mask.visible(position, j)).collect();
                let scores: Vec<f64> = seen
                    .iter()
                    .map(|&j| {
                        let key = &k[(h * len + j) * dim..][..dim];
                        let qk: f64 = query
                            .iter()
                            .zip(key)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum();
                        qk * heads.scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..dim {
                    let x: f64 = seen
                        .iter()
                        .zip(&weights)
                        .map(|(&j, w)| w / total * v[(h * len + j) * dim + d] as f64)
                        .sum();
                    out.push(x as f32);
                }
            }
        }
        out
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// `[kv, to - from, dim]`: positions `from..to` of `all`, which holds `total` per head.
    fn positions(all: &[f32], kv: usize, total: usize, dim: usize, r: Range<usize>) -> Vec<f32> {
        (0..kv)
            .flat_map(|h| all[(h * total + r.start) * dim..(h * total + r.end) * dim].to_vec())
            .collect()
    }

    // 6 query heads over 2 K/V heads, head size 10 (not a multiple of 8).
    const HEADS: Heads = Heads {
        query: 6,
        kv: 2,
        dim: 10,
        scale: 0.3,
    };

    #[test]
    fn attention_over_rows_matches_the_definition() {
        let (kv, dim, total) = (HEADS.kv, HEADS.dim, 11);
        let (k, v) = (values(kv * total * dim, 1), values(kv * total * dim, 2));
        for mask in [Mask::CAUSAL, Mask::window(4), Mask::window(3).with_sinks(2)] {
            // A 5-token chunk after 6 cached positions, the cache split in two runs
            // (positions 3..6 in buffer rows 0..3 and 0..3 in rows 5..8 of 8 slots, as a ring would).
            let q = values(HEADS.query * 5 * dim, 3);
            let mut ring = vec![0.0; kv * 8 * dim];
            let mut ring_v = ring.clone();
            for h in 0..kv {
                for (slot, pos) in [(0, 3), (1, 4), (2, 5), (5, 0), (6, 1), (7, 2)] {
                    let (to, from) = ((h * 8 + slot) * dim, (h * total + pos) * dim);
                    ring[to..to + dim].copy_from_slice(&k[from..from + dim]);
                    ring_v[to..to + dim].copy_from_slice(&v[from..from + dim]);
                }
            }
            let (ck, cv) = (
                positions(&k, kv, total, dim, 6..11),
                positions(&v, kv, total, dim, 6..11),
            );
            let runs = [
                Run {
                    keys: Encoded::F32(&ring),
                    values: Encoded::F32(&ring_v),
                    slots: 8,
                    from: 5,
                    len: 3,
                    position: 0,
                },
                Run {
                    keys: Encoded::F32(&ring),
                    values: Encoded::F32(&ring_v),
                    slots: 8,
                    from: 0,
                    len: 3,
                    position: 3,
                },
                Run::chunk(&ck, &cv, 5, 6),
            ];
            let ours = over_rows(&q, 6, HEADS, mask, &runs);
            let expected = reference(&q, &k, &v, HEADS, mask);
            assert!(worst(&ours, &expected) < 1e-5, "{mask:?}");
        }
    }

    #[test]
    fn stored_rows_are_read_as_the_numbers_they_decode_to() {
        use crate::cache::precision::{Buffer, KvDtype};
        let (kv, dim, n) = (HEADS.kv, HEADS.dim, 7);
        let q = values(HEADS.query * n * dim, 7);
        let (k, v) = (values(kv * n * dim, 8), values(kv * n * dim, 9));
        for dtype in [KvDtype::F16, KvDtype::Int8] {
            let encode = |x: &[f32]| {
                let mut buffer = Buffer::with_capacity(dtype, kv * n, dim);
                buffer.push_encoded(x, dim);
                buffer
            };
            let decode = |buffer: &Buffer| {
                let mut out = vec![0.0; kv * n * dim];
                for (r, row) in out.chunks_exact_mut(dim).enumerate() {
                    buffer.encoded().decode_row(r, row);
                }
                out
            };
            let (sk, sv) = (encode(&k), encode(&v));
            let stored = Run {
                keys: sk.encoded(),
                values: sv.encoded(),
                ..Run::chunk(&k, &v, n, 0)
            };
            let (dk, dv) = (decode(&sk), decode(&sv));
            for mask in [Mask::CAUSAL, Mask::window(2).with_sinks(1)] {
                let ours = over_rows(&q, 0, HEADS, mask, &[stored]);
                let decoded = over_rows(&q, 0, HEADS, mask, &[Run::chunk(&dk, &dv, n, 0)]);
                assert_eq!(ours, decoded, "{dtype} {mask:?}");
                // and the stored numbers are close to the originals'.
                let plain = over_rows(&q, 0, HEADS, mask, &[Run::chunk(&k, &v, n, 0)]);
                assert!(worst(&ours, &plain) < 0.05, "{dtype} {mask:?}");
                assert!(worst(&ours, &plain) > 0.0, "{dtype} {mask:?}");
            }
        }
    }
}
