//! A llama-architecture decoder on candle's building blocks, made for sampling many
//! continuations of one prompt.
//!
//! candle-transformers' `quantized_llama` keeps its KV cache private and grows it by
//! concatenation (copying the whole cache every step). Here the cache is ours:
//! - [`KvCache`] is preallocated for prompt + generation budget and written in place;
//! - a prompt is prefilled once at batch 1 and [`KvCache::fork`]ed into one copy per sequence;
//! - every row of a batch sits at the same position (samples of one question share the prompt
//!   length), so decoding needs no mask and no padding;
//! - finished rows leave the batch with [`KvCache::retain`].
//!
//! Grouped-query attention runs without repeating K/V: the query heads that share a KV head are
//! folded into the row dimension of one matmul.
//!
//! Each row's arithmetic is independent of the other rows of its batch, so a sequence's logits
//! do not depend on the batch size: what makes samples identical whatever the chunk size.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Layout, Module, Tensor};

use crate::error::{Error, Result};
use crate::q8::Q8Linear;
use crate::tokenizer::GgufTokenizer;

pub use crate::config::WeightFormat;

/// Architecture hyper-parameters, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSpec {
    pub arch: String,
    pub name: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
}

impl ModelSpec {
    /// Bytes of K and V for one position of one sequence (f32 cache).
    pub fn kv_bytes_per_position(&self) -> u64 {
        (self.n_layer * 2 * self.n_kv_head * self.head_dim * DType::F32.size_in_bytes()) as u64
    }
}

/// A linear layer whose rows are computed independently of each other.
///
/// Q8_0 weights on AVX2 CPUs go through [`Q8Linear`], which computes every output row with the
/// same operations whatever the number of rows; other quantised formats through candle's kernels,
/// which do too. Dense f32/f16 weights go through gemm, whose kernels (and so roundings) change
/// with the number of rows: those are applied one row at a time, so that a sequence's logits
/// never depend on the batch it was decoded in.
enum Linear {
    Q8(Arc<Q8Linear>),
    Candle { inner: QMatMul, row_by_row: bool },
}

impl Linear {
    fn new(qt: Arc<QTensor>) -> candle_core::Result<Self> {
        if qt.dtype() == GgmlDType::Q8_0 && Q8Linear::supported() {
            return Ok(Linear::Q8(Arc::new(Q8Linear::from_qtensor(&qt)?)));
        }
        let inner = QMatMul::from_arc(qt)?;
        let row_by_row = !matches!(inner, QMatMul::QTensor(_));
        Ok(Linear::Candle { inner, row_by_row })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Q8(q) => q.forward(x),
            Linear::Candle { inner, row_by_row } => {
                let rows = x.dim(0)?;
                if *row_by_row && rows > 1 {
                    let outs = (0..rows)
                        .map(|i| inner.forward(&x.narrow(0, i, 1)?))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    return Tensor::cat(&outs, 0);
                }
                inner.forward(x)
            }
        }
    }
}

/// The token embedding: candle's quantised lookup, or the rows of the tied [`Q8Linear`].
enum Embedding {
    Quantized(Arc<QTensor>),
    Q8(Arc<Q8Linear>),
}

impl Embedding {
    fn lookup(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(tokens),
            Embedding::Q8(q) => {
                let (b, l) = tokens.dims2()?;
                let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
                let rows = q.rows(&ids);
                let d = rows.len() / (b * l).max(1);
                Tensor::from_vec(rows, (b, l, d), tokens.device())
            }
        }
    }
}

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

/// The model, its tokenizer and the chat template, as found in one GGUF file.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: GgufTokenizer,
    pub chat_template: Option<String>,
}

/// Positions precomputed for rotary embeddings at most (the cache is sized per prompt anyway).
const MAX_ROPE_POSITIONS: usize = 32_768;

impl Model {
    /// Loads a llama-architecture GGUF file and converts its matrices to `weights`.
    pub fn load(path: &Path, weights: WeightFormat) -> Result<Loaded> {
        let bad = |m: String| Error::input(path, m);
        let (mut file, content, spec) = open_gguf(path)?;
        let md = &content.metadata;
        let tokenizer = GgufTokenizer::from_gguf_metadata(md).map_err(bad)?;
        if tokenizer.vocab_size != spec.vocab_size {
            return Err(bad(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.vocab_size, spec.vocab_size
            )));
        }
        let chat_template = chat_template(md).map(str::to_string);

        let device = Device::Cpu;
        let mut read = |name: &str| {
            content.tensor(&mut file, name, &device).map_err(|e| {
                bad(format!(
                    "cannot read tensor {name}: {} (truncated file?)",
                    crate::error::candle_message(&e)
                ))
            })
        };
        let mut formats: HashMap<String, usize> = HashMap::new();
        let mut weight_bytes = 0u64;
        let mut count = |dtype: GgmlDType, bytes: u64| {
            *formats.entry(format!("{dtype:?}").to_lowercase()).or_default() += 1;
            weight_bytes += bytes;
        };
        let mut matmul = |qt: QTensor, name: &str| -> Result<Linear> {
            let qt = convert(qt, weights).map_err(|e| {
                bad(format!(
                    "cannot convert {name} to {}: {}",
                    weights.as_str(),
                    crate::error::candle_message(&e)
                ))
            })?;
            let (dtype, stored) = (qt.dtype(), qt.storage_size_in_bytes() as u64);
            let linear = Linear::new(Arc::new(qt))?;
            count(dtype, linear_bytes(&linear, stored));
            Ok(linear)
        };
        let vector = |qt: QTensor| -> Result<Tensor> { Ok(qt.dequantize(&device)?) };

        let embed_qt = convert(read("token_embd.weight")?, weights).map_err(|e| {
            bad(format!(
                "cannot convert token_embd.weight: {}",
                crate::error::candle_message(&e)
            ))
        })?;
        let (embed, lm_head) = if content.tensor_infos.contains_key("output.weight") {
            (
                Embedding::Quantized(Arc::new(embed_qt)),
                matmul(read("output.weight")?, "output.weight")?,
            )
        } else {
            // Tied embeddings: one matrix serves the lookup and the output projection.
            let embed_qt = Arc::new(embed_qt);
            match Linear::new(embed_qt.clone())? {
                Linear::Q8(q) => (Embedding::Q8(q.clone()), Linear::Q8(q)),
                other => (Embedding::Quantized(embed_qt), other),
            }
        };
        let embed_bytes = match &embed {
            Embedding::Q8(q) => q.storage_bytes() as u64,
            Embedding::Quantized(q) => q.storage_size_in_bytes() as u64,
        };
        let norm = vector(read("output_norm.weight")?)?;
        let mut layers = Vec::with_capacity(spec.n_layer);
        for i in 0..spec.n_layer {
            let mut r = |n: &str| read(&format!("blk.{i}.{n}.weight"));
            let (attn_norm, ffn_norm) = (r("attn_norm")?, r("ffn_norm")?);
            let (q, k, v, o) = (r("attn_q")?, r("attn_k")?, r("attn_v")?, r("attn_output")?);
            let (g, u, d) = (r("ffn_gate")?, r("ffn_up")?, r("ffn_down")?);
            layers.push(Layer {
                attn_norm: vector(attn_norm)?,
                wq: matmul(q, "attn_q")?,
                wk: matmul(k, "attn_k")?,
                wv: matmul(v, "attn_v")?,
                wo: matmul(o, "attn_output")?,
                ffn_norm: vector(ffn_norm)?,
                w_gate: matmul(g, "ffn_gate")?,
                w_up: matmul(u, "ffn_up")?,
                w_down: matmul(d, "ffn_down")?,
            });
        }
        weight_bytes += embed_bytes;
        let (cos, sin) = rope_tables(&spec, MAX_ROPE_POSITIONS.min(spec.context_length), &device)?;
        let mut formats: Vec<(String, usize)> = formats.into_iter().collect();
        formats.sort();
        let model = Model {
            spec,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device,
            weight_bytes,
            formats,
        };
        Ok(Loaded {
            model,
            tokenizer,
            chat_template,
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
            let y = self.decode_attention(&q, shared, kv, t)?;
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

    /// Attention of one new position per sequence over its `t` cached positions, spread over
    /// candle's thread pool by (sequence, KV head). Positions `0..start` are read from `shared`
    /// (batch 1, common to every sequence), the rest from the sequence's own rows of `kv`. Each
    /// pair is computed the same way whatever the batch size or the split. `q`: (b, n_head, 1,
    /// head_dim), contiguous. Returns (b, 1, n_head·head_dim).
    fn decode_attention(
        &self,
        q: &Tensor,
        shared: Option<(&(Tensor, Tensor), usize)>,
        kv: &(Tensor, Tensor),
        t: usize,
    ) -> Result<Tensor> {
        let s = &self.spec;
        let (b, hd, heads, kvh) = (q.dim(0)?, s.head_dim, s.n_head, s.n_kv_head);
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
        let out_ptr = out.as_mut_ptr() as usize;
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
                    // SAFETY: each (sequence, head) row of `out` is written by exactly one item.
                    let o =
                        unsafe { std::slice::from_raw_parts_mut((out_ptr as *mut f32).add((bi * heads + h) * hd), hd) };
                    for (ti, sc) in scores.iter().enumerate() {
                        let p = sc * inv;
                        for (od, vd) in o.iter_mut().zip(&row(ti, true)[..hd]) {
                            *od = p.mul_add(*vd, *od);
                        }
                    }
                }
            }
        });
        Ok(Tensor::from_vec(out, (b, 1, heads * hd), &self.device)?)
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

/// K and V of every layer for a batch of sequences at one common position.
///
/// A cache made by [`KvCache::fork`] holds only the positions generated after the fork, one
/// private copy per sequence; the positions before it (the prompt) are views of the forked
/// batch-1 cache, shared by every sequence and never copied.
pub struct KvCache {
    /// Per layer (K, V), each (batch, n_kv_head, capacity - start, head_dim): positions
    /// `start..capacity`.
    layers: Vec<(Tensor, Tensor)>,
    /// Per layer (K, V) of positions `0..start`, (1, n_kv_head, start, head_dim); empty unless
    /// forked.
    shared: Vec<(Tensor, Tensor)>,
    start: usize,
    len: usize,
    capacity: usize,
}

impl KvCache {
    fn new(spec: &ModelSpec, batch: usize, capacity: usize, device: &Device) -> Result<Self> {
        Ok(KvCache {
            layers: Self::zeros(spec, batch, capacity, device)?,
            shared: Vec::new(),
            start: 0,
            len: 0,
            capacity,
        })
    }

    fn zeros(spec: &ModelSpec, batch: usize, positions: usize, device: &Device) -> Result<Vec<(Tensor, Tensor)>> {
        let shape = (batch, spec.n_kv_head, positions, spec.head_dim);
        (0..spec.n_layer)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, DType::F32, device)?,
                    Tensor::zeros(shape, DType::F32, device)?,
                ))
            })
            .collect()
    }

    /// A cache for `n` sequences that continue this batch-1 cache, with room for `max_new`
    /// more positions each. The filled positions are shared (views, no copy).
    fn fork(&self, spec: &ModelSpec, n: usize, max_new: usize) -> Result<KvCache> {
        if self.batch() != 1 || self.start != 0 {
            return Err(Error::Run("only a batch-1 prompt cache can be forked".into()));
        }
        let shared = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)))
            .collect::<Result<_>>()?;
        Ok(KvCache {
            layers: Self::zeros(spec, n, max_new, self.layers[0].0.device())?,
            shared,
            start: self.len,
            len: self.len,
            capacity: self.len + max_new,
        })
    }

    /// Keeps only the given rows, in that order.
    pub fn retain(&mut self, rows: &[usize]) -> Result<()> {
        if rows.len() == self.batch() {
            return Ok(());
        }
        let device = self.layers[0].0.device().clone();
        let idx = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), &device)?;
        for (k, v) in self.layers.iter_mut() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }

    pub fn batch(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dim(0).unwrap_or(0))
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
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
    fn new(k: (&'a candle_core::Storage, &Layout), v: (&'a candle_core::Storage, &Layout)) -> Result<KvView<'a>> {
        let (ks, vs) = (k.1.stride(), v.1.stride());
        if ks != vs || ks.len() != 4 || ks[3] != 1 {
            return Err(Error::Run("KV cache tensors must share a row-major layout".into()));
        }
        let slice = |(storage, layout): (&'a candle_core::Storage, &Layout)| -> Result<&'a [f32]> {
            match storage {
                candle_core::Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[layout.start_offset()..]),
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

/// Bytes a linear layer holds (`stored`: those of the tensor it was made from).
fn linear_bytes(l: &Linear, stored: u64) -> u64 {
    match l {
        Linear::Q8(q) => q.storage_bytes() as u64,
        Linear::Candle { .. } => stored,
    }
}

fn convert(qt: QTensor, to: WeightFormat) -> candle_core::Result<QTensor> {
    let target = match to {
        WeightFormat::Native => return Ok(qt),
        WeightFormat::Q8_0 => GgmlDType::Q8_0,
        WeightFormat::Q4_0 => GgmlDType::Q4_0,
        WeightFormat::F16 => GgmlDType::F16,
        WeightFormat::F32 => GgmlDType::F32,
    };
    if qt.dtype() == target {
        return Ok(qt);
    }
    QTensor::quantize(&qt.dequantize(&Device::Cpu)?, target)
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

/// The chat template a GGUF file's metadata carries, if any.
pub fn chat_template(md: &HashMap<String, gguf_file::Value>) -> Option<&str> {
    md.get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// Opens a GGUF file and reads its header and architecture.
fn open_gguf(path: &Path) -> Result<(std::fs::File, gguf_file::Content, ModelSpec)> {
    let bad = |m: String| Error::input(path, m);
    let mut file = std::fs::File::open(path).map_err(|e| {
        bad(format!(
            "cannot open the model file: {e}; set model.path to a GGUF file, or leave it unset for the default model"
        ))
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        bad(format!(
            "not a readable GGUF file ({e}); is it truncated or of another format?"
        ))
    })?;
    let spec = spec_from_metadata(&content.metadata).map_err(bad)?;
    Ok((file, content, spec))
}

/// The architecture and tensor directory of a GGUF file, without reading any tensor data.
pub fn read_header(path: &Path) -> Result<(ModelSpec, gguf_file::Content)> {
    open_gguf(path).map(|(_, content, spec)| (spec, content))
}

fn spec_from_metadata(md: &HashMap<String, gguf_file::Value>) -> std::result::Result<ModelSpec, String> {
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or("metadata general.architecture is missing")?;
    if arch != "llama" {
        return Err(format!("architecture `{arch}` is not supported: rftx runs llama-architecture GGUF models (SmolLM2, Llama, TinyLlama, …)"));
    }
    let get = |k: &str| -> std::result::Result<usize, String> {
        md.get(&format!("llama.{k}"))
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .map(|v| v as usize)
            .ok_or(format!("metadata llama.{k} is missing"))
    };
    let float = |k: &str| md.get(&format!("llama.{k}")).and_then(|v| v.to_f32().ok());
    let n_embd = get("embedding_length")?;
    let n_head = get("attention.head_count")?;
    let n_kv_head = get("attention.head_count_kv").unwrap_or(n_head);
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd % n_head != 0 {
        return Err(format!(
            "inconsistent attention shape: {n_embd} dims, {n_head} heads, {n_kv_head} KV heads"
        ));
    }
    let head_dim = n_embd / n_head;
    if let Ok(rope_dim) = get("rope.dimension_count") {
        if rope_dim != head_dim {
            return Err(format!(
                "partial rotary embeddings ({rope_dim} of {head_dim} dims) are not supported"
            ));
        }
    }
    let vocab_size = match get("vocab_size") {
        Ok(v) => v,
        Err(_) => match md.get("tokenizer.ggml.tokens") {
            Some(gguf_file::Value::Array(a)) => a.len(),
            _ => return Err("metadata llama.vocab_size is missing".into()),
        },
    };
    Ok(ModelSpec {
        arch,
        name: md
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default(),
        n_layer: get("block_count")?,
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: get("feed_forward_length")?,
        vocab_size,
        context_length: get("context_length").unwrap_or(2048),
        rope_base: float("rope.freq_base").unwrap_or(10_000.0),
        rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
    })
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
    crate::q8::hsum8(&lanes) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn tiny(format: WeightFormat) -> (tempfile::TempDir, Loaded) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 7).unwrap();
        let l = Model::load(&p, format).unwrap();
        (d, l)
    }

    /// Logits of the full sequence at once, with a fresh cache: the reference for the cached path.
    fn full_logits(m: &Model, tokens: &[u32]) -> Vec<f32> {
        m.prefill(tokens, tokens.len() + 1).unwrap().1
    }

    #[test]
    fn cached_decoding_matches_full_recompute() {
        let (_d, l) = tiny(WeightFormat::Native);
        let m = &l.model;
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
        let (_d, l) = tiny(WeightFormat::Q8_0);
        let m = &l.model;
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
        let (_d, l) = tiny(format);
        let m = &l.model;
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
    fn forked_caches_share_the_prompt_and_decode_bit_identically() {
        let (_d, l) = tiny(WeightFormat::Q8_0);
        let m = &l.model;
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
        let f32m = Model::load(&p, WeightFormat::F32).unwrap().model;
        let q8 = Model::load(&p, WeightFormat::Q8_0).unwrap().model;
        assert!(q8.formats.iter().all(|(f, _)| f == "q8_0"), "{:?}", q8.formats);
        assert!(q8.weight_bytes * 3 < f32m.weight_bytes);
        let a = full_logits(&f32m, &[1, 40, 41]);
        let b = full_logits(&q8, &[1, 40, 41]);
        assert_eq!(crate::sampling::argmax(&a), crate::sampling::argmax(&b));
    }

    #[test]
    fn bad_files_are_input_errors() {
        let d = tempfile::tempdir().unwrap();
        let missing = Model::load(&d.path().join("none.gguf"), WeightFormat::Native)
            .err()
            .unwrap();
        assert!(missing.to_string().contains("cannot open the model file"));
        let junk = d.path().join("junk.gguf");
        std::fs::write(&junk, b"definitely not gguf").unwrap();
        let e = Model::load(&junk, WeightFormat::Native).err().unwrap();
        assert!(e.to_string().contains("not a readable GGUF file"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let p = d.path().join("tiny.gguf");
        testing::write_tiny_model(&p, 1).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = Model::load(&p, WeightFormat::Native).err().unwrap();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
