//! The TypeScript of the objects that cross the JS boundary, which
//! wasm-bindgen appends to the package's `.d.ts`. The options and results are
//! written from the Rust types themselves (`#[derive(tsify::Tsify)]` on
//! [`crate::options::ModelOptions`], [`crate::options::PrefillOptions`], [`crate::generate::TokenEvent`],
//! [`crate::generate::Generation`], [`crate::config::ModelConfig`], ...), so
//! the declarations follow the fields and their doc comments. Only what has no
//! Rust type is written here: the JS callbacks that some calls take on top.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const CALLBACK_OPTIONS: &'static str = r#"
/** Options of `Generator.load`: the model options, plus how to download. */
export interface LoadOptions extends ModelOptions {
  /** Called as bytes arrive; `total` is undefined when a server does not send Content-Length. */
  onProgress?: ((loaded: number, total: number | undefined) => void) | null;
  /** Keep downloads in the browser Cache API, when there is one (default true). */
  browserCache?: boolean | null;
  /** Cancels the download: the promise then rejects with an Error named "AbortError", and nothing is kept. */
  signal?: AbortSignal | null;
  /**
   * Called when a downloaded file could not be kept in the browser Cache API (`error.name` is
   * "QuotaExceededError" when the site's storage is full); the model loads all the same.
   */
  onStoreError?: ((url: string, error: Error) => void) | null;
}

/** Options of `Generator.fromHfFiles`: the model options, plus the chat template's file. */
export interface HfFilesOptions extends ModelOptions {
  /**
   * The text of the model's `tokenizer_config.json`, whose `chat_template` lets `chat` and
   * `{ chat: true }` wrap messages (ChatML, Gemma and Llama 3 templates are known); without it
   * the model has no chat template.
   */
  tokenizerConfig?: string | null;
}

/** Options of `chat`: those of `generate` but `chat`, plus `reuse`. */
export interface ChatOptions extends Omit<GenerateOptions, "chat"> {
  /**
   * Continue from the cache of the previous turns (and of the system prompt), prefilling only
   * the new turn's tokens (default true); false recomputes the whole conversation from scratch.
   */
  reuse?: boolean | null;
}

/** Options of `chatPrefill`: those of `chat` but `onToken` (the reply comes from `step()`). */
export type ChatPrefillOptions = Omit<ChatOptions, "onToken">;

/** What `score(text)` returns. */
export interface Score {
  /** The text's token ids, as a prompt starting a sequence (BOS first where the model adds one). */
  ids: Uint32Array;
  /** `nll[i]`: negative log-likelihood (nats) of `ids[i + 1]` given the tokens before; `ids.length - 1` values. */
  nll: Float64Array;
  /** exp(mean nll). */
  perplexity: number;
}

/** Options of `generate`: those of `prefill`, plus a callback per token. */
export interface GenerateOptions extends PrefillOptions {
  /**
   * Called for every token as it is produced. If it throws, the run stops and `generate` throws
   * that error; as after a run that stopped early, the tokens produced until then (this one
   * included) stay in the sequence, and the next run continues after them (`reset()` forgets
   * them). Calling this generator's methods from inside it throws: use the token it is given.
   */
  onToken?: ((token: TokenEvent) => void) | null;
}
"#;
