//! The `kvcache` binary's contract: flags, JSON fields, one-line errors.

mod common;

use std::process::{Command, Output};

use common::*;
use kvcache_wasm::ModelOptions;
use serde_json::Value;

fn kvcache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvcache"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn generate_json_matches_the_reference_with_and_without_cache() {
    let exp = expected("tiny-gpt2");
    let model = fixture("tiny-gpt2");
    let model = model.to_str().unwrap();
    let base = [
        "generate",
        "--model",
        model,
        "--prompt",
        &exp.prompt,
        "--max-tokens",
        "16",
        "--json",
    ];
    for extra in [
        &[][..],
        &["--no-cache"],
        &["--cache", "prealloc"],
        &["--backend", "ndarray"],
    ] {
        let out = json(&kvcache(&[&base[..], extra].concat()));
        assert_eq!(ids(&out["prompt_ids"]), exp.prompt_ids);
        assert_eq!(ids(&out["generated_ids"]), exp.greedy_ids, "{extra:?}");
        assert_eq!(out["step_ms"].as_array().unwrap().len(), 16);
        assert!(out["prefill_ms"].as_f64().unwrap() > 0.0);
        assert!(out["text"].as_str().is_some());
        let cache_len = out["cache_len"].as_u64().unwrap();
        assert_eq!(cache_len, if extra == ["--no-cache"] { 0 } else { 6 + 15 });
        assert!(out["cache_bytes"].as_u64().is_some());
    }
    let windowed = json(&kvcache(
        &[&base[..], &["--cache", "window", "--window", "6"]].concat(),
    ));
    assert_eq!(ids(&windowed["generated_ids"]), exp.window.greedy_ids);
    assert_eq!(windowed["cache_len"], 6);

    // Sinks: the numpy reference's tokens (sinks_reference.py), 2 + 4 entries held.
    let sinks: Value = serde_json::from_str(&read_text("sinks-expected.json")).unwrap();
    let flags = ["--cache", "window", "--window", "4", "--sinks", "2"];
    let out = json(&kvcache(&[&base[..], &flags].concat()));
    assert_eq!(
        ids(&out["generated_ids"]),
        ids(&sinks["tiny-gpt2"]["greedy_ids"])
    );
    assert_eq!(out["strategy"], "window(4, 2 sinks)");
    assert_eq!(out["cache_len"], 6);
    // An int8 cache: 2 layers × 2 (K, V) × 4 heads × 21 entries × (16 bytes + an f16 scale).
    let int8 = json(&kvcache(&[&base[..], &["--kv-dtype", "int8"]].concat()));
    assert_eq!(int8["kv_dtype"], "int8");
    assert_eq!(int8["cache_bytes"], 2 * 2 * 4 * 21 * 18);
    assert_eq!(int8["cache_bytes"], int8["cache_bytes_formula"]);
    assert_eq!(out["kv_dtype"], "f32");
    let refused = kvcache(&[&base[..], &["--sinks", "2"]].concat());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("sinks only apply with the window strategy"),
        "{stderr}"
    );
}

#[test]
fn logits_json_matches_the_reference() {
    let exp = expected("tiny-llama.gguf");
    let model = fixture("tiny-llama.gguf");
    let id_list = exp
        .prompt_ids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for extra in [&[][..], &["--no-cache"]] {
        let out = json(&kvcache(
            &[
                &[
                    "logits",
                    "--model",
                    model.to_str().unwrap(),
                    "--ids",
                    &id_list,
                    "--json",
                ][..],
                extra,
            ]
            .concat(),
        ));
        let logits: Vec<f32> = out["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_close(
            &logits,
            &exp.prompt_logits_last,
            1e-4,
            &format!("logits {extra:?}"),
        );
    }
}

#[test]
fn score_json_has_the_ids_the_nll_and_the_perplexity() {
    let model = fixture("tiny-llama.gguf");
    let text = "Once upon a time there was a cat.";
    let run = |extra: &[&str]| {
        let base = ["score", "--model", model.to_str().unwrap(), "--text", text];
        json(&kvcache(&[&base[..], extra, &["--json"]].concat()))
    };
    let cached = run(&[]);
    let fields: Vec<&str> = cached
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["ids", "nll", "perplexity"]);
    let nll = |out: &Value| -> Vec<f64> {
        out["nll"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let ids = ids(&cached["ids"]);
    assert!(ids.len() > 10, "{ids:?}");
    assert_eq!(nll(&cached).len(), ids.len() - 1);
    let mean = nll(&cached).iter().sum::<f64>() / (ids.len() - 1) as f64;
    let perplexity = cached["perplexity"].as_f64().unwrap();
    assert!((perplexity - mean.exp()).abs() < 1e-9 * perplexity);
    let uncached = run(&["--no-cache"]);
    for (a, b) in nll(&cached).iter().zip(nll(&uncached)) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }
    let windowed = run(&["--cache", "window", "--window", "3"]);
    assert_ne!(windowed["perplexity"], cached["perplexity"]);
}

#[test]
fn streams_text_without_json() {
    let out = kvcache(&[
        "generate",
        "--model",
        fixture("tiny-llama").to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "5",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Once upon a time"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/s"));
}

#[test]
fn cache_cost_times_every_step_of_the_chosen_strategy() {
    let tiny = fixture("tiny-llama");
    let tiny = tiny.to_str().unwrap();
    for (cache, expect) in [
        (&["prealloc"][..], "prealloc"),
        (&["window", "--window", "4"], "window(4)"),
    ] {
        let args = [
            &["cache-cost", "--model", tiny, "--tokens", "12", "--cache"],
            cache,
        ]
        .concat();
        let out = json(&kvcache(&args));
        assert_eq!(out["strategy"], expect);
        let ms = out["step_ms"].as_array().unwrap();
        assert_eq!(ms.len(), 12);
        assert!(ms.iter().all(|t| t.as_f64().unwrap() >= 0.0));
    }
}

#[test]
fn interleave_decodes_the_reference_tokens_with_each_strategy_timed() {
    let exp = expected("tiny-gpt2");
    let tiny = fixture("tiny-gpt2");
    let args = [
        "interleave",
        "--model",
        tiny.to_str().unwrap(),
        "--caches",
        "concat,prealloc,window",
        "--window",
        "6",
        "--prompt",
        &exp.prompt,
        "--tokens",
        "16",
    ];
    let out = json(&kvcache(&args));
    assert_eq!(ids(&out["ids"]), exp.greedy_ids);
    assert_eq!(
        out["strategies"],
        serde_json::json!(["concat", "prealloc", "window(6)"])
    );
    let steps = out["step_ms"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|ms| ms.as_array().unwrap().len() == 15));
    assert_eq!(
        out["disagreements"].as_u64().unwrap() > 0,
        exp.window.greedy_ids != exp.greedy_ids
    );
}

#[test]
fn bad_input_gives_one_line_and_a_failure_code() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let truncated = std::env::temp_dir().join("kvcache-truncated.gguf");
    std::fs::write(&truncated, &read("tiny-llama.gguf")[..5000]).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "generate",
                "--model",
                "/nonexistent/model",
                "--prompt",
                "hi",
            ],
            "neither a folder",
        ),
        (
            vec![
                "generate",
                "--model",
                truncated.to_str().unwrap(),
                "--prompt",
                "hi",
            ],
            "bad weights file",
        ),
        (vec!["generate", "--model", tiny, "--prompt", ""], "empty"),
        (
            vec![
                "generate",
                "--model",
                tiny,
                "--prompt",
                "hi",
                "--temperature",
                "-1",
            ],
            "temperature",
        ),
        (
            vec![
                "generate", "--model", tiny, "--prompt", "hi", "--cache", "window",
            ],
            "window size",
        ),
        (
            vec![
                "generate", "--model", tiny, "--prompt", "hi", "--cache", "ring",
            ],
            "ring",
        ),
        (
            vec![
                "generate",
                "--model",
                tiny,
                "--prompt",
                "hi",
                "--max-tokens",
                "lots",
            ],
            "lots",
        ),
        (vec!["logits", "--model", tiny, "--ids", "1,x"], "x"),
        (
            vec![
                "cache-cost",
                "--model",
                tiny,
                "--max-seq-len",
                "8",
                "--tokens",
                "9",
            ],
            "maxSeqLen is 8",
        ),
        (
            vec![
                "interleave",
                "--model",
                tiny,
                "--caches",
                "concat,ring",
                "--prompt",
                "hi",
            ],
            "unknown cache strategy `ring`",
        ),
        (vec!["generate", "--prompt", "hi"], "--model"),
    ];
    for (args, want) in cases {
        let out = kvcache(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line expected, got: {stderr}"
        );
        assert!(
            stderr.contains(want) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

/// `tokenize` prints the ids a prompt starts with (Gemma's BOS first), from the
/// GGUF's tokenizer and the HF folder's alike; `generate --json` lists the
/// entries each layer holds, the local layers capped at their window of 4.
#[test]
fn tokenize_and_cache_layer_lens_for_gemma3() {
    let exp = expected("tiny-gemma3");
    for model in ["tiny-gemma3.gguf", "tiny-gemma3"] {
        let model = fixture(model);
        let out = json(&kvcache(&[
            "tokenize",
            "--model",
            model.to_str().unwrap(),
            "--text",
            &exp.prompt,
            "--json",
        ]));
        assert_eq!(ids(&out["ids"]), exp.prompt_ids, "{model:?}");
    }
    let model = fixture("tiny-gemma3.gguf");
    let out = json(&kvcache(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        &exp.prompt,
        "--max-tokens",
        "8",
        "--json",
    ]));
    assert_eq!(ids(&out["generated_ids"]), exp.greedy_ids[..8]);
    // 5 prompt tokens + 7 decoded (the 8th is not fed back): 12 in the global layer.
    assert_eq!(ids(&out["cache_layer_lens"]), [4, 4, 4, 4, 4, 12]);
    assert_eq!(out["cache_len"], 12);
}

/// The cache flags are the JS model options under other names, and are
/// refused with JS's words: each case is the flags and the options object
/// that says the same, and the CLI must print exactly what those options give.
#[test]
fn cache_flags_are_checked_as_the_js_options_are() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let cases: [(&[&str], &str, &str); 9] = [
        (
            &["--cache", "concat", "--window", "8"],
            r#"{"cache":"concat","window":8}"#,
            "option `window` only applies with cache: \"window\" (cache is \"concat\")",
        ),
        (
            &["--window", "4"],
            r#"{"window":4}"#,
            "only applies with cache: \"window\"",
        ),
        (
            &["--cache", "prealloc", "--window", "4"],
            r#"{"cache":"prealloc","window":4}"#,
            "(cache is \"prealloc\")",
        ),
        (
            &["--cache", "window"],
            r#"{"cache":"window"}"#,
            "the `window` cache strategy needs a window size",
        ),
        (
            &["--cache", "window", "--window", "0"],
            r#"{"cache":"window","window":0}"#,
            "window must be between 1 and maxSeqLen, got 0",
        ),
        (
            &["--cache", "window", "--window", "9", "--max-seq-len", "8"],
            r#"{"cache":"window","window":9,"maxSeqLen":8}"#,
            "window must be between 1 and maxSeqLen (8), got 9",
        ),
        (
            &["--max-seq-len", "0"],
            r#"{"maxSeqLen":0}"#,
            "maxSeqLen must be at least 1, got 0",
        ),
        (
            &["--cache", "ring"],
            r#"{"cache":"ring"}"#,
            "unknown cache strategy `ring` (expected concat, prealloc or window)",
        ),
        (
            &["--backend", "gpu"],
            r#"{"backend":"gpu"}"#,
            "unknown backend `gpu` (expected flex or ndarray)",
        ),
    ];
    for (flags, options, says) in cases {
        let options: ModelOptions = serde_json::from_str(options).unwrap();
        let js = match options.backend() {
            Err(e) => e,
            Ok(_) => options.cache_options().unwrap_err(),
        }
        .to_string();
        assert!(js.contains(says), "{options:?}: {js}");
        for command in ["generate", "logits", "cache-cost"] {
            let base = match command {
                "generate" => vec![command, "--model", tiny, "--prompt", "hi"],
                "logits" => vec![command, "--model", tiny, "--ids", "1,2"],
                _ => vec![command, "--model", tiny, "--tokens", "2"],
            };
            let out = kvcache(&[&base[..], flags].concat());
            assert!(!out.status.success(), "{command} {flags:?} should fail");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).trim_end(),
                format!("kvcache: {js}"),
                "{command} {flags:?}"
            );
        }
    }

    // What only the model can tell (its context of 32), and the run options.
    for (args, says) in [
        (
            &["--cache", "window", "--window", "33"][..],
            "window must be between 1 and maxSeqLen (32), got 33",
        ),
        (
            &["--system-prompt", "Be brief."],
            "option `systemPrompt` only applies with chat: true",
        ),
        (&["--top-p", "0"], "topP must be in (0, 1]"),
    ] {
        let out = kvcache(&[&["generate", "--model", tiny, "--prompt", "hi"], args].concat());
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // `interleave` gives the window to the `window` strategy only, and refuses it without one.
    let out = kvcache(&[
        "interleave",
        "--model",
        tiny,
        "--caches",
        "concat,prealloc",
        "--window",
        "4",
        "--prompt",
        "hi",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only applies with cache: \"window\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
