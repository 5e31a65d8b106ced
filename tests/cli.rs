//! The `kvcache` binary's contract: flags, JSON fields, one-line errors.

mod common;

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `kvcache` started with its stdout and stderr piped, stdin closed.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kvcache"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`, killing it if it runs longer; its status and stderr.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> (ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// A command of each kind that writes to stdout, on `tiny`: a stream, and each JSON output.
fn writing_commands(tiny: &str) -> [Vec<&str>; 4] {
    [
        vec![
            "generate",
            "--model",
            tiny,
            "--prompt",
            "hi",
            "--max-tokens",
            "3",
        ],
        vec!["generate", "--model", tiny, "--prompt", "hi", "--json"],
        vec!["logits", "--model", tiny, "--ids", "1,2", "--json"],
        vec!["tokenize", "--model", tiny, "--text", "hi", "--json"],
    ]
}

/// A reader that goes away (`| head`) stops the command, and its run, with
/// status 141 and nothing on stderr; whatever was streamed until then is the
/// stream's start. The run asked for takes minutes (500 tokens of GPT-2 124M,
/// the cache off), so finishing within the limit means it stopped.
#[test]
fn a_closed_stdout_stops_the_command_quietly() {
    let prompt = "Hello";
    let mut child = spawn(&[
        "generate",
        "--model",
        "gpt2-124m-random",
        "--prompt",
        prompt,
        "--max-tokens",
        "500",
        "--no-cache",
    ]);
    let mut start = [0; 5];
    child.stdout.take().unwrap().read_exact(&mut start).unwrap();
    assert_eq!(&start, prompt.as_bytes());
    let (status, stderr) = wait_at_most(child, Duration::from_secs(60));
    assert_eq!((status.code(), stderr.as_str()), (Some(141), ""));

    // Closed before anything is written: the prompt, and each JSON output.
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    for args in writing_commands(tiny) {
        let mut child = spawn(&args);
        child.stdout = None; // closes our end of the pipe
        let (status, stderr) = wait_at_most(child, Duration::from_secs(60));
        assert_eq!(
            (status.code(), stderr.as_str()),
            (Some(141), ""),
            "{args:?}"
        );
    }
}

/// Any other write error (a full disk) is one line and status 1.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_fails_in_one_line() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    for args in writing_commands(tiny) {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kvcache"))
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "kvcache: could not write the output: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
}

/// A run refused at its start prints nothing on stdout, not even the prompt.
#[test]
fn a_refused_stream_prints_nothing() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let long = "one two three four five six seven eight nine ten ".repeat(4);
    for (extra, says) in [
        (&["--prompt", &long][..], "context full"),
        (&["--prompt", "hi", "--chat"], "no chat template"),
    ] {
        let base = ["generate", "--model", tiny, "--max-tokens", "3"];
        let out = kvcache(&[&base[..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{extra:?}");
    }
}

/// `disagreements` counts the prefill's pick too: the first token is all a
/// one-token run has, and a window of 1 picks another one than concat
/// (240 for 92, as `generate` says with each).
#[test]
fn interleave_counts_a_disagreement_on_the_first_token() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let prompt = "hello world foo";
    let first = |cache: &[&str]| {
        let base = ["generate", "--model", tiny, "--prompt", prompt, "--json"];
        let out = json(&kvcache(
            &[&base[..], &["--max-tokens", "1"], cache].concat(),
        ));
        ids(&out["generated_ids"])
    };
    assert_eq!(first(&[]), [92]);
    assert_eq!(first(&["--cache", "window", "--window", "1"]), [240]);
    let interleave = |caches: &str| {
        json(&kvcache(&[
            "interleave",
            "--model",
            tiny,
            "--caches",
            caches,
            "--window",
            "1",
            "--prompt",
            prompt,
            "--tokens",
            "1",
        ]))
    };
    let out = interleave("concat,window");
    assert_eq!(ids(&out["ids"]), [92]);
    assert_eq!(out["disagreements"], 1);
    // Each strategy that parts ways counts.
    assert_eq!(interleave("concat,window,window")["disagreements"], 2);
    assert_eq!(interleave("concat,prealloc,window")["disagreements"], 1);
}

/// `interleave` needs the room `generate` does: the prompt and every token
/// but the last, which is never fed.
#[test]
fn interleave_fills_the_context_as_generate_does() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    // 2 prompt tokens + 30 fed of 31: the 32 positions of tiny-gpt2.
    let generated = json(&kvcache(&[
        "generate",
        "--model",
        tiny,
        "--prompt",
        "hi",
        "--max-tokens",
        "31",
        "--json",
    ]));
    assert_eq!(ids(&generated["prompt_ids"]).len(), 2);
    assert_eq!(ids(&generated["generated_ids"]).len(), 31);
    let interleave = |tokens: &str| {
        kvcache(&[
            "interleave",
            "--model",
            tiny,
            "--caches",
            "concat,prealloc",
            "--prompt",
            "hi",
            "--tokens",
            tokens,
        ])
    };
    let out = json(&interleave("31"));
    assert_eq!(ids(&out["ids"]), ids(&generated["generated_ids"]));
    let steps = out["step_ms"].as_array().unwrap();
    assert!(steps.iter().all(|ms| ms.as_array().unwrap().len() == 30));
    let over = interleave("32");
    assert!(!over.status.success());
    assert_eq!(
        String::from_utf8_lossy(&over.stderr),
        "kvcache: context full: 33 tokens (0 so far + 33 new) would not fit: \
         the model's context is 32 positions; reset, or send fewer tokens\n"
    );
}

/// Without a command, the commands are named; clap's errors point to --help once.
#[test]
fn command_line_errors_are_one_line_naming_what_is_needed() {
    let out = kvcache(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kvcache: name a command: generate, logits, tokenize, score, cache-cost, interleave \
         (see kvcache --help)\n"
    );
    let out = kvcache(&[
        "generate",
        "--model",
        "m",
        "--prompt",
        "hi",
        "--max-tokens",
        "lots",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kvcache: invalid value 'lots' for '--max-tokens <MAX_TOKENS>': invalid digit found \
         in string (see kvcache --help)\n"
    );
}

/// `cache-cost` times a cache, so it has no `--no-cache` to ignore.
#[test]
fn cache_cost_has_no_no_cache_flag() {
    let tiny = fixture("tiny-gpt2");
    let out = kvcache(&[
        "cache-cost",
        "--model",
        tiny.to_str().unwrap(),
        "--tokens",
        "2",
        "--no-cache",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kvcache: unexpected argument '--no-cache' found (see kvcache --help)\n"
    );
    let help = |command: &str| String::from_utf8(kvcache(&[command, "--help"]).stdout).unwrap();
    assert!(!help("cache-cost").contains("--no-cache"));
    assert!(help("cache-cost").contains("--cache <CACHE>"));
    assert!(help("generate").contains("--no-cache"));
}

/// The streamed text is the prompt then the run's text, also when the run ends
/// inside a character (what only the end of the run decodes, a U+FFFD here).
#[test]
fn the_stream_ends_with_what_only_the_end_of_the_run_decodes() {
    let tiny = fixture("tiny-llama.gguf");
    let tiny = tiny.to_str().unwrap();
    // Seed 1 samples "Y" then a byte that starts a character the run never finishes.
    let args = [
        "generate",
        "--model",
        tiny,
        "--prompt",
        "Hi",
        "--max-tokens",
        "2",
        "--temperature",
        "1.5",
        "--seed",
        "1",
    ];
    let text = json(&kvcache(&[&args[..], &["--json"]].concat()))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.ends_with('\u{fffd}'), "{text:?}");
    let streamed = kvcache(&args);
    assert!(streamed.status.success());
    assert_eq!(
        String::from_utf8(streamed.stdout).unwrap(),
        format!("Hi{text}\n")
    );
}

/// `--prompt` and `--text` take text starting with `-` as it is.
#[test]
fn text_may_start_with_a_dash() {
    let tiny = fixture("tiny-llama.gguf");
    let tiny = tiny.to_str().unwrap();
    let joined = json(&kvcache(&[
        "tokenize",
        "--model",
        tiny,
        "--text=-hi",
        "--json",
    ]));
    let apart = json(&kvcache(&[
        "tokenize", "--model", tiny, "--text", "-hi", "--json",
    ]));
    assert_eq!(ids(&apart["ids"]), ids(&joined["ids"]));
    let out = json(&kvcache(&[
        "generate",
        "--model",
        tiny,
        "--prompt",
        "--max-tokens",
        "--max-tokens",
        "2",
        "--json",
    ]));
    let prompt = json(&kvcache(&[
        "tokenize",
        "--model",
        tiny,
        "--text",
        "--max-tokens",
        "--json",
    ]));
    assert_eq!(ids(&out["prompt_ids"]), ids(&prompt["ids"]));
    assert_eq!(ids(&out["generated_ids"]).len(), 2);
}

/// `--no-cache` refuses, as clap refuses a conflict (status 2, nothing on
/// stdout), the flags it would ignore: a strategy other than `window`, and
/// `--kv-dtype`. A window still masks the recomputation, so `--no-cache
/// --cache window` is accepted and decodes the window's tokens (240 first, as
/// with the window cache, where the whole sequence gives 92); without a window
/// the JSON's `strategy` is null.
#[test]
fn no_cache_refuses_the_cache_flags_it_would_ignore() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    for command in ["generate", "logits", "score"] {
        let base = match command {
            "generate" => vec![command, "--model", tiny, "--prompt", "hi"],
            "logits" => vec![command, "--model", tiny, "--ids", "1,2"],
            _ => vec![command, "--model", tiny, "--text", "hi there"],
        };
        for (flags, says) in [
            (
                &["--no-cache", "--cache", "concat"][..],
                "the argument '--no-cache' cannot be used with '--cache concat': \
                 without a cache only '--cache window' has an effect",
            ),
            (
                &["--cache", "prealloc", "--no-cache"],
                "the argument '--no-cache' cannot be used with '--cache prealloc': \
                 without a cache only '--cache window' has an effect",
            ),
            (
                &["--no-cache", "--kv-dtype", "int8"],
                "the argument '--no-cache' cannot be used with '--kv-dtype <KV_DTYPE>'",
            ),
        ] {
            let out = kvcache(&[&base[..], flags].concat());
            assert_eq!(out.status.code(), Some(2), "{command} {flags:?}");
            assert_eq!(out.stdout, b"", "{command} {flags:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!("kvcache: {says} (see kvcache --help)\n"),
                "{command} {flags:?}"
            );
        }
    }

    let run = |flags: &[&str]| {
        let base = ["generate", "--model", tiny, "--prompt", "hello world foo"];
        json(&kvcache(
            &[&base[..], &["--max-tokens", "4", "--json"], flags].concat(),
        ))
    };
    let masked = run(&["--no-cache", "--cache", "window", "--window", "1"]);
    let cached = run(&["--cache", "window", "--window", "1"]);
    assert_eq!(ids(&masked["generated_ids"])[0], 240);
    assert_eq!(masked["generated_ids"], cached["generated_ids"]);
    assert_eq!(masked["use_cache"], false);
    assert_eq!(masked["strategy"], "window(1)");
    let whole = run(&["--no-cache"]);
    assert_eq!(ids(&whole["generated_ids"])[0], 92);
    assert_eq!(whole["strategy"], Value::Null);
    assert_eq!(run(&[])["strategy"], "concat");
}

/// `--weights-seed` seeds the random weights of `gpt2-124m-random`, and is
/// refused (status 2) with any other model, which brings its own weights.
#[test]
fn weights_seed_applies_to_the_random_gpt2_only() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let says = format!(
        "kvcache: the argument '--weights-seed' only applies with '--model gpt2-124m-random': \
         `{tiny}` brings its own weights (see kvcache --help)\n"
    );
    for args in [
        &["generate", "--model", tiny, "--prompt", "hi"][..],
        &["logits", "--model", tiny, "--ids", "1,2"],
        &["score", "--model", tiny, "--text", "hi there"],
        &["cache-cost", "--model", tiny, "--tokens", "2"],
        &[
            "interleave",
            "--model",
            tiny,
            "--caches",
            "concat",
            "--prompt",
            "hi",
        ],
    ] {
        let out = kvcache(&[args, &["--weights-seed", "3"]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(out.stdout, b"", "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), says, "{args:?}");
    }

    let logits = |seed: &[&str]| {
        let base = ["logits", "--model", "gpt2-124m-random", "--ids", "1,2"];
        json(&kvcache(&[&base[..], seed].concat()))["logits"].clone()
    };
    let default = logits(&[]);
    assert_eq!(logits(&["--weights-seed", "0"]), default);
    assert_ne!(logits(&["--weights-seed", "1"]), default);
}

/// `stop_reason` is snake_case like every other key and value of the JSON.
#[test]
fn stop_reason_is_snake_case() {
    let tiny = fixture("tiny-gpt2");
    let tiny = tiny.to_str().unwrap();
    let llama = fixture("tiny-llama.gguf");
    let llama = llama.to_str().unwrap();
    let run = |model: &str, flags: &[&str]| {
        let base = ["generate", "--model", model, "--prompt", "Hi", "--json"];
        json(&kvcache(&[&base[..], flags].concat()))
    };
    let max = run(tiny, &["--max-tokens", "3"]);
    assert_eq!(max["stop_reason"], "max_tokens");
    // tiny-gpt2's 32 positions: 2 prompt tokens and 30 fed of 31.
    let full = run(tiny, &["--max-tokens", "40"]);
    assert_eq!(ids(&full["generated_ids"]).len(), 31);
    assert_eq!(full["stop_reason"], "context_full");
    // Seed 10 at temperature 2 samples tiny-llama's EOS after 8 tokens.
    let sampled = ["--max-tokens", "25", "--temperature", "2", "--seed", "10"];
    let stopped = run(llama, &sampled);
    assert_eq!(ids(&stopped["generated_ids"]).len(), 8);
    assert_eq!(stopped["stop_reason"], "stop_token");
}

/// `--temperature` and `--top-p` are checked as the numbers written, as JS's options are: a
/// number past an f32's range is not called `inf` or `0`, and one rounding into range is refused.
#[test]
fn sampling_flags_are_checked_as_written() {
    let exp = expected("tiny-llama");
    let model = fixture("tiny-llama");
    let model = model.to_str().unwrap();
    let base = ["generate", "--model", model, "--prompt", &exp.prompt];
    for (flags, says) in [
        (
            ["--temperature", "-1e308"],
            "invalid value '-1e308' for '--temperature <TEMPERATURE>': temperature must be a \
             finite number >= 0 (0 = greedy), got -1e+308",
        ),
        (
            ["--top-p", "1.0000000001"],
            "invalid value '1.0000000001' for '--top-p <TOP_P>': topP must be in (0, 1], got \
             1.0000000001",
        ),
    ] {
        let out = kvcache(&[&base[..], &flags].concat());
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("kvcache: {says} (see kvcache --help)\n")
        );
    }
    // A topP too small for an f32 keeps the likeliest token alone: the reference's greedy ids,
    // up to its 9th, 2, the model's EOS, which stops the run.
    assert_eq!(exp.greedy_ids[8], 2);
    let tiny_p = ["--temperature", "1", "--top-p", "1e-300", "--json"];
    let out = json(&kvcache(&[&base[..], &tiny_p].concat()));
    assert_eq!(ids(&out["generated_ids"]), exp.greedy_ids[..8]);
    assert_eq!(out["stop_reason"], "stop_token");
}
