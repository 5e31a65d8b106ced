//! The generation loop around a model, its tokenizer and its KV cache:
//! prefill the prompt, then one token per step, timing every step.
//!
//! [`Generator`] is the plain Rust API that the CLI, the native tests and the
//! wasm bindings all drive. Every call checks its input before touching any
//! state, so a failed call leaves the generator as it was.

use serde::Serialize;
use web_time::Instant;

use crate::cache::{self, CacheStrategy, KvCache};
use crate::cache_cost;
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{TextStream, Tokenizer};

/// Longest sequence by default; also what `prealloc` allocates. Models with a
/// shorter trained context use that instead.
pub const DEFAULT_MAX_SEQ_LEN: usize = 1024;

/// How the generator keeps its cache; settable again between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOptions {
    pub strategy: CacheStrategy,
    /// Longest sequence accepted (defaults to min(model context, 1024)).
    pub max_seq_len: Option<usize>,
    pub use_cache: bool,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            strategy: CacheStrategy::Concat,
            max_seq_len: None,
            use_cache: true,
        }
    }
}

/// Per-run settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Token ids that end generation; `None` means the model's EOS ids. The stop token itself is not emitted.
    pub stop_ids: Option<Vec<u32>>,
    /// Wrap the prompt in the ChatML template (instruct models).
    pub chat: bool,
    pub system_prompt: Option<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 64,
            sampling: SamplingParams::default(),
            stop_ids: None,
            chat: false,
            system_prompt: None,
        }
    }
}

/// One generated token, as streamed to the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenEvent {
    pub id: u32,
    /// The text this token completes (may be empty while a character is split across tokens).
    pub text: String,
    /// Wall time of the step that produced this token (the first includes the prompt's prefill).
    pub ms: f64,
    /// Position this token will occupy in the sequence.
    pub position: usize,
    pub cache_len: usize,
    pub cache_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// A stop id (EOS) was sampled.
    StopToken,
    /// The sequence reached maxSeqLen or the model's position limit.
    ContextFull,
}

/// The summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    /// One per generated token; `step_ms[0]` is the prefill (time to first token).
    pub step_ms: Vec<f64>,
    pub prefill_ms: f64,
    /// Decode speed: tokens after the first over their time.
    pub tokens_per_sec: f64,
    pub cache_len: usize,
    pub cache_bytes: usize,
    pub stop_reason: Option<StopReason>,
}

/// State of the run in progress, from `prefill` until it stops.
#[derive(Debug)]
struct Run {
    sampler: Sampler,
    stop_ids: Vec<u32>,
    max_new_tokens: usize,
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    text: String,
    stream: TextStream,
    step_ms: Vec<f64>,
    stop_reason: Option<StopReason>,
}

pub struct Generator {
    model: Model,
    tokenizer: Tokenizer,
    cache: KvCache,
    options: GeneratorOptions,
    /// Every token of the sequence since the last reset. The last one may be
    /// pending: sampled but not yet run through the model.
    context: Vec<u32>,
    /// How many of `context` the model has consumed: the next token's position.
    consumed: usize,
    run: Option<Run>,
}

impl Generator {
    pub fn new(loaded: Loaded, options: GeneratorOptions) -> Result<Self> {
        let cache = Self::make_cache(&loaded.model, &options)?;
        Ok(Generator {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            cache,
            options,
            context: Vec::new(),
            consumed: 0,
            run: None,
        })
    }

    fn make_cache(model: &Model, options: &GeneratorOptions) -> Result<KvCache> {
        let config = model.config();
        let capacity = options
            .max_seq_len
            .unwrap_or(config.max_position_embeddings.min(DEFAULT_MAX_SEQ_LEN));
        if let Some(limit) = model.position_limit() {
            if capacity > limit {
                return Err(Error::invalid(format!(
                    "maxSeqLen {capacity} exceeds the model's context of {limit} positions"
                )));
            }
        }
        KvCache::new(config, options.strategy, capacity)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn options(&self) -> &GeneratorOptions {
        &self.options
    }

    /// Changes strategy, capacity or cache use; the sequence starts afresh.
    pub fn set_options(&mut self, options: GeneratorOptions) -> Result<()> {
        self.cache = Self::make_cache(&self.model, &options)?;
        self.options = options;
        self.reset();
        Ok(())
    }

    pub fn set_use_cache(&mut self, use_cache: bool) {
        self.options.use_cache = use_cache;
        self.reset();
    }

    pub fn set_strategy(&mut self, strategy: CacheStrategy) -> Result<()> {
        self.set_options(GeneratorOptions {
            strategy,
            ..self.options.clone()
        })
    }

    /// Forgets the sequence: cache emptied, position back to 0.
    pub fn reset(&mut self) {
        self.cache.reset();
        self.context.clear();
        self.consumed = 0;
        self.run = None;
    }

    /// Tokens the model has consumed since the last reset.
    pub fn position(&self) -> usize {
        self.consumed
    }

    pub fn cache_len(&self) -> usize {
        if self.options.use_cache {
            self.cache.len()
        } else {
            0
        }
    }

    pub fn cache_bytes(&self) -> usize {
        if self.options.use_cache {
            self.cache.bytes()
        } else {
            0
        }
    }

    pub fn cache_bytes_formula(&self) -> usize {
        if self.options.use_cache {
            self.cache.bytes_formula()
        } else {
            0
        }
    }

    pub fn max_seq_len(&self) -> usize {
        self.cache.capacity()
    }

    /// Per-token milliseconds of this generator's cache strategy alone (cache update
    /// plus attention, no weights) over `tokens` steps; see [`cache_cost`]. The
    /// generator's own sequence and cache are left as they are.
    pub fn cache_cost(&self, tokens: usize) -> Result<Vec<f64>> {
        cache_cost::measure(
            self.model.config(),
            self.options.strategy,
            self.cache.capacity(),
            tokens,
            self.model.device(),
        )
    }

    /// Greedy decoding of `prompt` for `tokens` new tokens with each of `strategies`,
    /// taking turns token by token and timing every step: the strategies compared
    /// on whole steps of the real model; see [`cache_cost::interleaved`]. Uses
    /// fresh caches of this generator's capacity and leaves its own sequence as it is.
    pub fn interleaved(
        &self,
        prompt: &str,
        strategies: &[CacheStrategy],
        tokens: usize,
    ) -> Result<cache_cost::Interleaved> {
        let ids = self.tokenizer.encode_prompt(prompt, true)?;
        if ids.is_empty() {
            return Err(Error::invalid(
                "the prompt is empty: give at least one token of text",
            ));
        }
        cache_cost::interleaved(&self.model, strategies, self.cache.capacity(), &ids, tokens)
    }

    /// Runs the prompt (after anything already in the sequence) and samples the
    /// first new token. `None` when that token is a stop id or `max_new_tokens` is 0.
    pub fn prefill(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
    ) -> Result<Option<TokenEvent>> {
        let sampler = Sampler::new(options.sampling.clone())?;
        let text = if options.chat {
            self.tokenizer
                .chat_prompt(prompt, options.system_prompt.as_deref())?
        } else {
            prompt.to_string()
        };
        let prompt_ids = self
            .tokenizer
            .encode_prompt(&text, self.context.is_empty())?;
        if prompt_ids.is_empty() {
            return Err(Error::invalid(
                "the prompt is empty: give at least one token of text",
            ));
        }
        let stop_ids = options
            .stop_ids
            .clone()
            .unwrap_or_else(|| self.model.config().eos_token_ids.clone());
        let mut run = Run {
            sampler,
            stop_ids,
            max_new_tokens: options.max_new_tokens,
            prompt_ids: prompt_ids.clone(),
            ids: Vec::new(),
            text: String::new(),
            stream: TextStream::default(),
            step_ms: Vec::new(),
            stop_reason: None,
        };
        let pending = self.context.len() - self.consumed;
        self.check_fits(pending + prompt_ids.len())?;
        if options.max_new_tokens == 0 {
            self.context.extend(&prompt_ids);
            run.stop_reason = Some(StopReason::MaxTokens);
            self.run = Some(run);
            return Ok(None);
        }
        let started = Instant::now();
        let mut feed = self.context[self.consumed..].to_vec();
        feed.extend(&prompt_ids);
        let logits = self.run_model(&feed, &prompt_ids)?;
        self.run = Some(run);
        self.take_token(&logits, started)
    }

    /// The next token, or `None` once the run has stopped (stop id, max tokens, context full).
    pub fn step(&mut self) -> Result<Option<TokenEvent>> {
        let fits = self.check_fits(1).is_ok();
        let Some(run) = self.run.as_mut() else {
            return Err(Error::invalid(
                "call prefill (or generate) with a prompt before step",
            ));
        };
        if run.stop_reason.is_some() {
            return Ok(None);
        }
        if run.ids.len() >= run.max_new_tokens {
            run.stop_reason = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        if !fits {
            run.stop_reason = Some(StopReason::ContextFull);
            return Ok(None);
        }
        let started = Instant::now();
        let feed = self.context[self.consumed..].to_vec();
        let logits = self.run_model(&feed, &[])?;
        self.take_token(&logits, started)
    }

    /// Prefill plus steps until the run stops, calling `on_token` for each token.
    pub fn generate(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        mut on_token: impl FnMut(&TokenEvent),
    ) -> Result<Generation> {
        self.try_generate(prompt, options, |event| {
            on_token(event);
            Ok::<(), Error>(())
        })
    }

    /// [`generate`](Self::generate) with a callback that may fail (a JS
    /// `onToken` that throws): the run stops at the first error, which is
    /// returned; the tokens produced until then stay in the sequence.
    pub fn try_generate<E: From<Error>>(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        mut on_token: impl FnMut(&TokenEvent) -> std::result::Result<(), E>,
    ) -> std::result::Result<Generation, E> {
        let mut next = self.prefill(prompt, options)?;
        while let Some(event) = next {
            on_token(&event)?;
            next = self.step()?;
        }
        Ok(self.finish()?)
    }

    /// The summary of the current run so far (complete once `step` returned `None`).
    pub fn finish(&mut self) -> Result<Generation> {
        let (cache_len, cache_bytes) = (self.cache_len(), self.cache_bytes());
        let tokenizer = &self.tokenizer;
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| Error::invalid("no run to finish: call prefill first"))?;
        let tail = run.stream.finish(tokenizer)?;
        run.text.push_str(&tail);
        let prefill_ms = run.step_ms.first().copied().unwrap_or(0.0);
        let decode_ms: f64 = run.step_ms.iter().skip(1).sum();
        let decoded = run.step_ms.len().saturating_sub(1);
        let tokens_per_sec = if decoded > 0 && decode_ms > 0.0 {
            decoded as f64 * 1000.0 / decode_ms
        } else {
            0.0
        };
        Ok(Generation {
            prompt_ids: run.prompt_ids.clone(),
            ids: run.ids.clone(),
            text: run.text.clone(),
            step_ms: run.step_ms.clone(),
            prefill_ms,
            tokens_per_sec,
            cache_len,
            cache_bytes,
            stop_reason: run.stop_reason,
        })
    }

    /// Logits for the last of `ids` from a fresh sequence. With the cache on,
    /// all but the last token are prefilled and the last one is a decode step,
    /// so both paths are exercised.
    pub fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::invalid("no token ids given"));
        }
        self.reset();
        self.check_fits(ids.len())?;
        let result = if self.options.use_cache && ids.len() > 1 {
            let window = self.options.strategy.window();
            self.model
                .forward_last(&ids[..ids.len() - 1], Some(&mut self.cache), window)
                .and_then(|_| {
                    self.model
                        .forward_last(&ids[ids.len() - 1..], Some(&mut self.cache), window)
                })
        } else {
            let cache = self.options.use_cache.then_some(&mut self.cache);
            self.model
                .forward_last(ids, cache, self.options.strategy.window())
        };
        self.reset();
        result
    }

    /// Fails, changing nothing, if `n` more tokens would not fit (checked with the cache off too).
    fn check_fits(&self, n: usize) -> Result<()> {
        cache::check_fits(
            self.consumed,
            n,
            self.model.position_limit(),
            self.cache.max_len(),
        )
    }

    /// Runs `feed` (the unconsumed tail of the context) and returns the next-token logits.
    /// `extra` are tokens being added to the context with this call.
    fn run_model(&mut self, feed: &[u32], extra: &[u32]) -> Result<Vec<f32>> {
        let window = self.options.strategy.window();
        let logits = if self.options.use_cache {
            self.model
                .forward_last(feed, Some(&mut self.cache), window)?
        } else {
            // The baseline: recompute the whole sequence from position 0.
            let mut all = self.context[..self.consumed].to_vec();
            all.extend_from_slice(feed);
            self.model.forward_last(&all, None, window)?
        };
        self.context.extend_from_slice(extra);
        self.consumed = self.context.len();
        Ok(logits)
    }

    fn take_token(&mut self, logits: &[f32], started: Instant) -> Result<Option<TokenEvent>> {
        let run = self.run.as_mut().expect("a run is in progress");
        let id = run.sampler.sample(logits);
        if run.stop_ids.contains(&id) {
            run.stop_reason = Some(StopReason::StopToken);
            return Ok(None);
        }
        let text = run.stream.push(&self.tokenizer, id)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        run.ids.push(id);
        run.text.push_str(&text);
        run.step_ms.push(ms);
        self.context.push(id);
        Ok(Some(TokenEvent {
            id,
            text,
            ms,
            position: self.context.len() - 1,
            cache_len: self.cache_len(),
            cache_bytes: self.cache_bytes(),
        }))
    }
}
