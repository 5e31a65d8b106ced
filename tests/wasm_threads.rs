//! The multi-threaded build (cargo feature `threads`, scripts/build-wasm-threads.sh) in a
//! dedicated Web Worker, as the page's worker runs it: the pool started with `initThreadPool`,
//! a matmul split over it puts every tile in its place, and the generator gives the reference's
//! greedy ids with the pool running its forward passes.
#![cfg(all(target_arch = "wasm32", feature = "threads"))]

use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use kvcache_wasm::pool;
use kvcache_wasm::wasm::init_thread_pool;

mod wasm_common;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn the_pool_splits_matmuls_and_generates_the_reference_ids() {
    JsFuture::from(init_thread_pool(2)).await.unwrap();
    assert_eq!(pool::threads(), 2, "the pool has started");

    // A matmul large enough to be split (300 weight rows × 256 × 3 rows of activations), its
    // rows not a multiple of the tile: each tile, wherever it ran, lands in its place.
    let (rows, cols, n) = (300, 256, 3);
    let value = |o: usize, r: usize| (o * 1000 + r) as f32;
    let want: Vec<f32> = (0..n)
        .flat_map(|r| (0..rows).map(move |o| value(o, r)))
        .collect();
    let got = pool::on_pool(|| {
        pool::by_row_tiles(
            (rows, cols, n),
            16,
            || (),
            |_, range, mut out| {
                assert!(range.len() <= 16, "split into tiles: {range:?}");
                for o in range {
                    for r in 0..n {
                        out.put(r, o, value(o, r));
                    }
                }
            },
        )
    });
    assert_eq!(got, want);

    let exp = wasm_common::expected();
    let mut g = wasm_common::tiny_llama().unwrap();
    assert_eq!(wasm_common::greedy_ids(&mut g, &exp), exp.greedy_ids);
}
