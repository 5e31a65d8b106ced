//! Causal self-attention over a query chunk and the keys/values it may see,
//! with or without a KV cache. Shared by GPT-2 and Llama.

use burn::tensor::{activation::softmax, Tensor, TensorData};

use crate::cache::LayerCache;
use crate::slots::Slots;

/// Attention for `n` new tokens at absolute positions `q_start..q_start + n`.
///
/// `q` is `[heads, n, head_dim]`; `k` and `v` are this chunk's `[kv_heads, n, head_dim]`.
/// The three cases, in order:
/// - no cache: the chunk attends to itself only (the caller passes the whole sequence);
/// - a cache, first call: the cache is empty and simply stores `k`, `v`;
/// - a cache, later calls: the new entries are appended and the chunk attends to all of them.
///
/// `prealloc`'s slots take the new entries and compute attention in place (no window applies).
pub fn attend(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    cache: Option<&mut LayerCache>,
    q_start: usize,
    window: Option<usize>,
) -> Tensor<3> {
    let (keys, values, k_start) = match cache {
        None => (k, v, q_start),
        Some(cache) => {
            let [kv_heads, _, dim] = k.dims();
            if let Some(slots) = cache.slots(kv_heads, dim) {
                return in_slots(q, k, v, slots);
            }
            let cached = cache.len();
            let (keys, values) = cache.append(k, v);
            (keys, values, q_start - cached)
        }
    };
    scaled_dot_product(q, keys, values, q_start, k_start, window)
}

fn in_slots(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, slots: &mut Slots) -> Tensor<3> {
    let [heads, n, dim] = q.dims();
    let device = q.device();
    slots.write(&floats(k), &floats(v), n);
    let out = slots.attend(&floats(q), heads, n);
    Tensor::from_data(TensorData::new(out, [heads, n, dim]), &device)
}

/// A tensor's values, row-major. The model computes in `f32` throughout, and
/// `convert` makes sure of it, so reading them back cannot fail.
fn floats(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 just before")
}

/// softmax(q·kᵀ/√d + mask)·v, with grouped-query attention done by folding
/// each K/V head's group of query heads into the row dimension (no K/V copies).
fn scaled_dot_product(
    q: Tensor<3>,
    keys: Tensor<3>,
    values: Tensor<3>,
    q_start: usize,
    k_start: usize,
    window: Option<usize>,
) -> Tensor<3> {
    let [heads, n, dim] = q.dims();
    let [kv_heads, m, _] = keys.dims();
    let group = heads / kv_heads;
    let q = q.reshape([kv_heads, group * n, dim]);
    let mut scores = q.matmul(keys.swap_dims(1, 2)) * (1.0 / (dim as f64).sqrt());
    if let Some(mask) = mask(group, n, m, q_start, k_start, window) {
        let device = scores.device();
        scores = scores + Tensor::<3>::from_data(mask, &device);
    }
    softmax(scores, 2).matmul(values).reshape([heads, n, dim])
}

/// Additive mask `[1, group * n, m]`: 0 where query may see key, -inf elsewhere.
/// A key is visible when it is not in the future and, with a window, lies in
/// the last `window` positions. Returns `None` when every key is visible
/// (the usual one-token decode step), so that case adds no work.
fn mask(
    group: usize,
    n: usize,
    m: usize,
    q_start: usize,
    k_start: usize,
    window: Option<usize>,
) -> Option<TensorData> {
    let visible = |t: usize, j: usize| {
        let (qp, kp) = (q_start + t, k_start + j);
        kp <= qp && window.is_none_or(|w| kp + w > qp)
    };
    if (0..n).all(|t| (0..m).all(|j| visible(t, j))) {
        return None;
    }
    let row = |t: usize| {
        (0..m).map(move |j| {
            if visible(t, j) {
                0.0f32
            } else {
                f32::NEG_INFINITY
            }
        })
    };
    let data: Vec<f32> = (0..group).flat_map(|_| (0..n).flat_map(row)).collect();
    Some(TensorData::new(data, [1, group * n, m]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_pattern(mask: Option<TensorData>, n: usize, m: usize) -> Vec<String> {
        match mask {
            None => vec!["#".repeat(m); n],
            Some(d) => d
                .try_to_vec::<f32>()
                .unwrap()
                .chunks(m)
                .take(n)
                .map(|r| {
                    r.iter()
                        .map(|x| if *x == 0.0 { '#' } else { '.' })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn causal_mask_hides_the_future() {
        assert_eq!(
            visible_pattern(mask(1, 3, 3, 0, 0, None), 3, 3),
            ["#..", "##.", "###"]
        );
    }

    #[test]
    fn window_mask_hides_the_distant_past() {
        assert_eq!(
            visible_pattern(mask(1, 4, 4, 0, 0, Some(2)), 4, 4),
            ["#...", "##..", ".##.", "..##"]
        );
        // Decode step at position 5 with cached keys for positions 3, 4 and the new 5.
        assert_eq!(visible_pattern(mask(1, 1, 3, 5, 3, Some(2)), 1, 3), [".##"]);
    }

    #[test]
    fn single_token_step_needs_no_mask() {
        assert!(mask(3, 1, 10, 9, 0, None).is_none());
    }
}
