//! The memory budget: sizes that come from input (a `maxSeqLen`, a header's
//! counts) are checked against it before anything is allocated from them.
//! wasm32 memory cannot grow past 4 GiB and never shrinks, so by default
//! nothing may take the module's memory past 3.5 GiB: the rest is headroom
//! for the allocator and the JS glue. Natively the same figure bounds each
//! single allocation sized from input.

use crate::error::{Error, Result};

/// How far an allocation sized from input may take the memory: 3.5 GiB.
pub const MEMORY_BUDGET_BYTES: u64 = 7 << 29;

/// Bytes the module's memory already holds (its size in wasm; 0 natively).
fn in_use() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65536
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
    let used = in_use();
    let fits = bytes.is_some_and(|b| b <= MEMORY_BUDGET_BYTES.saturating_sub(used));
    if fits {
        return Ok(());
    }
    let asked = bytes.map_or("more than 2^64 bytes".to_string(), |b| {
        format!("{} ({b} bytes)", human(b))
    });
    let held = if used > 0 {
        format!(", {} of which is in use", human(used))
    } else {
        String::new()
    };
    Err(Error::OutOfMemory(format!(
        "{what} needs {asked}: more than the memory budget allows ({}{held})",
        human(MEMORY_BUDGET_BYTES)
    )))
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
        assert_eq!(human(12), "12 bytes");
    }
}
