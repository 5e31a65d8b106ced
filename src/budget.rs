//! The memory budget: sizes that come from input (a `maxSeqLen`, a header's
//! counts, a model's tensors) are checked against it before anything is
//! allocated from them. wasm32 memory cannot grow past 4 GiB, and an
//! allocation that fails there aborts the whole module, so by default the
//! live allocations may not take more than 3.5 GiB: the rest is headroom for
//! the allocator's fragmentation and the JS glue. Natively the same figure
//! bounds each single allocation sized from input.

use crate::error::{Error, Result};

/// How much the live allocations may take: 3.5 GiB.
pub const MEMORY_BUDGET_BYTES: u64 = 7 << 29;

/// Bytes the module's live allocations hold in wasm (counted by its global
/// allocator, below); 0 natively. Not the memory's size: wasm memory
/// never shrinks, and what a dropped model held is free for the next one.
pub fn in_use() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        live::bytes()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Fails, saying how much `what` asked for, when `bytes` more would take
/// memory past [`MEMORY_BUDGET_BYTES`]. `bytes` is `None` when computing it
/// overflowed 64 bits.
pub fn check(what: &str, bytes: Option<u64>) -> Result<()> {
    match fits(bytes) {
        true => Ok(()),
        false => Err(refusal(what, bytes)),
    }
}

/// An empty vector with room for `len` values, checked against the budget
/// and reserved fallibly: memory that runs out is an error naming `what`
/// (called only then), not an abort.
pub fn vec_with_capacity<T>(what: impl Fn() -> String, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    let bytes = (len as u64).checked_mul(size_of::<T>() as u64);
    reserve(what, bytes, || v.try_reserve_exact(len))?;
    Ok(v)
}

/// `bytes` checked against the budget, then taken by `try_reserve` (a
/// collection's fallible reservation of them): memory that runs out is an
/// error naming `what` (called only then), not an abort.
pub fn reserve<E>(
    what: impl Fn() -> String,
    bytes: Option<u64>,
    try_reserve: impl FnOnce() -> std::result::Result<(), E>,
) -> Result<()> {
    if !fits(bytes) {
        return Err(refusal(&what(), bytes));
    }
    try_reserve().map_err(|_| {
        Error::OutOfMemory(format!(
            "{} needs {}, which the memory cannot hold",
            what(),
            human(bytes.unwrap_or(u64::MAX))
        ))
    })
}

/// `len` copies of `value`, allocated as [`vec_with_capacity`] does.
pub fn vec_filled<T: Clone>(what: impl Fn() -> String, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = vec_with_capacity(what, len)?;
    v.resize(len, value);
    Ok(v)
}

fn fits(bytes: Option<u64>) -> bool {
    bytes.is_some_and(|b| b <= MEMORY_BUDGET_BYTES.saturating_sub(in_use()))
}

/// The error for `what` asking for `bytes` that do not fit.
fn refusal(what: &str, bytes: Option<u64>) -> Error {
    let used = in_use();
    let asked = bytes.map_or("more than 2^64 bytes".to_string(), |b| {
        format!("{} ({b} bytes)", human(b))
    });
    let held = if used > 0 {
        format!(", {} of which is in use", human(used))
    } else {
        String::new()
    };
    Error::OutOfMemory(format!(
        "{what} needs {asked}: more than the memory budget allows ({}{held})",
        human(MEMORY_BUDGET_BYTES)
    ))
}

/// The global allocator in wasm: the system allocator (dlmalloc) with a count
/// of the bytes it has handed out and not had back, for [`in_use`].
#[cfg(target_arch = "wasm32")]
mod live {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn bytes() -> u64 {
        LIVE.load(Relaxed) as u64
    }

    struct Counting;

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    // SAFETY: every call goes to `System` with the caller's arguments; the
    // count only follows what it returns.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(new_size, Relaxed);
                LIVE.fetch_sub(layout.size(), Relaxed);
            }
            p
        }
    }
}

/// `bytes` in the largest binary unit that keeps it at 1 or more: `3.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_budget_passes_and_past_it_says_how_much() {
        assert!(check("a buffer", Some(1 << 20)).is_ok());
        assert!(check("a buffer", Some(MEMORY_BUDGET_BYTES)).is_ok());
        let err = check("the cache", Some(8_000_000_000))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "out of memory: the cache needs 7.5 GiB (8000000000 bytes): more than the memory budget allows (3.5 GiB)"
        );
        let err = check("the cache", None).unwrap_err().to_string();
        assert!(err.contains("needs more than 2^64 bytes"), "{err}");
        assert_eq!(human(1536), "1.5 KiB");
    }

    #[test]
    fn vectors_are_allocated_within_the_budget_and_name_what_asked() {
        let err = vec_with_capacity::<f32>(|| "tensor `x` as f32".to_string(), 1 << 30)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "out of memory: tensor `x` as f32 needs 4.0 GiB (4294967296 bytes): more than the memory budget allows (3.5 GiB)"
        );
        let err = vec_filled(|| "a table".to_string(), usize::MAX, 0u64).unwrap_err();
        assert!(
            err.to_string()
                .contains("a table needs more than 2^64 bytes"),
            "{err}"
        );
        assert_eq!(
            vec_filled(|| unreachable!(), 3, 7u8).unwrap(),
            vec![7, 7, 7]
        );
        assert_eq!(
            vec_with_capacity::<u8>(|| unreachable!(), 5)
                .unwrap()
                .capacity(),
            5
        );
        assert_eq!(human(12), "12 bytes");
    }
}
