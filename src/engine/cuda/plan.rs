//! What each launch of rftx's kernels (`kernels.cu`) is — the kernel's name, the grid, the block,
//! the dynamic shared memory and the arguments in the order of its signature — from addresses
//! and shapes alone. [`super::launch`] launches these plans with device addresses; the emulation
//! tests (`emulation.rs`) run the very same plans on the host with host addresses (emulate.cpp's
//! `emu_launch`, which checks each argument's kind against the kernel's signature) against the
//! reference: argument order, grids and shared sizes are tested without a GPU.
#![cfg_attr(not(any(test, feature = "cuda")), allow(dead_code))]
use candle_core::DType;

use super::reference::{group_rows, Heads, BLOCK, GROUP_HEADS};
use crate::base::error::{Error, Result};

/// One kernel argument: an address, an `int` or a `float`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    Ptr(u64),
    Int(i32),
    Float(f32),
}

/// One kernel launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub kernel: String,
    /// Blocks in x and y.
    pub grid: (u32, u32),
    /// Threads per block: [`BLOCK`] for every kernel.
    pub block: u32,
    /// Bytes of dynamic shared memory.
    pub shared: u32,
    pub args: Vec<Arg>,
}

fn plan(kernel: String, grid: (usize, usize), shared: usize, args: Vec<Arg>) -> Launch {
    Launch {
        kernel,
        grid: (grid.0 as u32, grid.1 as u32),
        block: BLOCK as u32,
        shared: shared as u32,
        args,
    }
}

fn int(n: usize) -> Arg {
    Arg::Int(n as i32)
}

/// The kernels' name suffix for a dtype.
pub fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        other => Err(Error::Run(format!(
            "model.gpu_kernels = \"fused\" runs f16 or f32, not {other:?}: use model.weights = \"f16\" or gpu_kernels = \"candle\""
        ))),
    }
}

/// `add_rmsnorm`: `[h, a (0: none), w, out]`, h (rows, d), out (2, rows, d); a block a row.
pub fn add_rmsnorm(dtype: DType, [h, a, w, out]: [u64; 4], (rows, d): (usize, usize), eps: f32) -> Result<Launch> {
    let args = vec![
        Arg::Ptr(h),
        Arg::Ptr(a),
        Arg::Ptr(w),
        Arg::Ptr(out),
        int(rows),
        int(d),
        Arg::Float(eps),
    ];
    Ok(plan(format!("add_rmsnorm_{}", suffix(dtype)?), (rows, 1), 0, args))
}

/// `silu_mul`: `[gu, out]`, gu (rows, 2·ff), out (rows, ff); a grid-stride loop over at most
/// 65 535 blocks.
pub fn silu_mul(dtype: DType, [gu, out]: [u64; 2], (rows, ff): (usize, usize)) -> Result<Launch> {
    let blocks = (rows * ff).div_ceil(BLOCK).min(65_535);
    let args = vec![Arg::Ptr(gu), Arg::Ptr(out), int(rows), int(ff)];
    Ok(plan(format!("silu_mul_{}", suffix(dtype)?), (blocks, 1), 0, args))
}

/// `rope_write`: `[qkv, bias (0: none), cos, sin, rows_meta, caches, q_out]` for `rows` rows
/// of activations in `act`, caches in `cache`; a block a row.
pub fn rope_write((act, cache): (DType, DType), addresses: [u64; 7], rows: usize, s: Heads) -> Result<Launch> {
    let mut args: Vec<Arg> = addresses.into_iter().map(Arg::Ptr).collect();
    args.extend([int(s.n_head), int(s.n_kv), int(s.hd)]);
    let name = format!("rope_write_{}_{}", suffix(act)?, suffix(cache)?);
    Ok(plan(name, (rows, 1), 0, args))
}

/// `attention`: `[q, rows_meta, groups, caches, out]` for `n_groups` groups of rows (each of at
/// most `group_rows` rows), caches in `cache`, output in `out`; a block per group and KV head,
/// with shared memory for the group's q, scores and reduction.
pub fn attention(
    (cache, out): (DType, DType),
    addresses: [u64; 5],
    n_groups: usize,
    s: Heads,
    scale: f32,
) -> Result<Launch> {
    let n_rep = s.n_head / s.n_kv;
    let group = group_rows(n_rep, s.hd);
    if group == 0 {
        return Err(Error::Run(format!(
            "model.gpu_kernels = \"fused\": {n_rep} query heads of {} per KV head exceed the attention kernel's {GROUP_HEADS} heads and {} values; use gpu_kernels = \"candle\"",
            s.hd,
            GROUP_HEADS * BLOCK
        )));
    }
    let heads = group * n_rep;
    let shared = (heads * s.hd + heads * BLOCK + BLOCK) * 4;
    let mut args: Vec<Arg> = addresses.into_iter().map(Arg::Ptr).collect();
    args.extend([int(s.n_head), int(s.n_kv), int(s.hd), Arg::Float(scale)]);
    let name = format!("attention_{}_{}", suffix(cache)?, suffix(out)?);
    Ok(plan(name, (n_groups, s.n_kv), shared, args))
}

/// `sample_rows`: `[logits, u, tokens, bad]`, logits (rows, vocab), u (rows) f64, tokens and
/// bad (rows) u32; a block a row.
pub fn sample_rows(
    dtype: DType,
    [logits, u, tokens, bad]: [u64; 4],
    (rows, vocab): (usize, usize),
    inv_t: f32,
    greedy: bool,
) -> Result<Launch> {
    let args = vec![
        Arg::Ptr(logits),
        Arg::Ptr(u),
        Arg::Ptr(tokens),
        Arg::Ptr(bad),
        int(vocab),
        Arg::Float(inv_t),
        Arg::Int(i32::from(greedy)),
    ];
    Ok(plan(format!("sample_rows_{}", suffix(dtype)?), (rows, 1), 0, args))
}
