//! K and V of every layer, written in place: a prompt's cache is allocated for its positions,
//! the sequences forked from it grow theirs by pages as they decode.
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::device::allocation;
use crate::base::error::{Error, Result, Site};
use crate::source::ModelSpec;

/// Element type of the KV cache (`model.kv_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheFormat {
    /// The activations' dtype: f32 on the CPU, the weights' dtype on a GPU.
    #[default]
    Auto,
    F32,
    /// Half the bytes of f32, as llama.cpp keeps its cache by default: K and V are rounded to
    /// f16 when written and read back as f32. The samples differ from an f32 cache's, and are
    /// still the same at every chunk size and batch.
    F16,
}

impl KvCacheFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheFormat::Auto => "auto",
            KvCacheFormat::F32 => "f32",
            KvCacheFormat::F16 => "f16",
        }
    }

    pub fn is_auto(&self) -> bool {
        *self == KvCacheFormat::Auto
    }

    /// The cache's dtype next to activations of dtype `activations`.
    pub fn dtype(self, activations: DType) -> DType {
        match self {
            KvCacheFormat::Auto => activations,
            KvCacheFormat::F32 => DType::F32,
            KvCacheFormat::F16 => DType::F16,
        }
    }
}

/// Positions a forked cache is allocated at a time: a sample's first page, and the step its
/// cache grows by (at least).
pub const PAGE: usize = 16;

/// K and V of every layer for a batch of sequences at one common position.
///
/// A cache made by [`KvCache::fork`] holds only the positions generated after the fork, one
/// private copy per sequence; the positions before it (the prompt) are views of the forked
/// batch-1 cache, shared by every sequence and never copied. Its own positions are allocated a
/// page at a time ([`KvCache::reserve`]): most samples stop well before `max_new_tokens`, and
/// the rows that did not are retired, so a batch holds what its rows have written rather than
/// what they might. Growing copies the positions written, never changes them.
pub struct KvCache {
    /// Per layer (K, V), each (batch, n_kv_head, allocated, head_dim): positions
    /// `start..start + allocated`, `allocated ≤ capacity - start`.
    pub(super) layers: Vec<(Tensor, Tensor)>,
    /// Per layer (K, V) of positions `0..start`, (1, n_kv_head, start, head_dim); empty unless
    /// forked.
    pub(super) shared: Vec<(Tensor, Tensor)>,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) capacity: usize,
}

impl KvCache {
    /// A prompt's cache (batch 1, or a batch of prompts), allocated at [`Site::PromptCache`].
    pub(super) fn new(spec: &ModelSpec, batch: usize, capacity: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(KvCache {
            layers: allocation(Site::PromptCache, batch, || {
                Self::zeros(spec, batch, capacity, dtype, device)
            })?,
            shared: Vec::new(),
            start: 0,
            len: 0,
            capacity,
        })
    }

    fn zeros(
        spec: &ModelSpec,
        batch: usize,
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Vec<(Tensor, Tensor)>> {
        let shape = (batch, spec.n_kv_head, positions, spec.head_dim);
        (0..spec.n_layer)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect()
    }

    /// A cache for `n` sequences that continue this batch-1 cache, with room for `max_new`
    /// more positions each. The filled positions are shared (views, no copy).
    pub(super) fn fork(&self, spec: &ModelSpec, n: usize, max_new: usize) -> Result<KvCache> {
        if self.batch() != 1 || self.start != 0 {
            return Err(Error::Run("only a batch-1 prompt cache can be forked".into()));
        }
        let shared = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)))
            .collect::<Result<_>>()?;
        let (dtype, device) = (self.layers[0].0.dtype(), self.layers[0].0.device());
        let first = max_new.min(PAGE);
        Ok(KvCache {
            layers: allocation(Site::ChunkCache, n, || Self::zeros(spec, n, first, dtype, device))?,
            shared,
            start: self.len,
            len: self.len,
            capacity: self.len + max_new,
        })
    }

    /// Makes room for one more position in every row: when the allocated positions are all
    /// written, each layer is reallocated a page larger (a quarter larger past four pages, so
    /// that long generations copy little) and what was written is copied over.
    pub(super) fn reserve(&mut self) -> Result<()> {
        let allocated = self.layers.first().map_or(0, |(k, _)| k.dim(2).unwrap_or(0));
        let written = self.len - self.start;
        if written < allocated || self.len >= self.capacity {
            return Ok(());
        }
        let grown = (allocated + PAGE.max(allocated / 4)).min(self.capacity - self.start);
        let rows = self.batch();
        let layers = &mut self.layers;
        allocation(Site::ChunkCache, rows, || {
            for (k, v) in layers.iter_mut() {
                for t in [k, v] {
                    let (b, h, _, d) = t.dims4()?;
                    let bigger = Tensor::zeros((b, h, grown, d), t.dtype(), t.device())?;
                    bigger.slice_set(&t.narrow(2, 0, written)?, 2, 0)?;
                    *t = bigger;
                }
            }
            Ok(())
        })
    }

    /// Writes K and V of layer `i` (batch, n_kv_head, positions, head_dim) at the next
    /// positions, in the cache's element type.
    pub(super) fn write(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let at = self.len - self.start;
        let (ck, cv) = &mut self.layers[i];
        ck.slice_set(&k.to_dtype(ck.dtype())?, 2, at)?;
        cv.slice_set(&v.to_dtype(cv.dtype())?, 2, at)?;
        Ok(())
    }

    /// Keeps only the given rows, in that order: row `i` of the result is row `rows[i]` before.
    pub fn retain(&mut self, rows: &[usize]) -> Result<()> {
        let identity = rows.len() == self.batch() && rows.iter().enumerate().all(|(i, &r)| i == r);
        if identity {
            return Ok(());
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch()) {
            return Err(Error::Run(format!("row {bad} of a batch of {}", self.batch())));
        }
        let device = self.layers[0].0.device().clone();
        let layers = &mut self.layers;
        allocation(Site::Retire, rows.len(), || {
            let idx = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), &device)?;
            for (k, v) in layers.iter_mut() {
                *k = k.index_select(&idx, 0)?;
                *v = v.index_select(&idx, 0)?;
            }
            Ok(())
        })
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

#[cfg(test)]
mod tests {
    use super::super::tests::tiny;
    use super::*;
    use crate::engine::WeightFormat;

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

    /// A forked cache reads the prompt in place, grows its own positions by pages, and decodes
    /// what one preallocated batch-1 cache does, bit for bit, in f32 and in f16.
    #[test]
    fn forked_caches_share_the_prompt_and_decode_bit_identically() {
        for kv in [KvCacheFormat::Auto, KvCacheFormat::F16] {
            forked_caches_decode_bit_identically(kv);
        }
    }

    fn forked_caches_decode_bit_identically(kv: KvCacheFormat) {
        let (_d, m) = tiny(WeightFormat::Q8_0);
        let m = &m.with_kv_cache(kv);
        let prompt = [1u32, 40, 41, 42, 43];
        let new = 2 * PAGE + 6;
        // Reference: one batch-1 cache with room for everything, decoded in place.
        let (mut whole, _) = m.prefill(&prompt, prompt.len() + new).unwrap();
        let (exact, _) = m.prefill(&prompt, prompt.len()).unwrap();
        let mut forked = m.fork(&exact, 2, new).unwrap();
        assert_eq!((forked.len(), forked.capacity(), forked.batch()), (5, 5 + new, 2));
        assert_eq!(forked.layers[0].0.dtype(), kv.dtype(DType::F32));
        // The private part holds new positions only, a page at first; the prompt is a view.
        let private = |c: &KvCache| c.layers.iter().map(|(k, _)| k.dim(2).unwrap()).sum::<usize>();
        assert_eq!(private(&forked), PAGE * m.spec.n_layer);
        let vocab = m.spec.vocab_size;
        for i in 0..new {
            let t = 50 + (i % 7) as u32;
            let a = m.step(&mut whole, &[t]).unwrap();
            let b = m.step(&mut forked, &[t, 60]).unwrap();
            assert_eq!(
                a[..],
                b[..vocab],
                "{kv:?}, step {i}: shared-prompt decoding must be bit-identical"
            );
            let pages = (i + 1).div_ceil(PAGE).max(1);
            assert_eq!(private(&forked), (pages * PAGE).min(new) * m.spec.n_layer, "step {i}");
        }
        assert!(m.step(&mut forked, &[1, 2]).is_err(), "full");
        assert!(m.fork(&forked, 1, 1).is_err(), "only a batch-1 prompt cache forks");
        assert!(
            m.fork(&exact, 1, m.cos.dim(0).unwrap()).is_err(),
            "past the rotary table"
        );
    }
}
