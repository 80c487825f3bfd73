//! Decode attention: one new position per sequence over its cached positions, read in place
//! from the KV cache (the shared prompt part and the sequence's own part), on the thread pool.
use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

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
    // Every sequence reads the shared prompt's rows: an f16 cache's are widened once here (exact)
    // rather than by each sequence. An f32 cache's are the same tensors (no copy).
    let shared = match shared {
        Some((kv, _)) => Some((kv.0.to_dtype(DType::F32)?, kv.1.to_dtype(DType::F32)?)),
        None => None,
    };
    let guards = shared
        .as_ref()
        .map(|kv| (kv.0.storage_and_layout(), kv.1.storage_and_layout()));
    let common = match &guards {
        Some(((k, kl), (v, vl))) => Some(KvView::new((k, kl), (v, vl))?),
        None => None,
    };
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; b * heads * hd];
    let shared_out = SharedOut::new(&mut out);
    candle_core::utils::barrier_pool().execute_chunked(b * kvh, |range| {
        // Scores of the `n_rep` query heads of one KV head, position after position; a
        // position's K or V row, converted to f32 when the cache holds f16.
        let mut scores = vec![0f32; n_rep * t];
        let mut buf = vec![0f32; hd];
        let mut keys8 = vec![0f32; 8 * hd];
        let mut inv = vec![0f32; n_rep];
        for item in range {
            let (bi, g) = (item / kvh, item % kvh);
            let (h0, q0) = (g * n_rep, (bi * heads + g * n_rep) * hd);
            let qs = &qv[q0..][..n_rep * hd];
            // Where position `ti` lies: (view, sequence in it, position in it).
            let at = |ti: usize| match &common {
                Some(c) if ti < start => (c, 0, ti),
                _ => (&own, bi, ti - start),
            };
            scaled_scores(qs, scale, (&at, g), (&mut keys8, &mut buf), &mut scores);
            for (r, sc) in scores.chunks_exact_mut(t).enumerate() {
                let max = sc.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut sum = 0f32;
                for s in sc.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                inv[r] = 1.0 / sum;
            }
            // SAFETY: the `n_rep` heads of (sequence, KV head) are one contiguous run of `out`
            // written by this item alone, and `out` outlives the pool's work.
            let o = unsafe { shared_out.slice((bi * heads + h0) * hd, n_rep * hd) };
            for ti in 0..t {
                let (view, seq, pos) = at(ti);
                let v = view.read(seq, g, pos, true, &mut buf);
                for (r, oh) in o.chunks_exact_mut(hd).enumerate() {
                    let p = scores[r * t + ti] * inv[r];
                    for (od, vd) in oh.iter_mut().zip(&v[..hd]) {
                        *od = p.mul_add(*vd, *od);
                    }
                }
            }
        }
    });
    Ok(Tensor::from_vec(out, (b, 1, heads * hd), q.device())?)
}

/// `scores[r · t + ti] = q_r · k_ti × scale` for the query heads `qs` (`n_rep` rows of `hd`)
/// and positions `0..t` (`t = scores.len() / n_rep`) of KV head `g`, `at(ti)` saying where
/// position `ti` lies (view, sequence, position): eight positions at a time where the CPU
/// allows, then one at a time, the same bits. `bufs`: room for eight keys, and for one.
fn scaled_scores<'a, 'v>(
    qs: &[f32],
    scale: f32,
    (at, g): (&impl Fn(usize) -> (&'v KvView<'a>, usize, usize), usize),
    (keys8, buf): (&mut [f32], &mut [f32]),
    scores: &mut [f32],
) where
    'a: 'v,
{
    let hd = buf.len();
    let t = scores.len() / (qs.len() / hd);
    let mut ti = 0;
    while ti + 8 <= t && DOTS8 {
        let mut bufs = keys8.chunks_exact_mut(hd);
        let rows: [&[f32]; 8] = std::array::from_fn(|p| {
            let (view, seq, pos) = at(ti + p);
            view.read(seq, g, pos, false, bufs.next().expect("eight buffers"))
        });
        for (r, qh) in qs.chunks_exact(hd).enumerate() {
            for (sc, d) in scores[r * t + ti..][..8].iter_mut().zip(dots8(qh, &rows)) {
                *sc = d * scale;
            }
        }
        ti += 8;
    }
    for ti in ti..t {
        let (view, seq, pos) = at(ti);
        let k = view.read(seq, g, pos, false, buf);
        for (r, qh) in qs.chunks_exact(hd).enumerate() {
            scores[r * t + ti] = dot(qh, &k[..hd]) * scale;
        }
    }
}

/// One layer's (K, V) on the CPU, f32 or f16, with their strides, so that views (a narrowed
/// prompt cache) are read in place.
struct KvView<'a> {
    k: Values<'a>,
    v: Values<'a>,
    /// Strides of dims 0 (sequence), 1 (KV head) and 2 (position), the same for K and V.
    strides: [usize; 3],
}

enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> KvView<'a> {
    fn new(k: (&'a Storage, &Layout), v: (&'a Storage, &Layout)) -> Result<KvView<'a>> {
        let (ks, vs) = (k.1.stride(), v.1.stride());
        if ks != vs || ks.len() != 4 || ks[3] != 1 {
            return Err(Error::Run("KV cache tensors must share a row-major layout".into()));
        }
        let values = |(storage, layout): (&'a Storage, &Layout)| -> Result<Values<'a>> {
            let at = layout.start_offset();
            match storage {
                Storage::Cpu(CpuStorage::F16(x)) => Ok(Values::F16(&x[at..])),
                Storage::Cpu(CpuStorage::F32(x)) => Ok(Values::F32(&x[at..])),
                _ => Err(Error::Run(
                    "decode attention reads an f32 or f16 cache on the CPU".into(),
                )),
            }
        };
        Ok(KvView {
            k: values(k)?,
            v: values(v)?,
            strides: [ks[0], ks[1], ks[2]],
        })
    }

    /// K (or V) at (sequence, KV head, position) as `buf.len()` f32 values: in place for an f32
    /// cache, converted into `buf` for an f16 one.
    fn read<'b>(&self, seq: usize, head: usize, pos: usize, values: bool, buf: &'b mut [f32]) -> &'b [f32]
    where
        'a: 'b,
    {
        let at = seq * self.strides[0] + head * self.strides[1] + pos * self.strides[2];
        match if values { &self.v } else { &self.k } {
            Values::F32(x) => &x[at..][..buf.len()],
            Values::F16(x) => {
                widen(&x[at..][..buf.len()], buf);
                buf
            }
        }
    }
}

/// f16 values to f32 (exact): F16C's `vcvtph2ps` inline, eight at a time, where the build has
/// it (x86-64-v3 does), else `half`'s conversion.
fn widen(src: &[half::f16], dst: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "f16c", target_feature = "avx"))]
    {
        use std::arch::x86_64::*;
        let n = src.len().min(dst.len()) / 8 * 8;
        for (s, d) in src[..n].chunks_exact(8).zip(dst[..n].chunks_exact_mut(8)) {
            // SAFETY: F16C and AVX are enabled for the whole build (cfg above); each chunk holds
            // eight values (16 bytes read, 32 written).
            unsafe {
                _mm256_storeu_ps(
                    d.as_mut_ptr(),
                    _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr() as *const __m128i)),
                )
            };
        }
        for (s, d) in src[n..].iter().zip(&mut dst[n..]) {
            *d = s.to_f32();
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "f16c", target_feature = "avx")))]
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
}

/// Whether [`dots8`] runs on SIMD (AVX2 and FMA, which rftx's x86-64-v3 builds assume).
const DOTS8: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
));

/// [`dot`] of `q` with eight rows at once, bit for bit: the same eight lanes per row (one FMA
/// chain each), then [`hsum8`](super::q8::hsum8)'s tree for all eight rows together — the halves
/// added, then two horizontal adds, which pair the lanes as the tree does (IEEE addition is
/// commutative) — and the same tail.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
fn dots8(q: &[f32], rows: &[&[f32]; 8]) -> [f32; 8] {
    use std::arch::x86_64::*;
    let n = q.len() / 8 * 8;
    let mut out = [0f32; 8];
    assert!(
        rows.iter().all(|row| row.len() >= q.len()),
        "rows shorter than the query"
    );
    // SAFETY: AVX2 and FMA are enabled for the whole build (cfg above); every load reads 8 of
    // the first `n` values of `q` or of a row, each at least `q.len()` long (asserted).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..n).step_by(8) {
            let x = _mm256_loadu_ps(q.as_ptr().add(c));
            for (a, row) in acc.iter_mut().zip(rows) {
                *a = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.as_ptr().add(c)), *a);
            }
        }
        // Per row: (l0 + l4, l1 + l5, l2 + l6, l3 + l7), rows paired in 128-bit halves.
        let half = |p: usize| {
            let lo = _mm256_permute2f128_ps(acc[p], acc[p + 1], 0x20);
            let hi = _mm256_permute2f128_ps(acc[p], acc[p + 1], 0x31);
            _mm256_add_ps(lo, hi)
        };
        let (a, b, c, d) = (half(0), half(2), half(4), half(6));
        // ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)) of rows 0, 2, 4, 6 | 1, 3, 5, 7.
        let sums = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
        let ordered = _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_ps(out.as_mut_ptr(), ordered);
    }
    for (o, row) in out.iter_mut().zip(rows) {
        *o += tail(q, row);
    }
    out
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
fn dots8(q: &[f32], rows: &[&[f32]; 8]) -> [f32; 8] {
    rows.map(|row| dot(q, row))
}

/// The products past the last full group of eight, summed.
fn tail(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 8 * 8;
    a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum()
}

/// A dot product with a fixed summation order (8 lanes, then a fixed tree).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] = x[i].mul_add(y[i], lanes[i]);
        }
    }
    super::q8::hsum8(&lanes) + tail(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::sampling::Rng;

    #[test]
    fn widening_is_exact() {
        let src: Vec<half::f16> = (0..21).map(|i| half::f16::from_f32(i as f32 * 0.37 - 3.1)).collect();
        let mut dst = vec![0f32; 21];
        widen(&src, &mut dst);
        assert!(src.iter().zip(&dst).all(|(s, d)| s.to_f32().to_bits() == d.to_bits()));
    }

    /// Eight rows at once give each row's [`dot`], bit for bit, whole groups of eight or not.
    #[test]
    fn dots8_is_dot_for_every_row() {
        let mut rng = Rng::from_seed(11);
        for len in [64, 128, 20, 7] {
            let mut v = || {
                (0..len)
                    .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
                    .collect::<Vec<_>>()
            };
            let q = v();
            let rows: Vec<Vec<f32>> = (0..8).map(|_| v()).collect();
            let refs: [&[f32]; 8] = std::array::from_fn(|p| rows[p].as_slice());
            let got = dots8(&q, &refs);
            for (p, row) in rows.iter().enumerate() {
                assert_eq!(got[p].to_bits(), dot(&q, row).to_bits(), "len {len}, row {p}");
            }
        }
    }
}
