//! rftx: reproducible, memory-aware sample generation for rejection-sampling fine-tuning.
//!
//! The library is the whole product; the `rftx` binary is a thin command-line layer over it.
//! Layers, top to bottom (a module imports only from layers below it; `docs/architecture.md`):
//!
//! 1. Commands: [`sweep`], [`bench`], [`catalog`] (finding and reading runs), [`compare`]
//!    (runs side by side; table, Markdown, JSON, CSV exporters), [`plot`] (SVG), [`slurm`]
//!    (job-array submission over `sbatch`).
//! 2. [`run`]: one run end to end — inputs and hash, the loaded session, the question loop,
//!    budgets, checkpoints, `plan --check`.
//! 3. The core: [`config`] (the TOML experiment file), [`store`] (the run directory),
//!    [`shard`] (shard plans, shard states, the merge),
//!    [`report`] (metrics), [`plan`] (predicted memory peaks), [`generate`] (chunked
//!    generation of one question), [`prompt`], [`rft`] (grading, dataset), [`data`].
//! 4. [`engine`]: the model, its kernels and KV cache, on a device. Knows nothing of runs.
//! 5. [`source`]: model files (GGUF), their tokenizer and the default model's fetch.
//! 6. Leaves: [`sampling`], [`memory`], [`interrupt`] (stop signals), [`util`], [`error`].
pub mod bench;
pub mod catalog;
pub mod compare;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod generate;
pub mod interrupt;
pub mod memory;
pub mod plan;
pub mod plot;
pub mod prompt;
pub mod report;
pub mod rft;
pub mod run;
pub mod sampling;
pub mod shard;
pub mod slurm;
pub mod source;
pub mod store;
pub mod sweep;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod util;

pub use error::{Error, Result};
