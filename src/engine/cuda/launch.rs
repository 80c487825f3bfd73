//! Launches of rftx's CUDA kernels (`kernels.cu`, compiled to PTX by build.rs for compute
//! capabilities 7.5 and 9.0; the module matching the device is loaded once per device by
//! candle's module cache). What each launch is — grid, block, shared memory, arguments in order
//! — is [`super::plan`]'s, which the emulation tests run on the host; here only the device
//! addresses are taken and the plan launched. Every launch's grid depends only on the rows and
//! the model's shape, never on which rows they are.
use candle_core::cuda::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Shape, Storage, Tensor};

use super::plan::{self, Arg, Launch};
use super::reference::Heads;
use crate::base::error::Result;

const PTX_75: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_sm75.ptx"));
const PTX_90: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_sm90.ptx"));

fn cuda(device: &Device) -> Result<&CudaDevice> {
    Ok(device.as_cuda_device()?)
}

/// The major compute capability of each device, asked of the driver once per device (not on
/// every launch).
static MAJOR: super::PerDevice<i32> = super::PerDevice::new();

/// The PTX for this device: sm_90's from compute capability 9.0 on, sm_75's before.
fn ptx(dev: &CudaDevice) -> Result<(&'static str, &'static str)> {
    let ctx = dev.cuda_stream().context().clone();
    let major = MAJOR.get_or_try(ctx.ordinal(), || {
        Ok(ctx.compute_capability().map_err(super::capability_query_failed)?.0)
    })?;
    Ok(if major >= 9 {
        (PTX_90, "rftx_sm90")
    } else {
        (PTX_75, "rftx_sm75")
    })
}

/// Device address of a tensor's first element (for kernels and cuBLASLt alike).
pub(super) fn address(t: &Tensor) -> candle_core::Result<u64> {
    let dev = t.device().as_cuda_device()?;
    let stream = dev.cuda_stream();
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(candle_core::Error::Msg("a CPU tensor handed to a CUDA kernel".into()));
    };
    let off = layout.start_offset() as u64;
    let (base, size) = match t.dtype() {
        DType::F32 => (cs.as_cuda_slice::<f32>()?.device_ptr(&stream).0, 4),
        DType::F16 => (cs.as_cuda_slice::<half::f16>()?.device_ptr(&stream).0, 2),
        DType::BF16 => (cs.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0, 2),
        DType::U32 => (cs.as_cuda_slice::<u32>()?.device_ptr(&stream).0, 4),
        DType::I64 => (cs.as_cuda_slice::<i64>()?.device_ptr(&stream).0, 8),
        DType::F64 => (cs.as_cuda_slice::<f64>()?.device_ptr(&stream).0, 8),
        other => {
            return Err(candle_core::Error::Msg(format!(
                "a {other:?} tensor handed to a CUDA kernel"
            )))
        }
    };
    Ok(base + off * size)
}

/// [`address`], or a null address for `None`.
fn optional(t: Option<&Tensor>) -> Result<u64> {
    Ok(t.map_or(Ok(0), address)?)
}

/// A new uninitialised tensor of `shape` on the device, and its address: for a kernel's or a
/// GEMM's output, which writes every element before it is read.
pub(super) fn output(dev: &CudaDevice, dtype: DType, shape: impl Into<Shape>) -> candle_core::Result<(Tensor, u64)> {
    let shape = shape.into();
    let n = shape.elem_count();
    // SAFETY: every element is written by the kernel (or GEMM) the tensor is made for before it
    // is read.
    let storage = unsafe {
        match dtype {
            DType::F32 => CudaStorage::wrap_cuda_slice(dev.alloc::<f32>(n)?, dev.clone()),
            DType::F16 => CudaStorage::wrap_cuda_slice(dev.alloc::<half::f16>(n)?, dev.clone()),
            DType::BF16 => CudaStorage::wrap_cuda_slice(dev.alloc::<half::bf16>(n)?, dev.clone()),
            other => return Err(candle_core::Error::Msg(format!("no {other:?} output"))),
        }
    };
    let t = Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false);
    let a = address(&t)?;
    Ok((t, a))
}

/// Launches a plan of [`super::plan`] on `dev`.
fn launch(dev: &CudaDevice, plan: &Launch) -> Result<()> {
    let (ptx, module) = ptx(dev)?;
    let func = dev.get_or_load_custom_func(&plan.kernel, module, ptx)?;
    let cfg = LaunchConfig {
        grid_dim: (plan.grid.0, plan.grid.1, 1),
        block_dim: (plan.block, 1, 1),
        shared_mem_bytes: plan.shared,
    };
    let mut b = func.builder();
    for a in &plan.args {
        match a {
            Arg::Ptr(x) => b.arg(x),
            Arg::Int(x) => b.arg(x),
            Arg::Float(x) => b.arg(x),
        };
    }
    // SAFETY: the plan's arguments match the kernel's signature in kernels.cu (the emulation
    // tests run every plan against it), and every address is a live allocation of the size the
    // kernel reads or writes (the callers' shapes).
    unsafe { b.launch(cfg) }.map_err(|e| super::kernel_failed(&plan.kernel, e))?;
    Ok(())
}

fn contiguous(t: &Tensor) -> Result<Tensor> {
    Ok(t.contiguous()?)
}

/// `add_rmsnorm` of kernels.cu: (2, rows, d).
pub(super) fn add_rmsnorm(h: &Tensor, a: Option<&Tensor>, w: &Tensor, eps: f32) -> Result<Tensor> {
    let dev = cuda(h.device())?;
    let (h, a) = (contiguous(h)?, a.map(contiguous).transpose()?);
    let (rows, d) = h.dims2()?;
    let (out, o) = output(dev, h.dtype(), (2, rows, d))?;
    let addresses = [address(&h)?, optional(a.as_ref())?, address(w)?, o];
    launch(dev, &plan::add_rmsnorm(h.dtype(), addresses, (rows, d), eps)?)?;
    Ok(out)
}

/// `silu_mul` of kernels.cu: (rows, ff) from (rows, 2·ff).
pub(super) fn silu_mul(gu: &Tensor) -> Result<Tensor> {
    let dev = cuda(gu.device())?;
    let gu = contiguous(gu)?;
    let (rows, two_ff) = gu.dims2()?;
    let ff = two_ff / 2;
    let (out, o) = output(dev, gu.dtype(), (rows, ff))?;
    launch(dev, &plan::silu_mul(gu.dtype(), [address(&gu)?, o], (rows, ff))?)?;
    Ok(out)
}

/// `rope_write` of kernels.cu: q rotated (rows, n_head·hd) f32; K and V written into the caches.
pub(super) fn rope_write(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    (cos, sin): (&Tensor, &Tensor),
    (rows_meta, caches): (&Tensor, &Tensor),
    s: Heads,
    cache: DType,
) -> Result<Tensor> {
    let dev = cuda(qkv.device())?;
    let qkv = contiguous(qkv)?;
    let rows = qkv.dim(0)?;
    let (out, o) = output(dev, DType::F32, (rows, s.n_head * s.hd))?;
    let addresses = [
        address(&qkv)?,
        optional(bias)?,
        address(cos)?,
        address(sin)?,
        address(rows_meta)?,
        address(caches)?,
        o,
    ];
    launch(dev, &plan::rope_write((qkv.dtype(), cache), addresses, rows, s)?)?;
    Ok(out)
}

/// `attention` of kernels.cu: (rows, n_head·hd) in `out`'s dtype, from q (rows, n_head·hd) f32;
/// one block per group of rows and KV head.
pub(super) fn attention(
    q: &Tensor,
    (rows_meta, groups, caches): (&Tensor, &Tensor, &Tensor),
    s: Heads,
    scale: f32,
    (cache, out): (DType, DType),
) -> Result<Tensor> {
    let dev = cuda(q.device())?;
    let rows = q.dim(0)?;
    let (y, o) = output(dev, out, (rows, s.n_head * s.hd))?;
    let addresses = [address(q)?, address(rows_meta)?, address(groups)?, address(caches)?, o];
    let n_groups = groups.dim(0)? / 4;
    launch(dev, &plan::attention((cache, out), addresses, n_groups, s, scale)?)?;
    Ok(y)
}

/// `sample_rows` of kernels.cu: one token per row of `logits` (rows, vocab) with the uniform
/// draws `u` (rows, f64 on the device). Returns the tokens and whether each row's logits were
/// finite, in one copy to the host.
pub(super) fn sample_rows(logits: &Tensor, u: &Tensor, inv_t: f32, greedy: bool) -> Result<(Vec<u32>, Vec<bool>)> {
    let dev = cuda(logits.device())?;
    let logits = contiguous(logits)?;
    let (rows, vocab) = logits.dims2()?;
    let storage = CudaStorage::wrap_cuda_slice(dev.alloc_zeros::<u32>(2 * rows)?, dev.clone());
    let out = Tensor::from_storage(Storage::Cuda(storage), (2, rows), BackpropOp::none(), false);
    let base = address(&out)?;
    let addresses = [address(&logits)?, address(u)?, base, base + 4 * rows as u64];
    launch(
        dev,
        &plan::sample_rows(logits.dtype(), addresses, (rows, vocab), inv_t, greedy)?,
    )?;
    let v = out.flatten_all()?.to_vec1::<u32>()?;
    Ok((v[..rows].to_vec(), v[rows..].iter().map(|&b| b == 0).collect()))
}
