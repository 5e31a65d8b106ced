//! Multi-turn chat in the model's template, the conversation kept in the
//! generator: a turn that continues it prefills only its own tokens after the
//! cache of the turns before, and a new conversation starts from the cache of
//! its system prompt, computed once per generator.
//!
//! The tokens of a conversation are, turn by turn: the system prompt's text
//! (the template's start, up to the first user turn) tokenized as a prompt
//! starting a sequence, the first user turn's text, each reply as the ids the
//! model generated, and for each later turn the text closing the reply and
//! opening the next ([`crate::tokenizer::ChatTemplate::next_turn`], after the
//! end-of-turn token). Every boundary between these pieces sits at a special
//! token (`<|im_start|>`, `<|im_end|>`, ...), which the tokenizer never merges
//! with its neighbours, so the ids equal those of the whole conversation
//! tokenized at once whenever each reply's text tokenizes back to the ids
//! generated (`tests/chat_reuse.rs` checks this on SmolLM2). With
//! `reuse: false` the same ids are recomputed from an empty cache.

use web_time::Instant;

use super::{Generation, Generator, Run, RunOptions, TokenEvent};
use crate::cache;
use crate::error::{Error, Result};
use crate::sampling::Sampler;
use crate::snapshot::CacheSnapshot;
use crate::tokenizer::{ChatMessage, ChatTemplate, NoChat, Role};

/// Options of [`Generator::chat`]: those of a run (its `chat` flag is not
/// used: a chat turn is always in the template), and whether to reuse the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOptions {
    pub run: RunOptions,
    /// Continue from the cache of the previous turns (and of the system
    /// prompt), prefilling only the new turn's tokens; `false` recomputes the
    /// whole conversation from an empty cache.
    pub reuse: bool,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            run: RunOptions::default(),
            reuse: true,
        }
    }
}

/// The chat conversation a sequence holds: the next turn continues it when
/// its system prompt is the same. Snapshots keep it, so a restored sequence
/// continues its conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Its system prompt (`None`: the template's default).
    pub system: Option<String>,
}

/// The cache of a system prompt's tokens, restored when a new conversation starts with it.
#[derive(Debug)]
pub(super) struct SystemPrefix {
    system: Option<String>,
    snapshot: CacheSnapshot,
}

/// What a turn adds to the sequence.
struct Turn {
    /// The system prompt's tokens, when the turn starts a conversation.
    prefix: Vec<u32>,
    /// The turn's own tokens, ending where the reply begins.
    ids: Vec<u32>,
}

impl Generator {
    /// One chat turn: `message` from the user, the reply generated, calling
    /// `on_token` for each token. See [`Self::chat_prefill`].
    pub fn chat(
        &mut self,
        message: &str,
        options: &ChatOptions,
        mut on_token: impl FnMut(&TokenEvent),
    ) -> Result<Generation> {
        self.try_chat(message, options, |event| {
            on_token(event);
            Ok::<(), Error>(())
        })
    }

    /// [`Self::chat`] with a callback that may fail, as [`Self::try_generate`].
    pub fn try_chat<E: From<Error>>(
        &mut self,
        message: &str,
        options: &ChatOptions,
        on_token: impl FnMut(&TokenEvent) -> std::result::Result<(), E>,
    ) -> std::result::Result<Generation, E> {
        let first = self.chat_prefill(message, options)?;
        self.run_to_end(first, on_token)
    }

    /// Adds the user's `message` to the conversation and prefills it,
    /// returning the reply's first token (then [`Self::step`]). The turn
    /// continues the conversation the sequence holds when its system prompt
    /// is the same, and starts a new one otherwise (the sequence afresh). A
    /// run stops at the model's end-of-turn token as well as its EOS ids
    /// unless `stopIds` are given. Refused for a model without a known chat
    /// template; on error nothing changes.
    pub fn chat_prefill(
        &mut self,
        message: &str,
        options: &ChatOptions,
    ) -> Result<Option<TokenEvent>> {
        let template = self
            .tokenizer
            .chat_template()
            .map_err(NoChat::error)?
            .clone();
        let run = &options.run;
        let sampler = Sampler::new(run.sampling.clone())?;
        self.tokenizer.check_text_fits(message, self.max_seq_len)?;
        let system = run.system_prompt.clone();
        let continues = self
            .conversation
            .as_ref()
            .is_some_and(|c| c.system == system);
        let turn = if continues {
            self.next_turn(&template, message)?
        } else {
            self.first_turn(&template, message, system.as_deref())?
        };
        let end_of_turn = self.tokenizer.token_id(template.family().end_of_turn());
        let stop_ids = run.stop_ids.clone().unwrap_or_else(|| {
            let mut ids = self.model.config().eos_token_ids.clone();
            if let Some(id) = end_of_turn.filter(|id| !ids.contains(id)) {
                ids.push(id);
            }
            ids
        });
        // Everything the sequence will hold once this turn is prefilled, checked before any change.
        let before = if continues {
            self.consumed.len() + self.pending.len()
        } else {
            0
        };
        let new = turn.prefix.len() + turn.ids.len();
        self.model
            .check_room(before, new, cache::max_len(&self.plans))?;

        let started = Instant::now();
        let mut prompt_ids = turn.prefix.clone();
        prompt_ids.extend(&turn.ids);
        let run_state = Run::new(sampler, stop_ids, run.max_new_tokens, prompt_ids.clone());
        let mut computed = 0;
        let feed = match (continues, options.reuse) {
            // The new turn after the cache of the conversation so far.
            (true, true) => self.pending.iter().chain(&turn.ids).copied().collect(),
            // The whole conversation again, from an empty cache.
            (true, false) => {
                let all: Vec<u32> = self.sequence().chain(turn.ids.iter().copied()).collect();
                self.reset();
                all
            }
            (false, reuse) => {
                self.reset();
                if reuse && self.cache.is_some() && !turn.prefix.is_empty() {
                    computed = self.start_from_system_prompt(system.as_deref(), &turn.prefix)?;
                    turn.ids
                } else {
                    prompt_ids
                }
            }
        };
        self.conversation = Some(Conversation { system });
        self.start_run(run_state, feed, started, computed)
    }

    /// The tokens of the sequence: those consumed, then those pending.
    fn sequence(&self) -> impl Iterator<Item = u32> + '_ {
        self.consumed.iter().chain(&self.pending).copied()
    }

    /// A new conversation's first turn: the system prompt's part of the
    /// template (what it writes before the first user turn), then the turn.
    fn first_turn(
        &self,
        template: &ChatTemplate,
        message: &str,
        system: Option<&str>,
    ) -> Result<Turn> {
        let mut messages: Vec<ChatMessage> = system
            .map(|content| ChatMessage {
                role: Role::System,
                content,
            })
            .into_iter()
            .collect();
        let prefix = template.render(&messages, false);
        messages.push(ChatMessage {
            role: Role::User,
            content: message,
        });
        let whole = template.render(&messages, true);
        // Gemma folds the system prompt into the first user turn: then only the BOS is shared.
        let (prefix, rest) = match whole.strip_prefix(&prefix) {
            Some(rest) => (prefix, rest),
            None => (String::new(), whole.as_str()),
        };
        let prefix = self.tokenizer.encode_prompt(&prefix, true)?;
        let ids = self.tokenizer.encode_prompt(rest, prefix.is_empty())?;
        Ok(Turn { prefix, ids })
    }

    /// A turn continuing the conversation: the end-of-turn token closing the
    /// previous reply (a stop token is never added to the sequence), the new
    /// user turn, the start of the reply.
    fn next_turn(&self, template: &ChatTemplate, message: &str) -> Result<Turn> {
        let text = format!(
            "{}{}",
            template.family().end_of_turn(),
            template.next_turn(message)
        );
        Ok(Turn {
            prefix: Vec::new(),
            ids: self.tokenizer.encode(&text)?,
        })
    }

    /// Puts the cache of the system prompt's tokens `prefix` in the empty
    /// sequence: restored if computed before, computed (and kept) otherwise.
    /// Returns how many tokens it computed.
    fn start_from_system_prompt(&mut self, system: Option<&str>, prefix: &[u32]) -> Result<usize> {
        if let Some(kept) = &self.system_prefix {
            if kept.system.as_deref() == system && kept.snapshot.tokens == prefix {
                self.restore_owned(kept.snapshot.clone())?;
                return Ok(0);
            }
        }
        self.run_model(prefix)?;
        self.system_prefix = Some(SystemPrefix {
            system: system.map(str::to_string),
            snapshot: self.snapshot()?,
        });
        Ok(prefix.len())
    }
}
