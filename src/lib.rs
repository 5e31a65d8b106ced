//! kvcache-wasm: a real decoder LLM (GPT-2, Llama, Gemma 3) in Rust with burn,
//! whose KV cache you can see and control, natively and in the browser.
//!
//! Follow one token: [`generate::Generator::step`] → [`model::Model::forward_last`]
//! → `model::{gpt2, llama, gemma3}` → `model::Past::attend` → [`cache::LayerCache::attend`]
//! → [`attention::over_rows`]; `docs/architecture.md` walks through it.

pub mod attention;
pub mod backend;
pub mod bench;
pub mod budget;
pub mod cache;
pub mod config;
pub mod elementwise;
pub mod error;
pub mod fingerprint;
pub mod generate;
pub mod load;
pub mod model;
pub mod options;
pub mod pool;
pub mod quant;
pub mod sampling;
pub mod snapshot;
pub mod tokenizer;
pub mod weights;

/// The JS API (wasm-bindgen), only in WebAssembly builds.
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use backend::BackendKind;
pub use cache::{CacheStrategy, KvCache, KvDtype};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};
pub use generate::{
    CacheOptions, ChatOptions, Generation, Generator, RunOptions, Score, StopReason, TokenEvent,
};
pub use options::{ModelOptions, PrefillOptions, RemoteModel};
pub use sampling::SamplingParams;
pub use snapshot::CacheSnapshot;
