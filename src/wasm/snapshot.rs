//! The exported `CacheSnapshot` class: what `Generator.snapshot()` returns
//! ([`crate::snapshot::CacheSnapshot`]), with its bytes for storage.

use wasm_bindgen::prelude::*;

use crate::snapshot::CacheSnapshot as Snapshot;

/// A generator's sequence as it stood (tokens, position, every layer's cache
/// entries, the settings and the model's fingerprint); `Generator.restore`
/// puts it back, and `toBytes()` gives bytes to store and restore later.
#[wasm_bindgen]
pub struct CacheSnapshot {
    pub(super) inner: Snapshot,
}

#[wasm_bindgen]
impl CacheSnapshot {
    /// The snapshot as bytes, for `Generator.restore` in this or a later session.
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    /// The next token's position: tokens the model had consumed.
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> usize {
        self.inner.position
    }

    /// Every token of the sequence (the last may be pending: sampled, not yet run).
    #[wasm_bindgen(getter)]
    pub fn tokens(&self) -> Vec<u32> {
        self.inner.tokens.clone()
    }
}
