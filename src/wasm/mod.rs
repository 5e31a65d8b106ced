//! The JS API: a thin wasm-bindgen layer over the plain Rust API that the CLI
//! and the native tests drive. Each file has one job:
//!
//! - [`generator`]: the exported `Generator` class. Its methods read their
//!   arguments through [`convert`], call [`crate::Generator`], and hand the
//!   result back as a plain JS object.
//! - [`snapshot`]: the exported `CacheSnapshot` class, what `snapshot()`
//!   returns and `restore` takes back.
//! - [`bench`]: the exported `Bench` class, the cache strategies' measurements
//!   ([`crate::bench`]) on a `Generator`'s model, for `npm run bench`.
//! - [`convert`]: JS values in and out. Options objects are read and checked
//!   into the engine's option structs ([`crate::options`], shared with the CLI,
//!   holds the checks themselves); results become plain JS objects.
//! - [`fetch`]: downloads for `Generator.load`, with progress, through the
//!   browser's Cache API when there is one, into JS buffers ([`js_bytes`]),
//!   which a GGUF model is read from a tensor at a time.
//! - [`crash`]: what a panic does: the module is never left silently broken.
//! - [`types`]: the TypeScript of the objects that cross the boundary (options
//!   and results), which wasm-bindgen appends to the package's `.d.ts`.
//!
//! Engine errors become JS `Error`s whose message is the error's text.

mod bench;
mod convert;
mod crash;
mod fetch;
mod generator;
mod js_bytes;
mod snapshot;
mod types;

use wasm_bindgen::JsValue;

use crate::error::Error;

pub use bench::Bench;
pub use crash::ENGINE_CRASHED;
pub use fetch::BROWSER_CACHE_NAME;
pub use generator::Generator;
pub use snapshot::CacheSnapshot;
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

impl From<Error> for JsValue {
    fn from(error: Error) -> JsValue {
        js_sys::Error::new(&error.to_string()).into()
    }
}
