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
pub mod device;
pub mod kv_cache;
pub mod linear;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::source::{ModelSource, ModelSpec};
pub use device::DeviceChoice;
pub use kv_cache::KvCache;
pub use linear::WeightFormat;
use linear::{convert, Embedding, Linear};

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
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
    /// Bytes held by the weights after conversion.
    pub weight_bytes: u64,
    /// Storage format of the linear layers after conversion (e.g. `q8_0`), per tensor count.
    pub formats: Vec<(String, usize)>,
}

/// Positions precomputed for rotary embeddings at most (the cache is sized per prompt anyway);
/// also the context length assumed when a file does not say.
pub const MAX_ROPE_POSITIONS: usize = 32_768;

/// Reads tensors from a source, converts the matrices and keeps count of formats and bytes.
struct Loader<'a> {
    source: &'a mut ModelSource,
    weights: WeightFormat,
    device: Device,
    formats: HashMap<String, usize>,
    weight_bytes: u64,
}

impl Loader<'_> {
    fn read(&mut self, name: &str) -> Result<QTensor> {
        self.source.tensor(name, &device::host())
    }

    fn converted(&mut self, name: &str) -> Result<QTensor> {
        let qt = self.read(name)?;
        convert(qt, self.weights).map_err(|e| {
            Error::input(
                self.source.path(),
                format!(
                    "cannot convert {name} to {}: {}",
                    self.weights.as_str(),
                    crate::error::candle_message(&e)
                ),
            )
        })
    }

    /// A matrix, converted to the configured format, as a linear layer.
    fn linear(&mut self, name: &str) -> Result<Linear> {
        let qt = self.converted(name)?;
        let (dtype, stored) = (qt.dtype(), qt.storage_size_in_bytes() as u64);
        let linear = Linear::new(Arc::new(qt))?;
        *self.formats.entry(format!("{dtype:?}").to_lowercase()).or_default() += 1;
        self.weight_bytes += linear.bytes(stored);
        Ok(linear)
    }

    /// A 1-D weight (a norm), dequantised to f32.
    fn vector(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.read(name)?.dequantize(&self.device)?)
    }

    fn layer(&mut self, i: usize) -> Result<Layer> {
        let n = |what: &str| format!("blk.{i}.{what}.weight");
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"))?,
            wq: self.linear(&n("attn_q"))?,
            wk: self.linear(&n("attn_k"))?,
            wv: self.linear(&n("attn_v"))?,
            wo: self.linear(&n("attn_output"))?,
            ffn_norm: self.vector(&n("ffn_norm"))?,
            w_gate: self.linear(&n("ffn_gate"))?,
            w_up: self.linear(&n("ffn_up"))?,
            w_down: self.linear(&n("ffn_down"))?,
        })
    }
}

impl Model {
    /// Loads the model of `source` onto `device`, its matrices converted to `weights`.
    pub fn load(source: &mut ModelSource, weights: WeightFormat, device: &Device) -> Result<Model> {
        let spec = source.spec().clone();
        let tied = source.tied_embeddings();
        let mut loader = Loader {
            source,
            weights,
            device: device.clone(),
            formats: HashMap::new(),
            weight_bytes: 0,
        };
        let embed_qt = loader.converted("token_embd.weight")?;
        let output = if tied {
            None
        } else {
            Some(loader.linear("output.weight")?)
        };
        let (embed, lm_head) = Embedding::with_output(embed_qt, output)?;
        let norm = loader.vector("output_norm.weight")?;
        let layers = (0..spec.n_layer).map(|i| loader.layer(i)).collect::<Result<Vec<_>>>()?;
        let weight_bytes = loader.weight_bytes + embed.bytes();
        let mut formats: Vec<(String, usize)> = loader.formats.into_iter().collect();
        formats.sort();
        let (cos, sin) = rope_tables(&spec, MAX_ROPE_POSITIONS.min(spec.context_length), device)?;
        Ok(Model {
            spec,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device: device.clone(),
            weight_bytes,
            formats,
        })
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
        let cache = KvCache::new(&self.spec, 1, capacity, &self.device)?;
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
        let mut cache = KvCache::new(&self.spec, 1, capacity, &self.device)?;
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
        let tokens = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = self.forward(&tokens, &mut cache)?;
        Ok((cache, logits.squeeze(0)?.to_vec1::<f32>()?))
    }

    /// One decoding step: `tokens[i]` is appended to row `i` of the cache. Returns the next-token
    /// logits, one row per sequence, flattened (`rows × vocab`).
    pub fn step(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() != cache.batch() {
            return Err(Error::Run(format!(
                "{} tokens for a batch of {}",
                tokens.len(),
                cache.batch()
            )));
        }
        if cache.len >= cache.capacity {
            return Err(Error::Run("KV cache is full".into()));
        }
        let tokens = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
        let logits = self.forward(&tokens, cache)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }

    /// `tokens`: (batch, len) at positions `cache.len ..`. Returns (batch, vocab) logits of the
    /// last position.
    fn forward(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, l) = tokens.dims2()?;
        let pos = cache.len;
        let eps = self.spec.rms_eps as f32;
        let mut h = self.embed.lookup(tokens)?;
        let mask = if l > 1 { Some(self.causal_mask(l, pos)?) } else { None };
        let cos = self.cos.narrow(0, pos, l)?;
        let sin = self.sin.narrow(0, pos, l)?;
        if l > 1 && cache.start > 0 {
            return Err(Error::Run("a forked cache decodes one position at a time".into()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let x = candle_nn::ops::rms_norm(&h, &layer.attn_norm, eps)?;
            let a = self.attention(layer, &x, cache, i, mask.as_ref(), (&cos, &sin))?;
            h = (h + a)?;
            let x = candle_nn::ops::rms_norm(&h, &layer.ffn_norm, eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&x)?)?;
            let ff = layer.w_down.forward(&(gate * layer.w_up.forward(&x)?)?)?;
            h = (h + ff)?;
        }
        cache.len += l;
        let last = h.narrow(1, l - 1, 1)?.reshape((b, self.spec.n_embd))?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, eps)?;
        Ok(self.lm_head.forward(&last)?)
    }

    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        cache: &mut KvCache,
        i: usize,
        mask: Option<&Tensor>,
        (cos, sin): (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let s = &self.spec;
        let (pos, start) = (cache.len, cache.start);
        let shared = cache.shared.get(i).map(|kv| (kv, start));
        let kv = &mut cache.layers[i];
        let (b, l, _) = x.dims3()?;
        let n_rep = s.n_head / s.n_kv_head;
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((b, l, n, s.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(layer.wq.forward(x)?, s.n_head)?;
        let k = heads(layer.wk.forward(x)?, s.n_kv_head)?;
        let v = heads(layer.wv.forward(x)?, s.n_kv_head)?;
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        kv.0.slice_set(&k, 2, pos - start)?;
        kv.1.slice_set(&v, 2, pos - start)?;
        let t = pos + l;
        if l == 1 {
            let y = cpu::attention::decode(s, &q, shared, kv, t)?;
            return Ok(layer.wo.forward(&y)?);
        }
        let keys = kv.0.narrow(2, 0, t)?;
        let values = kv.1.narrow(2, 0, t)?;
        // (b, n_head, l, d) → (b, n_kv_head, n_rep·l, d): the heads sharing a KV head become rows.
        let q = q.reshape((b, s.n_kv_head, n_rep * l, s.head_dim))?;
        let att = (q.matmul(&keys.t()?)? * (1.0 / (s.head_dim as f64).sqrt()))?;
        let att = match mask {
            Some(m) => att.broadcast_add(m)?,
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&values)?;
        let y = y
            .reshape((b, s.n_head, l, s.head_dim))?
            .transpose(1, 2)?
            .reshape((b, l, s.n_head * s.head_dim))?;
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
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / spec.rope_base.powf(2.0 * i as f32 / spec.head_dim as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use std::path::Path;

    fn load(path: &Path, format: WeightFormat) -> Result<Model> {
        Model::load(&mut ModelSource::open(path)?, format, &device::host())
    }

    fn tiny(format: WeightFormat) -> (tempfile::TempDir, Model) {
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
        // Quantised kernels natively; dense f32 weights through the row-by-row path.
        for format in [WeightFormat::Q8_0, WeightFormat::F32] {
            rows_do_not_depend_on_batch_size_in(format);
        }
    }

    fn rows_do_not_depend_on_batch_size_in(format: WeightFormat) {
        let (_d, m) = tiny(format);
        let m = &m;
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

    #[test]
    fn retain_reorders_rows_even_when_it_keeps_them_all() {
        let (_d, m) = tiny(WeightFormat::Q8_0);
        let (prefix, _) = m.prefill(&[1, 40, 41, 42], 4).unwrap();
        let vocab = m.spec.vocab_size;
        // References: each history decoded alone.
        let alone = |first: u32| {
            let mut c = m.fork(&prefix, 1, 4).unwrap();
            m.step(&mut c, &[first]).unwrap();
            m.step(&mut c, &[63]).unwrap()
        };
        let mut three = m.fork(&prefix, 3, 4).unwrap();
        m.step(&mut three, &[60, 61, 62]).unwrap();
        // All three rows kept, in reverse order: row 0 is now the history that began with 62.
        three.retain(&[2, 1, 0]).unwrap();
        let reversed = m.step(&mut three, &[63, 63, 63]).unwrap();
        assert_eq!(reversed[..vocab], alone(62)[..]);
        assert_eq!(reversed[2 * vocab..], alone(60)[..]);
        assert_ne!(
            alone(60),
            alone(62),
            "the histories must differ for the test to mean anything"
        );
        // Dropping and reordering at once, and an out-of-range row.
        three.retain(&[2, 0]).unwrap();
        let two = m.step(&mut three, &[50, 50]).unwrap();
        assert_eq!(three.batch(), 2);
        assert_eq!(two.len(), 2 * vocab);
        assert!(three.retain(&[5]).is_err());
    }

    #[test]
    fn forked_caches_share_the_prompt_and_decode_bit_identically() {
        let (_d, m) = tiny(WeightFormat::Q8_0);
        let m = &m;
        let prompt = [1u32, 40, 41, 42, 43];
        // Reference: one batch-1 cache with room for everything, decoded in place.
        let (mut whole, _) = m.prefill(&prompt, prompt.len() + 6).unwrap();
        let (exact, _) = m.prefill(&prompt, prompt.len()).unwrap();
        let mut forked = m.fork(&exact, 2, 6).unwrap();
        assert_eq!((forked.len(), forked.capacity(), forked.batch()), (5, 11, 2));
        // The private part holds the new positions only; the prompt is a view of `exact`.
        let private: usize = forked.layers.iter().map(|(k, _)| k.dim(2).unwrap()).sum();
        assert_eq!(private, 6 * m.spec.n_layer);
        let vocab = m.spec.vocab_size;
        for t in [50u32, 51, 52, 53, 54, 55] {
            let a = m.step(&mut whole, &[t]).unwrap();
            let b = m.step(&mut forked, &[t, 60]).unwrap();
            assert_eq!(
                a[..],
                b[..vocab],
                "step {t}: shared-prompt decoding must be bit-identical"
            );
        }
        assert!(m.step(&mut forked, &[1, 2]).is_err(), "full");
        assert!(m.fork(&forked, 1, 1).is_err(), "only a batch-1 prompt cache forks");
        assert!(
            m.fork(&exact, 1, m.cos.dim(0).unwrap()).is_err(),
            "past the rotary table"
        );
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
        assert_eq!(crate::sampling::argmax(&a), crate::sampling::argmax(&b));
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
