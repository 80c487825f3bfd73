//! Layer 2, the commands over runs: a grid of runs ([`sweep`]), the throughput benchmark
//! ([`bench`]), finding and reading run directories ([`catalog`]), runs side by side with their
//! exporters ([`compare`]) and chart ([`plot`]), and job-array submission ([`slurm`]).
pub mod bench;
pub mod catalog;
pub mod compare;
pub mod plot;
pub mod slurm;
pub mod sweep;
