//! Launches of rftx's CUDA kernels (`kernels.cu`, compiled to PTX by build.rs for compute
//! capabilities 7.5 and 9.0; the module matching the device is loaded once per device by
//! candle's module cache). Every launch's grid depends only on the rows and the model's shape,
//! never on which rows they are.
use candle_core::cuda::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Shape, Storage, Tensor};

use super::reference::{group_rows, Heads, BLOCK, GROUP_HEADS};
use crate::base::error::{Error, Result};

const PTX_75: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_sm75.ptx"));
const PTX_90: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_sm90.ptx"));

fn cuda(device: &Device) -> Result<&CudaDevice> {
    Ok(device.as_cuda_device()?)
}

/// The PTX for this device: sm_90's from compute capability 9.0 on, sm_75's before.
fn ptx(dev: &CudaDevice) -> Result<(&'static str, &'static str)> {
    let major = dev
        .cuda_stream()
        .context()
        .compute_capability()
        .map_err(super::capability_query_failed)?
        .0;
    Ok(if major >= 9 {
        (PTX_90, "rftx_sm90")
    } else {
        (PTX_75, "rftx_sm75")
    })
}

fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        other => Err(Error::Run(format!(
            "model.gpu_kernels = \"fused\" runs f16 or f32, not {other:?}: use model.weights = \"f16\" or gpu_kernels = \"candle\""
        ))),
    }
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

fn config(grid: (u32, u32), shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (BLOCK as u32, 1, 1),
        shared_mem_bytes: shared,
    }
}

/// A kernel argument: an address, an `int` or a `float`.
enum Arg {
    P(u64),
    I(i32),
    F(f32),
}

fn int(n: usize) -> Arg {
    Arg::I(n as i32)
}

/// Launches `name` with `args`, in the order of its signature in kernels.cu.
fn launch(dev: &CudaDevice, name: &str, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
    let (ptx, module) = ptx(dev)?;
    let func = dev.get_or_load_custom_func(name, module, ptx)?;
    let mut b = func.builder();
    for a in args {
        match a {
            Arg::P(x) => b.arg(x),
            Arg::I(x) => b.arg(x),
            Arg::F(x) => b.arg(x),
        };
    }
    // SAFETY: the arguments match the kernel's signature in kernels.cu, and every address is a
    // live allocation of the size the kernel reads or writes (the callers' shapes).
    unsafe { b.launch(cfg) }.map_err(|e| Error::Run(format!("CUDA kernel {name}: {e:?}")))?;
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
    let args = [
        Arg::P(address(&h)?),
        Arg::P(optional(a.as_ref())?),
        Arg::P(address(w)?),
        Arg::P(o),
        int(rows),
        int(d),
        Arg::F(eps),
    ];
    launch(
        dev,
        &format!("add_rmsnorm_{}", suffix(h.dtype())?),
        config((rows as u32, 1), 0),
        &args,
    )?;
    Ok(out)
}

/// `silu_mul` of kernels.cu: (rows, ff) from (rows, 2·ff).
pub(super) fn silu_mul(gu: &Tensor) -> Result<Tensor> {
    let dev = cuda(gu.device())?;
    let gu = contiguous(gu)?;
    let (rows, two_ff) = gu.dims2()?;
    let ff = two_ff / 2;
    let (out, o) = output(dev, gu.dtype(), (rows, ff))?;
    let args = [Arg::P(address(&gu)?), Arg::P(o), int(rows), int(ff)];
    let blocks = (rows * ff).div_ceil(BLOCK).min(65_535) as u32;
    launch(
        dev,
        &format!("silu_mul_{}", suffix(gu.dtype())?),
        config((blocks, 1), 0),
        &args,
    )?;
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
    let args = [
        Arg::P(address(&qkv)?),
        Arg::P(optional(bias)?),
        Arg::P(address(cos)?),
        Arg::P(address(sin)?),
        Arg::P(address(rows_meta)?),
        Arg::P(address(caches)?),
        Arg::P(o),
        int(s.n_head),
        int(s.n_kv),
        int(s.hd),
    ];
    let name = format!("rope_write_{}_{}", suffix(qkv.dtype())?, suffix(cache)?);
    launch(dev, &name, config((rows as u32, 1), 0), &args)?;
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
    let n_rep = s.n_head / s.n_kv;
    let group = group_rows(n_rep, s.hd);
    if group == 0 {
        return Err(Error::Run(format!(
            "model.gpu_kernels = \"fused\": {n_rep} query heads of {} per KV head exceed the attention kernel's {GROUP_HEADS} heads and {} values; use gpu_kernels = \"candle\"",
            s.hd,
            GROUP_HEADS * BLOCK
        )));
    }
    let dev = cuda(q.device())?;
    let rows = q.dim(0)?;
    let (y, o) = output(dev, out, (rows, s.n_head * s.hd))?;
    let args = [
        Arg::P(address(q)?),
        Arg::P(address(rows_meta)?),
        Arg::P(address(groups)?),
        Arg::P(address(caches)?),
        Arg::P(o),
        int(s.n_head),
        int(s.n_kv),
        int(s.hd),
        Arg::F(scale),
    ];
    let heads = group * n_rep;
    let shared = ((heads * s.hd + heads * BLOCK + BLOCK) * 4) as u32;
    let name = format!("attention_{}_{}", suffix(cache)?, suffix(out)?);
    let blocks = (groups.dim(0)? / 4) as u32;
    launch(dev, &name, config((blocks, s.n_kv as u32), shared), &args)?;
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
    let args = [
        Arg::P(address(&logits)?),
        Arg::P(address(u)?),
        Arg::P(base),
        Arg::P(base + 4 * rows as u64),
        int(vocab),
        Arg::F(inv_t),
        Arg::I(i32::from(greedy)),
    ];
    let name = format!("sample_rows_{}", suffix(logits.dtype())?);
    launch(dev, &name, config((rows as u32, 1), 0), &args)?;
    let v = out.flatten_all()?.to_vec1::<u32>()?;
    Ok((v[..rows].to_vec(), v[rows..].iter().map(|&b| b == 0).collect()))
}
