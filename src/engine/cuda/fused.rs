//! The decode step on rftx's kernels (`model.gpu_kernels = "fused"`): per layer one GEMM for
//! q/k/v together, one kernel for the bias, the rotary embedding and the K/V write of every row,
//! one attention kernel for all rows of all caches, one GEMM, the residual add fused with the
//! next RMSNorm, one GEMM for gate/up together, SiLU·mul, one GEMM: eight launches a layer,
//! whatever the number of rows and caches (candle's tensor ops take tens per cache).
//!
//! The step is the same code on either device: on a GPU each kernel is launched
//! ([`super::launch`]); on the CPU (the tests) each kernel's reference ([`super::reference`])
//! runs instead, over the same tables, so the orchestration — rows, caches, positions, strides —
//! is tested without a GPU.
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, WithDType};

use super::reference::{self, Elem, Heads, CACHE_WORDS, ROW_WORDS};
use crate::base::error::{Error, Result, Site};
use crate::base::sampling::Sampler;
use crate::engine::device::allocation;
use crate::engine::{Kernels, KvCache, Layer, Model};

impl Model {
    /// Whether [`Model::step_sample`] draws with `sampler` where the logits are: on the fused
    /// kernels, without a nucleus (`top_p` = 1; the nucleus needs a sort, done on the host).
    pub fn samples_on_device(&self, sampler: &Sampler) -> bool {
        self.kernels == Kernels::Fused && sampler.top_p >= 1.0
    }

    /// One decoding step, as [`Model::step_many`], whose next tokens are drawn on the device
    /// (`sample_rows`: the logits never leave it; the host gets one token a row). `draws[i]`:
    /// row `i`'s uniform draw from its own stream. A row whose logits are not finite gets
    /// `None`.
    pub fn step_sample(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        draws: &[f64],
        sampler: &Sampler,
    ) -> Result<Vec<Option<u32>>> {
        let rows = Self::begin_step(caches, tokens)?;
        if draws.len() != rows || !self.samples_on_device(sampler) {
            return Err(Error::Run(format!(
                "{} draws for {rows} rows, or no device sampling",
                draws.len()
            )));
        }
        let x = allocation(Site::Step, rows, || {
            let tokens = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
            self.decode_fused(&tokens, caches)
        })?;
        let greedy = sampler.temperature == 0.0;
        let inv_t = if greedy {
            1.0
        } else {
            (1.0 / sampler.temperature) as f32
        };
        allocation(Site::Logits, rows, || {
            let (tokens, finite) = sample(&self.lm_head.forward(&x)?, draws, inv_t, greedy)?;
            Ok(tokens.into_iter().zip(finite).map(|(t, ok)| ok.then_some(t)).collect())
        })
    }

    /// One new position for every row of every cache (`tokens`: (rows, 1)), on rftx's kernels.
    /// Returns the (rows, n_embd) hidden states after the final norm.
    pub(in crate::engine) fn decode_fused(&self, tokens: &Tensor, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let s = &self.spec;
        let eps = s.rms_eps as f32;
        let group = reference::group_rows(s.n_head / s.n_kv_head, s.head_dim);
        let rows = Rows::new(caches, group, &self.device)?;
        let table = CacheTable::new(caches, s.head_dim, &self.device)?;
        let h = self.embed.lookup(tokens)?.reshape((rows.count(), s.n_embd))?;
        let (mut h, mut x) = add_rmsnorm(&h, None, &self.layers[0].attn_norm, eps)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let qkv = layer.qkv.forward_whole(&x)?;
            let q = self.rope_write(layer, &qkv, &rows, (&table, caches, i))?;
            let y = self.attention_fused(&q, &rows, (&table, &*caches, i))?;
            let o = layer.wo.forward(&y)?;
            (h, x) = add_rmsnorm(&h, Some(&o), &layer.ffn_norm, eps)?;
            let m = silu_mul(&layer.gate_up.forward_whole(&x)?)?;
            let d = layer.w_down.forward(&m)?;
            let next = self.layers.get(i + 1).map_or(&self.norm, |l| &l.attn_norm);
            (h, x) = add_rmsnorm(&h, Some(&d), next, eps)?;
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        Ok(x)
    }

    fn heads(&self) -> Heads {
        Heads {
            n_head: self.spec.n_head,
            n_kv: self.spec.n_kv_head,
            hd: self.spec.head_dim,
        }
    }

    /// The bias, rotary embedding and K/V write of layer `i` for every row: returns q rotated,
    /// (rows, n_head·hd) in f32.
    fn rope_write(
        &self,
        layer: &Layer,
        qkv: &Tensor,
        rows: &Rows,
        (table, caches, i): (&CacheTable, &mut [&mut KvCache], usize),
    ) -> Result<Tensor> {
        let (cos, sin) = self
            .rope_f32
            .as_ref()
            .ok_or_else(|| Error::Run("fused kernels without f32 rotary tables".into()))?;
        let bias = layer.qkv_bias.as_ref();
        match &self.device {
            Device::Cpu => {
                let _ = table;
                let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                // The rotary rows of the rows' positions only (not the whole table), row r's at r.
                let at: Vec<u32> = rows.meta.chunks_exact(ROW_WORDS).map(|m| m[2] - 1).collect();
                let at = Tensor::new(at.as_slice(), &self.device)?;
                let (cos, sin) = (host(&cos.index_select(&at, 0)?)?, host(&sin.index_select(&at, 0)?)?);
                let bias = bias.map(host).transpose()?;
                let positions: Vec<usize> = (0..rows.count()).collect();
                let (q, k, v) = reference::rope(&host(qkv)?, bias.as_deref(), (&cos, &sin), &positions, self.heads());
                write_rows(caches, i, (&k, &v), self.heads())?;
                Ok(Tensor::from_vec(
                    q,
                    (rows.count(), self.spec.n_head * self.spec.head_dim),
                    &self.device,
                )?)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                let _ = caches;
                let (rows, words) = (rows.on_device()?.0, table.on_device(i)?);
                super::launch::rope_write(qkv, bias, (cos, sin), (rows, &words), self.heads(), self.kv_dtype)
            }
            other => Err(unsupported(other)),
        }
    }

    /// Attention of every row over its cache's positions in layer `i`: (rows, n_head·hd) in the
    /// activations' dtype.
    fn attention_fused(
        &self,
        q: &Tensor,
        rows: &Rows,
        (table, caches, i): (&CacheTable, &[&mut KvCache], usize),
    ) -> Result<Tensor> {
        let scale = 1.0 / (self.spec.head_dim as f32).sqrt();
        let s = self.heads();
        match &self.device {
            Device::Cpu => {
                // The table with host addresses of the caches' storage, which the guards keep
                // readable for the call (taken after `rope_write`'s writes).
                let guards = caches
                    .iter()
                    .flat_map(|c| c.shared.get(i).into_iter().chain(c.layers.get(i)))
                    .flat_map(|(k, v)| [k.storage_and_layout(), v.storage_and_layout()])
                    .collect::<Vec<_>>();
                let words = table.words(caches, i, host_address)?;
                let qv = q.flatten_all()?.to_vec1::<f32>()?;
                // SAFETY: every address is that of a live cache tensor of `caches` (held by
                // `guards`), laid out as `CacheTable::new` read from their layouts.
                let out = unsafe {
                    match self.kv_dtype {
                        DType::F32 => reference::attention::<f32, f32>(&qv, &rows.meta, &words, s, scale),
                        DType::F16 => reference::attention::<half::f16, f32>(&qv, &rows.meta, &words, s, scale),
                        other => return Err(Error::Run(format!("fused kernels on the CPU: no {other:?} cache"))),
                    }
                };
                drop(guards);
                Ok(Tensor::from_vec(out, (rows.count(), s.n_head * s.hd), &self.device)?)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                let ((rows, groups), words) = (rows.on_device()?, table.on_device(i)?);
                super::launch::attention(q, (rows, groups, &words), s, scale, (self.kv_dtype, self.dtype))
            }
            other => Err(unsupported(other)),
        }
    }
}

/// The rows table of a step: for each row of each cache, in order, its cache, its row in that
/// cache, its positions after this step and an unused word ([`ROW_WORDS`]); the attention
/// kernel's groups (4 words a group: its cache, its first row in the cache, its rows, its first
/// row in the step; at most `reference::group_rows` rows of one cache); on a GPU, both on the
/// device for the kernels.
struct Rows {
    meta: Vec<u32>,
    #[cfg(feature = "cuda")]
    device: Option<(Tensor, Tensor)>,
}

impl Rows {
    fn new(caches: &[&mut KvCache], group: usize, device: &Device) -> Result<Rows> {
        let meta: Vec<u32> = caches
            .iter()
            .enumerate()
            .flat_map(|(c, cache)| (0..cache.batch()).flat_map(move |b| [c as u32, b as u32, cache.len as u32 + 1, 0]))
            .collect();
        #[cfg(feature = "cuda")]
        let device = match device {
            Device::Cuda(_) => {
                let batches: Vec<usize> = caches.iter().map(|c| c.batch()).collect();
                let groups = groups(&batches, group);
                let n = groups.len();
                Some((
                    Tensor::from_vec(meta.clone(), meta.len(), device)?,
                    Tensor::from_vec(groups, n, device)?,
                ))
            }
            _ => None,
        };
        #[cfg(not(feature = "cuda"))]
        let _ = (device, group);
        Ok(Rows {
            meta,
            #[cfg(feature = "cuda")]
            device,
        })
    }

    fn count(&self) -> usize {
        self.meta.len() / ROW_WORDS
    }

    /// The rows table and the groups on the device.
    #[cfg(feature = "cuda")]
    fn on_device(&self) -> Result<(&Tensor, &Tensor)> {
        self.device
            .as_ref()
            .map(|(m, g)| (m, g))
            .ok_or_else(|| Error::Run("the rows table is not on the device".into()))
    }
}

/// The attention kernel's groups for caches of `batches` rows (in the step's order): each
/// cache's rows cut into runs of at most `group`, 4 words a run (its cache, its first row in the
/// cache, its rows, its first row in the step).
#[cfg_attr(not(any(test, feature = "cuda")), allow(dead_code))]
pub(super) fn groups(batches: &[usize], group: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut first = 0;
    for (c, &batch) in batches.iter().enumerate() {
        for b0 in (0..batch).step_by(group.max(1)) {
            let rows = group.max(1).min(batch - b0);
            out.extend([c as u32, b0 as u32, rows as u32, (first + b0) as u32]);
        }
        first += batch;
    }
    out
}

/// The step's attention tables, one a layer ([`CACHE_WORDS`] a cache: see kernels.cu): the
/// prompt's length and the K/V tensors' allocated positions (their stride) of every cache,
/// checked; on a GPU, every layer's table with the tensors' device addresses, uploaded in one
/// copy before the step's first kernel (a copy between kernels would wait for them).
struct CacheTable {
    /// Per layer, per cache: `start`, the shared tensors' positions stride (0 without), the own
    /// ones'.
    strides: Vec<Vec<[u64; 3]>>,
    #[cfg(feature = "cuda")]
    device: Option<Tensor>,
}

impl CacheTable {
    /// Checks that every K/V tensor is laid out (batch, KV head, position, head_dim) with
    /// contiguous rows, as the kernels assume.
    fn new(caches: &[&mut KvCache], hd: usize, device: &Device) -> Result<CacheTable> {
        let positions = |t: &Tensor| -> Result<u64> {
            let st = t.stride();
            if st.len() != 4 || st[3] != 1 || st[2] != hd || !st[1].is_multiple_of(hd) {
                return Err(Error::Run(format!(
                    "a KV cache tensor with strides {st:?}: the fused kernels need (…, positions·{hd}, {hd}, 1)"
                )));
            }
            Ok((st[1] / hd) as u64)
        };
        let layers = caches.first().map_or(0, |c| c.layers.len());
        let strides = (0..layers)
            .map(|i| {
                caches
                    .iter()
                    .map(|c| {
                        let shared = c.shared.get(i).map(|(k, _)| positions(k)).transpose()?.unwrap_or(0);
                        Ok([c.start as u64, shared, positions(&c.layers[i].0)?])
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        #[cfg(feature = "cuda")]
        let table = CacheTable { strides, device: None };
        #[cfg(feature = "cuda")]
        let table = match device {
            Device::Cuda(_) => {
                let mut words = Vec::new();
                for i in 0..layers {
                    words.extend(
                        table
                            .words(caches, i, |t| Ok(super::launch::address(t)?))?
                            .into_iter()
                            .map(|w| w as i64),
                    );
                }
                let n = words.len();
                CacheTable {
                    device: Some(Tensor::from_vec(words, n, device)?),
                    ..table
                }
            }
            _ => table,
        };
        #[cfg(not(feature = "cuda"))]
        let (table, _) = (CacheTable { strides }, device);
        Ok(table)
    }

    /// The table's words with the K/V tensors' addresses as `address` gives them.
    fn words(&self, caches: &[&mut KvCache], i: usize, address: impl Fn(&Tensor) -> Result<u64>) -> Result<Vec<u64>> {
        let mut words = Vec::with_capacity(caches.len() * CACHE_WORDS);
        for (cache, [start, shared, own]) in caches.iter().zip(&self.strides[i]) {
            let (sk, sv) = match cache.shared.get(i) {
                Some((k, v)) => (address(k)?, address(v)?),
                None => (0, 0),
            };
            let (k, v) = &cache.layers[i];
            words.extend([sk, sv, address(k)?, address(v)?, *start, *shared, *own, 0]);
        }
        Ok(words)
    }

    /// Layer `i`'s table on the device (a view of the step's upload).
    #[cfg(feature = "cuda")]
    fn on_device(&self, i: usize) -> Result<Tensor> {
        let all = self
            .device
            .as_ref()
            .ok_or_else(|| Error::Run("the cache table is not on the device".into()))?;
        let n = self.strides[i].len() * CACHE_WORDS;
        Ok(all.narrow(0, i * n, n)?)
    }
}

fn unsupported(device: &Device) -> Error {
    Error::Run(format!(
        "model.gpu_kernels = \"fused\" runs on a CUDA device (or the CPU in tests), not {device:?}"
    ))
}

/// Host address of a CPU tensor's first element.
fn host_address(t: &Tensor) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let off = layout.start_offset();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(v[off..].as_ptr() as u64),
        Storage::Cpu(CpuStorage::F16(v)) => Ok(v[off..].as_ptr() as u64),
        _ => Err(Error::Run(format!("fused kernels on the CPU: a {:?} cache", t.dtype()))),
    }
}

/// Writes each row's new K and V ((rows, n_kv·hd) f32) into its cache at the next position: on
/// the CPU; a GPU's `rope_write` kernel writes them itself.
fn write_rows(caches: &mut [&mut KvCache], i: usize, (k, v): (&[f32], &[f32]), s: Heads) -> Result<()> {
    let width = s.n_kv * s.hd;
    let mut row = 0;
    for cache in caches.iter_mut() {
        let n = cache.batch();
        let part = |x: &[f32]| {
            Tensor::from_vec(
                x[row * width..(row + n) * width].to_vec(),
                (n, s.n_kv, 1, s.hd),
                &Device::Cpu,
            )
        };
        cache.write(i, &part(k)?, &part(v)?)?;
        row += n;
    }
    Ok(())
}

/// Residual add and RMSNorm of every row: `(h + a, RMSNorm(h + a) · w)`, or the norm of `h`
/// alone when `a` is `None`.
pub(in crate::engine) fn add_rmsnorm(h: &Tensor, a: Option<&Tensor>, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let out = match h.device() {
        Device::Cpu if h.dtype() == DType::F16 => host_add_rmsnorm::<half::f16>(h, a, w, eps)?,
        Device::Cpu => host_add_rmsnorm::<f32>(h, a, w, eps)?,
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => super::launch::add_rmsnorm(h, a, w, eps)?,
        other => return Err(unsupported(other)),
    };
    Ok((out.get(0)?, out.get(1)?))
}

fn host_add_rmsnorm<T: Elem + WithDType>(h: &Tensor, a: Option<&Tensor>, w: &Tensor, eps: f32) -> Result<Tensor> {
    let (rows, d) = h.dims2()?;
    let host = |t: &Tensor| t.flatten_all()?.to_vec1::<T>();
    let a = a.map(host).transpose()?;
    let out = reference::add_rmsnorm(&host(h)?, a.as_deref(), &host(w)?, d, eps);
    Ok(Tensor::from_vec(out, (2, rows, d), h.device())?)
}

/// `sample_rows`: each row of `logits` (rows, vocab) drawn with its uniform draw (or greedy,
/// see [`reference::sample_row`]), and whether the row's logits were finite.
pub(in crate::engine) fn sample(
    logits: &Tensor,
    draws: &[f64],
    inv_t: f32,
    greedy: bool,
) -> Result<(Vec<u32>, Vec<bool>)> {
    match logits.device() {
        Device::Cpu => host_sample(logits, draws, inv_t, greedy),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => {
            let u = Tensor::from_vec(draws.to_vec(), draws.len(), logits.device())?;
            super::launch::sample_rows(logits, &u, inv_t, greedy)
        }
        other => Err(unsupported(other)),
    }
}

fn host_sample(logits: &Tensor, draws: &[f64], inv_t: f32, greedy: bool) -> Result<(Vec<u32>, Vec<bool>)> {
    let (_, vocab) = logits.dims2()?;
    let rows: Vec<Option<u32>> = match logits.dtype() {
        DType::F16 => {
            let v = logits.flatten_all()?.to_vec1::<half::f16>()?;
            v.chunks_exact(vocab)
                .zip(draws)
                .map(|(l, &u)| reference::sample_row(l, u, inv_t, greedy))
                .collect()
        }
        _ => {
            let v = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            v.chunks_exact(vocab)
                .zip(draws)
                .map(|(l, &u)| reference::sample_row(l, u, inv_t, greedy))
                .collect()
        }
    };
    Ok((
        rows.iter().map(|t| t.unwrap_or(0)).collect(),
        rows.iter().map(Option::is_some).collect(),
    ))
}

/// SiLU(gate) · up of the stacked (rows, 2·ff) gate/up output.
pub(in crate::engine) fn silu_mul(gu: &Tensor) -> Result<Tensor> {
    match gu.device() {
        Device::Cpu if gu.dtype() == DType::F16 => host_silu_mul::<half::f16>(gu),
        Device::Cpu => host_silu_mul::<f32>(gu),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => super::launch::silu_mul(gu),
        other => Err(unsupported(other)),
    }
}

fn host_silu_mul<T: Elem + WithDType>(gu: &Tensor) -> Result<Tensor> {
    let (rows, two_ff) = gu.dims2()?;
    let out = reference::silu_mul(&gu.flatten_all()?.to_vec1::<T>()?, two_ff / 2);
    Ok(Tensor::from_vec(out, (rows, two_ff / 2), gu.device())?)
}
