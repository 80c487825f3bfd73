//! One decode step of the batch generator and what it needs: retiring finished rows, drawing the
//! next tokens (on the host or the device), prefilling a prompt, closing a drained chunk and
//! sharing a step's time and peaks among its chunks.
use super::*;

impl Generator<'_> {
    /// Marks the chunk's finished samples and drops their rows from its cache.
    pub(super) fn retire(&self, chunk: &mut Chunk) -> Result<()> {
        let keep: Vec<usize> = (0..chunk.active.len())
            .filter(|&row| {
                let i = chunk.active[row];
                chunk.finished[i] = self.finish(&chunk.outs[i]);
                chunk.finished[i].is_none()
            })
            .collect();
        if keep.len() != chunk.active.len() {
            if !keep.is_empty() {
                chunk.cache.retain(&keep)?;
            }
            chunk.active = keep.iter().map(|&r| chunk.active[r]).collect();
        }
        Ok(())
    }

    /// One decoding step of every active row of every slot, and the next token of each: drawn
    /// on the host from the step's logits or, on the fused GPU kernels, on the device. Each row
    /// draws from its own stream, whose advance is kept only when the step succeeds.
    pub(super) fn step(&self, slots: &mut [Slot]) -> Result<()> {
        let last: Vec<u32> = slots
            .iter()
            .filter_map(|s| s.chunk.as_ref())
            .flat_map(|c| c.active.iter().map(|&i| *c.outs[i].last().expect("one token at least")))
            .collect();
        let mut rngs: Vec<Rng> = slots
            .iter()
            .filter_map(|s| s.chunk.as_ref())
            .flat_map(|c| c.active.iter().map(|&i| c.rngs[i].clone()))
            .collect();
        let question = slots.iter().find(|s| s.chunk.is_some()).map_or(0, |s| s.job.index);
        let mut caches: Vec<&mut KvCache> = slots
            .iter_mut()
            .filter_map(|s| s.chunk.as_mut().map(|c| &mut c.cache))
            .collect();
        let sampler = &self.params.sampler;
        let tokens = if self.model.samples_on_device(sampler) && !self.params.logprobs {
            // One uniform draw a row goes to the device; one token a row comes back.
            let draws: Vec<f64> = rngs.iter_mut().map(Rng::next_f64).collect();
            let tokens = self.model.step_sample(&mut caches, &last, &draws, sampler)?;
            tokens.into_iter().map(|t| t.map(|t| (t, 0.0))).collect()
        } else {
            self.sample_on_host(&mut caches, &last, &mut rngs)?
        };
        if tokens.iter().any(Option::is_none) {
            return Err(not_finite(question));
        }
        let mut drawn = rngs.into_iter().zip(tokens);
        for c in slots.iter_mut().filter_map(|s| s.chunk.as_mut()) {
            for &i in &c.active {
                let (rng, t) = drawn.next().expect("a draw per active row");
                let (t, lp) = t.unwrap_or((0, 0.0));
                c.rngs[i] = rng;
                c.outs[i].push(t);
                if self.params.logprobs {
                    c.logprobs[i].push(lp);
                }
            }
        }
        Ok(())
    }

    /// The step's logits on the host, each row's token drawn from its stream in `rngs`, the rows
    /// spread over the thread pool (the same tokens in any split); `None` for a row whose logits
    /// are not finite, checked there too (a GPU's batch of hundreds of rows hands over tens of
    /// MB a step: one pass, in parallel, while they are in cache).
    pub(super) fn sample_on_host(
        &self,
        caches: &mut [&mut KvCache],
        last: &[u32],
        rngs: &mut [Rng],
    ) -> Result<Vec<Option<(u32, f32)>>> {
        let logits = self.model.step_many(caches, last)?;
        let vocab = self.model.spec.vocab_size;
        let sampler = &self.params.sampler;
        let mut draws: Vec<(&mut Rng, Option<(u32, f32)>)> = rngs.iter_mut().map(|r| (r, None)).collect();
        crate::engine::cpu::for_each_parallel(&mut draws, |row, (rng, t), scratch: &mut Vec<(f32, u32)>| {
            let row = &logits[row * vocab..(row + 1) * vocab];
            if row.iter().all(|x| x.is_finite()) {
                *t = Some(sampler.draw(row, rng, scratch));
            }
        });
        Ok(draws.into_iter().map(|(_, t)| t).collect())
    }

    /// The prompt's cache, sized for the prompt only (the samples' positions go to their own
    /// caches); a prompt that starts with the shared prefix is prefilled from its cache.
    pub(super) fn prefill(&self, question: u64, prompt: &[u32]) -> Result<Prefilled> {
        let capacity = prompt.len();
        let prefilled = match self.shared {
            Some(sh) if prompt.len() > sh.tokens.len() && prompt.starts_with(&sh.tokens) => {
                self.model
                    .prefill_after(&sh.cache, &prompt[sh.tokens.len()..], capacity)
            }
            _ => self.model.prefill(prompt, capacity),
        }?;
        if !prefilled.1.iter().all(|x| x.is_finite()) {
            return Err(not_finite(question));
        }
        Ok(prefilled)
    }

    /// Whether a sample that produced `out` is finished, and why.
    pub(super) fn finish(&self, out: &[u32]) -> Option<Finish> {
        let last = *out.last().expect("one token at least");
        if self.stop_ids.contains(&last) {
            Some(Finish::Eos)
        } else if out.len() >= self.params.max_new_tokens {
            Some(Finish::Length)
        } else {
            None
        }
    }
}

/// A drained chunk's completions (appended to `completions`) and its report.
pub(super) fn close(completions: &mut Vec<Completion>, chunk: Chunk, batch_rows: usize, logprobs: bool) -> ChunkReport {
    let mut new_tokens = 0;
    let mut lps = chunk.logprobs.into_iter();
    for ((sample, mut tokens), finish) in chunk.samples.clone().zip(chunk.outs).zip(chunk.finished) {
        let lp = lps.next().expect("log-probabilities per sample");
        let finish = finish.expect("every sample of a drained chunk finished");
        let n = tokens.len();
        if finish == Finish::Eos {
            tokens.pop();
        }
        new_tokens += n;
        completions.push(Completion {
            sample,
            tokens,
            new_tokens: n,
            finish,
            logprobs: logprobs.then_some(lp),
        });
    }
    ChunkReport {
        chunk: chunk.number,
        size: chunk.samples.len(),
        new_tokens,
        prefill_ms: chunk.prefill_ms,
        ms: chunk.ms,
        steps: chunk.steps,
        batch_rows,
        peaks: chunk.peaks,
        gpu_peak_bytes: chunk.gpu_peak,
    }
}

/// Logits that are not all finite would be sampled as arbitrary tokens: an error instead, which
/// says what to try.
fn not_finite(question: u64) -> Error {
    Error::Run(format!(
        "the model's logits at question {question} are not finite (NaN or infinity): with f16 weights an overflow is likely, so set model.weights = \"f32\" (or \"bf16\" on a GPU of compute capability 8.0 or more); with f32 weights, check that the model file's weights are finite. The questions done so far are kept"
    ))
}

/// Sequences of the chunks decoding in the batch, finished ones included.
pub(super) fn sequences(slots: &[Slot]) -> usize {
    slots
        .iter()
        .filter_map(|s| s.chunk.as_ref())
        .map(|c| c.samples.len())
        .sum()
}

/// Shares a step's measure out among the chunks decoded in it: its time and steps by active
/// rows, its peaks to every chunk in it.
pub(super) fn share(step: meter::Step, slots: &mut [Slot]) {
    let rows: usize = slots.iter().map(Slot::rows).sum();
    for c in slots.iter_mut().filter_map(|s| s.chunk.as_mut()) {
        let share = c.active.len() as f64 / rows.max(1) as f64;
        c.ms += step.ms * share;
        c.steps += share;
        c.peaks.heap_bytes = c.peaks.heap_bytes.max(step.peaks.heap_bytes);
        c.peaks.rss_bytes = c.peaks.rss_bytes.max(step.peaks.rss_bytes);
        if let Some(g) = step.gpu_peak {
            c.gpu_peak = Some(c.gpu_peak.unwrap_or(0).max(g));
        }
    }
}
