//! The fused path's dense layers: `x · Wᵀ` for all rows of a step in one GEMM.
//!
//! Batch invariance on a GPU needs a GEMM whose arithmetic for one row does not depend on how
//! many rows there are. cuBLAS picks its kernel (tile, split-K) from the shape, so by default it
//! does. Here one cuBLASLt algorithm is picked per weight shape and dtype, once, at a fixed row
//! count ([`PIN_ROWS`]), without split-K reductions (`REDUCTION_SCHEME_NONE`), and used for every
//! row count, each checked once with `cublasLtMatmulAlgoCheck` (a row count the pinned algorithm
//! cannot serve is an error, never a silent re-pick). In a fixed algorithm without split-K each
//! output's reduction over K depends on the tile alone, and padding rows never enter a real
//! row's sum: what vLLM's batch-invariant mode relies on for Hopper, and pegainfer pins.
//!
//! `model.batch_invariant = false` lets cuBLAS choose per shape (candle's matmul over all rows):
//! faster or not, its samples depend on the batch; `rftx bench` measures the difference.
use candle_core::{Device, Tensor};

use crate::base::error::Result;

/// Rows of the problem each algorithm is picked for: near the decode batches rftx runs (one
/// question's chunk of 15 to a few hundred rows), where a row-tile of this size serves them all.
pub const PIN_ROWS: usize = 64;

/// Rows of every GEMM of a dense layer (`engine::linear::Linear`) and of [`Gemm::Groups`]:
/// decode batches up to this size cost one weight read, as one row would.
pub const DENSE_ROWS: usize = 16;

/// The byte alignment the pinned algorithms are picked for (`MIN_ALIGNMENT_{A,B,C,D}_BYTES`):
/// cuBLASLt may then read 16 bytes at a time, so an operand at an address off a multiple of 16 —
/// `add_rmsnorm`'s second half at `rows·d` elements, with `rows·d·size` not a multiple of 16 —
/// would be misread without an error. Such an operand is copied to a fresh (aligned) allocation
/// first ([`aligned`]).
pub const ALIGN: u64 = 16;

/// Whether cuBLASLt may be given `address` as an operand of a pinned algorithm.
pub fn aligned(address: u64) -> bool {
    address.is_multiple_of(ALIGN)
}

/// How the fused path multiplies.
pub enum Gemm {
    /// Fixed 16-row GEMMs ([`dense_forward`]): the CPU, where the fused path runs in tests.
    Groups,
    /// cuBLAS's own choice per shape: `model.batch_invariant = false`.
    Heuristic,
    /// One cuBLASLt algorithm per weight shape for every row count.
    #[cfg(feature = "cuda")]
    Pinned(Box<lt::Pinned>),
}

impl Gemm {
    pub fn new(device: &Device, batch_invariant: bool) -> Result<Gemm> {
        Ok(match device {
            Device::Cpu => Gemm::Groups,
            _ if !batch_invariant => Gemm::Heuristic,
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Gemm::Pinned(Box::new(lt::Pinned::new(d)?)),
            _ => Gemm::Heuristic,
        })
    }

    /// `x · Wᵀ` for `x` (…, k) and `w` (n, k).
    pub fn forward(&self, w: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Gemm::Groups => dense_forward(w, x),
            Gemm::Heuristic => x.broadcast_matmul(&w.t()?),
            #[cfg(feature = "cuda")]
            Gemm::Pinned(p) => p.forward(w, x),
        }
    }
}

/// `x · Wᵀ` in GEMMs of exactly [`DENSE_ROWS`] rows.
pub(crate) fn dense_forward(w: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let m = x.elem_count() / k.max(1);
    let rows = x.reshape((m, k))?;
    let wt = w.t()?;
    let mut outs = Vec::with_capacity(m.div_ceil(DENSE_ROWS));
    for start in (0..m).step_by(DENSE_ROWS) {
        let n = DENSE_ROWS.min(m - start);
        let mut group = rows.narrow(0, start, n)?;
        if n < DENSE_ROWS {
            let pad = Tensor::zeros((DENSE_ROWS - n, k), x.dtype(), x.device())?;
            group = Tensor::cat(&[&group, &pad], 0)?;
        }
        outs.push(group.matmul(&wt)?.narrow(0, 0, n)?);
    }
    let y = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 0)?
    };
    *dims.last_mut().expect("at least one dim") = w.dim(0)?;
    y.reshape(dims)
}

#[cfg(feature = "cuda")]
mod lt {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    use candle_core::cuda::cudarc::cublaslt::{result, sys};
    use candle_core::cuda::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
    use candle_core::cuda::CudaDevice;
    use candle_core::{DType, Tensor};

    use super::PIN_ROWS;
    use crate::base::error::Result;
    use crate::engine::cuda::launch::{address, output};

    /// Bytes of the one workspace every GEMM shares (cuBLAS's recommendation for Hopper).
    const WORKSPACE: usize = 32 << 20;

    type Key = (usize, usize, DType);

    /// A cuBLASLt handle, its workspace and the pinned algorithm of each weight shape.
    pub struct Pinned {
        handle: sys::cublasLtHandle_t,
        workspace: CudaSlice<u8>,
        stream: Arc<CudaStream>,
        device: CudaDevice,
        algos: Mutex<HashMap<Key, Algo>>,
        /// (n, k, dtype, rows) the pinned algorithm was checked for.
        checked: Mutex<HashSet<(usize, usize, DType, usize)>>,
    }

    // The handle is used from the thread that runs the model, one call at a time (the maps are
    // locked); cuBLASLt handles may be shared across threads.
    unsafe impl Send for Pinned {}
    unsafe impl Sync for Pinned {}

    struct Algo {
        desc: sys::cublasLtMatmulDesc_t,
        algo: sys::cublasLtMatmulAlgo_t,
    }

    fn err(what: &str, e: impl std::fmt::Debug) -> candle_core::Error {
        candle_core::Error::Msg(format!("cuBLASLt {what}: {e:?}"))
    }

    fn data_type(dtype: DType) -> candle_core::Result<sys::cudaDataType> {
        match dtype {
            DType::F16 => Ok(sys::cudaDataType_t::CUDA_R_16F),
            DType::BF16 => Ok(sys::cudaDataType_t::CUDA_R_16BF),
            DType::F32 => Ok(sys::cudaDataType_t::CUDA_R_32F),
            other => Err(candle_core::Error::Msg(format!("no pinned GEMM for {other:?}"))),
        }
    }

    /// Column-major layouts of `y (rows, n) = x (rows, k) · W (n, k)ᵀ`: A = W as (k, n) used
    /// transposed, B = x as (k, rows), D = y as (n, rows).
    struct Layouts([sys::cublasLtMatrixLayout_t; 3]);

    impl Layouts {
        fn new(n: usize, k: usize, rows: usize, t: sys::cudaDataType) -> candle_core::Result<Layouts> {
            let l = |r: usize, c: usize| result::create_matrix_layout(t, r as u64, c as u64, r as i64);
            Ok(Layouts([
                l(k, n).map_err(|e| err("layout", e))?,
                l(k, rows).map_err(|e| err("layout", e))?,
                l(n, rows).map_err(|e| err("layout", e))?,
            ]))
        }
    }

    impl Drop for Layouts {
        fn drop(&mut self) {
            for l in self.0 {
                // SAFETY: created by `Layouts::new`, destroyed once.
                let _ = unsafe { result::destroy_matrix_layout(l) };
            }
        }
    }

    impl Pinned {
        pub fn new(device: &CudaDevice) -> Result<Pinned> {
            let handle = result::create_handle().map_err(super::super::cublaslt_failed)?;
            Ok(Pinned {
                handle,
                workspace: device.alloc_zeros::<u8>(WORKSPACE)?,
                stream: device.cuda_stream(),
                device: device.clone(),
                algos: Mutex::new(HashMap::new()),
                checked: Mutex::new(HashSet::new()),
            })
        }

        /// The algorithm for weights (n, k) of `dtype`: cuBLASLt's first pick for [`PIN_ROWS`]
        /// rows with no split-K reduction and 16-byte alignment, made once.
        fn pick(&self, (n, k, dtype): Key) -> candle_core::Result<Algo> {
            let t = data_type(dtype)?;
            let desc = result::create_matmul_desc(
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cudaDataType_t::CUDA_R_32F,
            )
            .map_err(|e| err("descriptor", e))?;
            let pref = result::create_matmul_pref().map_err(|e| err("preference", e))?;
            let layouts = Layouts::new(n, k, PIN_ROWS, t)?;
            let transpose: i32 = 1;
            let workspace = WORKSPACE as u64;
            let none = sys::cublasLtReductionScheme_t::CUBLASLT_REDUCTION_SCHEME_NONE as u32;
            let align = super::ALIGN as u32;
            type P = sys::cublasLtMatmulPreferenceAttributes_t;
            // SAFETY: live descriptors; each attribute gets a value of its documented type.
            let picked = unsafe {
                let set =
                    |a: P, v: *const std::ffi::c_void, size: usize| result::set_matmul_pref_attribute(pref, a, v, size);
                result::set_matmul_desc_attribute(
                    desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    &transpose as *const i32 as *const _,
                    4,
                )
                .and_then(|_| {
                    set(
                        P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                        &workspace as *const u64 as *const _,
                        8,
                    )
                })
                .and_then(|_| {
                    set(
                        P::CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                        &none as *const u32 as *const _,
                        4,
                    )
                })
                .and_then(|_| {
                    [
                        P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                        P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                        P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                        P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                    ]
                    .into_iter()
                    .try_for_each(|a| set(a, &align as *const u32 as *const _, 4))
                })
                .and_then(|_| {
                    let [a, b, d] = layouts.0;
                    result::get_matmul_algo_heuristic(self.handle, desc, a, b, d, d, pref)
                })
            };
            // SAFETY: created above, destroyed once.
            let _ = unsafe { result::destroy_matmul_pref(pref) };
            let picked = picked.map_err(|e| err(&format!("no algorithm for {n}×{k} {dtype:?} without split-K"), e))?;
            Ok(Algo {
                desc,
                algo: picked.algo,
            })
        }

        /// Checks once per row count that the pinned algorithm serves it within the workspace.
        fn check(&self, (n, k, dtype): Key, rows: usize, algo: &Algo, layouts: &Layouts) -> candle_core::Result<()> {
            let mut checked = self.checked.lock().map_err(|_| err("check", "poisoned"))?;
            if checked.contains(&(n, k, dtype, rows)) {
                return Ok(());
            }
            let [a, b, d] = layouts.0;
            let mut out = std::mem::MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::uninit();
            // SAFETY: live handle, descriptor, layouts and algorithm; `out` receives the result.
            let status = unsafe {
                sys::cublasLtMatmulAlgoCheck(self.handle, algo.desc, a, b, d, d, &algo.algo, out.as_mut_ptr())
            };
            status.result().map_err(|e| {
                err(
                    &format!("the algorithm pinned for {n}×{k} {dtype:?} does not serve {rows} rows (set model.batch_invariant = false to let cuBLAS choose)"),
                    e,
                )
            })?;
            // SAFETY: written by a successful check.
            let needs = unsafe { out.assume_init() }.workspaceSize;
            if needs > WORKSPACE {
                return Err(err("workspace", format!("{needs} bytes needed for {rows} rows")));
            }
            checked.insert((n, k, dtype, rows));
            Ok(())
        }

        /// `x · Wᵀ` for `x` (…, k) and `w` (n, k), in the pinned algorithm of W's shape.
        pub fn forward(&self, w: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
            let (n, k) = w.dims2()?;
            let mut dims = x.dims().to_vec();
            let rows = x.elem_count() / k.max(1);
            let w = self.aligned(w.contiguous()?)?;
            let x = self.aligned(x.reshape((rows, k))?.contiguous()?)?;
            let key = (n, k, w.dtype());
            let mut algos = self.algos.lock().map_err(|_| err("algorithms", "poisoned"))?;
            let algo = match algos.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(self.pick(key)?),
            };
            let layouts = Layouts::new(n, k, rows, data_type(w.dtype())?)?;
            self.check(key, rows, algo, &layouts)?;
            let y = self.run(&w, &x, (n, rows), algo, &layouts)?;
            drop(algos);
            *dims.last_mut().expect("at least one dim") = n;
            y.reshape(dims)
        }

        /// `t` (contiguous) itself where its address is 16-byte aligned, else a copy in a fresh
        /// allocation (aligned to far more).
        fn aligned(&self, t: Tensor) -> candle_core::Result<Tensor> {
            if super::aligned(address(&t)?) {
                return Ok(t);
            }
            let (copy, at) = output(&self.device, t.dtype(), t.shape().clone())?;
            copy.slice_set(&t, 0, 0)?;
            if !super::aligned(at) {
                return Err(err("alignment", format!("a fresh allocation at {at:#x}")));
            }
            Ok(copy)
        }

        fn run(
            &self,
            w: &Tensor,
            x: &Tensor,
            (n, rows): (usize, usize),
            algo: &Algo,
            layouts: &Layouts,
        ) -> candle_core::Result<Tensor> {
            let (y, py) = output(&self.device, w.dtype(), (rows, n))?;
            let (pw, px) = (address(w)?, address(x)?);
            if ![pw, px, py].into_iter().all(super::aligned) {
                return Err(err(
                    "alignment",
                    format!("operands at {pw:#x}, {px:#x}, {py:#x}: the pinned algorithm needs 16-byte alignment"),
                ));
            }
            let (alpha, beta) = (1f32, 0f32);
            let [a, b, d] = layouts.0;
            let (ws, _guard) = self.workspace.device_ptr(&self.stream);
            // SAFETY: live handle, descriptor, layouts matching the tensors' shapes, pointers to
            // live device allocations of those shapes, a workspace of WORKSPACE bytes.
            unsafe {
                result::matmul(
                    self.handle,
                    algo.desc,
                    &alpha as *const f32 as *const _,
                    &beta as *const f32 as *const _,
                    pw as *const _,
                    a,
                    px as *const _,
                    b,
                    py as *const _,
                    d,
                    py as *mut _,
                    d,
                    &algo.algo,
                    ws as *mut _,
                    WORKSPACE,
                    self.stream.cu_stream() as sys::cudaStream_t,
                )
            }
            .map_err(|e| err("matmul", e))?;
            Ok(y)
        }
    }

    impl Drop for Pinned {
        fn drop(&mut self) {
            if let Ok(algos) = self.algos.lock() {
                for a in algos.values() {
                    // SAFETY: created by `pick`, destroyed once.
                    let _ = unsafe { result::destroy_matmul_desc(a.desc) };
                }
            }
            // SAFETY: created by `Pinned::new`, destroyed once, after its descriptors.
            let _ = unsafe { result::destroy_handle(self.handle) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::aligned;

    /// `add_rmsnorm`'s (2, rows, d) output in one allocation: x, the half the next GEMM reads,
    /// starts `rows·d` elements in. Off a multiple of 16 bytes it is not handed to cuBLASLt as
    /// it is (the pinned algorithm would misread it), but copied.
    #[test]
    fn an_operand_off_16_bytes_is_not_given_to_cublaslt_as_it_is() {
        let base = 0x7f12_3456_7800u64; // an allocation: 256-byte aligned
        let x = |rows: u64, d: u64, size: u64| base + rows * d * size;
        assert!(aligned(base));
        assert!(aligned(x(3, 896, 2)), "f16, 3 rows of 896: 5376 bytes in");
        assert!(aligned(x(5, 4, 4)), "f32, 5 rows of 4: 80 bytes in");
        assert!(!aligned(x(3, 9, 2)), "f16, 3 rows of 9: 54 bytes in");
        assert!(!aligned(x(1, 6, 4)), "f32, 1 row of 6: 24 bytes in");
    }
}
