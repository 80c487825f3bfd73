//! The GPU backend. Two decode paths, chosen by `model.gpu_kernels`:
//! - `candle` ([`ops`]): candle's tensor ops, decode attention without GEMMs, dense layers in
//!   fixed 16-row GEMMs (`linear::Linear::Dense`);
//! - `fused` ([`fused`]): rftx's CUDA kernels (`kernels.cu`, each launch described by [`plan`],
//!   launched by `launch`), one GEMM per
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
pub mod plan;
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

/// A kernel launch failed (`e`: the driver's error). The device out of memory (a launch can
/// need memory: local memory, the module's load) is a candle out-of-memory, which
/// [`crate::engine::device::allocation`] makes the out-of-memory of its site, so that the run
/// shrinks or stops as `memory.on_exceed` says; anything else is exit 1.
pub fn kernel_failed(name: &str, e: impl std::fmt::Debug) -> Error {
    let message = format!("CUDA kernel {name}: {e:?}");
    if message.contains("CUDA_ERROR_OUT_OF_MEMORY") {
        Error::Candle(candle_core::Error::Msg(message))
    } else {
        Error::Run(format!(
            "{message}; check nvidia-smi, then run the same command to resume"
        ))
    }
}

/// A value per device ordinal, computed once (the driver asked once per device, not per call).
pub struct PerDevice<V>(std::sync::Mutex<std::collections::BTreeMap<usize, V>>);

impl<V: Copy> PerDevice<V> {
    pub const fn new() -> Self {
        PerDevice(std::sync::Mutex::new(std::collections::BTreeMap::new()))
    }

    /// Device `ordinal`'s value: `query`'s, the first time it succeeds.
    pub fn get_or_try(&self, ordinal: usize, query: impl FnOnce() -> Result<V, Error>) -> Result<V, Error> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = map.get(&ordinal) {
            return Ok(*v);
        }
        let v = query()?;
        map.insert(ordinal, v);
        Ok(v)
    }
}

impl<V: Copy> Default for PerDevice<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    /// A failure that waiting does not clear is never exit 75.
    #[test]
    fn driver_failures_on_an_open_gpu_are_not_retryable() {
        assert_eq!(super::cublaslt_failed("CUBLAS_STATUS_NOT_INITIALIZED").exit_code(), 1);
        assert_eq!(super::capability_query_failed("CUDA_ERROR_UNKNOWN").exit_code(), 1);
    }

    /// The driver is asked once per device: a second launch on the same device, or a failed
    /// query retried, never asks twice for what it already said.
    #[test]
    fn the_compute_capability_is_asked_once_per_device() {
        let cache = super::PerDevice::<i32>::new();
        let asked = std::cell::Cell::new(0);
        let query = |v: i32| {
            let asked = &asked;
            move || {
                asked.set(asked.get() + 1);
                Ok(v)
            }
        };
        for _ in 0..3 {
            assert_eq!(cache.get_or_try(0, query(9)).unwrap(), 9);
        }
        assert_eq!(cache.get_or_try(1, query(7)).unwrap(), 7);
        assert_eq!(cache.get_or_try(1, query(8)).unwrap(), 7);
        assert_eq!(asked.get(), 2, "once for device 0, once for device 1");
        let failed = cache.get_or_try(2, || Err(super::capability_query_failed("CUDA_ERROR_UNKNOWN")));
        assert!(failed.is_err());
        assert_eq!(cache.get_or_try(2, query(8)).unwrap(), 8, "a failure is not remembered");
    }

    /// A launch that runs out of device memory takes the run's out-of-memory path (the site's
    /// error, then the shrink or the stop of `memory.on_exceed`), as an allocation does; cuBLASLt
    /// failing to allocate does too. Any other launch failure is exit 1.
    #[test]
    fn a_launch_or_gemm_out_of_memory_is_the_sites_out_of_memory() {
        use crate::base::error::{Error, Site};
        use crate::engine::device::allocation;
        let launch = r#"DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")"#;
        let gemm = "cuBLASLt matmul: CublasError(CUBLAS_STATUS_ALLOC_FAILED)";
        let failures = [
            super::kernel_failed("attention_f16_f16", launch),
            Error::Candle(candle_core::Error::Msg(gemm.into())),
        ];
        for e in failures {
            match allocation(Site::Step, 6, || -> crate::base::error::Result<()> { Err(e) }) {
                Err(
                    e @ Error::DeviceOutOfMemory {
                        site: Site::Step,
                        rows: 6,
                        ..
                    },
                ) => {
                    assert!(matches!(e.at_question(3, 1, 6), Error::OutOfMemory { question: 3, .. }))
                }
                other => panic!("{other:?}"),
            }
        }
        let other = super::kernel_failed("attention_f16_f16", r#"DriverError(CUDA_ERROR_LAUNCH_FAILED, "x")"#);
        let e = allocation(Site::Step, 6, || -> crate::base::error::Result<()> { Err(other) }).unwrap_err();
        assert!(matches!(e, Error::Run(_)) && e.exit_code() == 1, "{e:?}");
    }
}
