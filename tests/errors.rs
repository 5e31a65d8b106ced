//! Bad input gives a clear `Err`, never a panic, and a failed call leaves the
//! generator usable.

mod common;

use common::*;
use kvcache_wasm::load;
use kvcache_wasm::{
    BackendKind, CacheOptions, Error, Generator, ModelConfig, RunOptions, SamplingParams,
};
use safetensors::tensor::{Dtype, TensorView};

fn device() -> burn::tensor::Device {
    BackendKind::default().device()
}

fn hf(name: &str) -> (String, Vec<u8>, String) {
    (
        read_text(&format!("{name}/config.json")),
        read(&format!("{name}/model.safetensors")),
        read_text(&format!("{name}/tokenizer.json")),
    )
}

fn load_err(config: &str, weights: Vec<u8>, tokenizer: &str) -> String {
    match load::from_hf_files(config, weights, tokenizer, &device()) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e.to_string(),
    }
}

/// Re-serializes tiny-llama's safetensors through `edit`, which may drop or replace tensors.
fn edited_llama(
    edit: impl Fn(&str, TensorView<'_>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let bytes = read("tiny-llama/model.safetensors");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            edit(&name, view).map(|(dtype, shape, data)| (name, dtype, shape, data))
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = kept
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn keep(view: TensorView<'_>) -> Option<(Dtype, Vec<usize>, Vec<u8>)> {
    Some((view.dtype(), view.shape().to_vec(), view.data().to_vec()))
}

#[test]
fn truncated_or_corrupt_safetensors_is_refused() {
    let (config, weights, tokenizer) = hf("tiny-llama");
    for cut in [0, 7, 8, 100, weights.len() / 2, weights.len() - 1] {
        let err = load_err(&config, weights[..cut].to_vec(), &tokenizer);
        assert!(err.starts_with("bad weights file"), "cut at {cut}: {err}");
    }
    let mut garbage = weights.clone();
    garbage[8..40].copy_from_slice(&[0xff; 32]);
    let err = load_err(&config, garbage, &tokenizer);
    assert!(err.starts_with("bad weights file"), "{err}");
}

#[test]
fn unknown_dtype_is_named() {
    let (config, _, tokenizer) = hf("tiny-llama");
    let weights = edited_llama(|name, view| {
        if name == "model.norm.weight" {
            Some((
                Dtype::I64,
                view.shape().to_vec(),
                vec![0; view.shape().iter().product::<usize>() * 8],
            ))
        } else {
            keep(view)
        }
    });
    let err = load_err(&config, weights, &tokenizer);
    assert!(
        err.contains("model.norm.weight") && err.contains("I64"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let (config, _, tokenizer) = hf("tiny-llama");
    let weights = edited_llama(|name, view| {
        if name == "model.layers.1.mlp.up_proj.weight" {
            None
        } else {
            keep(view)
        }
    });
    let err = load_err(&config, weights, &tokenizer);
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn shapes_that_do_not_match_the_config_are_refused() {
    let (config, weights, tokenizer) = hf("tiny-llama");
    let config = config.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    let err = load_err(&config, weights, &tokenizer);
    assert!(
        err.contains("gate_proj") && err.contains("[128, 64]") && err.contains("[96, 64]"),
        "{err}"
    );
}

#[test]
fn tokenizer_larger_than_the_model_is_refused() {
    let (config, weights, tokenizer) = hf("tiny-gpt2");
    let config = config.replace("\"vocab_size\": 300", "\"vocab_size\": 250");
    let err = load_err(&config, weights, &tokenizer);
    assert!(
        err.starts_with("tokenizer:") && err.contains("250"),
        "{err}"
    );
}

#[test]
fn unsupported_configs_are_refused() {
    let (config, _, _) = hf("tiny-llama");
    let cases = [
        (
            config.replace("\"llama\"", "\"bert\""),
            "model_type `bert` is not supported",
        ),
        (
            config.replace(
                "\"rope_scaling\": null",
                "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
            ),
            "rope_scaling type `yarn` is not supported",
        ),
        (
            config.replace("\"silu\"", "\"gelu\""),
            "hidden_act `gelu` is not supported",
        ),
        (
            config.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
            "multiple of num_key_value_heads",
        ),
        ("{not json".to_string(), "not valid JSON"),
        (
            config.replace("\"hidden_size\": 64,", ""),
            "`hidden_size` is missing",
        ),
    ];
    for (json, want) in cases {
        let err = ModelConfig::from_hf_json(&json).unwrap_err().to_string();
        assert!(err.contains(want), "expected `{want}` in: {err}");
    }
}

#[test]
fn llama_3_2_1b_config_loads_with_llama3_rope_scaling() {
    let config = ModelConfig::from_hf_json(&read_text("llama-3.2-1b-config.json")).unwrap();
    assert_eq!(
        (
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
            config.num_layers
        ),
        (32, 8, 64, 16)
    );
    assert!(config.tie_word_embeddings);
    assert!(
        matches!(config.rope_scaling, Some(kvcache_wasm::config::RopeScaling::Llama3 { factor, .. }) if factor == 32.0)
    );
    assert_eq!(config.eos_token_ids, vec![128001]);
    // JS sees the config in camelCase (`Generator.config`).
    let js = serde_json::to_value(&config).unwrap();
    assert_eq!(js["numKvHeads"], 8);
    assert_eq!(js["ropeScaling"]["type"], "llama3");
    assert_eq!(js["ropeScaling"]["originalMaxPositionEmbeddings"], 8192.0);
}

#[test]
fn truncated_or_corrupt_gguf_is_refused() {
    let bytes = read("tiny-llama.gguf");
    for cut in [0, 3, 4, 20, 1000, bytes.len() / 2, bytes.len() - 1] {
        let err = load::from_gguf_bytes(bytes[..cut].to_vec(), &device())
            .err()
            .expect("should fail")
            .to_string();
        assert!(err.starts_with("bad weights file"), "cut at {cut}: {err}");
    }
    let mut bad_magic = bytes.clone();
    bad_magic[..4].copy_from_slice(b"GGML");
    let err = load::from_gguf_bytes(bad_magic, &device())
        .err()
        .expect("should fail")
        .to_string();
    assert!(err.to_lowercase().contains("gguf"), "{err}");
}

fn tiny_gpt2() -> Generator {
    generator("tiny-gpt2", BackendKind::default(), CacheOptions::default())
}

/// After any failed call, the generator still reproduces the reference.
fn assert_still_works(g: &mut Generator) {
    let exp = expected("tiny-gpt2");
    g.reset();
    let out = g
        .generate(&exp.prompt, &greedy(exp.greedy_ids.len()), |_| {})
        .unwrap();
    assert_eq!(out.ids, exp.greedy_ids);
}

#[test]
fn empty_prompt_is_refused() {
    let mut g = tiny_gpt2();
    let err = g.generate("", &greedy(4), |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(_)) && err.to_string().contains("empty"),
        "{err}"
    );
    assert_still_works(&mut g);
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let mut g = tiny_gpt2(); // n_positions 32
    let long = "Once upon a time ".repeat(10);
    let err = g.generate(&long, &greedy(4), |_| {}).unwrap_err();
    assert!(matches!(err, Error::ContextFull(_)), "{err}");
    assert!(err.to_string().contains("32"), "{err}");
    assert_eq!(g.position(), 0, "a refused prompt must not enter the cache");
    assert_still_works(&mut g);
}

#[test]
fn generation_stops_cleanly_at_the_context_limit() {
    let mut g = tiny_gpt2();
    let out = g
        .generate("Once upon a time", &greedy(100), |_| {})
        .unwrap();
    assert_eq!(out.stop_reason, Some(kvcache_wasm::StopReason::ContextFull));
    assert_eq!(
        out.prompt_ids.len() + out.ids.len(),
        33,
        "32 positions run plus the last sampled token"
    );
    assert_still_works(&mut g);
}

#[test]
fn bad_sampling_options_are_refused() {
    let mut g = tiny_gpt2();
    for (temperature, top_p) in [(f32::NAN, 1.0), (-0.5, 1.0), (1.0, 0.0), (1.0, 1.01)] {
        let options = RunOptions {
            sampling: SamplingParams {
                temperature,
                top_p,
                ..SamplingParams::default()
            },
            ..greedy(4)
        };
        let err = g
            .generate("Once upon a time", &options, |_| {})
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert_still_works(&mut g);
}

#[test]
fn bad_cache_options_are_refused() {
    use kvcache_wasm::CacheStrategy;
    let mut g = tiny_gpt2();
    for (strategy, max_seq_len, says) in [
        (
            CacheStrategy::Window { size: 0, sinks: 0 },
            None,
            "(32), got 0",
        ),
        (
            CacheStrategy::Window { size: 40, sinks: 0 },
            Some(16),
            "(16), got 40",
        ),
    ] {
        let err = g
            .set_options(CacheOptions {
                strategy,
                max_seq_len,
                ..CacheOptions::default()
            })
            .unwrap_err();
        let says = format!("window must be between 1 and maxSeqLen {says}");
        assert!(err.to_string().contains(&says), "{err}");
    }
    let err = g
        .set_options(CacheOptions {
            max_seq_len: Some(64),
            ..CacheOptions::default()
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the model's context"),
        "{err}"
    );
    assert!(CacheStrategy::parse("ring", None)
        .unwrap_err()
        .to_string()
        .contains("unknown cache strategy"));
    assert_still_works(&mut g);
}

#[test]
fn out_of_vocabulary_ids_are_refused() {
    let mut g = tiny_gpt2();
    let err = g.logits(&[1, 2, 300]).unwrap_err();
    assert!(err.to_string().contains("300"), "{err}");
    assert!(g.tokenizer().decode(&[5000]).is_err());
    assert_still_works(&mut g);
}

#[test]
fn chat_needs_chatml_tokens() {
    let loaded = load::random_gpt2(0, &device()).unwrap();
    let err = loaded.tokenizer.chat_prompt("hi", None).unwrap_err();
    assert!(err.to_string().contains("ChatML"), "{err}");
}

/// The tiny Gemma 3 GGUF with its sliding window (a u32 right after its key) set to `window`.
fn gemma3_gguf_with_window(window: u32) -> Vec<u8> {
    let mut bytes = read("tiny-gemma3.gguf");
    let key = b"gemma3.attention.sliding_window";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "a u32 value follows");
    bytes[at + 4..at + 8].copy_from_slice(&window.to_le_bytes());
    bytes
}

#[test]
fn sliding_windows_of_zero_or_past_the_context_are_refused() {
    let gguf_err = |window| match load::from_gguf_bytes(gemma3_gguf_with_window(window), &device())
    {
        Ok(_) => panic!("a sliding window of {window} should be refused"),
        Err(e) => e.to_string(),
    };
    let msg = gguf_err(0);
    assert!(msg.contains("at least 1 position"), "{msg}");
    let msg = gguf_err(65);
    assert!(
        msg.contains("sliding window (65)") && msg.contains("context (64"),
        "{msg}"
    );

    let (config, weights, tokenizer) = hf("tiny-gemma3");
    let zero = config.replace("\"sliding_window\": 4", "\"sliding_window\": 0");
    assert_ne!(zero, config);
    assert!(load_err(&zero, weights, &tokenizer).contains("at least 1 position"));
}

/// The model's trained context bounds every architecture: maxSeqLen cannot
/// pass it, and a window, which holds no more than W entries, still stops there.
#[test]
fn the_context_limits_every_model_and_every_strategy() {
    use kvcache_wasm::{CacheStrategy, StopReason};
    for name in TINY {
        let context = load_tiny(name, BackendKind::default())
            .model
            .config()
            .max_position_embeddings;
        for max_seq_len in [context + 1, 1_000_000_000] {
            let options = CacheOptions {
                max_seq_len: Some(max_seq_len),
                ..CacheOptions::default()
            };
            let err = Generator::new(load_tiny(name, BackendKind::default()), options)
                .err()
                .expect("maxSeqLen past the context")
                .to_string();
            let says = format!(
                "maxSeqLen {max_seq_len} exceeds the model's context of {context} positions"
            );
            assert!(err.contains(&says), "{name}: {err}");
        }
        let mut g = generator(
            name,
            BackendKind::default(),
            CacheOptions {
                strategy: CacheStrategy::Window { size: 4, sinks: 0 },
                ..CacheOptions::default()
            },
        );
        let out = g
            .generate("Once upon a time", &greedy(context + 10), |_| {})
            .unwrap();
        assert_eq!(out.stop_reason, Some(StopReason::ContextFull), "{name}");
        assert_eq!(g.position(), context, "{name}");
        assert_eq!(out.prompt_ids.len() + out.ids.len(), context + 1, "{name}");
        let err = g
            .generate(" more", &greedy(1), |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("the model's context is {context} positions")),
            "{name}: {err}"
        );
    }
}

/// A window past the memory budget names its own size (its entries and sinks),
/// not a longest sequence, which a window does not have.
#[test]
fn a_window_past_the_memory_budget_names_its_size() {
    use kvcache_wasm::CacheStrategy;
    let mut config: serde_json::Value =
        serde_json::from_str(&read_text("tiny-llama/config.json")).unwrap();
    config["max_position_embeddings"] = (1u64 << 24).into();
    let loaded = load::from_hf_files(
        &config.to_string(),
        read("tiny-llama/model.safetensors"),
        &read_text("tiny-llama/tokenizer.json"),
        &device(),
    )
    .unwrap();
    let size = (1 << 24) - 8;
    let options = CacheOptions {
        max_seq_len: Some(1 << 24),
        strategy: CacheStrategy::Window { size, sinks: 4 },
        ..CacheOptions::default()
    };
    let err = Generator::new(loaded, options).err().unwrap().to_string();
    let says = format!("a KV cache of {} positions needs", size + 4);
    assert!(err.contains(&says), "{err}");
}

/// A model whose vocabulary is padded past the tokenizer's ids (as Qwen3's is)
/// never samples the padding, which has no text: here 3000 padded rows copy the
/// 300 real ones, so a sampler over all of them would pick one almost every token.
#[test]
fn a_vocabulary_padded_past_the_tokenizer_is_never_sampled() {
    const PADDED: usize = 3300;
    let weights = edited_llama(|name, view| match name {
        "lm_head.weight" | "model.embed_tokens.weight" => {
            let row = view.data().len() / view.shape()[0];
            let data: Vec<u8> = view
                .data()
                .chunks(row)
                .cycle()
                .take(PADDED)
                .flatten()
                .copied()
                .collect();
            Some((view.dtype(), vec![PADDED, view.shape()[1]], data))
        }
        _ => keep(view),
    });
    let mut config: serde_json::Value =
        serde_json::from_str(&read_text("tiny-llama/config.json")).unwrap();
    config["vocab_size"] = PADDED.into();
    let tokenizer = read_text("tiny-llama/tokenizer.json");
    let loaded = load::from_hf_files(&config.to_string(), weights, &tokenizer, &device()).unwrap();
    let mut g = Generator::new(loaded, CacheOptions::default()).unwrap();
    let limit = g.tokenizer().id_limit();
    assert!(limit < PADDED);
    let run = RunOptions {
        max_new_tokens: 48,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 7,
        },
        stop_ids: Some(vec![]),
        ..RunOptions::default()
    };
    let out = g.generate("Once upon a time", &run, |_| {}).unwrap();
    assert_eq!(out.ids.len(), 48);
    assert!(
        out.ids.iter().all(|&id| (id as usize) < limit),
        "{:?}",
        out.ids
    );
}
