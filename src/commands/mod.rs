//! Layer 2, the commands over runs: a grid of runs ([`sweep`]), the throughput benchmark
//! ([`bench`]), finding and reading run directories ([`catalog`]), runs side by side with their
//! exporters ([`compare`]) and chart ([`plot`]), job-array submission ([`slurm`]), and
//! graders without generating ([`grade`]: `rftx grade`, `rftx regrade`).
pub mod bench;
pub mod catalog;
pub mod compare;
pub mod grade;
pub mod plot;
pub mod slurm;
pub mod sweep;
