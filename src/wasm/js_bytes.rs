//! A file in a JS buffer, outside the wasm memory: a download, or the bytes a
//! caller handed over. A GGUF model is read from it a tensor at a time
//! ([`FileBytes`]), so the file is never copied into the wasm memory whole;
//! that memory never shrinks, and the file would stay counted in it beside the
//! weights made from it.

use std::borrow::Cow;
use std::ops::Range;

use js_sys::{Array, Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::budget;
use crate::error::{Error, Result};
use crate::weights::bytes::{buffer, FileBytes};

#[derive(Debug, Clone)]
pub(super) struct JsBytes(Uint8Array);

impl JsBytes {
    pub fn new(array: Uint8Array) -> Self {
        JsBytes(array)
    }

    /// `new Uint8Array(len)`, or an error naming `what` when JS cannot allocate it.
    pub fn zeroed(len: usize, what: &str) -> Result<Self> {
        let constructor: Function = Uint8Array::new_with_length(0).constructor();
        Reflect::construct(&constructor, &Array::of1(&JsValue::from(len as f64)))
            .map(|array| JsBytes(array.unchecked_into()))
            .map_err(|_| {
                Error::OutOfMemory(format!(
                    "{what} needs a buffer of {}, which the browser could not allocate",
                    budget::human(len as u64)
                ))
            })
    }

    pub fn array(&self) -> &Uint8Array {
        &self.0
    }

    /// The first `len` bytes.
    pub fn truncated(&self, len: usize) -> Self {
        JsBytes(self.0.subarray(0, len as u32))
    }

    /// Writes `chunk` at `at`, which the caller has made room for.
    pub fn write(&self, at: usize, chunk: &Uint8Array) {
        self.0.set(chunk, at as u32);
    }

    /// All the bytes copied into wasm memory (for the formats read whole),
    /// within the memory budget and without aborting when memory runs out.
    pub fn copied(&self, what: &str) -> Result<Vec<u8>> {
        let mut bytes =
            budget::vec_filled(|| format!("copying {what} into wasm memory"), self.len(), 0)?;
        self.0.copy_to(&mut bytes);
        Ok(bytes)
    }
}

impl FileBytes for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }

    fn read(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>> {
        let mut out = buffer(range.len())?;
        self.0
            .subarray(range.start as u32, range.end as u32)
            .copy_to(&mut out);
        Ok(Cow::Owned(out))
    }
}
