//! Chunked generation for one question: prefill the prompt once, then decode the samples in
//! chunks of `chunk_size` sequences, each with its own copy of the prompt's KV cache and its
//! own RNG stream. Finished sequences leave the batch at once.
use std::time::Instant;

use crate::error::Result;
use crate::memory::{Peaks, Window};
use crate::model::{KvCache, Model};
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

/// Generates `params.oversample` completions of `prompt` for question `question_index`.
/// A prompt that starts with `shared`'s tokens is prefilled from its cache. `on_tokens` is
/// called after every decoding step with the number of tokens it produced.
#[allow(clippy::too_many_arguments)]
pub fn generate_question(
    model: &Model,
    shared: Option<&SharedPrefix>,
    prompt: &[u32],
    stop_ids: &[u32],
    question_index: u64,
    params: &GenerationParams,
    on_tokens: &mut dyn FnMut(usize),
) -> Result<(Vec<Completion>, Vec<ChunkReport>)> {
    let n = params.oversample;
    let chunk_size = params.chunk_size.clamp(1, n.max(1));
    // The prompt's cache holds the prompt only: the samples' positions go to their own caches.
    let capacity = prompt.len();
    let mut completions = Vec::with_capacity(n);
    let mut reports = Vec::new();
    let mut prefix: Option<(KvCache, Vec<f32>)> = None;
    let mut scratch = Vec::new();

    for (chunk, first) in (0..n).step_by(chunk_size).enumerate() {
        let window = Window::open();
        let samples: Vec<usize> = (first..(first + chunk_size).min(n)).collect();
        let mut prefill_ms = 0.0;
        if prefix.is_none() {
            let t = Instant::now();
            prefix = Some(match shared {
                Some(sh) if prompt.len() > sh.tokens.len() && prompt.starts_with(&sh.tokens) => {
                    model.prefill_after(&sh.cache, &prompt[sh.tokens.len()..], capacity)?
                }
                _ => model.prefill(prompt, capacity)?,
            });
            prefill_ms = t.elapsed().as_secs_f64() * 1e3;
        }
        let (prefix_cache, prefix_logits) = prefix.as_ref().expect("prefilled above");
        let started = Instant::now();

        let mut rngs: Vec<Rng> = samples
            .iter()
            .map(|&s| Rng::for_sample(params.seed, question_index, s as u64))
            .collect();
        let mut outs: Vec<Vec<u32>> = vec![Vec::with_capacity(params.max_new_tokens); samples.len()];
        // The first token of every sample comes from the prompt's logits.
        for (out, rng) in outs.iter_mut().zip(rngs.iter_mut()) {
            out.push(params.sampler.sample(prefix_logits, rng, &mut scratch));
        }
        on_tokens(samples.len());
        let mut cache = model.fork(prefix_cache, samples.len(), params.max_new_tokens)?;
        // `active[i]` = index into `samples` of cache row i.
        let mut active: Vec<usize> = (0..samples.len()).collect();
        let mut finished: Vec<Option<Finish>> = vec![None; samples.len()];
        let vocab = model.spec.vocab_size;
        loop {
            let mut keep = Vec::with_capacity(active.len());
            for (row, &i) in active.iter().enumerate() {
                let last = *outs[i].last().expect("one token at least");
                if stop_ids.contains(&last) {
                    finished[i] = Some(Finish::Eos);
                } else if outs[i].len() >= params.max_new_tokens {
                    finished[i] = Some(Finish::Length);
                } else {
                    keep.push(row);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() != active.len() {
                cache.retain(&keep)?;
                active = keep.iter().map(|&r| active[r]).collect();
            }
            let last: Vec<u32> = active.iter().map(|&i| *outs[i].last().unwrap()).collect();
            let logits = model.step(&mut cache, &last)?;
            for (row, &i) in active.iter().enumerate() {
                let t = params
                    .sampler
                    .sample(&logits[row * vocab..(row + 1) * vocab], &mut rngs[i], &mut scratch);
                outs[i].push(t);
            }
            on_tokens(active.len());
        }
        drop(cache);

        let mut new_tokens = 0;
        for ((&sample, mut tokens), finish) in samples.iter().zip(outs).zip(finished) {
            let finish = finish.expect("every sample finishes");
            let generated = tokens.len();
            if finish == Finish::Eos {
                tokens.pop();
            }
            new_tokens += generated;
            completions.push(Completion {
                sample,
                tokens,
                new_tokens: generated,
                finish,
            });
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        reports.push(ChunkReport {
            chunk,
            size: samples.len(),
            new_tokens,
            prefill_ms,
            ms,
            peaks: window.close(),
        });
    }
    Ok((completions, reports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WeightFormat;

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
        let l = Model::load(&p, WeightFormat::Native).unwrap();
        let prompt = l
            .tokenizer
            .encode("<|im_start|>user\nhello 12<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let stop = &l.tokenizer.stop_ids;
        let run = |cs| generate_question(&l.model, None, &prompt, stop, 3, &params(cs), &mut |_| {}).unwrap();
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
        let (other, _) = generate_question(&l.model, None, &prompt, stop, 4, &params(3), &mut |_| {}).unwrap();
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
