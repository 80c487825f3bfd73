//! The arithmetic of rftx's CUDA kernels (`kernels.cu`), operation for operation, on the host:
//! each function runs the kernel's blocks one after another and its threads' work in the
//! order the kernel's barriers impose, with the same roundings (`mul_add` where the kernel
//! writes `fmaf`; the kernels are built without implicit contraction). The two differ only
//! where `expf` and Rust's `exp` round differently.
//!
//! Three uses: the fused decode path on the CPU (tests: [`super::fused`] runs on either device
//! and is checked here against the CPU engine), the unit tests below, and `rftx bench --kernels`,
//! which runs each kernel on a GPU and reports its largest difference from this reference.
use half::f16;

/// Threads per block of every kernel (`BLOCK` in kernels.cu).
pub const BLOCK: usize = 128;

/// (row, query head) pairs one attention block holds (`GROUP_HEADS` in kernels.cu).
pub const GROUP_HEADS: usize = 16;

/// Rows of one cache that one attention block takes together (reading the prompt's K and V once
/// for all of them): at most 4 (a question's 15 rows still make 4 blocks a KV head, enough to fill
/// a GPU), within [`GROUP_HEADS`] (row, head) pairs and `GROUP_HEADS · BLOCK` values. 0: not even
/// one row fits (n_rep > 16 or n_rep · head_dim > 2048).
pub fn group_rows(n_rep: usize, hd: usize) -> usize {
    4.min(GROUP_HEADS / n_rep.max(1))
        .min(GROUP_HEADS * BLOCK / (n_rep * hd).max(1))
}

/// Element types of activations and caches: f32, or f16 (rounded to nearest even on store, as
/// `__float2half_rn`).
pub trait Elem: Copy + Send + Sync + 'static {
    fn get(self) -> f32;
    fn put(x: f32) -> Self;
}

impl Elem for f32 {
    fn get(self) -> f32 {
        self
    }
    fn put(x: f32) -> Self {
        x
    }
}

impl Elem for f16 {
    fn get(self) -> f32 {
        self.to_f32()
    }
    fn put(x: f32) -> Self {
        f16::from_f32(x)
    }
}

/// Largest |a − b| over two runs of values compared pairwise: how far a kernel's results lie
/// from their reference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn round_to<T: Elem>(x: f32) -> f32 {
    T::put(x).get()
}

/// `block_sum` of kernels.cu: the fixed tree over `BLOCK` slots.
fn block_sum(v: &mut [f32; BLOCK]) -> f32 {
    let mut s = BLOCK / 2;
    while s > 0 {
        for t in 0..s {
            v[t] += v[t + s];
        }
        s /= 2;
    }
    v[0]
}

fn block_max(v: &mut [f32; BLOCK]) -> f32 {
    let mut s = BLOCK / 2;
    while s > 0 {
        for t in 0..s {
            v[t] = v[t].max(v[t + s]);
        }
        s /= 2;
    }
    v[0]
}

/// `add_rmsnorm`: for each of `rows` rows of `d`, `h + a` rounded to `T` (or `h` when `a` is
/// `None`), then its RMSNorm times `w`. Returns both, `(2, rows, d)`.
pub fn add_rmsnorm<T: Elem>(h: &[T], a: Option<&[T]>, w: &[T], d: usize, eps: f32) -> Vec<T> {
    let rows = h.len() / d;
    let mut out = vec![T::put(0.0); 2 * rows * d];
    for row in 0..rows {
        let val = |i: usize| {
            let v = h[row * d + i].get();
            a.map_or(v, |a| round_to::<T>(v + a[row * d + i].get()))
        };
        let mut part = [0f32; BLOCK];
        for (t, p) in part.iter_mut().enumerate() {
            for i in (t..d).step_by(BLOCK) {
                let v = val(i);
                out[row * d + i] = T::put(v);
                *p = v.mul_add(v, *p);
            }
        }
        let inv = 1.0 / (block_sum(&mut part) / d as f32 + eps).sqrt();
        for i in 0..d {
            out[(rows + row) * d + i] = T::put(val(i) * inv * w[i].get());
        }
    }
    out
}

/// `silu_mul`: `gu` holds each row's gate then up (`2 · ff`); returns SiLU(gate) · up.
pub fn silu_mul<T: Elem>(gu: &[T], ff: usize) -> Vec<T> {
    gu.chunks_exact(2 * ff)
        .flat_map(|r| {
            (0..ff).map(move |j| {
                let (g, u) = (r[j].get(), r[ff + j].get());
                T::put(g / (1.0 + (-g).exp()) * u)
            })
        })
        .collect()
}

/// Shapes of the attention kernels.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv: usize,
    pub hd: usize,
}

/// `rope_write` without the write: each row's q rotated (rows, n_head·hd) and its new K and V
/// (rows, n_kv·hd) as the kernel computes them before rounding them to the cache's type.
/// `positions[r]`: row `r`'s rotary position; `cos`, `sin`: (positions, hd/2).
pub fn rope<T: Elem>(
    qkv: &[T],
    bias: Option<&[T]>,
    (cos, sin): (&[f32], &[f32]),
    positions: &[usize],
    s: Heads,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (half, width) = (s.hd / 2, (s.n_head + 2 * s.n_kv) * s.hd);
    let rows = positions.len();
    let mut q = vec![0f32; rows * s.n_head * s.hd];
    let mut k = vec![0f32; rows * s.n_kv * s.hd];
    let mut v = vec![0f32; rows * s.n_kv * s.hd];
    for (row, &pos) in positions.iter().enumerate() {
        let x = &qkv[row * width..][..width];
        let val = |at: usize| bias.map_or(x[at].get(), |b| round_to::<T>(x[at].get() + b[at].get()));
        let (cr, sr) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
        for i in 0..(s.n_head + s.n_kv) * half {
            let (head, j) = (i / half, i % half);
            let at = head * s.hd + 2 * j;
            let (x0, x1) = (val(at), val(at + 1));
            let y0 = x0 * cr[j] - x1 * sr[j];
            let y1 = x0 * sr[j] + x1 * cr[j];
            let (dst, o) = match head < s.n_head {
                true => (&mut q, row * s.n_head * s.hd + at),
                false => (&mut k, row * s.n_kv * s.hd + at - s.n_head * s.hd),
            };
            dst[o] = y0;
            dst[o + 1] = y1;
        }
        for i in 0..s.n_kv * s.hd {
            v[row * s.n_kv * s.hd + i] = val((s.n_head + s.n_kv) * s.hd + i);
        }
    }
    (q, k, v)
}

/// Words of one cache in the attention table (see kernels.cu).
pub const CACHE_WORDS: usize = 8;
/// Words of one row in the rows table.
pub const ROW_WORDS: usize = 4;

/// Element offset of position `p` of KV head `h` for row `b`, and whether it lies in the shared
/// prompt: `kv_offset` of kernels.cu.
fn kv_offset(cm: &[u64], b: usize, h: usize, s: Heads, p: usize) -> (usize, bool) {
    let start = cm[4] as usize;
    if p < start {
        ((h * cm[5] as usize + p) * s.hd, true)
    } else {
        (((b * s.n_kv + h) * cm[6] as usize + (p - start)) * s.hd, false)
    }
}

/// `attention`: one block per (row, KV head), positions in chunks of [`BLOCK`] with an online
/// softmax. `rows_meta` and `caches` are the kernel's tables, whose K/V words are host
/// addresses of `C` values here. `q`: (rows, n_head·hd); returns (rows, n_head·hd).
///
/// # Safety
/// Every address in `caches` must point at a live allocation of `C` holding every position
/// the rows of `rows_meta` read, laid out as the table says.
pub unsafe fn attention<C: Elem, T: Elem>(
    q: &[f32],
    rows_meta: &[u32],
    caches: &[u64],
    s: Heads,
    scale: f32,
) -> Vec<T> {
    let rows = rows_meta.len() / ROW_WORDS;
    let (n_rep, width) = (s.n_head / s.n_kv, s.n_head / s.n_kv * s.hd);
    let mut out = vec![T::put(0.0); rows * s.n_head * s.hd];
    for row in 0..rows {
        let meta = &rows_meta[row * ROW_WORDS..][..ROW_WORDS];
        let (c, b, len) = (meta[0] as usize, meta[1] as usize, meta[2] as usize);
        let cm = &caches[c * CACHE_WORDS..][..CACHE_WORDS];
        for h in 0..s.n_kv {
            let at = |kv: usize, p: usize| -> *const C {
                let (o, shared) = kv_offset(cm, b, h, s, p);
                let base = cm[kv + if shared { 0 } else { 2 }] as *const C;
                // SAFETY: see the function's contract.
                unsafe { base.add(o) }
            };
            let qs = &q[row * s.n_head * s.hd + h * width..][..width];
            let o = &mut out[row * s.n_head * s.hd + h * width..][..width];
            unsafe { attention_block(qs, len, &at, (n_rep, s.hd), scale, o) };
        }
    }
    out
}

/// One block of [`attention`]: `at(0, p)` / `at(1, p)` address position `p`'s key / value row.
unsafe fn attention_block<C: Elem, T: Elem>(
    qs: &[f32],
    len: usize,
    at: &dyn Fn(usize, usize) -> *const C,
    (n_rep, hd): (usize, usize),
    scale: f32,
    out: &mut [T],
) {
    let mut m = vec![f32::NEG_INFINITY; n_rep];
    let mut l = vec![0f32; n_rep];
    let mut alpha = vec![0f32; n_rep];
    let mut acc = vec![0f32; n_rep * hd];
    let mut sc = vec![0f32; n_rep * BLOCK];
    for c0 in (0..len).step_by(BLOCK) {
        let live = |t: usize| c0 + t < len;
        for t in (0..BLOCK).filter(|&t| live(t)) {
            let key = unsafe { std::slice::from_raw_parts(at(0, c0 + t), hd) };
            for r in 0..n_rep {
                let s = (0..hd).fold(0f32, |s, d| qs[r * hd + d].mul_add(key[d].get(), s));
                sc[r * BLOCK + t] = s * scale;
            }
        }
        for r in 0..n_rep {
            let row = &mut sc[r * BLOCK..][..BLOCK];
            let mut red: [f32; BLOCK] = std::array::from_fn(|t| if live(t) { row[t] } else { f32::NEG_INFINITY });
            let mn = m[r].max(block_max(&mut red));
            for (t, x) in row.iter_mut().enumerate() {
                *x = if live(t) { (*x - mn).exp() } else { 0.0 };
            }
            let mut red: [f32; BLOCK] = std::array::from_fn(|t| row[t]);
            let sum = block_sum(&mut red);
            alpha[r] = (m[r] - mn).exp();
            l[r] = l[r].mul_add(alpha[r], sum);
            m[r] = mn;
        }
        let n = BLOCK.min(len - c0);
        for (o, a) in acc.iter_mut().enumerate() {
            let (r, d) = (o / hd, o % hd);
            let mut x = *a * alpha[r];
            for j in 0..n {
                let v = unsafe { *at(1, c0 + j).add(d) };
                x = sc[r * BLOCK + j].mul_add(v.get(), x);
            }
            *a = x;
        }
    }
    for (o, y) in out.iter_mut().enumerate() {
        *y = T::put(acc[o] / l[o / hd]);
    }
}

/// `sample_rows` for one row: the token drawn from softmax(`logits` / T) (`inv_t` = 1 / T) with
/// the uniform draw `u`, or the first largest logit when `greedy`; `None` when a logit is not
/// finite. The vocabulary in [`BLOCK`] contiguous segments, as the kernel's threads hold it.
pub fn sample_row<T: Elem>(logits: &[T], u: f64, inv_t: f32, greedy: bool) -> Option<u32> {
    let vocab = logits.len();
    let seg = vocab.div_ceil(BLOCK);
    let range = |t: usize| (t * seg).min(vocab)..((t + 1) * seg).min(vocab);
    let (mut m, mut a) = (f32::NEG_INFINITY, 0usize);
    for t in 0..BLOCK {
        let (mut mx, mut arg) = (f32::NEG_INFINITY, None);
        for i in range(t) {
            let x = logits[i].get();
            if !x.is_finite() {
                return None;
            }
            if x > mx {
                (mx, arg) = (x, Some(i));
            }
        }
        if mx > m {
            (m, a) = (mx, arg.unwrap_or(0));
        }
    }
    if greedy {
        return Some(a as u32);
    }
    let w = |i: usize| ((logits[i].get() - m) * inv_t).exp();
    let sums: Vec<f64> = (0..BLOCK)
        .map(|t| range(t).fold(0f64, |s, i| s + w(i) as f64))
        .collect();
    let total = sums.iter().fold(0f64, |t, s| t + s);
    let mut x = u * total;
    let mut s = 0;
    while s < BLOCK && x - sums[s] >= 0.0 {
        x -= sums[s];
        s += 1;
    }
    for i in (s * seg).min(vocab)..vocab {
        x -= w(i) as f64;
        if x < 0.0 {
            return Some(i as u32);
        }
    }
    Some((0..vocab).rev().find(|&i| w(i) > 0.0).unwrap_or(0) as u32)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// [`max_abs_diff`] of two runs that must be as long as each other.
    pub(in crate::engine::cuda) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        max_abs_diff(a, b)
    }

    #[test]
    fn add_rmsnorm_is_candles_rms_norm_of_the_sum() {
        let (rows, d) = (3, 300);
        let (h, a, w) = (values(rows * d, 1), values(rows * d, 2), values(d, 3));
        let out = add_rmsnorm(&h, Some(&a), &w, d, 1e-5);
        let dev = Device::Cpu;
        let sum = (Tensor::from_vec(h.clone(), (rows, d), &dev).unwrap()
            + Tensor::from_vec(a.clone(), (rows, d), &dev).unwrap())
        .unwrap();
        let normed = candle_nn::ops::rms_norm(&sum, &Tensor::new(w.as_slice(), &dev).unwrap(), 1e-5).unwrap();
        assert_eq!(
            out[..rows * d],
            sum.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..]
        );
        let diff = max_diff(
            &out[rows * d..],
            &normed.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(diff < 1e-5, "{diff}");
        // Without a residual: the norm of h itself; in f16, h + a rounded before the norm.
        let alone = add_rmsnorm(&h, None, &w, d, 1e-5);
        assert_eq!(alone[..rows * d], h[..]);
        let h16: Vec<f16> = h.iter().map(|&x| f16::from_f32(x)).collect();
        let a16: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
        let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
        let out16 = add_rmsnorm(&h16, Some(&a16), &w16, d, 1e-5);
        assert_eq!(out16[7], f16::from_f32(h16[7].to_f32() + a16[7].to_f32()));
        let widened: Vec<f32> = out16[rows * d..].iter().map(|x| x.to_f32()).collect();
        let diff = max_diff(&widened, &normed.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(diff < 2e-2, "f16 {diff}");
    }

    #[test]
    fn silu_mul_is_silu_of_gate_times_up() {
        let (rows, ff) = (2, 5);
        let gu = values(rows * 2 * ff, 4);
        let out = silu_mul(&gu, ff);
        for r in 0..rows {
            for j in 0..ff {
                let (g, u) = (gu[r * 2 * ff + j], gu[r * 2 * ff + ff + j]);
                let want = g * (1.0 / (1.0 + (-g).exp())) * u;
                assert!((out[r * ff + j] - want).abs() < 1e-6);
            }
        }
    }

    /// Attention over a shared prompt and a row's own positions, longer than a chunk (so the
    /// online softmax rescales), in f32 and f16 caches: the plain softmax's result.
    #[test]
    fn attention_is_softmax_attention_across_chunks_and_the_prompt_boundary() {
        let s = Heads {
            n_head: 6,
            n_kv: 2,
            hd: 8,
        };
        let (start, len, batch, alloc, cap) = (130usize, 300usize, 2usize, 180usize, 140usize);
        let shared_k = values(s.n_kv * cap * s.hd, 5);
        let shared_v = values(s.n_kv * cap * s.hd, 6);
        let own_k = values(batch * s.n_kv * alloc * s.hd, 7);
        let own_v = values(batch * s.n_kv * alloc * s.hd, 8);
        let q = values(batch * s.n_head * s.hd, 9);
        let scale = 0.3;
        let want: Vec<f32> = (0..batch)
            .flat_map(|r| (0..s.n_head).map(move |head| (r, head)))
            .flat_map(|(r, head)| {
                let h = head / (s.n_head / s.n_kv);
                let qh = &q[(r * s.n_head + head) * s.hd..][..s.hd];
                let row = |p: usize, shared: &[f32], own: &[f32]| -> Vec<f32> {
                    let o = if p < start {
                        (h * cap + p) * s.hd
                    } else {
                        ((r * s.n_kv + h) * alloc + p - start) * s.hd
                    };
                    (if p < start { shared } else { own })[o..][..s.hd].to_vec()
                };
                let scores: Vec<f64> = (0..len)
                    .map(|p| {
                        row(p, &shared_k, &own_k)
                            .iter()
                            .zip(qh)
                            .map(|(k, q)| (k * q) as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let vs: Vec<Vec<f32>> = (0..len).map(|p| row(p, &shared_v, &own_v)).collect();
                (0..s.hd)
                    .map(|d| (0..len).map(|p| e[p] / z * vs[p][d] as f64).sum::<f64>() as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        let meta: Vec<u32> = (0..batch as u32).flat_map(|b| [0, b, len as u32, 0]).collect();
        let got = |table: Vec<u64>, f16: bool| unsafe {
            match f16 {
                false => attention::<f32, f32>(&q, &meta, &table, s, scale),
                true => attention::<f16, f32>(&q, &meta, &table, s, scale),
            }
        };
        let table = |k: u64, v: u64, ok: u64, ov: u64| vec![k, v, ok, ov, start as u64, cap as u64, alloc as u64, 0];
        let addr = |x: &[f32]| x.as_ptr() as u64;
        let out = got(
            table(addr(&shared_k), addr(&shared_v), addr(&own_k), addr(&own_v)),
            false,
        );
        assert!(max_diff(&out, &want) < 1e-5, "f32 {}", max_diff(&out, &want));
        let half = |x: &[f32]| x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>();
        let (a, b, c, d) = (half(&shared_k), half(&shared_v), half(&own_k), half(&own_v));
        let addr16 = |x: &[f16]| x.as_ptr() as u64;
        let out16 = got(table(addr16(&a), addr16(&b), addr16(&c), addr16(&d)), true);
        assert!(max_diff(&out16, &want) < 2e-3, "f16 {}", max_diff(&out16, &want));
        assert!(max_diff(&out16, &want) > 0.0, "an f16 cache rounds");
    }

    /// The kernel's draw is the CPU sampler's (top_p = 1): the same token for the same draw, up
    /// to where summing by segments rounds differently; greedy is the first largest logit; a
    /// logit that is not finite is reported.
    #[test]
    fn sample_row_draws_what_the_cpu_sampler_draws() {
        use crate::base::sampling::{argmax, Rng, Sampler};
        let sampler = Sampler {
            temperature: 0.7,
            top_p: 1.0,
        };
        let mut rng = Rng::from_seed(3);
        let mut scratch = Vec::new();
        let mut same = 0;
        for trial in 0..400 {
            let vocab = [5, 127, 128, 300, 49_152][trial % 5];
            let logits: Vec<f32> = values(vocab, trial as u32).iter().map(|x| x * 8.0).collect();
            let mut cpu = rng.clone();
            let u = rng.next_f64();
            let want = sampler.sample(&logits, &mut cpu, &mut scratch);
            let got = sample_row(&logits, u, (1.0 / sampler.temperature) as f32, false).unwrap();
            same += usize::from(got == want);
            assert_eq!(sample_row(&logits, u, 1.0, true), Some(argmax(&logits)));
        }
        assert!(same >= 398, "{same} of 400 draws the same");
        let mut ties = vec![0f32; 300];
        (ties[7], ties[250]) = (2.0, 2.0);
        assert_eq!(sample_row(&ties, 0.5, 1.0, true), Some(7));
        ties[100] = f32::NAN;
        assert_eq!(sample_row(&ties, 0.5, 1.0, false), None);
        // u at the very top: the last token of positive weight, never past the vocabulary.
        assert!(sample_row(&values(300, 9), 1.0 - 1e-17, 1.0, false).unwrap() < 300);
    }

    /// The tree sum is the kernel's order, not a left-to-right sum: a case where they differ.
    #[test]
    fn block_sum_adds_in_the_kernels_tree_order() {
        let mut v = [0f32; BLOCK];
        v[0] = 1e8;
        v[64] = -1e8;
        v[1] = 1.0;
        let left_to_right = v.iter().fold(0f32, |s, x| s + x);
        assert_eq!(block_sum(&mut v.clone()), 1.0);
        assert_eq!(left_to_right, 0.0);
    }
}
