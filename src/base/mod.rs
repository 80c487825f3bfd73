//! Layer 7, the leaves: typed errors and exit codes ([`error`]), record types shared by the
//! generator and the run directory ([`record`]), per-sample RNG streams and the sampler
//! ([`sampling`]), the counting allocator and RSS peaks ([`memory`]), stop signals
//! ([`interrupt`]) and small helpers ([`util`]). Nothing here imports another layer.
pub mod error;
pub mod interrupt;
pub mod memory;
pub mod record;
pub mod sampling;
pub mod util;
