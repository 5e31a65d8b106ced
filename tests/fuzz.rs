//! A seeded, time-bounded mutation pass over every input format on stable
//! Rust (the cargo-fuzz targets in fuzz/ need nightly): each format's seeds
//! (the fixtures) are mutated the way fuzzers do (bit flips, interesting
//! integers over header fields, truncation, spliced and repeated chunks) and
//! handed to the engine as a user's file would be (fuzz/targets.rs). Any panic
//! fails the test, and the input is written to target/fuzz-crashes/ so that it
//! can become a regression fixture in fuzz/regressions/<format>/, which every
//! run replays first.
//!
//! `KVCACHE_FUZZ_SECONDS` sets the budget per format (default 6), and
//! `KVCACHE_FUZZ_SEED` the seed (default: fixed, so a failure reproduces).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Integers that break size and offset checks.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    0x7F,
    0xFF,
    0x7FFF,
    0xFFFF,
    1 << 24,
    0x7FFF_FFFF,
    0xFFFF_FFF0,
    0xFFFF_FFFF,
    u64::MAX,
];

/// One mutation of `input` (one to four edits).
fn mutate(rng: &mut ChaCha8Rng, seeds: &[&[u8]], input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.next_u32() % 4 {
        if out.is_empty() {
            out.push(rng.next_u32() as u8);
            continue;
        }
        let len = out.len();
        let at = rng.next_u32() as usize % len;
        match rng.next_u32() % 8 {
            0 => out[at] ^= 1 << (rng.next_u32() % 8),
            1 => out[at] = rng.next_u32() as u8,
            2 => {
                // An interesting integer over 4 or 8 bytes (a count, a length, an offset).
                let value = INTERESTING[rng.next_u32() as usize % INTERESTING.len()];
                let width = if rng.next_u32().is_multiple_of(2) {
                    4
                } else {
                    8
                };
                let bytes = value.to_le_bytes();
                for (i, b) in bytes[..width].iter().enumerate() {
                    if at + i < len {
                        out[at + i] = *b;
                    }
                }
            }
            3 => out.truncate(at),
            4 => {
                // Delete a chunk.
                let end = (at + 1 + rng.next_u32() as usize % 64).min(len);
                out.drain(at..end);
            }
            5 => {
                // Repeat a chunk.
                let end = (at + 1 + rng.next_u32() as usize % 64).min(len);
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            6 => {
                // Splice in a chunk of another seed.
                let other = seeds[rng.next_u32() as usize % seeds.len()];
                if !other.is_empty() {
                    let from = rng.next_u32() as usize % other.len();
                    let end = (from + 1 + rng.next_u32() as usize % 256).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
            }
            _ => {
                // A JSON-ish character where text formats break.
                const CHARS: &[u8] = b"{}[]\":,0-1e9.nul\\";
                out[at] = CHARS[rng.next_u32() as usize % CHARS.len()];
            }
        }
    }
    out
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes")
}

/// Runs `target` on `input`; a panic is returned as its message.
fn panics(target: fn(&[u8]), input: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| target(input)))
        .err()
        .map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
}

#[test]
fn regression_inputs_do_not_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (format, target, _) in targets::FORMATS {
        let Ok(entries) = std::fs::read_dir(root.join(format)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            if let Some(message) = panics(target, &input) {
                panic!("{} panics again: {message}", path.display());
            }
            replayed += 1;
        }
    }
    println!("{replayed} regression inputs replayed");
}

#[test]
fn mutated_inputs_do_not_panic() {
    let seconds: f64 = std::env::var("KVCACHE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0);
    let seed: u64 = std::env::var("KVCACHE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b76_6361_6368);
    // The panics are caught and reported together; the default hook would print each.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (index, (format, target, seeds)) in targets::FORMATS.into_iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index as u64);
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < budget {
            let parent = seeds[rng.next_u32() as usize % seeds.len()];
            let input = mutate(&mut rng, seeds, parent);
            if let Some(message) = panics(target, &input) {
                std::fs::create_dir_all(crash_dir()).unwrap();
                let path = crash_dir().join(format!("{format}-{seed}-{runs}.bin"));
                std::fs::write(&path, &input).unwrap();
                failures.push(format!("{format}: {message} (input: {})", path.display()));
            }
            runs += 1;
        }
        println!(
            "{format}: {runs} mutated inputs in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let _ = std::panic::take_hook();
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}
