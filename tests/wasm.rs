//! The JS-facing `Generator` in a headless browser (`scripts/test-wasm.sh`: `cargo test` with
//! wasm-bindgen-test-runner, in Chromium and Firefox): the exported wrapper methods JS calls,
//! with options built as JS objects, against the numpy reference outputs of the tiny fixtures.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect, Uint8Array, JSON};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use kvcache_wasm::wasm::{Bench, Generator, BROWSER_CACHE_NAME};

wasm_bindgen_test_configure!(run_in_browser);

struct Fixture {
    config: &'static str,
    weights: &'static [u8],
    tokenizer: &'static str,
    expected: &'static str,
}

const TINY_GPT2: Fixture = Fixture {
    config: include_str!("fixtures/tiny-gpt2/config.json"),
    weights: include_bytes!("fixtures/tiny-gpt2/model.safetensors"),
    tokenizer: include_str!("fixtures/tiny-gpt2/tokenizer.json"),
    expected: include_str!("fixtures/tiny-gpt2/expected.json"),
};

const TINY_LLAMA: Fixture = Fixture {
    config: include_str!("fixtures/tiny-llama/config.json"),
    weights: include_bytes!("fixtures/tiny-llama/model.safetensors"),
    tokenizer: include_str!("fixtures/tiny-llama/tokenizer.json"),
    expected: include_str!("fixtures/tiny-llama/expected.json"),
};

const TINY_GGUF: &[u8] = include_bytes!("fixtures/tiny-llama.gguf");
const TINY_GGUF_EXPECTED: &str = include_str!("fixtures/tiny-llama.gguf.expected.json");

#[derive(Deserialize)]
struct Expected {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    window: ExpectedWindow,
}

#[derive(Deserialize)]
struct ExpectedWindow {
    size: usize,
    greedy_ids: Vec<u32>,
}

/// What `generate` returns, read back from the JS object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generation {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    step_ms: Vec<f64>,
    prefill_ms: f64,
    tokens_per_sec: f64,
    cache_len: usize,
    cache_layer_lens: Vec<usize>,
    cache_bytes: usize,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenEvent {
    id: u32,
    text: String,
    ms: f64,
    position: usize,
    cache_len: usize,
    cache_bytes: usize,
}

/// What `interleaved` returns, read back from the JS object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interleaved {
    strategies: Vec<String>,
    ids: Vec<u32>,
    step_ms: Vec<Vec<f64>>,
    disagreements: usize,
}

fn expected(json: &str) -> Expected {
    serde_json::from_str(json).unwrap()
}

/// A JS value from JSON text, as a page would write the object literal.
fn js(json: &str) -> JsValue {
    JSON::parse(json).unwrap_or_else(|_| panic!("bad JSON in test: {json}"))
}

/// `{...object, key: value}`
fn with(object: JsValue, key: &str, value: &JsValue) -> JsValue {
    Reflect::set(&object, &key.into(), value).unwrap();
    object
}

fn hf(fixture: &Fixture, options: &str) -> Result<Generator, JsValue> {
    Generator::from_hf_files(
        fixture.config.into(),
        bytes(fixture.weights),
        fixture.tokenizer.into(),
        js(options),
    )
}

/// Bytes as JS passes them: a `Uint8Array`.
fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

/// Token ids as JS passes them: a `Uint32Array`.
fn ids(ids: &[u32]) -> JsValue {
    js_sys::Uint32Array::from(ids).into()
}

fn greedy(max_tokens: usize) -> JsValue {
    js(&format!(
        r#"{{"maxTokens": {max_tokens}, "temperature": 0, "stopIds": []}}"#
    ))
}

fn generate(g: &mut Generator, prompt: &str, options: JsValue) -> Generation {
    let value = g
        .generate(prompt.into(), options)
        .map_err(|e| message(&e))
        .unwrap();
    serde_wasm_bindgen::from_value(value).unwrap()
}

fn event(value: JsValue) -> Option<TokenEvent> {
    (!value.is_null()).then(|| serde_wasm_bindgen::from_value(value).unwrap())
}

/// The message of a thrown JS `Error` (and a check that it is one).
fn message(error: &JsValue) -> String {
    let error = error
        .dyn_ref::<js_sys::Error>()
        .unwrap_or_else(|| panic!("threw a non-Error: {error:?}"));
    String::from(error.message())
}

fn throws<T>(result: Result<T, JsValue>, says: &str) {
    match result {
        Ok(_) => panic!("expected an Error saying `{says}`, but the call succeeded"),
        Err(e) => {
            let msg = message(&e);
            assert!(
                msg.contains(says),
                "expected an Error saying `{says}`, got `{msg}`"
            );
        }
    }
}

/// Greedy ids from a fresh sequence equal the reference ones.
fn assert_reference(g: &mut Generator, exp: &Expected, what: &str) {
    g.reset();
    let out = generate(g, &exp.prompt, greedy(exp.greedy_ids.len()));
    assert_eq!(out.ids, exp.greedy_ids, "{what}");
    assert_eq!(out.prompt_ids, exp.prompt_ids, "{what}");
}

#[wasm_bindgen_test]
fn greedy_ids_match_the_reference_for_hf_fixtures() {
    for (name, fixture) in [("tiny-gpt2", TINY_GPT2), ("tiny-llama", TINY_LLAMA)] {
        let exp = expected(fixture.expected);
        let mut g = hf(&fixture, "{}").unwrap();
        let out = generate(&mut g, &exp.prompt, greedy(exp.greedy_ids.len()));
        assert_eq!(out.ids, exp.greedy_ids, "{name}");
        assert_eq!(out.prompt_ids, exp.prompt_ids, "{name}");
        assert_eq!(out.step_ms.len(), out.ids.len());
        assert_eq!(out.prefill_ms, out.step_ms[0]);
        assert!(out.tokens_per_sec >= 0.0);
        assert_eq!(out.stop_reason.as_deref(), Some("maxTokens"));
        assert_eq!(
            out.cache_len,
            exp.prompt_ids.len() + exp.greedy_ids.len() - 1
        );
        assert!(out.cache_bytes > 0);
        assert_eq!(g.decode(ids(&out.ids)).unwrap(), out.text, "{name}");
        assert_eq!(
            g.encode((&exp.prompt).into(), JsValue::UNDEFINED).unwrap(),
            exp.prompt_ids,
            "{name}"
        );
        assert_eq!(
            g.decode(ids(&exp.prompt_ids)).unwrap(),
            exp.prompt,
            "{name}"
        );
    }
}

/// `fromHfFiles` takes the chat template from the text of `tokenizer_config.json` (option
/// `tokenizerConfig`), as the CLI does from a folder; `hasChatTemplate` says whether there is one.
#[wasm_bindgen_test]
fn hf_files_take_their_chat_template_from_tokenizer_config() {
    let plain = hf(&TINY_LLAMA, "{}").unwrap();
    assert!(!plain.has_chat_template());
    let config = chatml_tokenizer_config();
    let load = |config: &JsValue| {
        Generator::from_hf_files(
            TINY_LLAMA.config.into(),
            bytes(TINY_LLAMA.weights),
            TINY_LLAMA.tokenizer.into(),
            with(js(r#"{"maxSeqLen": 32}"#), "tokenizerConfig", config),
        )
    };
    let mut g = load(&config.as_str().into()).unwrap();
    assert_chatml(&mut g);
    throws(load(&3.into()), "option `tokenizerConfig`");
    throws(load(&"{".into()), "tokenizer_config.json is not valid JSON");
}

/// A `tokenizer_config.json` whose chat template is ChatML's.
fn chatml_tokenizer_config() -> String {
    let template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
                    message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if \
                    add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    serde_json::json!({ "chat_template": template }).to_string()
}

/// `g` has [`chatml_tokenizer_config`]'s template: a chat prompt is wrapped in it.
fn assert_chatml(g: &mut Generator) {
    assert!(g.has_chat_template());
    let wrapped = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    let want = g
        .encode(wrapped.into(), js(r#"{"special": true}"#))
        .unwrap();
    let out = generate(g, "Hi", js(r#"{"chat": true, "maxTokens": 1}"#));
    assert_eq!(out.prompt_ids, want);
}

/// `encode(text, { special: true })` gives the ids a prompt starts with (no
/// BOS for this model, which asks for none); bad options throw.
#[wasm_bindgen_test]
fn encode_with_special_tokens_gives_the_prompt_ids() {
    let exp = expected(TINY_LLAMA.expected);
    let g = hf(&TINY_LLAMA, "{}").unwrap();
    let special = g
        .encode((&exp.prompt).into(), js(r#"{"special": true}"#))
        .unwrap();
    assert_eq!(special, exp.prompt_ids);
    assert_eq!(
        g.encode("<|im_start|>".into(), js(r#"{"special": false}"#))
            .unwrap(),
        [1]
    );
    throws(
        g.encode("x".into(), js(r#"{"special": 1}"#)),
        "encode option `special`",
    );
    throws(g.encode("x".into(), js(r#"{"bos": true}"#)), "bos");
}

/// The tiny Gemma 3 GGUF in the browser: the reference's greedy ids, its BOS
/// from `encode(text, { special: true })`, and per-layer cache lengths with
/// the local layers capped at their window of 4.
#[wasm_bindgen_test]
fn gemma3_runs_with_its_own_layer_windows() {
    let exp = expected(include_str!("fixtures/tiny-gemma3/expected.json"));
    let gguf = include_bytes!("fixtures/tiny-gemma3.gguf");
    let mut g = Generator::from_gguf(bytes(gguf), JsValue::UNDEFINED).unwrap();
    let special = g
        .encode((&exp.prompt).into(), js(r#"{"special": true}"#))
        .unwrap();
    assert_eq!(special, exp.prompt_ids);
    assert_eq!(
        g.encode((&exp.prompt).into(), JsValue::UNDEFINED).unwrap(),
        exp.prompt_ids[1..]
    );
    let out = generate(&mut g, &exp.prompt, greedy(8));
    assert_eq!(out.ids, exp.greedy_ids[..8]);
    assert_eq!(out.cache_layer_lens, [4, 4, 4, 4, 4, 12]);
    assert_eq!(g.cache_layer_lens(), [4, 4, 4, 4, 4, 12]);
    assert_eq!(g.cache_len(), 12);
}

/// Waits on the GGUF reader; passes once it lands.
#[wasm_bindgen_test]
fn greedy_ids_match_the_reference_for_the_gguf_fixture() {
    let exp = expected(TINY_GGUF_EXPECTED);
    let mut g = Generator::from_gguf(bytes(TINY_GGUF), JsValue::UNDEFINED)
        .map_err(|e| message(&e))
        .unwrap();
    assert_reference(&mut g, &exp, "tiny-llama.gguf");
}

/// Each backend in the build gives the reference ids; the multi-threaded build has flex alone
/// (scripts/threads-env.sh), and there asking for ndarray is a clear error.
#[wasm_bindgen_test]
fn each_backend_gives_the_reference_ids() {
    let exp = expected(TINY_LLAMA.expected);
    let with_ndarray = cfg!(feature = "ndarray");
    for backend in ["flex", "ndarray"] {
        let options = format!(r#"{{"backend": "{backend}"}}"#);
        if backend == "ndarray" && !with_ndarray {
            let err = message(&hf(&TINY_LLAMA, &options).err().unwrap());
            let want = "backend `ndarray` is not compiled into this build, which has flex";
            assert!(err.contains(want), "{err}");
            continue;
        }
        let mut g = hf(&TINY_LLAMA, &options).unwrap();
        assert_eq!(g.backend(), backend);
        assert_reference(&mut g, &exp, backend);
    }
}

#[wasm_bindgen_test]
fn cache_on_and_off_give_the_same_ids() {
    for fixture in [TINY_GPT2, TINY_LLAMA] {
        let exp = expected(fixture.expected);
        let mut g = hf(&fixture, r#"{"useCache": false}"#).unwrap();
        assert!(!g.use_cache());
        let off = generate(&mut g, &exp.prompt, greedy(exp.greedy_ids.len()));
        assert_eq!(off.ids, exp.greedy_ids);
        assert_eq!((off.cache_len, off.cache_bytes, g.cache_len()), (0, 0, 0));
        g.set_use_cache(true.into()).unwrap();
        assert_eq!(g.position(), 0, "switching the cache resets the sequence");
        let on = generate(&mut g, &exp.prompt, greedy(exp.greedy_ids.len()));
        assert_eq!(on.ids, off.ids);
        assert!(g.cache_len() > 0);
        g.set_use_cache(false.into()).unwrap();
        assert_reference(&mut g, &exp, "cache off again");
    }
}

#[wasm_bindgen_test]
fn every_cache_strategy_gives_the_reference_ids() {
    for fixture in [TINY_GPT2, TINY_LLAMA] {
        let exp = expected(fixture.expected);
        let size = exp.window.size;
        let total = exp.prompt_ids.len() + exp.greedy_ids.len() - 1;
        for (options, want, cache_len) in [
            (r#"{"cache": "concat"}"#.to_string(), &exp.greedy_ids, total),
            (
                r#"{"cache": "prealloc", "maxSeqLen": 32}"#.to_string(),
                &exp.greedy_ids,
                total,
            ),
            (
                format!(r#"{{"cache": "window", "window": {size}}}"#),
                &exp.window.greedy_ids,
                total.min(size),
            ),
        ] {
            let mut g = hf(&fixture, &options).unwrap();
            let events = Rc::new(RefCell::new(Vec::new()));
            let seen = events.clone();
            let on_token = Closure::<dyn FnMut(JsValue)>::new(move |t: JsValue| {
                seen.borrow_mut().push(event(t).unwrap())
            });
            let out = generate(
                &mut g,
                &exp.prompt,
                with(greedy(exp.greedy_ids.len()), "onToken", on_token.as_ref()),
            );
            assert_eq!(&out.ids, want, "{options}");
            assert_eq!(g.cache_len(), cache_len, "{options}");
            assert_eq!(g.position(), total, "{options}");
            let events = events.borrow();
            assert_eq!(
                events.iter().map(|t| t.id).collect::<Vec<_>>(),
                out.ids,
                "{options}"
            );
            for (i, t) in events.iter().enumerate() {
                assert_eq!(t.position, exp.prompt_ids.len() + i, "{options}");
                assert!(
                    t.ms >= 0.0 && t.cache_len > 0 && t.cache_bytes > 0,
                    "{options}"
                );
            }
            // The summary's text may end with what was still held back (a character split across tokens).
            let streamed: String = events.iter().map(|t| t.text.as_str()).collect();
            assert!(
                out.text.starts_with(&streamed),
                "{options}: {streamed:?} vs {:?}",
                out.text
            );
            if options.contains("prealloc") {
                assert_eq!(g.max_seq_len(), 32);
                assert!(g.cache_bytes() >= g.cache_bytes_formula());
            } else {
                assert_eq!(g.cache_bytes(), g.cache_bytes_formula(), "{options}");
            }
        }
    }
}

#[wasm_bindgen_test]
fn strategy_and_window_are_settable_between_runs() {
    let exp = expected(TINY_LLAMA.expected);
    let mut g = hf(&TINY_LLAMA, "{}").unwrap();
    assert_eq!(g.cache_strategy(), "concat");
    assert_eq!(g.window(), None);
    generate(&mut g, &exp.prompt, greedy(4));
    g.set_cache_strategy("prealloc".into()).unwrap();
    assert_eq!(
        (g.cache_strategy().as_str(), g.position(), g.cache_len()),
        ("prealloc", 0, 0)
    );
    assert_reference(&mut g, &exp, "prealloc by setter");
    g.set_window(exp.window.size.into()).unwrap();
    assert_eq!(
        g.cache_strategy(),
        "prealloc",
        "a window size alone does not switch strategy"
    );
    g.set_cache_strategy("window".into()).unwrap();
    assert_eq!(g.window(), Some(exp.window.size));
    let out = generate(&mut g, &exp.prompt, greedy(exp.greedy_ids.len()));
    assert_eq!(out.ids, exp.window.greedy_ids);
    g.set_window((exp.window.size + 1).into()).unwrap();
    assert_eq!(g.position(), 0, "a new window size resets the cache");
    g.set_cache_strategy("concat".into()).unwrap();
    assert_reference(&mut g, &exp, "concat by setter");
}

#[wasm_bindgen_test]
fn kv_dtype_and_sinks_are_settable_and_checked() {
    let exp = expected(TINY_LLAMA.expected);
    let options = r#"{"kvDtype": "int8", "cache": "window", "window": 4, "sinks": 2}"#;
    let mut g = hf(&TINY_LLAMA, options).unwrap();
    assert_eq!((g.kv_dtype().as_str(), g.sinks()), ("int8", 2));
    let out = generate(&mut g, &exp.prompt, greedy(10));
    // 2 layers × 2 (K, V) × 2 kv heads × (2 sinks + 4) entries × a row of 16
    // bytes and one f16 scale.
    assert_eq!(out.cache_bytes, 2 * 2 * 2 * 6 * 18);
    assert_eq!(g.cache_bytes(), g.cache_bytes_formula());
    g.set_kv_dtype("f16".into()).unwrap();
    assert_eq!((g.kv_dtype().as_str(), g.position()), ("f16", 0));
    generate(&mut g, &exp.prompt, greedy(10));
    assert_eq!(g.cache_bytes(), 2 * 2 * 2 * 6 * 32);
    assert_eq!(g.cache_bytes(), g.cache_bytes_formula());
    g.set_sinks(1.into()).unwrap();
    assert_eq!((g.sinks(), g.position()), (1, 0));
    throws(g.set_kv_dtype("q4".into()), "unknown kvDtype `q4`");
    throws(g.set_kv_dtype(8.into()), "kvDtype must be a string");
    throws(
        g.set_sinks(4.into()),
        "sinks must be smaller than the window (4), got 4",
    );
    throws(
        g.set_sinks((-1).into()),
        "sinks must be a whole number >= 0",
    );
    throws(
        g.set_window(1.into()),
        "sinks must be smaller than the window (1), got 1",
    );
    assert_eq!(
        (g.kv_dtype().as_str(), g.sinks(), g.window()),
        ("f16", 1, Some(4)),
        "a failed setter changes nothing"
    );
    g.set_cache_strategy("concat".into()).unwrap();
    assert_eq!(g.sinks(), 0);
    throws(
        g.set_sinks(1.into()),
        "sinks only apply with the window strategy",
    );
    throws(
        hf(&TINY_LLAMA, r#"{"sinks": 1}"#),
        "sinks only apply with the window strategy",
    );
    throws(
        hf(&TINY_LLAMA, r#"{"kvDtype": "bf16"}"#),
        "unknown kvDtype `bf16`",
    );
}

#[wasm_bindgen_test]
fn interleaved_decodes_the_reference_tokens_and_leaves_the_sequence_alone() {
    let exp = expected(TINY_LLAMA.expected);
    let mut g = hf(&TINY_LLAMA, "{}").unwrap();
    let first = generate(&mut g, &exp.prompt, greedy(3));
    let position = g.position();
    let tokens = exp.greedy_ids.len();
    let caches = |names: &[&str]| -> JsValue {
        names
            .iter()
            .map(|n| JsValue::from(*n))
            .collect::<js_sys::Array>()
            .into()
    };
    throws(
        Bench::interleaved(&g, (&exp.prompt).into(), caches(&["window"]), 4.into()),
        "needs a window size",
    );
    g.set_window(exp.window.size.into()).unwrap();
    let out = Bench::interleaved(
        &g,
        (&exp.prompt).into(),
        caches(&["concat", "prealloc", "window"]),
        tokens.into(),
    )
    .unwrap();
    let out: Interleaved = serde_wasm_bindgen::from_value(out).unwrap();
    assert_eq!(out.ids, exp.greedy_ids);
    assert_eq!(out.strategies, ["concat", "prealloc", "window(6)"]);
    assert!(out.step_ms.len() == 3 && out.step_ms.iter().all(|ms| ms.len() == tokens - 1));
    assert_eq!(
        out.disagreements > 0,
        exp.window.greedy_ids != exp.greedy_ids
    );
    throws(
        Bench::interleaved(
            &g,
            (&exp.prompt).into(),
            caches(&["concat", "ring"]),
            4.into(),
        ),
        "unknown cache strategy `ring`",
    );
    assert_eq!(g.position(), position, "the measurement has its own caches");
    g.reset();
    assert_eq!(generate(&mut g, &exp.prompt, greedy(3)).ids, first.ids);
}

#[wasm_bindgen_test]
fn cache_cost_times_each_step_and_leaves_the_sequence_alone() {
    let exp = expected(TINY_LLAMA.expected);
    let mut g = hf(&TINY_LLAMA, r#"{"cache": "prealloc", "maxSeqLen": 16}"#).unwrap();
    let first = generate(&mut g, &exp.prompt, greedy(3));
    let position = g.position();
    let ms = Bench::cache_cost(&g, 16.into()).unwrap();
    assert_eq!(ms.len(), 16);
    assert!(ms.iter().all(|t| t.is_finite() && *t >= 0.0), "{ms:?}");
    throws(Bench::cache_cost(&g, 17.into()), "maxSeqLen is 16");
    assert_eq!(g.position(), position, "the measurement has its own cache");
    let more = generate(&mut g, " and", greedy(2));
    // The first run's last token was pending; this run consumes it, its prompt and one more.
    assert_eq!(g.position(), position + 1 + more.prompt_ids.len() + 1);
    g.reset();
    assert_eq!(generate(&mut g, &exp.prompt, greedy(3)).ids, first.ids);
}

#[wasm_bindgen_test]
fn reset_starts_the_sequence_afresh() {
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, "{}").unwrap();
    let first = generate(&mut g, &exp.prompt, greedy(5));
    assert_eq!(g.position(), exp.prompt_ids.len() + 4);
    // Without a reset, the next prompt continues the sequence.
    let more = generate(&mut g, " and", greedy(3));
    assert_eq!(
        g.position(),
        exp.prompt_ids.len() + 5 + more.prompt_ids.len() + 2
    );
    g.reset();
    assert_eq!((g.position(), g.cache_len(), g.cache_bytes()), (0, 0, 0));
    let again = generate(&mut g, &exp.prompt, greedy(5));
    assert_eq!(again.ids, first.ids);
}

#[wasm_bindgen_test]
fn prefill_and_step_give_the_same_tokens_as_generate() {
    let exp = expected(TINY_LLAMA.expected);
    let mut g = hf(&TINY_LLAMA, r#"{"cache": "prealloc"}"#).unwrap();
    let mut ids = Vec::new();
    let mut next = event(
        g.prefill((&exp.prompt).into(), greedy(exp.greedy_ids.len()))
            .unwrap(),
    );
    while let Some(t) = next {
        assert_eq!(t.position, exp.prompt_ids.len() + ids.len());
        ids.push(t.id);
        next = event(g.step().unwrap());
    }
    assert_eq!(ids, exp.greedy_ids);
    assert!(g.step().unwrap().is_null(), "a stopped run stays stopped");
    let summary: Generation = serde_wasm_bindgen::from_value(g.finish().unwrap()).unwrap();
    assert_eq!(summary.ids, exp.greedy_ids);
    assert_eq!(summary.stop_reason.as_deref(), Some("maxTokens"));
    // maxTokens 0 runs nothing and returns null.
    g.reset();
    assert!(g
        .prefill((&exp.prompt).into(), js(r#"{"maxTokens": 0}"#))
        .unwrap()
        .is_null());
}

#[wasm_bindgen_test]
fn stop_ids_end_the_run() {
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, "{}").unwrap();
    let stop = exp.greedy_ids[3];
    let first = exp.greedy_ids.iter().position(|&id| id == stop).unwrap();
    let out = generate(
        &mut g,
        &exp.prompt,
        js(&format!(r#"{{"maxTokens": 16, "stopIds": [{stop}]}}"#)),
    );
    assert_eq!(out.ids, exp.greedy_ids[..first]);
    assert_eq!(out.stop_reason.as_deref(), Some("stopToken"));
}

#[wasm_bindgen_test]
fn sampling_is_seeded() {
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, "{}").unwrap();
    let options = r#"{"maxTokens": 12, "temperature": 1.2, "topK": 40, "topP": 0.95, "seed": 7, "stopIds": []}"#;
    let a = generate(&mut g, &exp.prompt, js(options));
    g.reset();
    let b = generate(&mut g, &exp.prompt, js(options));
    assert_eq!(a.ids, b.ids);
}

#[wasm_bindgen_test]
fn config_is_a_plain_object() {
    let g = hf(&TINY_LLAMA, "{}").unwrap();
    let config = g.config().unwrap();
    assert_eq!(
        Reflect::get(&config, &"architecture".into()).unwrap(),
        "llama"
    );
    let vocab = Reflect::get(&config, &"vocabSize".into())
        .unwrap()
        .as_f64()
        .unwrap();
    assert_eq!(vocab as usize, 300);
    assert!(Reflect::get(&config, &"eosTokenIds".into())
        .unwrap()
        .is_array());
}

#[wasm_bindgen_test]
fn random_gpt2_runs_without_files() {
    let mut g = Generator::random_gpt2(js(r#"{"seed": 3, "maxSeqLen": 64}"#)).unwrap();
    let config = g.config().unwrap();
    assert_eq!(
        Reflect::get(&config, &"vocabSize".into()).unwrap().as_f64(),
        Some(50257.0)
    );
    let out = generate(&mut g, "Hello", greedy(2));
    assert_eq!(out.ids.len(), 2);
    assert!(out.ids.iter().all(|&id| id < 50257));
}

/// A model too large for what is left of the memory budget is an `Error`
/// naming the tensor that did not fit, not an abort of the module; what the
/// failed load took is free again, so the same load fits once memory is.
#[wasm_bindgen_test]
fn a_model_past_the_memory_budget_is_an_error_and_frees_what_it_took() {
    use kvcache_wasm::budget::{in_use, MEMORY_BUDGET_BYTES};
    let options = js(r#"{"seed": 3, "maxSeqLen": 64}"#);
    // All but 100 MiB of the budget held, in pieces of at most 1 GiB (a wasm32
    // allocation is at most 2 GiB): GPT-2's weights take about 500 MiB as f32.
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut room = MEMORY_BUDGET_BYTES - in_use();
    while room > 100 << 20 {
        let piece = (room - (100 << 20)).min(1 << 30);
        held.push(Vec::with_capacity(piece as usize));
        room = MEMORY_BUDGET_BYTES - in_use();
    }
    let before = in_use();
    throws(
        Generator::random_gpt2(options.clone()),
        "out of memory: the model's weights do not fit: tensor `",
    );
    // Lazily built tables a first load keeps may stay; the weights may not.
    assert!(
        in_use() < before + (1 << 20),
        "the failed load still holds {} bytes",
        in_use() - before
    );
    drop(held);
    let mut g = Generator::random_gpt2(options).unwrap();
    assert_eq!(generate(&mut g, "Hello", greedy(2)).ids.len(), 2);
}

/// Every error path throws an `Error` whose message says what is wrong, and
/// leaves the generator as it was.
#[wasm_bindgen_test]
fn errors_throw_and_leave_the_generator_usable() {
    let exp = expected(TINY_GPT2.expected);
    let llama = TINY_LLAMA.weights;

    // Constructors: bad bytes, a config that does not fit the weights, bad options.
    throws(
        Generator::from_hf_files(
            TINY_GPT2.config.into(),
            bytes(&TINY_GPT2.weights[..100]),
            TINY_GPT2.tokenizer.into(),
            JsValue::UNDEFINED,
        ),
        "bad weights file",
    );
    throws(
        Generator::from_hf_files(
            TINY_GPT2.config.into(),
            bytes(llama),
            TINY_GPT2.tokenizer.into(),
            JsValue::UNDEFINED,
        ),
        "tensor",
    );
    // A config integer past 32 bits, which a wasm32 usize would wrap to 1.
    let huge_vocab = TINY_GPT2
        .config
        .replace("\"vocab_size\": 300", "\"vocab_size\": 4294967297");
    assert_ne!(huge_vocab, TINY_GPT2.config);
    throws(
        Generator::from_hf_files(
            huge_vocab.into(),
            bytes(TINY_GPT2.weights),
            TINY_GPT2.tokenizer.into(),
            JsValue::UNDEFINED,
        ),
        "`vocab_size` should be an integer below 2^32, found 4294967297",
    );
    throws(
        Generator::from_hf_files(
            "{not json".into(),
            bytes(TINY_GPT2.weights),
            TINY_GPT2.tokenizer.into(),
            JsValue::UNDEFINED,
        ),
        "config.json is not valid JSON",
    );
    throws(
        Generator::from_hf_files(
            TINY_GPT2.config.into(),
            bytes(TINY_GPT2.weights),
            "{}".into(),
            JsValue::UNDEFINED,
        ),
        "tokenizer",
    );
    throws(
        Generator::from_gguf(bytes(b"GGUF but not really"), JsValue::UNDEFINED),
        "",
    );
    throws(
        Generator::from_gguf(bytes(&TINY_GGUF[..200]), JsValue::UNDEFINED),
        "",
    );
    for (options, says) in [
        (
            r#"{"cach": "concat"}"#,
            "unknown model option `cach` (expected one of: cache, window, maxSeqLen",
        ),
        (r#"{"cache": "ring"}"#, "unknown cache strategy `ring`"),
        (r#"{"cache": "window"}"#, "needs a window size"),
        (
            r#"{"cache": "window", "window": 0}"#,
            "window must be between 1 and maxSeqLen",
        ),
        (
            r#"{"cache": "window", "window": 33, "maxSeqLen": 32}"#,
            "window must be between 1 and maxSeqLen (32), got 33",
        ),
        (
            r#"{"cache": "window", "window": 33}"#,
            "window must be between 1 and maxSeqLen (32), got 33",
        ),
        (r#"{"window": 4}"#, "only applies with cache: \"window\""),
        (r#"{"maxSeqLen": 0}"#, "maxSeqLen must be at least 1"),
        (r#"{"maxSeqLen": 33}"#, "exceeds the model's context of 32"),
        (r#"{"maxSeqLen": 1.5}"#, "model option `maxSeqLen`"),
        (r#"{"cache": 3}"#, "model option `cache`"),
        (r#"{"backend": "gpu"}"#, "unknown backend `gpu`"),
        (r#""concat""#, "model options must be an object, got string"),
    ] {
        throws(hf(&TINY_GPT2, options), says);
    }

    let mut g = hf(&TINY_GPT2, r#"{"cache": "prealloc"}"#).unwrap();
    generate(&mut g, &exp.prompt, greedy(3));
    let before = (g.position(), g.cache_len(), g.cache_bytes());
    let unchanged = |g: &Generator, what: &str| {
        assert_eq!(
            (g.position(), g.cache_len(), g.cache_bytes()),
            before,
            "{what} changed the generator"
        );
    };

    // Run options.
    let nan = with(js("{}"), "temperature", &JsValue::from_f64(f64::NAN));
    for (options, says) in [
        (
            nan,
            "generate option `temperature` must be a finite number, got number NaN",
        ),
        (
            js(r#"{"temperature": -0.5}"#),
            "temperature must be a finite number >= 0",
        ),
        (js(r#"{"topP": 0}"#), "topP must be in (0, 1]"),
        (js(r#"{"topP": 1.01}"#), "topP must be in (0, 1], got 1.01"),
        (js(r#"{"maxTokens": -1}"#), "generate option `maxTokens`"),
        (js(r#"{"maxTokens": 2.5}"#), "generate option `maxTokens`"),
        (js(r#"{"stopIds": "2"}"#), "generate option `stopIds`"),
        (
            js(r#"{"max_tokens": 3}"#),
            "unknown generate option `max_tokens` (expected one of: maxTokens",
        ),
        (
            js(r#"{"onToken": 5}"#),
            "option `onToken` must be a function",
        ),
        (
            js(r#"{"systemPrompt": "be brief"}"#),
            "only applies with chat: true",
        ),
        (js("[1]"), "generate options must be an object"),
    ] {
        let what = format!("{options:?}");
        throws(g.generate((&exp.prompt).into(), options), says);
        unchanged(&g, &what);
    }
    throws(
        g.prefill((&exp.prompt).into(), js(r#"{"onToken": null}"#)),
        "unknown prefill option `onToken`",
    );
    let long = "Once upon a time ".repeat(10);
    throws(g.generate((&long).into(), greedy(3)), "context full");
    throws(g.prefill((&long).into(), greedy(3)), "context full");
    unchanged(&g, "a prompt longer than the context");

    // A callback that throws stops the run with its error.
    let boom = Function::new_no_args("throw new Error('boom from onToken')");
    throws(
        g.generate((&exp.prompt).into(), with(greedy(3), "onToken", &boom)),
        "boom from onToken",
    );

    // Setters.
    throws(
        g.set_cache_strategy("ring".into()),
        "unknown cache strategy `ring`",
    );
    throws(g.set_cache_strategy("window".into()), "set `window` first");
    throws(
        g.set_window(0.into()),
        "window must be between 1 and maxSeqLen (32), got 0",
    );
    throws(
        g.set_window(33.into()),
        "window must be between 1 and maxSeqLen (32), got 33",
    );
    assert_eq!(g.cache_strategy(), "prealloc");
    assert_eq!(g.window(), None);

    // Step before any prefill.
    let mut fresh = hf(&TINY_GPT2, "{}").unwrap();
    throws(
        fresh.step(),
        "no run to step: call prefill or chatPrefill first",
    );
    throws(
        fresh.finish(),
        "no run to finish: call prefill or chatPrefill first",
    );

    // Still works, both of them.
    assert_reference(&mut g, &exp, "after the errors");
    assert_reference(&mut fresh, &exp, "after step before prefill");
    g.set_window(4.into()).unwrap();
    g.set_cache_strategy("window".into()).unwrap();
    g.reset();
    generate(&mut g, &exp.prompt, greedy(3));
}

/// A JS value written in JS (`new Map()`, ...), for the values JSON cannot write.
fn eval(expression: &str) -> JsValue {
    Function::new_no_args(&format!("return {expression};"))
        .call0(&JsValue::NULL)
        .unwrap()
}

/// `temperature` and `topP` are checked as the JS numbers given (f64s), and messages show them
/// as JS writes them; a number in range but beyond an f32 is the nearest f32 on its side of 0.
#[wasm_bindgen_test]
fn sampling_numbers_are_checked_as_given() {
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, "{}").unwrap();
    for (options, says) in [
        (
            r#"{"temperature": -1e308}"#,
            "temperature must be a finite number >= 0 (0 = greedy), got -1e+308",
        ),
        (
            r#"{"temperature": -1e-300}"#,
            "temperature must be a finite number >= 0 (0 = greedy), got -1e-300",
        ),
        (
            r#"{"topP": 1.0000000001}"#,
            "topP must be in (0, 1], got 1.0000000001",
        ),
        (r#"{"topP": 5e300}"#, "topP must be in (0, 1], got 5e+300"),
    ] {
        throws(g.generate((&exp.prompt).into(), js(options)), says);
        assert_eq!(g.position(), 0, "{options} changed the generator");
    }
    throws(
        g.decode(js("[1e-300]")),
        "decode: ids[0] must be a whole number, got number 1e-300",
    );

    // topP 1e-300 is in (0, 1]: the smallest f32, it keeps the likeliest token alone.
    let n = exp.greedy_ids.len();
    let sampled = |g: &mut Generator, temperature: &str, top_p: &str| {
        g.reset();
        let options = format!(
            r#"{{"maxTokens": {n}, "temperature": {temperature}, "topP": {top_p}, "seed": 5, "stopIds": []}}"#
        );
        generate(g, &exp.prompt, js(&options)).ids
    };
    assert_eq!(sampled(&mut g, "1.5", "1e-300"), exp.greedy_ids);
    // temperature 1e308 is the largest f32, and samples as that does.
    let largest = format!("{:e}", f32::MAX as f64);
    assert_eq!(
        sampled(&mut g, "1e308", "1"),
        sampled(&mut g, &largest, "1")
    );
    assert_eq!(sampled(&mut g, "1e308", "1").len(), n);
}

/// A `Set` of stop ids works as an array of them; other objects are named in messages, and
/// options objects must be plain ones (a `Map` was read as no options at all).
#[wasm_bindgen_test]
fn stop_ids_take_a_set_and_objects_are_named() {
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, "{}").unwrap();
    let stop = exp.greedy_ids[3];
    let first = exp.greedy_ids.iter().position(|&id| id == stop).unwrap();
    let set = eval(&format!("new Set([{stop}, {stop}, 299])"));
    let out = generate(
        &mut g,
        &exp.prompt,
        with(js(r#"{"maxTokens": 16}"#), "stopIds", &set),
    );
    assert_eq!(out.ids, exp.greedy_ids[..first]);
    assert_eq!(out.stop_reason.as_deref(), Some("stopToken"));
    g.reset();

    let option = |key: &str, value: &str| with(greedy(3), key, &eval(value));
    for (options, says) in [
        (
            option("stopIds", "new Map([[1, 2]])"),
            "generate option `stopIds` must be a plain value (a number, string, boolean, array or object), got a Map",
        ),
        (
            option("stopIds", "new DataView(new ArrayBuffer(8))"),
            "generate option `stopIds` must be a plain value (a number, string, boolean, array or object), got a DataView",
        ),
        (
            option("stopIds", "new Set(['2'])"),
            "generate option `stopIds[0]`: invalid type: string \"2\", expected u32",
        ),
        (option("seed", "new Date(0)"), "got a Date"),
        (option("seed", "new ArrayBuffer(2)"), "got an ArrayBuffer"),
        (option("seed", "Promise.resolve(1)"), "got a Promise"),
        (option("seed", "Symbol('s')"), "got a symbol"),
        (option("seed", "2n"), "got bigint 2n"),
        (
            eval("new Map([['maxTokens', 3]])"),
            "generate options must be a plain object, got a Map",
        ),
        (
            eval("new Uint8Array(2)"),
            "generate options must be a plain object, got a Uint8Array",
        ),
    ] {
        throws(g.generate((&exp.prompt).into(), options), says);
        assert_eq!(g.position(), 0);
    }
    for (ids, says) in [
        ("new Set([1, 2])", "got a Set"),
        ("new Map()", "got a Map"),
        ("new DataView(new ArrayBuffer(8))", "got a DataView"),
        ("new Error('x')", "got an Error"),
        (
            "[1n]",
            "decode: ids[0] must be a whole number, got bigint 1n",
        ),
    ] {
        throws(g.decode(eval(ids)), says);
    }
    assert!(message(&g.decode(eval("new Set([1])")).unwrap_err())
        .contains("decode: ids must be an array of token ids (or a Uint32Array), got a Set"));
    // Options objects that are not literals still work: no prototype, or a class's instance.
    for options in [
        "Object.assign(Object.create(null), { maxTokens: 2, stopIds: [] })",
        "new (class { constructor() { this.maxTokens = 2; this.stopIds = new Uint32Array(0); } })()",
    ] {
        g.reset();
        let out = generate(&mut g, &exp.prompt, eval(options));
        assert_eq!(out.ids, exp.greedy_ids[..2], "{options}");
    }
}

/// An empty prompt continues the sequence from the token sampled last, as `step` would; it is
/// refused, saying why, where no token waits (a fresh sequence, after a stop id).
#[wasm_bindgen_test]
fn an_empty_prompt_continues_the_sequence() {
    let exp = expected(TINY_GPT2.expected);
    let n = exp.greedy_ids.len();
    for options in ["{}", r#"{"useCache": false}"#] {
        let mut g = hf(&TINY_GPT2, options).unwrap();
        throws(
            g.generate("".into(), greedy(3)),
            "the prompt is empty: give at least one token of text",
        );
        assert_eq!(g.position(), 0);

        let head = generate(&mut g, &exp.prompt, greedy(3));
        let rest = generate(&mut g, "", greedy(n - 3));
        assert_eq!(rest.prompt_ids, Vec::<u32>::new(), "{options}");
        assert_eq!([head.ids, rest.ids].concat(), exp.greedy_ids, "{options}");
        assert_eq!(g.position(), exp.prompt_ids.len() + n - 1, "{options}");

        // prefill("") and step(): the same, a token at a time.
        g.reset();
        generate(&mut g, &exp.prompt, greedy(3));
        let mut ids = Vec::new();
        let mut next = event(g.prefill("".into(), greedy(n - 3)).unwrap());
        while let Some(t) = next {
            assert_eq!(
                t.position,
                exp.prompt_ids.len() + 3 + ids.len(),
                "{options}"
            );
            ids.push(t.id);
            next = event(g.step().unwrap());
        }
        assert_eq!(ids, exp.greedy_ids[3..], "{options}");

        // After score(text), the text's last token waits: generate("") continues the text.
        g.score((&exp.prompt).into()).unwrap();
        assert_eq!(
            generate(&mut g, "", greedy(n)).ids,
            exp.greedy_ids,
            "{options}"
        );

        // A run that ended on a stop id leaves no token waiting.
        g.reset();
        let stop = exp.greedy_ids[3];
        let stops = js(&format!(r#"{{"maxTokens": 16, "stopIds": [{stop}]}}"#));
        assert_eq!(
            generate(&mut g, &exp.prompt, stops).stop_reason.as_deref(),
            Some("stopToken")
        );
        let position = g.position();
        throws(
            g.generate("".into(), greedy(3)),
            "the prompt is empty, and the sequence has no sampled token to continue from (its last run ended on a stop id)",
        );
        assert_eq!(g.position(), position, "{options}");
    }
}

/// 100 generate+reset cycles: the wasm memory does not keep growing.
#[wasm_bindgen_test]
fn repeated_runs_do_not_grow_memory() {
    let memory_bytes = || {
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        memory
            .buffer()
            .unchecked_into::<js_sys::ArrayBuffer>()
            .byte_length()
    };
    let exp = expected(TINY_GPT2.expected);
    let mut g = hf(&TINY_GPT2, r#"{"cache": "prealloc"}"#).unwrap();
    let mut after_warmup = 0;
    for cycle in 0..100 {
        let out = generate(&mut g, &exp.prompt, greedy(exp.greedy_ids.len()));
        assert_eq!(out.ids, exp.greedy_ids, "cycle {cycle}");
        g.reset();
        if cycle == 4 {
            after_warmup = memory_bytes();
        }
    }
    let after = memory_bytes();
    assert!(
        after <= after_warmup,
        "wasm memory grew from {after_warmup} to {after} bytes over 95 cycles"
    );
}

/// A fake `fetch` serving the tiny fixtures, counting requests.
struct FakeServer {
    requests: Rc<Cell<usize>>,
    _fetch: Closure<dyn FnMut(String) -> Promise>,
    original: JsValue,
}

impl FakeServer {
    fn install(files: HashMap<String, &'static [u8]>) -> FakeServer {
        let requests = Rc::new(Cell::new(0));
        let count = requests.clone();
        let fetch = Closure::<dyn FnMut(String) -> Promise>::new(move |url: String| {
            count.set(count.get() + 1);
            let init = web_sys::ResponseInit::new();
            let response = match files.get(&url) {
                Some(bytes) => {
                    init.set_headers(&js(&format!(r#"{{"content-length": "{}"}}"#, bytes.len())));
                    web_sys::Response::new_with_opt_buffer_source_and_init(
                        Some(&Uint8Array::from(*bytes)),
                        &init,
                    )
                }
                None => {
                    init.set_status(404);
                    init.set_status_text("Not Found");
                    web_sys::Response::new_with_opt_str_and_init(Some("no such file"), &init)
                }
            };
            let response: JsValue = response.unwrap().into();
            Promise::resolve(&response)
        });
        let global = js_sys::global();
        let original = Reflect::get(&global, &"fetch".into()).unwrap();
        Reflect::set(&global, &"fetch".into(), fetch.as_ref()).unwrap();
        FakeServer {
            requests,
            _fetch: fetch,
            original,
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        Reflect::set(&js_sys::global(), &"fetch".into(), &self.original).unwrap();
    }
}

async fn clear_browser_cache() {
    if let Ok(caches) = Reflect::get(&js_sys::global(), &"caches".into()) {
        if let Ok(caches) = caches.dyn_into::<web_sys::CacheStorage>() {
            JsFuture::from(caches.delete(BROWSER_CACHE_NAME))
                .await
                .unwrap();
        }
    }
}

/// A Hugging Face folder of `fixture` at `base`, for [`FakeServer::install`]: its
/// three files, without `tokenizer_config.json`.
fn folder(base: &str, fixture: &Fixture) -> HashMap<String, &'static [u8]> {
    HashMap::from([
        (format!("{base}/config.json"), fixture.config.as_bytes()),
        (format!("{base}/model.safetensors"), fixture.weights),
        (
            format!("{base}/tokenizer.json"),
            fixture.tokenizer.as_bytes(),
        ),
    ])
}

#[wasm_bindgen_test]
async fn load_fetches_a_folder_with_progress_and_caches_it() {
    clear_browser_cache().await;
    let base = "https://models.test/tiny-gpt2";
    let server = FakeServer::install(folder(base, &TINY_GPT2));
    let size =
        (TINY_GPT2.config.len() + TINY_GPT2.weights.len() + TINY_GPT2.tokenizer.len()) as f64;
    let progress = Rc::new(RefCell::new(Vec::<(f64, Option<f64>)>::new()));
    let seen = progress.clone();
    let on_progress =
        Closure::<dyn FnMut(f64, JsValue)>::new(move |loaded: f64, total: JsValue| {
            seen.borrow_mut().push((loaded, total.as_f64()));
        });
    let options = with(
        js(r#"{"cache": "prealloc"}"#),
        "onProgress",
        on_progress.as_ref(),
    );
    let mut g = Generator::load(format!("{base}/").into(), options)
        .await
        .map_err(|e| message(&e))
        .unwrap();
    // The three files, and tokenizer_config.json, which this folder does not have (a 404).
    assert_eq!(server.requests.get(), 4);
    assert!(!g.has_chat_template());
    let exp = expected(TINY_GPT2.expected);
    assert_eq!(g.cache_strategy(), "prealloc");
    assert_reference(&mut g, &exp, "loaded from a folder URL");
    let progress = progress.borrow().clone();
    assert!(!progress.is_empty());
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress goes forward: {progress:?}"
    );
    assert_eq!(progress.last().copied(), Some((size, Some(size))));

    // The second time the files come from the browser's Cache API, when this page has one
    // (the file the folder does not have is asked for again).
    let has_caches =
        Reflect::get(&js_sys::global(), &"caches".into()).is_ok_and(|c| !c.is_undefined());
    let mut again = Generator::load(base.into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(server.requests.get(), if has_caches { 5 } else { 8 });
    assert_reference(&mut again, &exp, "loaded again");
    Generator::load(base.into(), js(r#"{"browserCache": false}"#))
        .await
        .unwrap();
    assert_eq!(server.requests.get(), if has_caches { 9 } else { 12 });

    // Errors name the URL or the option, before downloading anything where they can.
    throws(
        Generator::load("https://models.test/missing/".into(), JsValue::UNDEFINED).await,
        "fetching https://models.test/missing/config.json: HTTP 404",
    );
    let requests = server.requests.get();
    throws(
        Generator::load(base.into(), js(r#"{"cache": "window", "window": 0}"#)).await,
        "window must be between 1",
    );
    throws(
        Generator::load(base.into(), js(r#"{"onProgress": true}"#)).await,
        "option `onProgress` must be a function",
    );
    throws(
        Generator::load(base.into(), js(r#"{"browserCache": "yes"}"#)).await,
        "option `browserCache` must be true or false",
    );
    throws(
        Generator::load(base.into(), js(r#"{"progress": 1}"#)).await,
        "unknown load option `progress`",
    );
    throws(
        Generator::load("".into(), JsValue::UNDEFINED).await,
        "the model URL is empty",
    );
    assert_eq!(server.requests.get(), requests, "bad options fetch nothing");
    let stop = Function::new_no_args("throw new Error('cancelled by the page')");
    throws(
        Generator::load(
            base.into(),
            with(js(r#"{"browserCache": false}"#), "onProgress", &stop),
        )
        .await,
        "cancelled by the page",
    );

    clear_browser_cache().await;
}

/// A folder's `tokenizer_config.json`, where it has one, gives the chat template
/// (as `fromHfFiles`' option and the CLI's folder do), and counts in the progress.
#[wasm_bindgen_test]
async fn load_takes_a_folders_chat_template() {
    let base = "https://models.test/tiny-llama-chat";
    let config: &'static str = chatml_tokenizer_config().leak(); // the fake server's files are 'static
    let mut files = folder(base, &TINY_LLAMA);
    files.insert(format!("{base}/tokenizer_config.json"), config.as_bytes());
    files.extend(folder(&format!("{base}-bad"), &TINY_LLAMA));
    files.insert(format!("{base}-bad/tokenizer_config.json"), b"{");
    let server = FakeServer::install(files);
    let total = Rc::new(RefCell::new(None));
    let seen = total.clone();
    let on_progress = Closure::<dyn FnMut(f64, JsValue)>::new(move |_: f64, t: JsValue| {
        *seen.borrow_mut() = t.as_f64();
    });
    let options = with(
        js(r#"{"browserCache": false}"#),
        "onProgress",
        on_progress.as_ref(),
    );
    let mut g = Generator::load(base.into(), options)
        .await
        .map_err(|e| message(&e))
        .unwrap();
    assert_eq!(server.requests.get(), 4);
    let size = TINY_LLAMA.config.len()
        + TINY_LLAMA.weights.len()
        + TINY_LLAMA.tokenizer.len()
        + config.len();
    assert_eq!(*total.borrow(), Some(size as f64));
    assert_chatml(&mut g);
    throws(
        Generator::load(
            format!("{base}-bad").into(),
            js(r#"{"browserCache": false}"#),
        )
        .await,
        "tokenizer_config.json is not valid JSON",
    );
}

/// A `.gguf` URL is one file. Waits on the GGUF reader; passes once it lands.
#[wasm_bindgen_test]
async fn load_fetches_a_gguf_url() {
    let url = "https://models.test/tiny-llama.gguf?download=1";
    let server = FakeServer::install(HashMap::from([(url.to_string(), TINY_GGUF)]));
    let mut g = Generator::load(url.into(), js(r#"{"browserCache": false}"#))
        .await
        .map_err(|e| message(&e))
        .unwrap();
    assert_eq!(server.requests.get(), 1);
    assert_reference(
        &mut g,
        &expected(TINY_GGUF_EXPECTED),
        "loaded from a .gguf URL",
    );
}

#[wasm_bindgen_test]
fn score_returns_typed_arrays_agreeing_with_and_without_the_cache() {
    let text = "Once upon a time there was a cat.";
    let mut g = hf(&TINY_LLAMA, "{}").unwrap();
    let read = |score: JsValue| {
        let get = |key: &str| Reflect::get(&score, &key.into()).unwrap();
        let ids = get("ids")
            .dyn_into::<js_sys::Uint32Array>()
            .unwrap()
            .to_vec();
        let nll = get("nll")
            .dyn_into::<js_sys::Float64Array>()
            .unwrap()
            .to_vec();
        (ids, nll, get("perplexity").as_f64().unwrap())
    };
    let (ids, cached, perplexity) = read(g.score(text.into()).unwrap());
    assert_eq!(cached.len(), ids.len() - 1);
    let mean = cached.iter().sum::<f64>() / cached.len() as f64;
    assert!((perplexity - mean.exp()).abs() < 1e-9 * perplexity);
    g.set_use_cache(false.into()).unwrap();
    let (same_ids, uncached, _) = read(g.score(text.into()).unwrap());
    assert_eq!(same_ids, ids);
    for (a, b) in cached.iter().zip(&uncached) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }
    throws(g.score("".into()), "at least two tokens");
    throws(g.score(5.into()), "score: the text");
}

#[wasm_bindgen_test]
fn score_in_steps_gives_the_same_score_and_bad_steps_throw() {
    let text = "Once upon a time there was a cat.";
    let mut g = hf(&TINY_LLAMA, "{}").unwrap();
    let nll = |score: JsValue| {
        Reflect::get(&score, &"nll".into())
            .unwrap()
            .dyn_into::<js_sys::Float64Array>()
            .unwrap()
            .to_vec()
    };
    let whole = nll(g.score(text.into()).unwrap());
    throws(g.score_step(2.into()), "no scoring in progress");
    let total = g.score_start(text.into()).unwrap();
    assert_eq!(total, whole.len());
    throws(g.score_step(0.into()), "scoreStep: count must be from 1");
    throws(
        g.score_step(1.5.into()),
        "scoreStep: count must be a whole number",
    );
    throws(g.score_finish(), "predictions are left");
    let mut left = total;
    while left > 0 {
        let next = g.score_step(3.into()).unwrap();
        assert_eq!(next, left.saturating_sub(3));
        left = next;
    }
    assert_eq!(nll(g.score_finish().unwrap()), whole);
    assert_eq!(g.position(), total);
    throws(g.score_start(7.into()), "scoreStart: the text");
}

#[wasm_bindgen_test]
fn snapshots_restore_the_next_tokens_and_bad_bytes_throw() {
    let options = r#"{"cache": "window", "window": 4, "maxSeqLen": 32}"#;
    let mut g = hf(&TINY_LLAMA, options).unwrap();
    generate(&mut g, "Once upon", greedy(4));
    let snapshot = g.snapshot().unwrap();
    assert_eq!(snapshot.position(), g.position());
    assert_eq!(snapshot.tokens().len(), g.position() + 1);
    let first = generate(&mut g, " a", greedy(5)).ids;
    let stored = snapshot.to_bytes();
    // The CacheSnapshot object itself, as JS holds it.
    g.restore(JsValue::from(snapshot)).unwrap();
    assert_eq!(generate(&mut g, " a", greedy(5)).ids, first);

    let mut fresh = hf(&TINY_LLAMA, options).unwrap();
    fresh.restore(bytes(&stored)).unwrap();
    assert_eq!(generate(&mut fresh, " a", greedy(5)).ids, first);

    let position = fresh.position();
    throws(
        fresh.restore(bytes(&stored[..stored.len() - 1])),
        "truncated or damaged",
    );
    throws(fresh.restore(bytes(b"hello")), "not a KV cache snapshot");
    throws(fresh.restore(5.into()), "must be a Uint8Array");
    let mut other = hf(
        &TINY_GPT2,
        r#"{"cache": "window", "window": 4, "maxSeqLen": 32}"#,
    )
    .unwrap();
    throws(other.restore(bytes(&stored)), "another model");
    // A head dim (byte 39) whose row bytes pass 32 bits, sealed with a valid checksum: on wasm32
    // they must fail the length check, not wrap around it.
    let mut forged = stored[..stored.len() - 8].to_vec();
    forged[39..43].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let checksum = kvcache_wasm::fingerprint::hash(&[&forged]);
    forged.extend_from_slice(&checksum.to_le_bytes());
    throws(fresh.restore(bytes(&forged)), "layer 0's entries needs");
    assert_eq!(
        fresh.position(),
        position,
        "failed restores changed nothing"
    );
    fresh.prefill("x".into(), greedy(3)).unwrap();
    throws(fresh.snapshot(), "refused during a run");
}

#[wasm_bindgen_test]
fn chat_needs_a_template_and_its_own_options() {
    let mut g = hf(&TINY_LLAMA, "{}").unwrap();
    throws(g.chat("Hi".into(), JsValue::UNDEFINED), "cannot chat");
    throws(
        g.chat("Hi".into(), js(r#"{"chat": true}"#)),
        "unknown chat option `chat`",
    );
    throws(g.chat("Hi".into(), js(r#"{"reuse": 1}"#)), "option `reuse`");
    // A turn a token at a time: the same checks, no `onToken` (its reply comes from step()).
    throws(
        g.chat_prefill("Hi".into(), JsValue::UNDEFINED),
        "cannot chat",
    );
    throws(
        g.chat_prefill("Hi".into(), js(r#"{"onToken": null}"#)),
        "unknown chatPrefill option `onToken`",
    );
    throws(
        g.chat_prefill(JsValue::from(3), JsValue::UNDEFINED),
        "chatPrefill: the message",
    );
    throws(g.step(), "no run to step");
}
