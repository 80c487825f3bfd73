//! rftx: reproducible, memory-aware sample generation for rejection-sampling fine-tuning.
//!
//! The library is the whole product; the `rftx` binary is a thin command-line layer over it.
//!
//! - [`config`] — the TOML experiment file, layered with figment, validated, canonicalised.
//! - [`data`] — question sets (the built-in unit-conversion set and user JSON files).
//! - [`fetch`] — obtaining and verifying the default model in the model cache.
//! - [`model`], [`tokenizer`], [`prompt`]: the llama-architecture GGUF model, its tokenizer
//!   rebuilt from GGUF metadata, and chat formatting. They know nothing of run directories.
//! - [`q8`] — the int8 linear layer (AVX2) that decodes a few rows at once.
//! - [`sampling`], [`generate`]: per-sample RNG streams, temperature / top-p sampling and the
//!   chunked, prefix-sharing generation loop.
//! - [`rft`] — answer parsing, grading and the accepted dataset.
//! - [`memory`] — the counting allocator and process RSS peaks.
//! - [`store`] — the content-hashed run directory: manifest, durable appends, resume.
//! - [`runner`] — one run, end to end, reporting progress through [`runner::Observer`].
//! - [`plan`] — the predicted memory peak of a run, against a device or a budget.
//! - [`report`] — metrics.
//! - [`bench`] — the W15 throughput benchmark at several chunk sizes.
//! - [`sweep`] — the cartesian product of a few keys' values, one run per point, and its record.
//! - [`catalog`], [`compare`], [`plot`]: finding and reading runs, runs side by side (text,
//!   Markdown, JSON, CSV) and the comparison as an SVG chart.
pub mod bench;
pub mod catalog;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod memory;
pub mod model;
pub mod plan;
pub mod plot;
pub mod prompt;
pub mod q8;
pub mod report;
pub mod rft;
pub mod runner;
pub mod sampling;
pub mod store;
pub mod sweep;
pub mod testing;
pub mod tokenizer;
pub mod util;

pub use error::{Error, Result};
