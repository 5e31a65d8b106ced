//! Snapshots of the generator's sequence ([`CacheSnapshot`]): taken between
//! runs, restored exactly, here or in a new generator of the same model.

use super::Generator;
use crate::attention::Heads;
use crate::error::{Error, Result};
use crate::snapshot::{CacheSnapshot, SnapshotSettings};

impl Generator {
    /// The model's fingerprint ([`crate::load::Loaded::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether a run is under way: prefilled, and not yet stopped.
    pub fn run_in_progress(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|run| run.stop_reason.is_none())
    }

    fn snapshot_settings(&self) -> SnapshotSettings {
        SnapshotSettings {
            strategy: self.options.strategy,
            kv_dtype: self.options.kv_dtype,
            max_seq_len: self.max_seq_len,
            use_cache: self.options.use_cache,
        }
    }

    /// The sequence as it stands: its tokens, the position, and every
    /// layer's held entries, with the settings and the model's fingerprint.
    /// Refused during a run (between `prefill` and the step that stops it).
    pub fn snapshot(&self) -> Result<CacheSnapshot> {
        if self.run_in_progress() {
            return Err(Error::invalid(
                "snapshot() is refused during a run: step until it stops (or reset) first",
            ));
        }
        let heads = Heads::of(self.model.config());
        Ok(CacheSnapshot {
            fingerprint: self.fingerprint,
            settings: self.snapshot_settings(),
            kv_heads: heads.kv,
            head_dim: heads.dim,
            tokens: self.consumed.iter().chain(&self.pending).copied().collect(),
            position: self.position(),
            conversation: self.conversation.clone(),
            layers: match &self.cache {
                Some(cache) => cache.held_rows()?,
                None => Vec::new(),
            },
        })
    }

    /// Puts the sequence back as `snapshot` holds it: the next tokens are
    /// those that would have followed it, and the next `chat` turn continues
    /// the conversation it holds, if any. Any run in progress ends. Refused,
    /// changing nothing, for a snapshot of another model or taken under other
    /// settings (strategy, window, maxSeqLen, cache on or off).
    pub fn restore(&mut self, snapshot: &CacheSnapshot) -> Result<()> {
        self.restore_owned(snapshot.clone())
    }

    /// [`Self::restore`] from [`CacheSnapshot::to_bytes`]'s bytes.
    pub fn restore_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.restore_owned(CacheSnapshot::from_bytes(bytes)?)
    }

    /// [`Self::restore`], the entries moved into the cache rather than copied.
    pub(super) fn restore_owned(&mut self, snapshot: CacheSnapshot) -> Result<()> {
        if snapshot.fingerprint != self.fingerprint {
            return Err(Error::Snapshot(format!(
                "it was taken from another model (fingerprint {:016x}; this model's is {:016x})",
                snapshot.fingerprint, self.fingerprint
            )));
        }
        let ours = self.snapshot_settings();
        if snapshot.settings != ours {
            return Err(Error::Snapshot(format!(
                "it was taken with {}, this generator has {ours}: set the same options first",
                snapshot.settings
            )));
        }
        let heads = Heads::of(self.model.config());
        if (snapshot.kv_heads, snapshot.head_dim) != (heads.kv, heads.dim) {
            return Err(Error::Snapshot(format!(
                "its entries have {} kv heads of {}, this model's {} of {}",
                snapshot.kv_heads, snapshot.head_dim, heads.kv, heads.dim
            )));
        }
        let position = snapshot.position;
        let pending = snapshot.tokens.len() - position.min(snapshot.tokens.len());
        if position > snapshot.tokens.len() || pending > self.max_seq_len {
            return Err(Error::Snapshot(format!(
                "position {position} with {} tokens does not describe a sequence",
                snapshot.tokens.len()
            )));
        }
        let vocab = self.model.config().vocab_size;
        if let Some(bad) = snapshot.tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Snapshot(format!(
                "token id {bad} is outside the model's vocabulary (size {vocab})"
            )));
        }
        self.model
            .check_room(0, position, crate::cache::max_len(&self.plans))
            .map_err(|e| Error::Snapshot(e.to_string()))?;
        match &mut self.cache {
            Some(cache) => cache
                .restore_rows(position, snapshot.layers)
                .map_err(|e| match e {
                    Error::InvalidArgument(problem) => Error::Snapshot(problem),
                    other => other,
                })?,
            None if !snapshot.layers.is_empty() => {
                return Err(Error::Snapshot(
                    "it holds cache entries, but this generator's cache is off".into(),
                ))
            }
            None => {}
        }
        let mut tokens = snapshot.tokens;
        self.pending = tokens.split_off(position);
        self.consumed = tokens;
        self.run = None;
        self.conversation = snapshot.conversation;
        Ok(())
    }
}
