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
pub mod fused;
pub mod gemm;
#[cfg(feature = "cuda")]
mod launch;
pub mod ops;
pub mod reference;

pub use ops::decode_attention;
