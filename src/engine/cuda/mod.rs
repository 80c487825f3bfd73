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

use crate::base::error::Error;

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

/// cuBLASLt gave no handle on a GPU that opened: the CUDA libraries and the driver do not work
/// together, which waiting does not clear (exit 1, never 75: a Slurm task would requeue for ever).
pub fn cublaslt_failed(e: impl std::fmt::Debug) -> Error {
    Error::Run(format!(
        "cannot create a cuBLASLt handle ({e:?}): the CUDA libraries this rftx was built with do not work with this GPU's driver (check nvidia-smi; scripts/build-cuda.sh), or set model.batch_invariant = false to let cuBLAS choose its kernels"
    ))
}

/// The driver could not say the GPU's compute capability while kernels were being launched: a
/// driver failure mid-run (exit 1: the committed work is kept and the same command resumes).
pub fn capability_query_failed(e: impl std::fmt::Debug) -> Error {
    Error::Run(format!(
        "the CUDA driver could not read the GPU's compute capability mid-run ({e:?}); check nvidia-smi, then run the same command to resume"
    ))
}

#[cfg(test)]
mod tests {
    /// A failure that waiting does not clear is never exit 75.
    #[test]
    fn driver_failures_on_an_open_gpu_are_not_retryable() {
        assert_eq!(super::cublaslt_failed("CUBLAS_STATUS_NOT_INITIALIZED").exit_code(), 1);
        assert_eq!(super::capability_query_failed("CUDA_ERROR_UNKNOWN").exit_code(), 1);
    }
}
