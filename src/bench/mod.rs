//! Measurements of the cache strategies, kept apart from generation: what a
//! strategy costs alone, and how strategies compare on whole decode steps
//! taking turns. The CLI (`kvcache cache-cost`, `kvcache interleave`) and JS
//! (the `Bench` class) reach them; `npm run bench` reports them.

mod cache_alone;
mod interleaved;

pub use cache_alone::cache_cost;
pub use interleaved::{interleaved, Interleaved};
