//! rftx: reproducible, memory-aware sample generation for rejection-sampling fine-tuning.
//!
//! The library is the whole product; the `rftx` binary (`src/main.rs`, `src/cli/`) is a thin
//! command-line layer over it. Each folder under `src/` is one layer of `docs/architecture.md`,
//! top to bottom; a module imports only from layers below its own (and from modules of its own
//! layer that do not import it back):
//!
//! 1. `cli/` (the binary): arguments, dispatch, printing, exit codes, progress bars.
//! 2. [`commands`]: sweep, bench, catalog (finding and reading runs), compare (runs side by
//!    side; table, Markdown, JSON, CSV exporters), plot (SVG), slurm (job arrays over `sbatch`).
//! 3. [`run`]: one run end to end — inputs and hash, the loaded session, the question loop,
//!    batching, budgets, checkpoints, `plan --check`, and its shards (`run::shard`: plans,
//!    states, the merge).
//! 4. [`core`]: config (the TOML experiment file), store (the run directory), report
//!    (metrics), plan (predicted memory peaks), generate (chunked generation of many questions),
//!    prompt (chat templates), rft (grading, dataset), data (question sets).
//! 5. [`engine`]: the model, its kernels and KV cache, on a device. Knows nothing of runs.
//! 6. [`source`]: model files (GGUF files, Hugging Face folders, the hub cache), their
//!    tokenizer and chat template, the default model's fetch.
//! 7. [`base`]: the leaves — typed errors, shared record types, per-sample RNG streams and the
//!    sampler, the counting allocator, stop signals, small helpers.
pub mod base;
pub mod commands;
pub mod core;
pub mod engine;
pub mod run;
pub mod source;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use base::error::{Error, Result};
