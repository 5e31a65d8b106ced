//! Snapshots: taken between runs, restored into the same generator or a new
//! one of the same model, the next greedy tokens are the ones that followed
//! the snapshot; bytes that are not a snapshot of this model under these
//! settings are refused, changing nothing.

mod common;

use kvcache_wasm::{BackendKind, CacheOptions, CacheSnapshot, CacheStrategy, Generator, KvDtype};

fn generator(name: &str, options: CacheOptions) -> Generator {
    common::generator(name, BackendKind::default(), options)
}

fn next_ids(g: &mut Generator) -> Vec<u32> {
    g.generate(" a", &common::greedy(5), |_| {}).unwrap().ids
}

#[test]
fn a_restored_snapshot_gives_the_tokens_that_followed_it() {
    let settings = [
        (CacheStrategy::Concat, true),
        (CacheStrategy::Prealloc, true),
        // A ring of 4 that has wrapped: entries sit in rotated slots.
        (CacheStrategy::Window { size: 4, sinks: 0 }, true),
        (CacheStrategy::Concat, false),
    ];
    for name in common::TINY.iter().chain(&["tiny-gemma3"]) {
        for (strategy, use_cache) in settings {
            let what = format!("{name}, {strategy}, cache {use_cache}");
            let mut g = generator(name, common::tiny_options(strategy, use_cache));
            g.generate("Once upon", &common::greedy(4), |_| {}).unwrap();
            let snapshot = g.snapshot().unwrap();
            assert_eq!(snapshot.position, g.position(), "{what}");
            assert_eq!(
                snapshot.tokens.len(),
                snapshot.position + 1,
                "{what}: the last token is pending"
            );
            let first = next_ids(&mut g);
            let after = g.position();

            g.restore(&snapshot).unwrap();
            assert_eq!(g.snapshot().unwrap(), snapshot, "{what}: restored exactly");
            assert_eq!(next_ids(&mut g), first, "{what}: same generator");
            assert_eq!(g.position(), after, "{what}");

            let bytes = snapshot.to_bytes();
            assert_eq!(
                CacheSnapshot::from_bytes(&bytes).unwrap(),
                snapshot,
                "{what}"
            );
            let mut fresh = generator(name, common::tiny_options(strategy, use_cache));
            fresh.restore_bytes(&bytes).unwrap();
            assert_eq!(next_ids(&mut fresh), first, "{what}: a new generator");
        }
    }
}

#[test]
fn snapshots_keep_the_entries_as_the_cache_stores_them() {
    for kv_dtype in KvDtype::ALL {
        for strategy in [
            CacheStrategy::Concat,
            CacheStrategy::Window { size: 4, sinks: 0 },
        ] {
            let what = format!("{strategy}, {kv_dtype}");
            let options = CacheOptions {
                kv_dtype,
                ..common::tiny_options(strategy, true)
            };
            let mut g = generator("tiny-llama", options.clone());
            g.generate("Once upon", &common::greedy(6), |_| {}).unwrap();
            let snapshot = g.snapshot().unwrap();
            // Magic, version, fingerprint, settings, shape, position, counts, the chat tag (no
            // chat here) and checksum take 64 bytes; then 4 per token, 4 per layer (its entry
            // count) and the entries as stored, which the textbook formula counts.
            let (layers, formula) = (snapshot.layers.len(), g.cache_bytes_formula());
            let expected = 64 + 4 * snapshot.tokens.len() + 4 * layers + formula;
            let bytes = snapshot.to_bytes();
            assert_eq!(bytes.len(), expected, "{what}");
            let first = next_ids(&mut g);

            let mut fresh = generator("tiny-llama", options);
            fresh.restore_bytes(&bytes).unwrap();
            assert_eq!(
                fresh.snapshot().unwrap(),
                snapshot,
                "{what}: restored exactly"
            );
            assert_eq!(fresh.cache_bytes_formula(), formula, "{what}");
            assert_eq!(next_ids(&mut fresh), first, "{what}: a new generator");
        }
    }
}

#[test]
fn shapes_past_any_memory_in_sealed_bytes_are_clear_errors() {
    // Bytes a forger sealed with a valid checksum: the shape's sizes (kv heads at byte 35, head
    // dim at 39) multiply past `usize` in the entries' length, and must fail its check.
    for kv_dtype in KvDtype::ALL {
        let options = CacheOptions {
            kv_dtype,
            ..common::tiny_options(CacheStrategy::Concat, true)
        };
        let mut g = generator("tiny-llama", options);
        g.generate("Once upon", &common::greedy(2), |_| {}).unwrap();
        let bytes = g.snapshot().unwrap().to_bytes();
        for field in [35, 39] {
            let mut forged = bytes[..bytes.len() - 8].to_vec();
            forged[field..field + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            let checksum = kvcache_wasm::fingerprint::hash(&[&forged]);
            forged.extend_from_slice(&checksum.to_le_bytes());
            let err = CacheSnapshot::from_bytes(&forged).unwrap_err().to_string();
            assert!(
                err.starts_with("bad snapshot: the bytes are truncated: layer 0's entries needs"),
                "{kv_dtype}, byte {field}: {err}"
            );
        }
    }
}

#[test]
fn a_forged_chat_conversation_is_a_clear_error() {
    let mut g = generator(
        "tiny-llama",
        common::tiny_options(CacheStrategy::Concat, true),
    );
    g.generate("Once upon", &common::greedy(2), |_| {}).unwrap();
    let snapshot = g.snapshot().unwrap();
    let bytes = snapshot.to_bytes();
    // The conversation's tag follows the fixed fields (51 bytes) and the tokens.
    let tag = 51 + 4 * snapshot.tokens.len();
    assert_eq!(bytes[tag], 0, "no chat");
    let sealed = |tag_bytes: &[u8]| {
        let mut forged = bytes[..tag].to_vec();
        forged.extend_from_slice(tag_bytes);
        forged.extend_from_slice(&bytes[tag + 1..bytes.len() - 8]);
        let checksum = kvcache_wasm::fingerprint::hash(&[&forged]);
        forged.extend_from_slice(&checksum.to_le_bytes());
        CacheSnapshot::from_bytes(&forged)
    };
    for (tag_bytes, says) in [
        (&[3u8][..], "unknown chat conversation tag 3"),
        (
            &[2, 2, 0, 0, 0, 0xff, 0xfe][..],
            "the system prompt is not UTF-8",
        ),
        (
            &[2, 0xff, 0xff, 0xff, 0x7f][..],
            "the system prompt needs 2147483647 bytes",
        ),
    ] {
        let err = sealed(tag_bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("bad snapshot: ") && err.contains(says),
            "{tag_bytes:?}: {err}"
        );
    }
    let pirate = sealed(&[2, 5, 0, 0, 0, b'A', b'r', b'r', b'r', b'!']).unwrap();
    assert_eq!(
        pirate.conversation.and_then(|c| c.system).as_deref(),
        Some("Arrr!")
    );
}

#[test]
fn bad_snapshots_are_clear_errors_and_change_nothing() {
    let window = common::tiny_options(CacheStrategy::Window { size: 4, sinks: 0 }, true);
    let mut g = generator("tiny-llama", window.clone());
    g.generate("Once", &common::greedy(6), |_| {}).unwrap();
    let bytes = g.snapshot().unwrap().to_bytes();
    g.generate(" upon", &common::greedy(2), |_| {}).unwrap();
    let before = g.snapshot().unwrap();
    let unchanged = |g: &Generator, what: &str| {
        assert_eq!(
            g.snapshot().unwrap(),
            before,
            "{what} changed the generator"
        );
    };
    let refused = |g: &mut Generator, bytes: &[u8], says: &str, what: &str| {
        let err = g.restore_bytes(bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("bad snapshot: ") && err.contains(says),
            "{what}: {err}"
        );
    };

    // Every truncation.
    for len in 0..bytes.len() {
        let err = g.restore_bytes(&bytes[..len]).unwrap_err().to_string();
        assert!(err.starts_with("bad snapshot: "), "{len} bytes: {err}");
        unchanged(&g, &format!("{len} bytes"));
    }
    refused(&mut g, &bytes[..7], "not a KV cache snapshot", "7 bytes");
    refused(&mut g, &bytes[..40], "truncated or damaged", "40 bytes");

    // A changed byte anywhere after the header.
    for at in [20, bytes.len() / 2, bytes.len() - 9] {
        let mut garbled = bytes.clone();
        garbled[at] ^= 0x10;
        refused(
            &mut g,
            &garbled,
            "truncated or damaged",
            &format!("byte {at} changed"),
        );
        unchanged(&g, "garbled bytes");
    }

    // A newer format, and an older one.
    let version = kvcache_wasm::snapshot::FORMAT_VERSION;
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(version + 1).to_le_bytes());
    refused(
        &mut g,
        &newer,
        &format!(
            "format version is {}, newer than this engine reads ({version})",
            version + 1
        ),
        "newer",
    );
    unchanged(&g, "a newer format");
    let mut older = bytes.clone();
    older[8..12].copy_from_slice(&(version - 1).to_le_bytes());
    refused(
        &mut g,
        &older,
        &format!(
            "format version is {}, from an older kvcache-wasm",
            version - 1
        ),
        "older",
    );
    unchanged(&g, "an older format");

    // Another model, same settings.
    let mut other = generator("tiny-qwen3", window.clone());
    other.generate("Once", &common::greedy(6), |_| {}).unwrap();
    refused(
        &mut g,
        &other.snapshot().unwrap().to_bytes(),
        "another model",
        "foreign",
    );
    unchanged(&g, "a foreign snapshot");

    // Other settings: strategy, window, maxSeqLen, cache off.
    for (settings, says) in [
        (
            common::tiny_options(CacheStrategy::Concat, true),
            "taken with cache window(4)",
        ),
        (
            common::tiny_options(CacheStrategy::Window { size: 5, sinks: 0 }, true),
            "this generator has cache window(5)",
        ),
        (
            CacheOptions {
                max_seq_len: Some(31),
                ..window.clone()
            },
            "maxSeqLen 31",
        ),
        (
            common::tiny_options(CacheStrategy::Window { size: 4, sinks: 0 }, false),
            "this generator has no cache",
        ),
    ] {
        let mut h = generator("tiny-llama", settings);
        h.generate("Once", &common::greedy(2), |_| {}).unwrap();
        let mine = h.snapshot().unwrap();
        refused(&mut h, &bytes, says, says);
        assert_eq!(h.snapshot().unwrap(), mine, "{says}: changed the generator");
    }

    // Not during a run.
    let event = g.prefill(" the", &common::greedy(3)).unwrap();
    assert!(event.is_some());
    let err = g.snapshot().unwrap_err().to_string();
    assert!(err.contains("refused during a run"), "{err}");
    while g.step().unwrap().is_some() {}
    assert!(g.snapshot().is_ok(), "once the run has stopped");
}
