//! K and V of every layer, preallocated and written in place.
use candle_core::{DType, Device, Tensor};

use super::device::allocation;
use crate::base::error::{Error, Result, Site};
use crate::source::ModelSpec;

/// K and V of every layer for a batch of sequences at one common position.
///
/// A cache made by [`KvCache::fork`] holds only the positions generated after the fork, one
/// private copy per sequence; the positions before it (the prompt) are views of the forked
/// batch-1 cache, shared by every sequence and never copied.
pub struct KvCache {
    /// Per layer (K, V), each (batch, n_kv_head, capacity - start, head_dim): positions
    /// `start..capacity`.
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
        Ok(KvCache {
            layers: allocation(Site::ChunkCache, n, || Self::zeros(spec, n, max_new, dtype, device))?,
            shared,
            start: self.len,
            len: self.len,
            capacity: self.len + max_new,
        })
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
