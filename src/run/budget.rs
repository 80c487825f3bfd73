//! `memory.budget`: every question's chunk checked against the predicted peak before it runs.
use crate::base::error::{Error, Result};
use crate::base::util::human_bytes;
use crate::core::config::{Config, OnExceed};
use crate::core::plan::{self, Arch, Workload};

use super::Prepared;

pub(crate) struct Budget {
    pub(crate) bytes: u64,
    /// Predict for the GPU (2-byte activations, the CUDA runtime) rather than the CPU.
    gpu: bool,
    on_exceed: OnExceed,
    arch: Arch,
    workload: Workload,
}

impl Budget {
    /// `None` without a budget. A budget too small for one sequence of the longest prompt is an
    /// input error, raised before anything runs.
    pub(crate) fn new(
        p: &Prepared,
        arch: &Arch,
        prompts: &[Vec<u32>],
        shared_tokens: usize,
        batching: &crate::core::store::Batching,
    ) -> Result<Option<Budget>> {
        let c = &p.resolved.config;
        let Some(spec) = &c.memory.budget else { return Ok(None) };
        let device = plan::device(spec).map_err(|e| Error::input(&p.resolved.file, format!("memory.budget: {e}")))?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let b = Budget {
            bytes: device.capacity_bytes,
            gpu: p.device.is_gpu(),
            on_exceed: c.memory.on_exceed,
            arch: arch.clone(),
            workload: Workload {
                layout: plan::Layout::Rftx,
                prompts_per_batch: batching.prompts_per_batch,
                ..workload(c, longest, shared_tokens)
            },
        };
        let one = b.predict(b.workload.prompt_tokens, 1);
        if one > b.bytes {
            return Err(Error::input(
                &p.resolved.file,
                format!(
                    "memory.budget = {spec:?} ({}) is below the predicted peak of even one sequence ({}); raise memory.budget or lower generation.max_new_tokens",
                    human_bytes(b.bytes),
                    human_bytes(one)
                ),
            ));
        }
        Ok(Some(b))
    }

    /// The predicted peak of a batch in chunks of `chunk`; with several questions per batch,
    /// each as long as the longest prompt (any of them may be in the batch).
    fn predict(&self, prompt_tokens: usize, chunk: usize) -> u64 {
        let w = Workload {
            prompt_tokens: if self.workload.prompts_per_batch > 1 {
                self.workload.prompt_tokens
            } else {
                prompt_tokens
            },
            chunk_size: chunk,
            ..self.workload.clone()
        };
        plan::predict(&self.arch, &w, self.gpu).total
    }

    /// The chunk size to use for a question: `wanted` if it fits, else (shrink) the largest that
    /// does, else (fail) an out-of-memory error.
    pub(crate) fn chunk_for(&self, question: usize, prompt_tokens: usize, wanted: usize) -> Result<usize> {
        let need = self.predict(prompt_tokens, wanted);
        if need <= self.bytes {
            return Ok(wanted);
        }
        let fits = (1..wanted)
            .rev()
            .find(|&c| self.predict(prompt_tokens, c) <= self.bytes)
            .unwrap_or(1);
        match self.on_exceed {
            OnExceed::Shrink => Ok(fits),
            OnExceed::Fail => Err(Error::Run(format!(
                "out of memory budget at question {question}: a chunk of {wanted} sequences ({prompt_tokens} prompt tokens) needs a predicted {}, memory.budget is {}; set generation.chunk_size ≤ {fits}, lower generation.max_new_tokens, raise memory.budget, or set memory.on_exceed = \"shrink\"; the questions done so far are kept and a re-run resumes",
                human_bytes(need),
                human_bytes(self.bytes)
            ))),
        }
    }
}

/// The workload of a config (layout from `[plan]`) whose longest prompt has `prompt_tokens` tokens.
pub fn workload(c: &Config, prompt_tokens: usize, shared_prefix_tokens: usize) -> Workload {
    Workload {
        layout: c.plan.layout,
        prompt_tokens,
        shared_prefix_tokens,
        max_new_tokens: c.generation.max_new_tokens,
        oversample: c.generation.oversample,
        // `auto` as its largest: what `run::batching` starts from.
        chunk_size: c.generation.chunk_size.fixed().unwrap_or(c.generation.oversample),
        prompts_per_batch: match c.plan.layout {
            crate::core::plan::Layout::Hf => c.plan.prompts_per_batch,
            crate::core::plan::Layout::Rftx => c.generation.prompts_per_batch.fixed().unwrap_or(1),
        },
        weights: c.model.weights,
        kv_cache: c.model.kv_cache,
    }
}
