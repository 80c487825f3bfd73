//! A llama-architecture decoder on candle's building blocks, made for sampling many
//! continuations of one prompt. It knows nothing of runs, configs or files: it loads weights
//! from a [`ModelSource`] onto a device and computes logits.
//!
//! candle-transformers' `quantized_llama` keeps its KV cache private and grows it by
//! concatenation (copying the whole cache every step). Here the cache is ours:
//! - [`KvCache`] is preallocated for prompt + generation budget and written in place;
//! - a prompt is prefilled once at batch 1 and [`Model::fork`]ed for a chunk of sequences: they
//!   all read the prompt's positions in place and hold only their own generated positions;
//! - every row of a batch sits at the same position (samples of one question share the prompt
//!   length), so decoding needs no mask and no padding;
//! - finished rows leave the batch with [`KvCache::retain`].
//!
//! Grouped-query attention runs without repeating K/V: in prefill the query heads that share a
//! KV head are folded into the row dimension of one matmul; decoding uses
//! [`cpu::attention::decode`] over the cache.
//!
//! Each row's arithmetic is independent of the other rows of its batch, so a sequence's logits
//! do not depend on the batch size: what makes samples identical whatever the chunk size.
//!
//! Modules: [`linear`] (weight formats, linear layers, embedding), [`kv_cache`], [`cpu`] (the
//! CPU kernels), [`device`] (the only place candle devices are created).
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod kv_cache;
pub mod linear;
mod load;

use candle_core::{DType, Device, Tensor};

use crate::base::error::{Error, Result, Site};
use crate::source::ModelSpec;
pub use cuda::{GpuKernels, GpuOptions};
use device::allocation;
pub use device::DeviceChoice;
pub use kv_cache::{KvCache, KvCacheFormat};
pub use linear::WeightFormat;
use linear::{Embedding, Group, Linear};
pub use load::Weights;

struct Layer {
    attn_norm: Tensor,
    /// q, k and v.
    qkv: Group,
    /// Biases of the q, k, v projections (qwen2), q and k in the interleaved rotary layout.
    bias: Option<[Tensor; 3]>,
    /// RMSNorm weights over each head of q and of k (qwen3), in the interleaved layout.
    qk_norm: Option<[Tensor; 2]>,
    wo: Linear,
    ffn_norm: Tensor,
    /// gate and up.
    gate_up: Group,
    w_down: Linear,
    /// The q, k, v biases side by side (the fused path's `rope_write` adds them).
    qkv_bias: Option<Tensor>,
}

pub struct Model {
    pub spec: ModelSpec,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// Activations, norms and KV cache: f32 on the CPU, the weights' dtype on a GPU.
    dtype: DType,
    /// The KV cache's dtype ([`KvCacheFormat`]): the activations' unless asked otherwise.
    kv_dtype: DType,
    kernels: Kernels,
    /// Rotary tables in f32 (positions, head_dim / 2) for the fused kernels.
    rope_f32: Option<(Tensor, Tensor)>,
    /// Bytes held by the weights after conversion.
    pub weight_bytes: u64,
    /// Storage format of the linear layers after conversion (e.g. `q8_0`), per tensor count.
    pub formats: Vec<(String, usize)>,
}

/// Which kernels run the decode step: the CPU's (attention reads the cache's storage in place),
/// the `candle` GPU path's tensor ops, or the `fused` GPU path ([`cuda::fused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernels {
    Cpu,
    Device,
    Fused,
}

/// Positions precomputed for rotary embeddings at most (the cache is sized per prompt anyway);
/// also the context length assumed when a file does not say.
pub const MAX_ROPE_POSITIONS: usize = 32_768;

impl Model {
    /// The most positions (prompt and generated tokens) a sequence can have: the model's
    /// context, at most [`MAX_ROPE_POSITIONS`].
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The model with its KV caches kept in `format` (from the next cache made on).
    pub fn with_kv_cache(mut self, format: KvCacheFormat) -> Self {
        self.kv_dtype = format.dtype(self.dtype);
        self
    }

    /// Runs the prompt at batch 1 into a fresh cache sized for `capacity` positions, and returns
    /// the cache and the logits that follow the prompt.
    pub fn prefill(&self, prompt: &[u32], capacity: usize) -> Result<(KvCache, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(Error::Run("empty prompt".into()));
        }
        if capacity > self.cos.dim(0)? {
            return Err(Error::Run(format!(
                "prompt ({} tokens) plus generation.max_new_tokens needs {capacity} positions; the model supports {}: lower generation.max_new_tokens or shorten the prompt",
                prompt.len(),
                self.cos.dim(0)?
            )));
        }
        let cache = KvCache::new(&self.spec, 1, capacity, self.kv_dtype, &self.device)?;
        self.prefill_into(cache, prompt)
    }

    /// Like [`Model::prefill`] for a prompt that starts with the tokens already in `prefix` (a
    /// batch-1 cache): the prefix is copied, only the rest of the prompt is computed.
    pub fn prefill_after(&self, prefix: &KvCache, rest: &[u32], capacity: usize) -> Result<(KvCache, Vec<f32>)> {
        if rest.is_empty() || prefix.batch() != 1 || capacity < prefix.len + rest.len() {
            return Err(Error::Run(
                "prefill_after needs a batch-1 prefix and a non-empty rest".into(),
            ));
        }
        let mut cache = KvCache::new(&self.spec, 1, capacity, self.kv_dtype, &self.device)?;
        for ((k, v), (pk, pv)) in cache.layers.iter_mut().zip(&prefix.layers) {
            k.slice_set(&pk.narrow(2, 0, prefix.len)?.contiguous()?, 2, 0)?;
            v.slice_set(&pv.narrow(2, 0, prefix.len)?.contiguous()?, 2, 0)?;
        }
        cache.len = prefix.len;
        self.prefill_into(cache, rest)
    }

    /// A cache for `n` sequences that continue the batch-1 `prompt` cache, with room for
    /// `max_new` more positions each. The prompt's positions are shared by all of them (no copy).
    pub fn fork(&self, prompt: &KvCache, n: usize, max_new: usize) -> Result<KvCache> {
        if prompt.len() + max_new > self.cos.dim(0)? {
            return Err(Error::Run(format!(
                "the prompt ({} tokens) plus generation.max_new_tokens ({max_new}) exceeds the model's {} positions: lower generation.max_new_tokens or shorten the prompt",
                prompt.len(),
                self.cos.dim(0)?
            )));
        }
        prompt.fork(&self.spec, n, max_new)
    }

    fn prefill_into(&self, mut cache: KvCache, tokens: &[u32]) -> Result<(KvCache, Vec<f32>)> {
        let last = allocation(Site::Prefill, 1, || {
            let tokens = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
            self.forward(&tokens, &mut cache)
        })?;
        Ok((cache, self.logits(&last, 1, true)?))
    }

    /// One decoding step: `tokens[i]` is appended to row `i` of the cache. Returns the next-token
    /// logits, one row per sequence, flattened (`rows × vocab`).
    pub fn step(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        self.step_many(&mut [cache], tokens)
    }

    /// One decoding step of several caches at once — the sequences of several prompts, each
    /// cache at its own position. `tokens` lists the rows of `caches[0]`, then of `caches[1]`, …;
    /// the logits come back in the same order (`rows × vocab`). The linear layers see all rows
    /// together (one weight read for every sequence); attention reads each cache apart. A row's
    /// logits are bit-identical to those of the same row stepped alone.
    pub fn step_many(&self, caches: &mut [&mut KvCache], tokens: &[u32]) -> Result<Vec<f32>> {
        let rows = Self::begin_step(caches, tokens)?;
        let fused = self.kernels == Kernels::Fused;
        let h = allocation(Site::Step, rows, || {
            let tokens = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
            match fused {
                true => self.decode_fused(&tokens, caches),
                false => self.decode(&tokens, caches),
            }
        })?;
        // The fused step's hidden states come out of the final norm already.
        self.logits(&h, rows, !fused)
    }

    /// Checks a step's tokens against the caches' rows and makes room in every cache for one
    /// more position. Returns the rows.
    fn begin_step(caches: &mut [&mut KvCache], tokens: &[u32]) -> Result<usize> {
        let rows: usize = caches.iter().map(|c| c.batch()).sum();
        if tokens.len() != rows || rows == 0 {
            return Err(Error::Run(format!("{} tokens for a batch of {rows}", tokens.len())));
        }
        if caches.iter().any(|c| c.len >= c.capacity) {
            return Err(Error::Run("KV cache is full".into()));
        }
        for cache in caches.iter_mut() {
            cache.reserve()?;
        }
        Ok(rows)
    }

    /// `tokens`: (batch, len) at positions `cache.len ..`. Returns (batch, n_embd) hidden states
    /// of the last position. One new position goes through [`Model::decode`].
    fn forward(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, l) = tokens.dims2()?;
        if l == 1 {
            return self.decode(tokens, &mut [cache]);
        }
        if cache.start > 0 {
            return Err(Error::Run("a forked cache decodes one position at a time".into()));
        }
        let pos = cache.len;
        let eps = self.spec.rms_eps as f32;
        let mut h = self.embed.lookup(tokens)?;
        let mask = self.causal_mask(l, pos)?;
        let cos = self.cos.narrow(0, pos, l)?;
        let sin = self.sin.narrow(0, pos, l)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let x = candle_nn::ops::rms_norm(&h, &layer.attn_norm, eps)?;
            let a = self.attention(layer, &x, cache, i, &mask, (&cos, &sin))?;
            h = (h + a)?;
            h = self.feed_forward(layer, h)?;
        }
        cache.len += l;
        Ok(h.narrow(1, l - 1, 1)?.reshape((b, self.spec.n_embd))?)
    }

    /// One new position for every row of every cache (`tokens`: (rows, 1), the caches' rows in
    /// order). Returns (rows, n_embd) hidden states.
    fn decode(&self, tokens: &Tensor, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let eps = self.spec.rms_eps as f32;
        let rows = tokens.dim(0)?;
        let mut h = self.embed.lookup(tokens)?;
        // Every row's own position: rotary tables as (rows, 1, head_dim / 2).
        let positions: Vec<u32> = caches
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.len as u32, c.batch()))
            .collect();
        let at = Tensor::new(positions, &self.device)?;
        let cos = self.cos.index_select(&at, 0)?.unsqueeze(1)?;
        let sin = self.sin.index_select(&at, 0)?.unsqueeze(1)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let x = candle_nn::ops::rms_norm(&h, &layer.attn_norm, eps)?;
            let a = self.decode_attention(layer, &x, caches, i, (&cos, &sin))?;
            h = (h + a)?;
            h = self.feed_forward(layer, h)?;
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        Ok(h.reshape((rows, self.spec.n_embd))?)
    }

    fn feed_forward(&self, layer: &Layer, h: Tensor) -> Result<Tensor> {
        let x = candle_nn::ops::rms_norm(&h, &layer.ffn_norm, self.spec.rms_eps as f32)?;
        let [gate, up] = layer.gate_up.forward(&x)?;
        let ff = layer.w_down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
        Ok((h + ff)?)
    }

    /// f32 logits of `rows` hidden states (rows, n_embd), flattened (`rows × vocab`), after the
    /// final norm (`norm`) or of states already normed.
    fn logits(&self, h: &Tensor, rows: usize, norm: bool) -> Result<Vec<f32>> {
        allocation(Site::Logits, rows, || {
            let h = match norm {
                true => candle_nn::ops::rms_norm(h, &self.norm, self.spec.rms_eps as f32)?,
                false => h.clone(),
            };
            Ok(self.lm_head.forward_values(&h)?)
        })
    }

    /// q, k, v of `x` (batch, len, n_embd) as heads (batch, heads, len, head_dim), q and k rotated.
    fn qkv(&self, layer: &Layer, x: &Tensor, (cos, sin): (&Tensor, &Tensor)) -> Result<(Tensor, Tensor, Tensor)> {
        let s = &self.spec;
        let (b, l, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((b, l, n, s.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let [mut q, mut k, mut v] = layer.qkv.forward(x)?;
        if let Some([bq, bk, bv]) = &layer.bias {
            (q, k, v) = (q.broadcast_add(bq)?, k.broadcast_add(bk)?, v.broadcast_add(bv)?);
        }
        let (mut q, mut k) = (heads(q, s.n_head)?, heads(k, s.n_kv_head)?);
        if let Some([nq, nk]) = &layer.qk_norm {
            let eps = s.rms_eps as f32;
            (q, k) = (
                candle_nn::ops::rms_norm(&q, nq, eps)?,
                candle_nn::ops::rms_norm(&k, nk, eps)?,
            );
        }
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        Ok((q, k, heads(v, s.n_kv_head)?))
    }

    /// Decode attention of layer `i`: each cache's rows write their new K/V in place and attend
    /// over their own positions.
    fn decode_attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        caches: &mut [&mut KvCache],
        i: usize,
        rope: (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let s = &self.spec;
        let (q, k, v) = self.qkv(layer, x, rope)?;
        let mut ys = Vec::with_capacity(caches.len());
        let mut row = 0;
        for cache in caches.iter_mut() {
            let (n, pos, start) = (cache.batch(), cache.len, cache.start);
            cache.write(i, &k.narrow(0, row, n)?, &v.narrow(0, row, n)?)?;
            let shared = cache.shared.get(i).map(|kv| (kv, start));
            let kv = &cache.layers[i];
            let q = q.narrow(0, row, n)?;
            ys.push(match self.kernels {
                Kernels::Cpu => cpu::attention::decode(s, &q, shared, kv, pos + 1)?,
                Kernels::Device | Kernels::Fused => cuda::decode_attention(s, &q, shared, kv, pos + 1)?,
            });
            row += n;
        }
        let y = if ys.len() == 1 {
            ys.pop().expect("one")
        } else {
            Tensor::cat(&ys, 0)?
        };
        Ok(layer.wo.forward(&y.to_dtype(self.dtype)?)?)
    }

    /// Prefill attention (`l` > 1 positions of a batch-1 cache, causal).
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        cache: &mut KvCache,
        i: usize,
        mask: &Tensor,
        rope: (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let s = &self.spec;
        let pos = cache.len;
        let (b, l, _) = x.dims3()?;
        let n_rep = s.n_head / s.n_kv_head;
        let (q, k, v) = self.qkv(layer, x, rope)?;
        cache.write(i, &k, &v)?;
        let kv = &cache.layers[i];
        let t = pos + l;
        // Attention scores and weights in f32 whatever the weights' dtype.
        let keys = kv.0.narrow(2, 0, t)?.to_dtype(DType::F32)?;
        let values = kv.1.narrow(2, 0, t)?.to_dtype(DType::F32)?;
        // (b, n_head, l, d) → (b, n_kv_head, n_rep·l, d): the heads sharing a KV head become rows.
        let q = q
            .to_dtype(DType::F32)?
            .reshape((b, s.n_kv_head, n_rep * l, s.head_dim))?;
        let att = (q.matmul(&keys.t()?)? * (1.0 / (s.head_dim as f64).sqrt()))?;
        let att = candle_nn::ops::softmax_last_dim(&att.broadcast_add(mask)?)?;
        let y = att.matmul(&values)?;
        let y = y
            .reshape((b, s.n_head, l, s.head_dim))?
            .transpose(1, 2)?
            .reshape((b, l, s.n_head * s.head_dim))?
            .to_dtype(self.dtype)?;
        Ok(layer.wo.forward(&y)?)
    }

    /// Additive mask for `l` new positions after `pos` cached ones, for the folded query rows
    /// (n_rep · l rows, pos + l columns).
    fn causal_mask(&self, l: usize, pos: usize) -> Result<Tensor> {
        let n_rep = self.spec.n_head / self.spec.n_kv_head;
        let t = pos + l;
        let mut m = vec![0f32; n_rep * l * t];
        for r in 0..n_rep {
            for i in 0..l {
                let row = &mut m[(r * l + i) * t..(r * l + i + 1) * t];
                row[pos + i + 1..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            }
        }
        Ok(Tensor::from_vec(m, (n_rep * l, t), &self.device)?)
    }
}

fn rope_tables(spec: &ModelSpec, positions: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = spec.head_dim / 2;
    let inv = Tensor::from_vec(spec.rope_inv_freq(), (1, half), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ModelSource;
    use crate::testing;
    use std::path::Path;

    fn load(path: &Path, format: WeightFormat) -> Result<Model> {
        Model::load(&mut ModelSource::open(path)?, format, &device::host(), None)
    }

    /// The tiny test model in `format` (and the folder its file lies in).
    pub(in crate::engine) fn tiny(format: WeightFormat) -> (tempfile::TempDir, Model) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 7).unwrap();
        let m = load(&p, format).unwrap();
        (d, m)
    }

    /// Logits of the full sequence at once, with a fresh cache: the reference for the cached path.
    fn full_logits(m: &Model, tokens: &[u32]) -> Vec<f32> {
        m.prefill(tokens, tokens.len() + 1).unwrap().1
    }

    #[test]
    fn cached_decoding_matches_full_recompute() {
        let (_d, m) = tiny(WeightFormat::Native);
        let m = &m;
        let prompt = [1u32, 40, 41, 42, 43];
        let (mut cache, _) = m.prefill(&prompt, 16).unwrap();
        let mut seq = prompt.to_vec();
        for t in [50u32, 51, 52] {
            let logits = m.step(&mut cache, &[t]).unwrap();
            seq.push(t);
            let reference = full_logits(m, &seq);
            let diff = logits
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-3, "max diff {diff}");
        }
    }

    #[test]
    fn prefill_after_a_cached_prefix_matches_a_full_prefill() {
        let (_d, m) = tiny(WeightFormat::Q8_0);
        let m = &m;
        let prompt = [1u32, 40, 41, 42, 43, 44, 45];
        let (full, a) = m.prefill(&prompt, 10).unwrap();
        let (prefix, _) = m.prefill(&prompt[..4], 4).unwrap();
        let (cache, b) = m.prefill_after(&prefix, &prompt[4..], 10).unwrap();
        assert_eq!((cache.len(), cache.capacity()), (full.len(), full.capacity()));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "max diff {diff}");
        assert!(m.prefill_after(&prefix, &[], 10).is_err());
    }

    #[test]
    fn rows_do_not_depend_on_batch_size() {
        // Quantised kernels natively; dense f32 weights through the row-by-row path; an f16 cache.
        for (format, kv) in [
            (WeightFormat::Q8_0, KvCacheFormat::Auto),
            (WeightFormat::F32, KvCacheFormat::Auto),
            (WeightFormat::Q8_0, KvCacheFormat::F16),
        ] {
            rows_do_not_depend_on_batch_size_in(format, kv);
        }
    }

    fn rows_do_not_depend_on_batch_size_in(format: WeightFormat, kv: KvCacheFormat) {
        let (_d, m) = tiny(format);
        let m = &m.with_kv_cache(kv);
        let (prefix, _) = m.prefill(&[1, 40, 41, 42], 12).unwrap();
        let vocab = m.spec.vocab_size;
        let mut one = m.fork(&prefix, 1, 8).unwrap();
        let mut three = m.fork(&prefix, 3, 8).unwrap();
        let a = m.step(&mut one, &[60]).unwrap();
        let b = m.step(&mut three, &[61, 60, 62]).unwrap();
        assert_eq!(a[..], b[vocab..2 * vocab], "row results must be bit-identical");
        // After dropping rows, the survivors keep their own history.
        three.retain(&[1]).unwrap();
        let a2 = m.step(&mut one, &[63]).unwrap();
        let b2 = m.step(&mut three, &[63]).unwrap();
        assert_eq!(a2, b2);
    }

    /// Caches of different prompts at different positions stepped together give each row the
    /// logits it gets alone, bit for bit, on the CPU kernels and on the GPU's (run on the CPU).
    #[test]
    fn caches_stepped_together_match_each_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 7).unwrap();
        for gpu in [None, Some(GpuKernels::Candle), Some(GpuKernels::Fused)] {
            let format = match gpu {
                Some(_) => WeightFormat::F32,
                None => WeightFormat::Q8_0,
            };
            let mut source = ModelSource::open(&p).unwrap();
            let m = Model::build(
                &mut Weights::File(&mut source),
                format,
                &device::host(),
                gpu_options(gpu),
            )
            .unwrap();
            let vocab = m.spec.vocab_size;
            let (short, _) = m.prefill(&[1, 40, 41], 3).unwrap();
            let (long, _) = m.prefill(&[1, 50, 51, 52, 53, 54, 55], 7).unwrap();
            let fresh = || (m.fork(&short, 2, 6).unwrap(), m.fork(&long, 1, 6).unwrap());
            let (mut a, mut b) = fresh();
            // Row histories: a's two rows one step ahead of b's row.
            m.step(&mut a, &[60, 61]).unwrap();
            let (mut a2, mut b2) = fresh();
            m.step(&mut a2, &[60, 61]).unwrap();
            let together = m.step_many(&mut [&mut a, &mut b], &[62, 63, 64]).unwrap();
            let alone_a = m.step(&mut a2, &[62, 63]).unwrap();
            let alone_b = m.step(&mut b2, &[64]).unwrap();
            assert_eq!(together[..2 * vocab], alone_a[..], "kernels {gpu:?}");
            assert_eq!(together[2 * vocab..], alone_b[..], "kernels {gpu:?}");
            assert_eq!((a.len(), b.len()), (5, 8));
            assert!(
                m.step_many(&mut [&mut a, &mut b], &[1, 2]).is_err(),
                "one token per row"
            );
        }
    }

    fn gpu_options(kernels: Option<GpuKernels>) -> Option<GpuOptions> {
        kernels.map(|kernels| GpuOptions {
            kernels,
            batch_invariant: true,
        })
    }

    /// The GPU's kernels, run on the CPU — `candle`'s (dense layers in fixed-row GEMMs, decode
    /// attention as tensor ops) and `fused`'s (each CUDA kernel's reference arithmetic over the
    /// kernels' own tables, stacked GEMMs), with an f32 and an f16 cache: they agree with the
    /// CPU kernels, and a row's logits do not depend on the batch.
    #[test]
    fn device_kernels_agree_with_the_cpu_and_are_batch_invariant() {
        for (kernels, kv) in [
            (GpuKernels::Candle, KvCacheFormat::Auto),
            (GpuKernels::Fused, KvCacheFormat::Auto),
            (GpuKernels::Fused, KvCacheFormat::F16),
        ] {
            device_kernels_agree_in(kernels, kv);
        }
    }

    fn device_kernels_agree_in(kernels: GpuKernels, kv: KvCacheFormat) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 7).unwrap();
        let cpu = load(&p, WeightFormat::F32).unwrap().with_kv_cache(kv);
        let mut source = ModelSource::open(&p).unwrap();
        let dev = Model::build(
            &mut Weights::File(&mut source),
            WeightFormat::F32,
            &device::host(),
            gpu_options(Some(kernels)),
        )
        .unwrap()
        .with_kv_cache(kv);
        let want = match kernels {
            GpuKernels::Candle => Kernels::Device,
            GpuKernels::Fused => Kernels::Fused,
        };
        assert_eq!(dev.kernels, want);
        let vocab = cpu.spec.vocab_size;
        // Longer than one chunk of the fused attention kernel (128 positions).
        let prompt: Vec<u32> = (0..140).map(|i| 1 + (i * 7) % 90).collect();
        let (pc, a) = cpu.prefill(&prompt, prompt.len()).unwrap();
        let (pd, b) = dev.prefill(&prompt, prompt.len()).unwrap();
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(close(&a, &b) < 1e-4, "prefill {}", close(&a, &b));
        let mut cc = cpu.fork(&pc, 3, 4).unwrap();
        let mut three = dev.fork(&pd, 3, 4).unwrap();
        let mut one = dev.fork(&pd, 1, 4).unwrap();
        let x = cpu.step(&mut cc, &[60, 61, 62]).unwrap();
        let y = dev.step(&mut three, &[60, 61, 62]).unwrap();
        assert!(close(&x, &y) < 1e-4, "{kernels:?} {kv:?}: decode {}", close(&x, &y));
        let z = dev.step(&mut one, &[61]).unwrap();
        assert_eq!(z[..], y[vocab..2 * vocab], "row results must be bit-identical");
        // A second step (positions written by the step before) still agrees with the CPU.
        let x2 = cpu.step(&mut cc, &[63, 64, 65]).unwrap();
        let y2 = dev.step(&mut three, &[63, 64, 65]).unwrap();
        assert!(
            close(&x2, &y2) < 1e-4,
            "{kernels:?} {kv:?}: second step {}",
            close(&x2, &y2)
        );
        // 20 rows: two GEMM groups, the second padded.
        let mut twenty = dev.fork(&pd, 20, 4).unwrap();
        let tokens: Vec<u32> = (0..20).map(|i| 40 + i % 7).collect();
        let w = dev.step(&mut twenty, &tokens).unwrap();
        let mut single = dev.fork(&pd, 1, 4).unwrap();
        assert_eq!(
            dev.step(&mut single, &[tokens[17]]).unwrap()[..],
            w[17 * vocab..18 * vocab]
        );
    }

    #[test]
    fn random_weights_are_drawn_from_the_seed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 7).unwrap();
        let spec = ModelSource::open(&p).unwrap().spec().clone();
        let logits = |seed: u64| {
            let mut w = Weights::Random {
                spec: spec.clone(),
                seed,
                host: false,
            };
            let m = Model::build(&mut w, WeightFormat::F32, &device::host(), None).unwrap();
            m.prefill(&[1, 40, 41], 3).unwrap().1
        };
        assert_eq!(logits(5), logits(5));
        assert_ne!(logits(5), logits(6));
    }

    #[test]
    fn a_random_qwen3_has_wide_normed_heads_and_decodes_as_it_prefills() {
        let spec = ModelSpec {
            arch: "qwen3".into(),
            name: "tiny-qwen3".into(),
            n_layer: 2,
            n_embd: 32,
            n_head: 4,
            n_kv_head: 2,
            head_dim: 16,
            n_ff: 64,
            vocab_size: 64,
            context_length: 64,
            rope_base: 1e6,
            rms_eps: 1e-6,
            rope_scaling: None,
            rope_freq_factors: None,
        };
        let mut w = Weights::Random {
            spec,
            seed: 3,
            host: false,
        };
        let m = Model::build(&mut w, WeightFormat::F32, &device::host(), None).unwrap();
        assert!(m.layers.iter().all(|l| l.qk_norm.is_some() && l.bias.is_none()));
        let (mut cache, _) = m.prefill(&[1, 2], 4).unwrap();
        let stepped = m.step(&mut cache, &[3]).unwrap();
        let (_, full) = m.prefill(&[1, 2, 3], 3).unwrap();
        let diff = stepped
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4 && full.iter().all(|x| x.is_finite()), "{diff}");
    }

    #[test]
    fn weight_conversion_changes_format_not_behaviour() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 3).unwrap();
        let f32m = load(&p, WeightFormat::F32).unwrap();
        let q8 = load(&p, WeightFormat::Q8_0).unwrap();
        assert!(q8.formats.iter().all(|(f, _)| f == "q8_0"), "{:?}", q8.formats);
        assert!(q8.weight_bytes * 3 < f32m.weight_bytes);
        let a = full_logits(&f32m, &[1, 40, 41]);
        let b = full_logits(&q8, &[1, 40, 41]);
        assert_eq!(crate::base::sampling::argmax(&a), crate::base::sampling::argmax(&b));
    }

    #[test]
    fn bad_files_are_input_errors() {
        let d = tempfile::tempdir().unwrap();
        let missing = load(&d.path().join("none.gguf"), WeightFormat::Native).err().unwrap();
        assert!(missing.to_string().contains("cannot open the model file"));
        let junk = d.path().join("junk.gguf");
        std::fs::write(&junk, b"definitely not gguf").unwrap();
        let e = load(&junk, WeightFormat::Native).err().unwrap();
        assert!(e.to_string().contains("not a readable GGUF file"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 1).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&p, WeightFormat::Native).err().unwrap();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
