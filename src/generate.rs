//! Chunked generation for one question: prefill the prompt once, then decode the samples in
//! chunks of `chunk_size` sequences. Every sequence of a chunk reads the prompt's KV cache in
//! place, holds only its own generated positions and draws from its own RNG stream; finished
//! sequences leave the batch at once.
use std::time::Instant;

use crate::engine::device::{is_out_of_memory, GpuMemory};
use crate::engine::{KvCache, Model};
use crate::error::Error;
use crate::error::Result;
use crate::memory::{Peaks, Window};
use crate::sampling::{Rng, Sampler};

#[derive(Debug, Clone, Copy)]
pub struct GenerationParams {
    pub oversample: usize,
    pub chunk_size: usize,
    pub max_new_tokens: usize,
    pub sampler: Sampler,
    pub seed: u64,
}

/// Why a sample stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// It produced an end-of-turn / end-of-text token.
    Eos,
    /// It reached `max_new_tokens`.
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub sample: usize,
    /// Generated tokens without the final stop token.
    pub tokens: Vec<u32>,
    /// Tokens generated, the stop token included.
    pub new_tokens: usize,
    pub finish: Finish,
}

/// Measurements of one chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkReport {
    pub chunk: usize,
    /// Sequences in the chunk.
    pub size: usize,
    pub new_tokens: usize,
    /// Prompt prefill time; non-zero on a question's first chunk only.
    pub prefill_ms: f64,
    /// Decode time of the chunk (cache copy included, prefill excluded).
    pub ms: f64,
    pub peaks: Peaks,
    /// Peak GPU memory in use during the chunk (see [`GpuMemory`]); `None` on the CPU.
    pub gpu_peak_bytes: Option<u64>,
}

/// The KV cache of tokens that every prompt of a run starts with, computed once.
pub struct SharedPrefix {
    pub tokens: Vec<u32>,
    pub cache: KvCache,
}

impl SharedPrefix {
    pub fn new(model: &Model, tokens: Vec<u32>) -> Result<Self> {
        let (cache, _) = model.prefill(&tokens, tokens.len())?;
        Ok(SharedPrefix { tokens, cache })
    }
}

/// Generates the samples of questions, one question at a time, in chunks.
pub struct Generator<'a> {
    pub model: &'a Model,
    /// The cache of the text every prompt starts with, if any.
    pub shared: Option<&'a SharedPrefix>,
    /// Tokens that end a sample.
    pub stop_ids: &'a [u32],
    pub params: GenerationParams,
    /// GPU memory peaks, on a GPU.
    pub gpu: Option<&'a GpuMemory>,
    /// Fault injection for tests of the out-of-memory path on machines without a GPU: chunks
    /// of more than `.0` sequences fail as out of memory, from question `.1` on.
    pub inject_oom: Option<(usize, u64)>,
}

/// A prompt's cache and the logits that follow it.
type Prefilled = (KvCache, Vec<f32>);

impl Generator<'_> {
    /// Generates `params.oversample` completions of `prompt` for question `question_index`,
    /// `params.chunk_size` sequences at a time. `on_tokens` is called after every decoding step
    /// with the number of tokens it produced.
    pub fn question(
        &self,
        question_index: u64,
        prompt: &[u32],
        on_tokens: &mut dyn FnMut(usize),
    ) -> Result<(Vec<Completion>, Vec<ChunkReport>)> {
        let n = self.params.oversample;
        let chunk_size = self.params.chunk_size.clamp(1, n.max(1));
        let mut completions = Vec::with_capacity(n);
        let mut reports = Vec::new();
        let mut prefix: Option<Prefilled> = None;
        for (chunk, first) in (0..n).step_by(chunk_size).enumerate() {
            let window = Window::open();
            if let Some(gpu) = self.gpu {
                gpu.reset_peak();
            }
            let samples = first..(first + chunk_size).min(n);
            let size = samples.len();
            let oom = |e: Error| match e {
                Error::Candle(c) if is_out_of_memory(&c) => Error::OutOfMemory {
                    chunk,
                    size,
                    message: crate::error::candle_message(&c),
                },
                other => other,
            };
            if let Some((max, from)) = self.inject_oom {
                if size > max && question_index >= from {
                    return Err(Error::OutOfMemory {
                        chunk,
                        size,
                        message: format!("injected by RFTX_TEST_OOM: chunks over {max} sequences fail"),
                    });
                }
            }
            let mut prefill_ms = 0.0;
            if prefix.is_none() {
                let t = Instant::now();
                prefix = Some(self.prefill(prompt).map_err(oom)?);
                prefill_ms = t.elapsed().as_secs_f64() * 1e3;
            }
            let started = Instant::now();
            let prefilled = prefix.as_ref().expect("prefilled above");
            let done = self.chunk(prefilled, question_index, samples, on_tokens).map_err(oom)?;
            let new_tokens = done.iter().map(|c| c.new_tokens).sum();
            completions.extend(done);
            reports.push(ChunkReport {
                chunk,
                size,
                new_tokens,
                prefill_ms,
                ms: started.elapsed().as_secs_f64() * 1e3,
                peaks: window.close(),
                gpu_peak_bytes: self.gpu.map(GpuMemory::peak),
            });
        }
        Ok((completions, reports))
    }

    /// The prompt's cache, sized for the prompt only (the samples' positions go to their own
    /// caches); a prompt that starts with the shared prefix is prefilled from its cache.
    fn prefill(&self, prompt: &[u32]) -> Result<Prefilled> {
        let capacity = prompt.len();
        match self.shared {
            Some(sh) if prompt.len() > sh.tokens.len() && prompt.starts_with(&sh.tokens) => {
                self.model
                    .prefill_after(&sh.cache, &prompt[sh.tokens.len()..], capacity)
            }
            _ => self.model.prefill(prompt, capacity),
        }
    }

    /// Decodes `samples` together in lockstep; a sample leaves the batch when it finishes.
    fn chunk(
        &self,
        (prefix_cache, prefix_logits): &Prefilled,
        question_index: u64,
        samples: std::ops::Range<usize>,
        on_tokens: &mut dyn FnMut(usize),
    ) -> Result<Vec<Completion>> {
        let p = &self.params;
        let mut scratch = Vec::new();
        let mut rngs: Vec<Rng> = samples
            .clone()
            .map(|s| Rng::for_sample(p.seed, question_index, s as u64))
            .collect();
        let mut outs: Vec<Vec<u32>> = vec![Vec::with_capacity(p.max_new_tokens); samples.len()];
        // The first token of every sample comes from the prompt's logits.
        for (out, rng) in outs.iter_mut().zip(rngs.iter_mut()) {
            out.push(p.sampler.sample(prefix_logits, rng, &mut scratch));
        }
        on_tokens(samples.len());
        let mut cache = self.model.fork(prefix_cache, samples.len(), p.max_new_tokens)?;
        // `active[i]` = index into `samples` of cache row i.
        let mut active: Vec<usize> = (0..samples.len()).collect();
        let mut finished: Vec<Option<Finish>> = vec![None; samples.len()];
        let vocab = self.model.spec.vocab_size;
        loop {
            crate::interrupt::check()?;
            let keep: Vec<usize> = (0..active.len())
                .filter(|&row| {
                    let i = active[row];
                    finished[i] = self.finish(&outs[i]);
                    finished[i].is_none()
                })
                .collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() != active.len() {
                cache.retain(&keep)?;
                active = keep.iter().map(|&r| active[r]).collect();
            }
            let last: Vec<u32> = active
                .iter()
                .map(|&i| *outs[i].last().expect("one token at least"))
                .collect();
            let logits = self.model.step(&mut cache, &last)?;
            for (row, &i) in active.iter().enumerate() {
                let t = p
                    .sampler
                    .sample(&logits[row * vocab..(row + 1) * vocab], &mut rngs[i], &mut scratch);
                outs[i].push(t);
            }
            on_tokens(active.len());
        }
        Ok(samples
            .zip(outs)
            .zip(finished)
            .map(|((sample, mut tokens), finish)| {
                let finish = finish.expect("every sample finishes");
                let new_tokens = tokens.len();
                if finish == Finish::Eos {
                    tokens.pop();
                }
                Completion {
                    sample,
                    tokens,
                    new_tokens,
                    finish,
                }
            })
            .collect())
    }

    /// Whether a sample that produced `out` is finished, and why.
    fn finish(&self, out: &[u32]) -> Option<Finish> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{device, WeightFormat};
    use crate::source::ModelSource;

    fn params(chunk_size: usize) -> GenerationParams {
        GenerationParams {
            oversample: 7,
            chunk_size,
            max_new_tokens: 10,
            sampler: Sampler {
                temperature: 1.0,
                top_p: 0.95,
            },
            seed: 42,
        }
    }

    #[test]
    fn samples_do_not_depend_on_chunk_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        crate::testing::write_tiny_model(&p, 5).unwrap();
        let mut source = ModelSource::open(&p).unwrap();
        let model = Model::load(&mut source, WeightFormat::Native, &device::host()).unwrap();
        let tokenizer = source.tokenizer().unwrap();
        let prompt = tokenizer
            .encode("<|im_start|>user\nhello 12<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let generator = |cs| Generator {
            model: &model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: params(cs),
            gpu: None,
            inject_oom: None,
        };
        let run = |cs| generator(cs).question(3, &prompt, &mut |_| {}).unwrap();
        let (reference, reports) = run(1);
        assert_eq!(reports.len(), 7);
        assert_eq!(reference.len(), 7);
        for cs in [2, 3, 7, 50] {
            let (c, r) = run(cs);
            assert_eq!(c, reference, "chunk_size {cs}");
            assert_eq!(r.len(), 7usize.div_ceil(cs.min(7)));
            assert_eq!(r.iter().map(|x| x.size).sum::<usize>(), 7);
            assert!(r[0].prefill_ms > 0.0 && r.iter().skip(1).all(|x| x.prefill_ms == 0.0));
        }
        // Samples differ from each other, and a different question index gives other samples.
        let distinct: std::collections::HashSet<&Vec<u32>> = reference.iter().map(|c| &c.tokens).collect();
        assert!(distinct.len() > 1);
        let (other, _) = generator(3).question(4, &prompt, &mut |_| {}).unwrap();
        assert_ne!(other, reference);
        for c in &reference {
            assert!(c.new_tokens <= 10);
            match c.finish {
                Finish::Eos => assert_eq!(c.tokens.len() + 1, c.new_tokens),
                Finish::Length => assert_eq!((c.tokens.len(), c.new_tokens), (10, 10)),
            }
        }
    }
}
