//! Threads, in builds with the cargo feature `threads` (in wasm: rayon's pool
//! as Web Workers sharing the module's memory, `scripts/build-wasm-threads.sh`;
//! natively: rayon's global pool). Without the feature, or in a wasm build
//! whose page has not started the pool (`initThreadPool`), everything runs on
//! the calling thread.
//!
//! A forward pass runs on a thread of the pool ([`on_pool`]) while another one
//! spins, so each matmul's tiles of weight rows ([`by_row_tiles`]) are taken
//! by both threads as soon as they are offered. Waking a sleeping pool thread
//! for each matmul cost more than the split saved (docs/performance.md,
//! step 6, "Threads").

use std::ops::Range;

/// Multiply-adds from which a matmul is split over the pool: every
/// projection of SmolLM2's decode (the smallest, k and v, 192 × 576).
#[cfg(any(feature = "threads", test))]
const SPLIT_FROM: usize = 1 << 16;

/// The threads a forward pass runs on: the pool's, with the feature `threads`
/// (in wasm: one until the page has started the pool), else one.
pub fn threads() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// Runs `f` (a forward pass) on a thread of the pool while another thread of
/// the pool spins, running the tiles `f`'s matmuls offer; the caller waits.
/// On the calling thread when there is no pool of two or more.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "threads")]
    if threads() >= 2 {
        let pass = move || with_spinner(f);
        #[cfg(target_arch = "wasm32")]
        return watched(pass);
        #[cfg(not(target_arch = "wasm32"))]
        return pass();
    }
    f()
}

/// `f` on a thread of the pool beside [`spin`] on another (from outside the
/// pool, rayon moves both into it).
#[cfg(feature = "threads")]
fn with_spinner<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (done, owner) = (AtomicBool::new(false), AtomicUsize::new(usize::MAX));
    let (r, ()) = rayon::join(
        || {
            owner.store(
                rayon::current_thread_index().unwrap_or(usize::MAX),
                Ordering::Release,
            );
            let r = f();
            done.store(true, Ordering::Release);
            r
        },
        || spin(&done, &owner),
    );
    r
}

/// The message of a panic on a thread of the pool, noted by the wasm panic
/// hook (src/wasm/crash.rs) on the panicking thread: a wasm panic aborts only
/// the thread it happens on, so the thread waiting for the pool would wait
/// forever; [`watched`] panics with it instead.
#[cfg(feature = "threads")]
static POOL_PANIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Notes a panic (called by the panic hook, on the panicking thread) when it
/// happens on a thread of the pool.
pub fn note_panic(message: &str) {
    #[cfg(feature = "threads")]
    if rayon::current_thread_index().is_some() {
        let _ = POOL_PANIC.set(message.to_owned());
    }
    #[cfg(not(feature = "threads"))]
    let _ = message;
}

/// How often the waiting thread looks for a panic on the pool.
#[cfg(all(feature = "threads", target_arch = "wasm32"))]
const PANIC_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// `pass` on the pool, the caller waiting for its result (woken when it is
/// there) and repeating a panic of the pool's threads as its own, which
/// reaches the engine guard as a crash of the call.
#[cfg(all(feature = "threads", target_arch = "wasm32"))]
fn watched<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    use std::sync::{Arc, Condvar, Mutex};
    let done = Arc::new((Mutex::new(None), Condvar::new()));
    let job = {
        let done = Arc::clone(&done);
        move || {
            let r = pass();
            let mut slot = done.0.lock().unwrap();
            *slot = Some(r);
            done.1.notify_one();
        }
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
    // SAFETY: `job` borrows from the caller's frame, which outlives it: this
    // function returns only once `job` has put its result in `done`, and when
    // a thread of the pool panics instead, it panics itself, which aborts the
    // instance without leaving the frame.
    let job: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(job) };
    rayon::spawn(job);
    let (slot, ready) = &*done;
    let mut result = slot.lock().unwrap();
    loop {
        if let Some(r) = result.take() {
            return r;
        }
        if let Some(message) = POOL_PANIC.get() {
            panic!("a thread of the pool panicked: {message}");
        }
        result = ready.wait_timeout(result, PANIC_CHECK).unwrap().0;
    }
}

/// Idle rounds after which [`spin`] gives up: far longer than the gaps between
/// a forward pass's matmuls, short enough that passes nested in each other
/// (tests running side by side, say) are never held up for long.
#[cfg(feature = "threads")]
const IDLE_ROUNDS: u32 = 1 << 16;

/// Runs whatever work the pool offers until `done`. Not on `f`'s own thread
/// (which picks this job up itself when no other thread took it, and would
/// then wait for itself), and not for more than [`IDLE_ROUNDS`] idle rounds.
#[cfg(feature = "threads")]
fn spin(done: &std::sync::atomic::AtomicBool, owner: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering;
    if rayon::current_thread_index() == Some(owner.load(Ordering::Acquire)) {
        return;
    }
    let mut idle = 0;
    while !done.load(Ordering::Acquire) && idle < IDLE_ROUNDS {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
        } else {
            idle += 1;
            std::hint::spin_loop();
        }
    }
}

/// A matmul's `[n, rows]` row-major output, from `tiles(state, range, out)`,
/// which puts the outputs of the weight rows `range` into `out`, a tile of
/// `tile_rows` at a time. On one thread it is called once, for all rows, so
/// the kernels' loops stay as they are (a call per tile made wasm decode 5%
/// slower); split over the pool (from [`SPLIT_FROM`] multiply-adds,
/// `rows · cols · n`) once per tile, each call writing its own columns of the
/// output in place. Each thread gets its own `state` from `init` (a scratch
/// buffer, say).
#[inline(always)]
#[cfg_attr(not(feature = "threads"), allow(unused_variables))] // `cols`: only to split
pub fn by_row_tiles<S>(
    (rows, cols, n): (usize, usize, usize),
    tile_rows: usize,
    init: impl Fn() -> S + Sync + Send,
    tiles: impl Fn(&mut S, Range<usize>, TileOut) + Sync + Send,
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * rows];
    let shared = Shared(out.as_mut_ptr());
    let tile_out = |columns: Range<usize>| TileOut {
        data: shared,
        rows,
        n,
        columns,
        _out: std::marker::PhantomData,
    };
    #[cfg(feature = "threads")]
    if rows * cols * n >= SPLIT_FROM {
        use rayon::prelude::*;
        (0..rows.div_ceil(tile_rows))
            .into_par_iter()
            .for_each_init(init, |state, t| {
                let range = t * tile_rows..((t + 1) * tile_rows).min(rows);
                tiles(state, range.clone(), tile_out(range));
            });
        return out;
    }
    tiles(&mut init(), 0..rows, tile_out(0..rows));
    out
}

/// `each(i, part)` for the `size`-long parts of `data` (the heads of an
/// attention's output, say), split over the pool from [`SPLIT_FROM`] `work`
/// (multiply-adds, or a like measure) and in order on one thread below.
#[cfg_attr(not(feature = "threads"), allow(unused_variables))] // `work`: only to split
pub fn by_parts<T: Send>(
    data: &mut [T],
    size: usize,
    work: usize,
    each: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "threads")]
    if work >= SPLIT_FROM {
        use rayon::prelude::*;
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, part)| each(i, part));
        return;
    }
    for (i, part) in data.chunks_mut(size).enumerate() {
        each(i, part);
    }
}

/// The output buffer of [`by_row_tiles`], shared by the threads that write
/// its disjoint columns.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: each `TileOut` made from it writes only its own columns (checked in
// `put`), and the tiles' columns do not overlap, so no two threads write the
// same element; the buffer outlives them all (`by_row_tiles` returns it after).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// Where [`by_row_tiles`]'s `tiles` puts its outputs: the columns (weight
/// rows) `columns` of the `[n, rows]` output.
pub struct TileOut<'a> {
    data: Shared,
    rows: usize,
    n: usize,
    columns: Range<usize>,
    _out: std::marker::PhantomData<&'a mut [f32]>,
}

impl TileOut<'_> {
    /// Output `o` (a weight row of the tile) of activation row `r`.
    #[inline(always)]
    pub fn put(&mut self, r: usize, o: usize, y: f32) {
        assert!(r < self.n && self.columns.contains(&o));
        // SAFETY: within the `[n, rows]` buffer (just checked), and in this tile's own columns.
        unsafe { *self.data.0.add(r * self.rows + o) = y }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// Tiles computed wherever the pool runs them land in their place of the
    /// `[n, rows]` output: a matmul large enough to be split (with the feature
    /// `threads`), its rows not a multiple of the tile.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn tiles_land_in_place() {
        let (rows, cols, n) = (300, 256, 3);
        assert!(rows * cols * n >= super::SPLIT_FROM);
        let value = |o: usize, r: usize| (o * 1000 + r) as f32;
        let want: Vec<f32> = (0..n)
            .flat_map(|r| (0..rows).map(move |o| value(o, r)))
            .collect();
        let got = super::on_pool(|| {
            super::by_row_tiles(
                (rows, cols, n),
                16,
                || (),
                |_, range, mut out| {
                    assert!(range.len() == rows || range.len() <= 16);
                    for o in range {
                        for r in 0..n {
                            out.put(r, o, value(o, r));
                        }
                    }
                },
            )
        });
        assert_eq!(got, want);
    }

    /// Each part gets its own index, whether split over the pool (with the
    /// feature `threads`) or not, and the last part may be shorter.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn parts_get_their_own_index() {
        for work in [0, super::SPLIT_FROM] {
            let mut data = vec![0usize; 103];
            super::on_pool(|| {
                super::by_parts(&mut data, 10, work, |i, part| {
                    assert!(part.len() == 10 || (i == 10 && part.len() == 3));
                    part.iter_mut().for_each(|x| *x += i + 1);
                })
            });
            let want: Vec<usize> = (0..103).map(|j| j / 10 + 1).collect();
            assert_eq!(data, want, "work {work}");
        }
    }
}
