//! The `candle` GPU path's decode attention, written with candle tensor ops so that it runs on any
//! device (CUDA in production; the CPU in tests, where it is checked against
//! [`crate::engine::cpu::attention::decode`]).
//!
//! Batch invariance: cuBLAS picks GEMM kernels by shape (the batch count of a batched GEMM
//! included), so a sequence's scores could change with the number of sequences decoded beside
//! it. Here attention uses no GEMM: scores are elementwise products summed over the head
//! dimension, weights times values summed over positions. candle's reduction kernels give each
//! output row one block whose size depends only on the length reduced, so every sequence's
//! arithmetic is the same whatever the batch. Everything is computed in f32.
use candle_core::{DType, Tensor, D};

use crate::base::error::Result;
use crate::source::ModelSpec;

/// Attention of one new position per sequence over its `t` cached positions: positions
/// `0..start` from `shared` (batch 1, common to all sequences), the rest from the sequence's own
/// rows of `kv`. `q`: (b, n_head, 1, head_dim). Returns (b, 1, n_head·head_dim) in f32.
pub fn decode_attention(
    spec: &ModelSpec,
    q: &Tensor,
    shared: Option<(&(Tensor, Tensor), usize)>,
    kv: &(Tensor, Tensor),
    t: usize,
) -> Result<Tensor> {
    let (b, hd, kvh) = (q.dim(0)?, spec.head_dim, spec.n_kv_head);
    let n_rep = spec.n_head / kvh;
    let start = shared.map_or(0, |(_, start)| start);
    // (b, kvh, n_rep, 1, hd): the query heads that share a KV head side by side.
    let q = q.to_dtype(DType::F32)?.reshape((b, kvh, n_rep, 1, hd))?;
    let scale = 1.0 / (hd as f64).sqrt();
    // Keys and values as (batch, kvh, 1, positions, hd) in f32.
    let part = |k: &Tensor, from: usize, len: usize| -> candle_core::Result<Tensor> {
        k.narrow(2, from, len)?.to_dtype(DType::F32)?.unsqueeze(2)
    };
    let mut keys = Vec::new();
    let mut values = Vec::new();
    if let Some(((k, v), start)) = shared {
        keys.push(part(k, 0, start)?);
        values.push(part(v, 0, start)?);
    }
    keys.push(part(&kv.0, 0, t - start)?);
    values.push(part(&kv.1, 0, t - start)?);
    // Scores per part: (b, kvh, n_rep, positions), then one softmax over all positions.
    let scores = keys
        .iter()
        .map(|k| q.broadcast_mul(k)?.sum(D::Minus1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let scores = (Tensor::cat(&scores, D::Minus1)? * scale)?;
    let weights = candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?;
    // Σ_t p_t · v_t with positions last: (b, kvh, n_rep, hd, positions) summed over positions.
    let mut out: Option<Tensor> = None;
    let mut from = 0;
    for v in &values {
        let len = v.dim(3)?;
        let p = weights.narrow(D::Minus1, from, len)?.unsqueeze(3)?; // (b, kvh, n_rep, 1, len)
        let vt = v.transpose(3, 4)?; // (b|1, kvh, 1, hd, len)
        let part = p.broadcast_mul(&vt)?.sum(D::Minus1)?; // (b, kvh, n_rep, hd)
        out = Some(match out {
            Some(acc) => (acc + part)?,
            None => part,
        });
        from += len;
    }
    let out = out.expect("the sequence's own positions at least");
    Ok(out.reshape((b, 1, spec.n_head * hd))?)
}
