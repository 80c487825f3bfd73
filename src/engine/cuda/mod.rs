//! The GPU backend. Two decode paths, chosen by `model.gpu_kernels`:
//! - `candle` ([`ops`]): candle's tensor ops, decode attention without GEMMs, dense layers in
//!   fixed 16-row GEMMs (`linear::Linear::Dense`);
//! - `fused` ([`fused`]): rftx's CUDA kernels (`kernels.cu`, launched by `launch`), one GEMM per
//!   layer for all rows ([`gemm`]: one cuBLASLt algorithm pinned per weight shape, or cuBLAS's own
//!   choice under `model.batch_invariant = false`).
//!
//! Both run on the CPU too, for the tests: `ops` as it is, `fused` with each kernel replaced by
//! its [`reference`].
pub mod check;
#[cfg(test)]
mod emulation;
pub mod fused;
pub mod gemm;
#[cfg(feature = "cuda")]
mod launch;
pub mod ops;
pub mod reference;

pub use ops::decode_attention;

use serde::{Deserialize, Serialize};

/// The kernels of the decode step on a GPU (`model.gpu_kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuKernels {
    /// candle's tensor ops, dense layers in fixed 16-row GEMMs, attention per cache.
    #[default]
    Candle,
    /// rftx's CUDA kernels and one GEMM per layer for all rows: eight launches a layer.
    Fused,
}

impl GpuKernels {
    pub fn as_str(self) -> &'static str {
        match self {
            GpuKernels::Candle => "candle",
            GpuKernels::Fused => "fused",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == GpuKernels::Candle
    }
}

/// How a GPU runs the decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuOptions {
    pub kernels: GpuKernels,
    /// `model.batch_invariant`: `false` lets cuBLAS pick each GEMM's kernel by shape (the
    /// `fused` path only; samples then depend on the batch).
    pub batch_invariant: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            kernels: GpuKernels::Candle,
            batch_invariant: true,
        }
    }
}
