//! Scaled dot-product attention, the math only: softmax(q·kᵀ·scale + mask)·v
//! with grouped-query attention (GQA) and a causal mask, optionally limited to
//! a sliding window. It knows nothing of caches: it is given queries, and keys
//! and values with the positions they sit at.
//!
//! Two forms of the same computation:
//! - [`over_tensors`]: burn tensors, a whole sequence attending to itself (no cache);
//! - [`over_rows`]: plain `f32` rows of keys and values, as the KV cache holds
//!   them, read in place ([`Run`]s of consecutive positions).

use std::ops::Range;

use burn::tensor::{activation::softmax, Tensor, TensorData};

use crate::config::ModelConfig;

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
/// window of `w`, only the `w` newest positions up to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mask {
    pub window: Option<usize>,
}

impl Mask {
    /// Every earlier position and the query's own.
    pub const CAUSAL: Mask = Mask { window: None };

    /// The query's own position and the `size - 1` before it.
    pub fn window(size: usize) -> Mask {
        Mask { window: Some(size) }
    }

    /// Whether a query at position `query` sees the key at position `key`.
    pub fn visible(&self, query: usize, key: usize) -> bool {
        key <= query && self.window.is_none_or(|w| key + w > query)
    }

    /// The part of `keys` (a range of positions) that a query at `query` sees.
    fn visible_part(&self, query: usize, keys: Range<usize>) -> Range<usize> {
        let oldest = self.window.map_or(0, |w| (query + 1).saturating_sub(w));
        let start = keys.start.max(oldest).min(keys.end);
        start..keys.end.min(query + 1).max(start)
    }
}

/// Attention of a whole sequence to itself (the model without a cache): `q` is
/// `[heads, n, dim]`, `k` and `v` are `[kv_heads, n, dim]`, one row per position.
/// GQA folds each K/V head's group of query heads into the row dimension, so no
/// key or value is copied. Returns `[heads, n, dim]`.
pub fn over_tensors(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, mask: Mask, scale: f32) -> Tensor<3> {
    let [heads, n, dim] = q.dims();
    let kv_heads = k.dims()[0];
    let group = heads / kv_heads;
    let q = q.reshape([kv_heads, group * n, dim]);
    let mut scores = q.matmul(k.swap_dims(1, 2)) * scale;
    if let Some(mask) = additive_mask(mask, group, n) {
        let device = scores.device();
        scores = scores + Tensor::<3>::from_data(mask, &device);
    }
    softmax(scores, 2).matmul(v).reshape([heads, n, dim])
}

/// `[1, group * n, n]`: 0 where query `t` sees key `j`, -inf elsewhere; `None`
/// when every key is visible (a single token), so that case adds no work.
fn additive_mask(mask: Mask, group: usize, n: usize) -> Option<TensorData> {
    if n == 1 {
        return None;
    }
    let row = |t: usize| {
        (0..n).map(move |j| {
            if mask.visible(t, j) {
                0.0f32
            } else {
                f32::NEG_INFINITY
            }
        })
    };
    let data: Vec<f32> = (0..group).flat_map(|_| (0..n).flat_map(row)).collect();
    Some(TensorData::new(data, [1, group * n, n]))
}

/// Keys and values of consecutive positions, read in place from a buffer laid
/// out `[kv_heads, slots, dim]`: rows `from..from + len` of every head, the
/// first of them at position `position`.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    /// Rows per head in the buffer.
    pub slots: usize,
    pub from: usize,
    pub len: usize,
    pub position: usize,
}

impl<'a> Run<'a> {
    /// Rows `0..n` of a `[kv_heads, n, dim]` chunk, at positions `position..position + n`.
    pub fn chunk(keys: &'a [f32], values: &'a [f32], n: usize, position: usize) -> Self {
        Run {
            keys,
            values,
            slots: n,
            from: 0,
            len: n,
            position,
        }
    }

    /// Head `kv`'s keys and values at the positions in `part`, as `dim`-sized rows.
    fn rows(&self, kv: usize, part: &Range<usize>, dim: usize) -> (&'a [f32], &'a [f32]) {
        let first = kv * self.slots + self.from + (part.start - self.position);
        let span = first * dim..(first + part.len()) * dim;
        (&self.keys[span.clone()], &self.values[span])
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
/// front to back, and nothing is copied.
pub fn over_rows(q: &[f32], start: usize, heads: Heads, mask: Mask, runs: &[Run]) -> Vec<f32> {
    let dim = heads.dim;
    let n = q.len() / (heads.query * dim);
    let mut out = vec![0.0f32; q.len()];
    let mut weights = Vec::new();
    for head in 0..heads.query {
        let kv = head / heads.group();
        for t in 0..n {
            let position = start + t;
            let query = &q[(head * n + t) * dim..][..dim];
            let visible = runs.iter().map(|run| {
                let part = mask.visible_part(position, run.positions());
                run.rows(kv, &part, dim)
            });
            weights.clear();
            for (keys, _) in visible.clone() {
                weights.extend(
                    keys.chunks_exact(dim)
                        .map(|key| dot(query, key) * heads.scale),
                );
            }
            let total = softmax_in_place(&mut weights);
            let row = &mut out[(head * n + t) * dim..][..dim];
            let mut weight = weights.iter();
            for (_, values) in visible {
                for (value, w) in values.chunks_exact(dim).zip(&mut weight) {
                    add_scaled(row, w / total, value);
                }
            }
        }
    }
    out
}

/// `x ← exp(x - max x)`, returning the sum (the softmax's denominator).
fn softmax_in_place(x: &mut [f32]) -> f32 {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut total = 0.0;
    for s in x {
        *s = (*s - max).exp();
        total += *s;
    }
    total
}

/// `a · b`, in eight running sums the compiler turns into SIMD lanes.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
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
    use crate::BackendKind;

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
    fn the_visible_part_of_a_run_is_what_the_mask_shows() {
        for mask in [Mask::CAUSAL, Mask::window(1), Mask::window(3)] {
            for query in 0..12 {
                for keys in [0..0, 0..4, 2..9, 5..12, 10..12] {
                    let part = mask.visible_part(query, keys.clone());
                    let expected: Vec<usize> =
                        keys.clone().filter(|&k| mask.visible(query, k)).collect();
                    assert_eq!(
                        part.collect::<Vec<_>>(),
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
        for mask in [Mask::CAUSAL, Mask::window(4)] {
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
                    keys: &ring,
                    values: &ring_v,
                    slots: 8,
                    from: 5,
                    len: 3,
                    position: 0,
                },
                Run {
                    keys: &ring,
                    values: &ring_v,
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
    fn tensors_and_rows_give_the_same_attention() {
        let device = BackendKind::default().device();
        let (dim, n) = (HEADS.dim, 7);
        let q = values(HEADS.query * n * dim, 4);
        let (k, v) = (values(HEADS.kv * n * dim, 5), values(HEADS.kv * n * dim, 6));
        let tensor = |data: &[f32], heads: usize| {
            Tensor::<3>::from_data(TensorData::new(data.to_vec(), [heads, n, dim]), &device)
        };
        for mask in [Mask::CAUSAL, Mask::window(3)] {
            let ours = over_tensors(
                tensor(&q, HEADS.query),
                tensor(&k, HEADS.kv),
                tensor(&v, HEADS.kv),
                mask,
                HEADS.scale,
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
            let rows = over_rows(&q, 0, HEADS, mask, &[Run::chunk(&k, &v, n, 0)]);
            assert!(worst(&ours, &rows) < 1e-5, "{mask:?}");
            assert!(
                worst(&ours, &reference(&q, &k, &v, HEADS, mask)) < 1e-5,
                "{mask:?}"
            );
        }
    }
}
