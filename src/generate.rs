//! The generation loop around a model, its tokenizer and its KV cache:
//! prefill the prompt, then one token per step, timing every step.
//!
//! [`Generator`] is the plain Rust API that the CLI, the native tests and the
//! wasm bindings all drive. Every call checks its input before touching any
//! state, so a failed call leaves the generator as it was.

mod chat;
mod score;
mod snapshot;

use serde::Serialize;
use web_time::Instant;

use crate::attention::Heads;
use crate::budget;
use crate::cache::{self, CacheStrategy, KvCache, KvDtype, LayerPlan};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{TextStream, Tokenizer};

pub use chat::{ChatOptions, Conversation};
pub use score::{negative_log_likelihood, Score};

/// Longest sequence by default; also what `prealloc` allocates. Models with a
/// shorter trained context use that instead.
pub const DEFAULT_MAX_SEQ_LEN: usize = 1024;

/// The longest sequence a generator accepts: `requested`, or by default the
/// model's context up to [`DEFAULT_MAX_SEQ_LEN`]; never past the model's context.
pub fn max_seq_len(config: &ModelConfig, requested: Option<usize>) -> Result<usize> {
    let context = config.max_position_embeddings;
    match requested {
        None => Ok(context.min(DEFAULT_MAX_SEQ_LEN)),
        Some(0) => Err(Error::invalid("maxSeqLen must be at least 1, got 0")),
        Some(n) if n > context => Err(Error::invalid(format!(
            "maxSeqLen {n} exceeds the model's context of {context} positions"
        ))),
        Some(n) => Ok(n),
    }
}

/// How the generator keeps its cache; settable again between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    pub strategy: CacheStrategy,
    /// How the cache stores keys and values; no effect with the cache off.
    pub kv_dtype: KvDtype,
    /// Longest sequence accepted (defaults to min(model context, 1024)).
    pub max_seq_len: Option<usize>,
    pub use_cache: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            strategy: CacheStrategy::Concat,
            kv_dtype: KvDtype::F32,
            max_seq_len: None,
            use_cache: true,
        }
    }
}

/// Per-run settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Token ids that end generation; `None` means the model's EOS ids. The stop token itself is not emitted.
    pub stop_ids: Option<Vec<u32>>,
    /// Wrap the prompt in the ChatML template (instruct models).
    pub chat: bool,
    pub system_prompt: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
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
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct TokenEvent {
    /// The token's id.
    pub id: u32,
    /// The text this token completes (may be empty while a character is split across tokens).
    pub text: String,
    /// Wall time of the step that produced this token (the first includes the prompt's prefill).
    pub ms: f64,
    /// Position this token will occupy in the sequence.
    pub position: usize,
    /// Tokens the cache holds after this step (0 with the cache off).
    pub cache_len: usize,
    /// Bytes the cache's buffers hold after this step.
    pub cache_bytes: usize,
    /// Tokens this step's forward pass computed: the prompt (and any pending
    /// token) for the prefill, 1 for a cached decode step, the whole sequence
    /// with the cache off.
    pub prefilled: usize,
    /// Tokens before them whose keys and values this step took from the cache
    /// (0 with the cache off, and for the prefill of a fresh sequence).
    pub reused: usize,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
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
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// The prompt's token ids (after the chat template, if any).
    pub prompt_ids: Vec<u32>,
    /// The generated token ids (a stop id that ended the run is not included).
    pub ids: Vec<u32>,
    /// The generated text.
    pub text: String,
    /// One per generated token; `step_ms[0]` is the prefill (time to first token).
    pub step_ms: Vec<f64>,
    /// Milliseconds of the prompt's prefill up to the first token (time to first token), also
    /// when that token is a stop id that ends the run at once; 0 when nothing was computed
    /// (`max_new_tokens` 0).
    pub prefill_ms: f64,
    /// Decode speed: tokens after the first over their time.
    pub tokens_per_sec: f64,
    /// Tokens the cache holds at the end of the run (0 with the cache off).
    pub cache_len: usize,
    /// Entries held by each layer (a model's local layers keep their window).
    pub cache_layer_lens: Vec<usize>,
    /// Bytes the cache's buffers hold at the end of the run.
    pub cache_bytes: usize,
    /// How the cache stores keys and values (`"f32"`, `"f16"` or `"int8"`), cache on or off.
    pub kv_dtype: KvDtype,
    /// Why the run stopped; `null` while a run started by `prefill` is still going.
    pub stop_reason: Option<StopReason>,
    /// Tokens the prefill computed (see [`TokenEvent::prefilled`]); for a chat
    /// turn continuing the conversation, only the new turn's.
    pub prefilled: usize,
    /// Tokens the prefill took from the cache: 0 for a fresh sequence; for a
    /// chat turn, the conversation before it (or the cached system prompt).
    pub reused: usize,
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
    /// The prefill's time, also when the token it sampled is a stop id (not in `step_ms`).
    prefill_ms: Option<f64>,
    stop_reason: Option<StopReason>,
    /// The prefill's [`Generation::prefilled`] and [`Generation::reused`].
    prefilled: usize,
    reused: usize,
}

pub struct Generator {
    model: Model,
    tokenizer: Tokenizer,
    /// The model's [`Loaded::fingerprint`], which snapshots carry.
    fingerprint: u64,
    options: CacheOptions,
    /// `options.max_seq_len`, or its default for this model.
    max_seq_len: usize,
    /// How each layer keeps its keys and values, and so which keys it sees (cache on or off).
    plans: Vec<LayerPlan>,
    /// The KV cache, while `options.use_cache`. It holds the position counter.
    cache: Option<KvCache>,
    /// The tokens the model has consumed since the last reset.
    consumed: Vec<u32>,
    /// Tokens of the sequence not yet run through the model: the last sampled
    /// one, or a prompt given with `max_new_tokens` 0.
    pending: Vec<u32>,
    run: Option<Run>,
    /// The chat the sequence holds, which the next `chat` turn continues.
    conversation: Option<chat::Conversation>,
    /// The cache after the chat system prompt, computed once per generator.
    system_prefix: Option<chat::SystemPrefix>,
    /// The scoring in progress, which `score_step` continues.
    scoring: Option<score::Scoring>,
}

impl Generator {
    pub fn new(loaded: Loaded, options: CacheOptions) -> Result<Self> {
        let (max_seq_len, plans, cache) = Self::cache_for(&loaded.model, &options)?;
        Ok(Generator {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            fingerprint: loaded.fingerprint,
            options,
            max_seq_len,
            plans,
            cache,
            consumed: Vec::new(),
            pending: Vec::new(),
            run: None,
            conversation: None,
            system_prefix: None,
            scoring: None,
        })
    }

    /// Everything `options` decide, checked against the model; the cache's
    /// buffers are allocated here.
    fn cache_for(
        model: &Model,
        options: &CacheOptions,
    ) -> Result<(usize, Vec<LayerPlan>, Option<KvCache>)> {
        let config = model.config();
        let max_seq_len = max_seq_len(config, options.max_seq_len)?;
        let plans = cache::plan_layers(config, options.strategy, max_seq_len)?;
        let cache = if options.use_cache {
            check_budget(config, &plans, options.kv_dtype)?;
            Some(KvCache::new(Heads::of(config), &plans, options.kv_dtype)?)
        } else {
            None
        };
        Ok((max_seq_len, plans, cache))
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn options(&self) -> &CacheOptions {
        &self.options
    }

    /// Changes strategy, capacity or cache use; the sequence starts afresh.
    /// On error nothing changes.
    pub fn set_options(&mut self, options: CacheOptions) -> Result<()> {
        let (max_seq_len, plans, cache) = Self::cache_for(&self.model, &options)?;
        (self.max_seq_len, self.plans, self.cache) = (max_seq_len, plans, cache);
        self.options = options;
        self.system_prefix = None;
        self.reset();
        Ok(())
    }

    pub fn set_use_cache(&mut self, use_cache: bool) -> Result<()> {
        self.set_options(CacheOptions {
            use_cache,
            ..self.options.clone()
        })
    }

    pub fn set_strategy(&mut self, strategy: CacheStrategy) -> Result<()> {
        self.set_options(CacheOptions {
            strategy,
            ..self.options.clone()
        })
    }

    pub fn set_kv_dtype(&mut self, kv_dtype: KvDtype) -> Result<()> {
        self.set_options(CacheOptions {
            kv_dtype,
            ..self.options.clone()
        })
    }

    /// Forgets the sequence (and the chat or scoring it held): cache emptied, position back to 0.
    pub fn reset(&mut self) {
        if let Some(cache) = &mut self.cache {
            cache.reset();
        }
        self.consumed.clear();
        self.pending.clear();
        self.run = None;
        self.conversation = None;
        self.scoring = None;
    }

    /// Tokens the model has consumed since the last reset: the next token's
    /// position. The cache's counter; without a cache, the tokens consumed.
    pub fn position(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(self.consumed.len(), KvCache::position)
    }

    /// Entries held by the cache's longest layer (0 with the cache off).
    pub fn cache_len(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::len)
    }

    /// Entries held by each layer (empty with the cache off).
    pub fn cache_layer_lens(&self) -> Vec<usize> {
        self.cache
            .as_ref()
            .map_or_else(Vec::new, KvCache::layer_lens)
    }

    /// Bytes the cache's buffers hold (for prealloc and window, their whole allocation).
    pub fn cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::bytes)
    }

    /// What the textbook formula gives for the entries held ([`KvCache::bytes_formula`]).
    pub fn cache_bytes_formula(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::bytes_formula)
    }

    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// How each layer keeps its keys and values.
    pub fn plans(&self) -> &[LayerPlan] {
        &self.plans
    }

    /// Runs the prompt (after anything already in the sequence) and samples the
    /// first new token. `None` when that token is a stop id or `max_new_tokens` is 0.
    /// An empty prompt continues the sequence: the token sampled last (or the
    /// tokens a run with `max_new_tokens` 0 or a scoring left waiting) runs, and
    /// the next is sampled, as `step` would. It is refused for a fresh sequence
    /// and after a stop id, which leave no token waiting.
    pub fn prefill(&mut self, prompt: &str, options: &RunOptions) -> Result<Option<TokenEvent>> {
        let sampler = Sampler::new(options.sampling.clone())?;
        let text = if options.chat {
            self.tokenizer
                .chat_prompt(prompt, options.system_prompt.as_deref())?
        } else {
            prompt.to_string()
        };
        self.tokenizer.check_text_fits(&text, self.max_seq_len())?;
        let prompt_ids = self
            .tokenizer
            .encode_prompt(&text, self.position() == 0 && self.pending.is_empty())?;
        if prompt_ids.is_empty() && self.pending.is_empty() {
            return Err(Error::invalid(match (self.position(), &self.scoring) {
                (0, _) => "the prompt is empty: give at least one token of text".into(),
                (_, scoring) => format!(
                    "the prompt is empty, and the sequence has no sampled token to continue from ({}): give at least one token of text",
                    match scoring {
                        Some(_) => "a scoring is in progress",
                        None => "its last run ended on a stop id",
                    }
                ),
            }));
        }
        let stop_ids = options
            .stop_ids
            .clone()
            .unwrap_or_else(|| self.model.config().eos_token_ids.clone());
        let feed: Vec<u32> = self.pending.iter().chain(&prompt_ids).copied().collect();
        self.check_room(feed.len())?;
        self.conversation = None;
        let run = Run::new(sampler, stop_ids, options.max_new_tokens, prompt_ids);
        self.start_run(run, feed, Instant::now(), 0)
    }

    /// Starts `run` by running `feed` (the pending tokens and the prompt),
    /// whose room the caller has checked, and sampling the first token.
    /// `computed` tokens were already computed for this prefill since
    /// `started` (a chat's system prompt).
    fn start_run(
        &mut self,
        mut run: Run,
        feed: Vec<u32>,
        started: Instant,
        computed: usize,
    ) -> Result<Option<TokenEvent>> {
        if run.max_new_tokens == 0 {
            // Nothing to sample: the tokens wait for the next run, which computes them.
            (run.prefilled, run.reused) = (computed, 0);
            self.pending = feed;
            run.stop_reason = Some(StopReason::MaxTokens);
            self.run = Some(run);
            return Ok(None);
        }
        let (prefilled, reused) = self.pass_counts(feed.len());
        (run.prefilled, run.reused) = (computed + prefilled, reused.saturating_sub(computed));
        let logits = self.run_model(&feed)?;
        let counts = (run.prefilled, run.reused);
        self.run = Some(run);
        self.take_token(&logits, started, counts)
    }

    /// What a forward pass over `n` new tokens computes and takes from the
    /// cache: with the cache, those `n` after the position; without, the
    /// whole sequence.
    fn pass_counts(&self, n: usize) -> (usize, usize) {
        match self.cache {
            Some(_) => (n, self.position()),
            None => (self.consumed.len() + n, 0),
        }
    }

    /// The next token, or `None` once the run has stopped (stop id, max tokens, context full).
    pub fn step(&mut self) -> Result<Option<TokenEvent>> {
        let fits = self.check_room(self.pending.len()).is_ok();
        let Some(run) = self.run.as_mut() else {
            return Err(Error::invalid(
                "no run to step: call prefill or chatPrefill first",
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
        let feed = self.pending.clone();
        let counts = self.pass_counts(feed.len());
        let logits = self.run_model(&feed)?;
        self.take_token(&logits, started, counts)
    }

    /// Prefill plus steps until the run stops, calling `on_token` for each token.
    pub fn generate(
        &mut self,
        prompt: &str,
        options: &RunOptions,
        mut on_token: impl FnMut(&TokenEvent),
    ) -> Result<Generation> {
        self.try_generate(prompt, options, |event| {
            on_token(event);
            Ok::<(), Error>(())
        })
    }

    /// [`generate`](Self::generate) with a callback that may fail (a JS
    /// `onToken` that throws): the run stops at the first error, which is
    /// returned. As after a run that stopped early, the tokens produced until
    /// then, the one passed to the failing call included, stay in the
    /// sequence: the next run continues after them, and `reset` forgets them.
    pub fn try_generate<E: From<Error>>(
        &mut self,
        prompt: &str,
        options: &RunOptions,
        on_token: impl FnMut(&TokenEvent) -> std::result::Result<(), E>,
    ) -> std::result::Result<Generation, E> {
        let first = self.prefill(prompt, options)?;
        self.run_to_end(first, on_token)
    }

    /// Steps the run begun with `first` (what [`Self::prefill`] returned) until
    /// it stops, calling `on_token` for each token as [`Self::try_generate`]
    /// does, then [`Self::finish`].
    pub fn run_to_end<E: From<Error>>(
        &mut self,
        first: Option<TokenEvent>,
        mut on_token: impl FnMut(&TokenEvent) -> std::result::Result<(), E>,
    ) -> std::result::Result<Generation, E> {
        let mut next = first;
        while let Some(event) = next {
            on_token(&event)?;
            next = self.step()?;
        }
        Ok(self.finish()?)
    }

    /// The summary of the current run so far (complete once `step` returned `None`).
    pub fn finish(&mut self) -> Result<Generation> {
        let (cache_len, cache_bytes) = (self.cache_len(), self.cache_bytes());
        let kv_dtype = self.options.kv_dtype;
        let cache_layer_lens = self.cache_layer_lens();
        let tokenizer = &self.tokenizer;
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| Error::invalid("no run to finish: call prefill or chatPrefill first"))?;
        let tail = run.stream.finish(tokenizer)?;
        run.text.push_str(&tail);
        let prefill_ms = run.prefill_ms.unwrap_or(0.0);
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
            cache_layer_lens,
            cache_bytes,
            kv_dtype,
            stop_reason: run.stop_reason,
            prefilled: run.prefilled,
            reused: run.reused,
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
        self.check_room(ids.len())?;
        let (last, before) = ids.split_last().expect("not empty");
        let result = match &mut self.cache {
            Some(cache) if !before.is_empty() => self
                .model
                .forward_last(before, cache)
                .and_then(|_| self.model.forward_last(&[*last], cache)),
            Some(cache) => self.model.forward_last(ids, cache),
            None => self.model.forward_last_uncached(ids, &self.plans),
        };
        self.reset();
        result
    }

    /// Fails, changing nothing, if `n` more tokens would not fit (checked with the cache off too).
    fn check_room(&self, n: usize) -> Result<()> {
        self.model
            .check_room(self.position(), n, cache::max_len(&self.plans))
    }

    /// Runs `feed` (the pending tokens and any new prompt) and returns the next-token logits.
    fn run_model(&mut self, feed: &[u32]) -> Result<Vec<f32>> {
        let logits = match &mut self.cache {
            Some(cache) => self.model.forward_last(feed, cache)?,
            None => {
                // The baseline: recompute the whole sequence from position 0.
                let all: Vec<u32> = self.consumed.iter().chain(feed).copied().collect();
                self.model.forward_last_uncached(&all, &self.plans)?
            }
        };
        self.consumed.extend_from_slice(feed);
        self.pending.clear();
        Ok(logits)
    }

    /// Samples from `logits`; `counts` are the step's prefilled and reused tokens.
    fn take_token(
        &mut self,
        logits: &[f32],
        started: Instant,
        (prefilled, reused): (usize, usize),
    ) -> Result<Option<TokenEvent>> {
        let run = self.run.as_mut().expect("a run is in progress");
        // Only ids the tokenizer can turn into text: a padded vocabulary's extra rows are never picked.
        let known = self.tokenizer.id_limit().min(logits.len());
        let id = run.sampler.sample(&logits[..known]);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        run.prefill_ms.get_or_insert(ms);
        if run.stop_ids.contains(&id) {
            run.stop_reason = Some(StopReason::StopToken);
            return Ok(None);
        }
        let text = run.stream.push(&self.tokenizer, id)?;
        run.ids.push(id);
        run.text.push_str(&text);
        run.step_ms.push(ms);
        self.pending.push(id);
        Ok(Some(TokenEvent {
            id,
            text,
            ms,
            position: self.position(),
            cache_len: self.cache_len(),
            cache_bytes: self.cache_bytes(),
            prefilled,
            reused,
        }))
    }
}

impl Run {
    fn new(
        sampler: Sampler,
        stop_ids: Vec<u32>,
        max_new_tokens: usize,
        prompt_ids: Vec<u32>,
    ) -> Self {
        Run {
            sampler,
            stop_ids,
            max_new_tokens,
            prompt_ids,
            ids: Vec::new(),
            text: String::new(),
            stream: TextStream::default(),
            step_ms: Vec::new(),
            prefill_ms: None,
            stop_reason: None,
            prefilled: 0,
            reused: 0,
        }
    }
}

/// Fails, saying how much, when a cache planned so would take memory past the
/// budget at its fullest ([`budget`]); in 64 bits, since `maxSeqLen` comes from the user.
fn check_budget(config: &ModelConfig, plans: &[LayerPlan], dtype: KvDtype) -> Result<()> {
    let entries: u64 = plans.iter().map(|plan| plan.most_held() as u64).sum();
    let entry_bytes = 2 * config.num_kv_heads as u64 * dtype.row_bytes(config.head_dim) as u64;
    let longest = plans.iter().map(LayerPlan::most_held).max().unwrap_or(0);
    budget::check(
        &format!("a KV cache of {longest} positions"),
        entry_bytes.checked_mul(entries),
    )
}
