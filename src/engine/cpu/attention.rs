//! Decode attention: one new position per sequence over its cached positions, read in place
//! from the KV cache (the shared prompt part and the sequence's own part), on the thread pool.
use candle_core::{Layout, Storage, Tensor};

use super::SharedOut;
use crate::base::error::{Error, Result};
use crate::source::ModelSpec;

/// Attention of one new position per sequence over its `t` cached positions, spread over
/// candle's thread pool by (sequence, KV head). Positions `0..start` are read from `shared`
/// (batch 1, common to every sequence), the rest from the sequence's own rows of `kv`. Each
/// pair is computed the same way whatever the batch size or the split. `q`: (b, n_head, 1,
/// head_dim), contiguous. Returns (b, 1, n_head·head_dim).
pub fn decode(
    spec: &ModelSpec,
    q: &Tensor,
    shared: Option<(&(Tensor, Tensor), usize)>,
    kv: &(Tensor, Tensor),
    t: usize,
) -> Result<Tensor> {
    let (b, hd, heads, kvh) = (q.dim(0)?, spec.head_dim, spec.n_head, spec.n_kv_head);
    let n_rep = heads / kvh;
    let qv = q.flatten_all()?.to_vec1::<f32>()?;
    let ((own_k, own_kl), (own_v, own_vl)) = (kv.0.storage_and_layout(), kv.1.storage_and_layout());
    let own = KvView::new((&own_k, own_kl), (&own_v, own_vl))?;
    let start = shared.map_or(0, |(_, start)| start);
    let guards = shared.map(|(kv, _)| (kv.0.storage_and_layout(), kv.1.storage_and_layout()));
    let common = match &guards {
        Some(((k, kl), (v, vl))) => Some(KvView::new((k, kl), (v, vl))?),
        None => None,
    };
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; b * heads * hd];
    let shared_out = SharedOut::new(&mut out);
    candle_core::utils::barrier_pool().execute_chunked(b * kvh, |range| {
        let mut scores = vec![0f32; t];
        for item in range {
            let (bi, g) = (item / kvh, item % kvh);
            // Position `ti`'s key and value rows of this (sequence, KV head).
            let row = |ti: usize, values: bool| -> &[f32] {
                match &common {
                    Some(c) if ti < start => c.row(0, g, ti, values),
                    _ => own.row(bi, g, ti - start, values),
                }
            };
            for r in 0..n_rep {
                let h = g * n_rep + r;
                let qh = &qv[(bi * heads + h) * hd..][..hd];
                let mut max = f32::NEG_INFINITY;
                for (ti, sc) in scores.iter_mut().enumerate() {
                    *sc = dot(qh, &row(ti, false)[..hd]) * scale;
                    max = max.max(*sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let inv = 1.0 / sum;
                // SAFETY: each (sequence, head) row of `out` is written by exactly one item, and
                // `out` outlives the pool's work.
                let o = unsafe { shared_out.slice((bi * heads + h) * hd, hd) };
                for (ti, sc) in scores.iter().enumerate() {
                    let p = sc * inv;
                    for (od, vd) in o.iter_mut().zip(&row(ti, true)[..hd]) {
                        *od = p.mul_add(*vd, *od);
                    }
                }
            }
        }
    });
    Ok(Tensor::from_vec(out, (b, 1, heads * hd), q.device())?)
}

/// One layer's (K, V) as f32 slices on the CPU with their strides, so that views (a narrowed
/// prompt cache) are read in place.
struct KvView<'a> {
    k: &'a [f32],
    v: &'a [f32],
    /// Strides of dims 0 (sequence), 1 (KV head) and 2 (position), the same for K and V.
    strides: [usize; 3],
}

impl<'a> KvView<'a> {
    fn new(k: (&'a Storage, &Layout), v: (&'a Storage, &Layout)) -> Result<KvView<'a>> {
        let (ks, vs) = (k.1.stride(), v.1.stride());
        if ks != vs || ks.len() != 4 || ks[3] != 1 {
            return Err(Error::Run("KV cache tensors must share a row-major layout".into()));
        }
        let slice = |(storage, layout): (&'a Storage, &Layout)| -> Result<&'a [f32]> {
            match storage {
                Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[layout.start_offset()..]),
                _ => Err(Error::Run("decode attention runs on the CPU only".into())),
            }
        };
        Ok(KvView {
            k: slice(k)?,
            v: slice(v)?,
            strides: [ks[0], ks[1], ks[2]],
        })
    }

    /// K (or V) at (sequence, KV head, position): `head_dim` values, then what follows.
    fn row(&self, seq: usize, head: usize, pos: usize, values: bool) -> &'a [f32] {
        let at = seq * self.strides[0] + head * self.strides[1] + pos * self.strides[2];
        if values {
            &self.v[at..]
        } else {
            &self.k[at..]
        }
    }
}

/// A dot product with a fixed summation order (8 lanes, then a fixed tree).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] = x[i].mul_add(y[i], lanes[i]);
        }
    }
    super::q8::hsum8(&lanes) + tail
}
