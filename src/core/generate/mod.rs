//! Chunked generation for one question: prefill the prompt once, then decode the samples in
//! chunks of `chunk_size` sequences. Every sequence of a chunk reads the prompt's KV cache in
//! place, holds only its own generated positions and draws from its own RNG stream; finished
//! sequences leave the batch at once.
mod meter;
mod step;
mod stop;

use std::time::Instant;

use meter::Meter;
use step::{close, sequences, share};
pub use stop::{cut_at, Judge, StopAfter, Stopped};

use crate::base::error::{Error, Result};
use crate::base::memory::Peaks;
use crate::base::record::{Completion, Finish};
use crate::base::sampling::{Rng, Sampler};
use crate::engine::device::GpuMemory;
use crate::engine::{KvCache, Model};

#[derive(Debug, Clone, Copy)]
pub struct GenerationParams {
    pub oversample: usize,
    pub chunk_size: usize,
    pub max_new_tokens: usize,
    pub sampler: Sampler,
    pub seed: u64,
    /// `generation.logprobs`: keep each token's log-probability ([`Sampler::draw`]). On the
    /// fused GPU kernels the tokens are then drawn on the host, where the logits are.
    pub logprobs: bool,
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
    /// Decode time of the chunk: its share of every batch step it took part in (a step's time is
    /// split among the chunks decoded in it by their rows), so that the chunks of a run add up
    /// to its decoding time even when several questions decode together.
    pub ms: f64,
    /// Its share of the batch's decoding steps, split the same way.
    pub steps: f64,
    /// Rows the batch holds when full (`prompts_per_batch` × chunk size).
    pub batch_rows: usize,
    /// Memory peaks while the chunk was decoding (with several questions at once, the batch's).
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

/// One question to generate: its index (which selects its samples' RNG streams), its prompt,
/// and how many of its samples decode together.
#[derive(Debug, Clone, Copy)]
pub struct Job<'p> {
    pub index: u64,
    pub prompt: &'p [u32],
    pub chunk_size: usize,
}

/// A question whose samples are all done.
#[derive(Debug, Clone)]
pub struct Finished {
    pub index: u64,
    pub completions: Vec<Completion>,
    pub reports: Vec<ChunkReport>,
    /// Where [`StopAfter`] ended it, if it did.
    pub stopped: Option<Stopped>,
}

/// Generates the samples of questions in chunks, one question or several at once.
pub struct Generator<'a> {
    pub model: &'a Model,
    /// The cache of the text every prompt starts with, if any.
    pub shared: Option<&'a SharedPrefix>,
    /// Tokens that end a sample.
    pub stop_ids: &'a [u32],
    pub params: GenerationParams,
    /// GPU memory peaks, on a GPU.
    pub gpu: Option<&'a GpuMemory>,
    /// `generation.stop_after_correct`, with the run's grader.
    pub stop: Option<StopAfter<'a>>,
}

/// A prompt's cache and the logits that follow it.
type Prefilled = (KvCache, Vec<f32>);

/// The samples of one chunk, decoding.
struct Chunk {
    number: usize,
    samples: std::ops::Range<usize>,
    cache: KvCache,
    rngs: Vec<Rng>,
    outs: Vec<Vec<u32>>,
    /// Each sample's tokens' log-probabilities, with `params.logprobs` (else empty).
    logprobs: Vec<Vec<f32>>,
    finished: Vec<Option<Finish>>,
    /// `active[i]` = index into `samples` of cache row i.
    active: Vec<usize>,
    prefill_ms: f64,
    ms: f64,
    steps: f64,
    peaks: Peaks,
    gpu_peak: Option<u64>,
}

/// A question in the batch: its prompt's cache, the chunk decoding (none while it waits for
/// room), what is done.
struct Slot<'p> {
    job: Job<'p>,
    prefilled: Prefilled,
    chunk: Option<Chunk>,
    /// The first sample not started yet, and the number of chunks started.
    next: usize,
    chunks: usize,
    /// The prompt's prefill time, reported with its first chunk.
    prefill_ms: f64,
    completions: Vec<Completion>,
    reports: Vec<ChunkReport>,
    /// Right samples so far, and where [`StopAfter`] ended the question.
    right: usize,
    stopped: Option<Stopped>,
}

impl Slot<'_> {
    fn rows(&self) -> usize {
        self.chunk.as_ref().map_or(0, |c| c.active.len())
    }
}

/// The batch's limits: rows decoded together, and questions open at once.
#[derive(Clone, Copy)]
struct Room {
    rows: usize,
    questions: usize,
}

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
        let job = Job {
            index: question_index,
            prompt,
            chunk_size: self.params.chunk_size,
        };
        let mut done = None;
        self.batch(&mut std::iter::once(job), 1, on_tokens, &mut |f| {
            done = Some(f);
            Ok(())
        })?;
        let f = done.expect("the one job finishes");
        Ok((f.completions, f.reports))
    }

    /// Generates the questions of `jobs`, up to `prompts` of them at once: each question's
    /// samples run in chunks of its `chunk_size`, one chunk of every question in the batch
    /// decoding together in one step; a drained chunk is followed by the question's next one
    /// and a finished question by the next job (prefilled as it joins). `on_done` gets every
    /// question as it finishes — not necessarily in order. A sample's tokens depend only on
    /// (seed, question, sample): the same whatever `prompts` and the chunk sizes.
    pub fn batch<'p>(
        &self,
        jobs: &mut dyn Iterator<Item = Job<'p>>,
        prompts: usize,
        on_tokens: &mut dyn FnMut(usize),
        on_done: &mut dyn FnMut(Finished) -> Result<()>,
    ) -> Result<()> {
        let mut slots: Vec<Slot<'p>> = Vec::new();
        let mut meter = Meter::start(self.gpu);
        let prompts = prompts.max(1);
        let room = Room {
            rows: prompts * self.width(self.params.chunk_size),
            questions: if prompts == 1 { 1 } else { 2 * prompts },
        };
        let mut waiting: Option<Job<'p>> = None;
        loop {
            crate::base::interrupt::check()?;
            self.refill(&mut slots, jobs, &mut waiting, room, &mut meter, on_done)?;
            if slots.is_empty() {
                return Ok(());
            }
            self.step(&mut slots).map_err(|e| {
                let (question, chunk) = slots.first().map_or((0, 0), |s| (s.job.index as usize, s.chunks - 1));
                e.at_question(question, chunk, sequences(&slots))
            })?;
            on_tokens(slots.iter().map(Slot::rows).sum());
            share(meter.tick(), &mut slots);
        }
    }

    /// Between steps: drained chunks are closed, finished questions go to `on_done`, questions
    /// with samples left start their next chunk, and new questions join — each only when the
    /// batch has room for a whole chunk of rows (`room.rows` = `prompts_per_batch` × chunk
    /// size). A question joins as soon as other questions' chunks have drained that much, so up
    /// to `room.questions` (twice `prompts_per_batch`) prompts may be open at once; with one
    /// question per batch, a question starts when the previous one is done.
    fn refill<'p>(
        &self,
        slots: &mut Vec<Slot<'p>>,
        jobs: &mut dyn Iterator<Item = Job<'p>>,
        waiting: &mut Option<Job<'p>>,
        room: Room,
        meter: &mut Meter,
        on_done: &mut dyn FnMut(Finished) -> Result<()>,
    ) -> Result<()> {
        let n = self.params.oversample;
        loop {
            let batch = sequences(slots);
            for slot in slots.iter_mut() {
                if let Some(chunk) = &mut slot.chunk {
                    let (question, number) = (slot.job.index as usize, chunk.number);
                    self.retire(chunk).map_err(|e| e.at_question(question, number, batch))?;
                }
                if slot.chunk.as_ref().is_some_and(|c| c.active.is_empty()) {
                    let drained = slot.chunk.take().expect("checked above");
                    let from = slot.completions.len();
                    slot.reports
                        .push(close(&mut slot.completions, drained, room.rows, self.params.logprobs));
                    self.cut(slot, from)?;
                }
            }
            if let Some(i) = slots.iter().position(|s| s.chunk.is_none() && s.next >= n) {
                let slot = slots.remove(i);
                on_done(Finished {
                    index: slot.job.index,
                    completions: slot.completions,
                    reports: slot.reports,
                    stopped: slot.stopped,
                })?;
                continue;
            }
            let rows: usize = slots.iter().map(Slot::rows).sum();
            // An empty batch takes any chunk, so that no question waits forever.
            let fits = |job: &Job| rows == 0 || rows + self.width(job.chunk_size) <= room.rows;
            if let Some(slot) = slots.iter_mut().find(|s| s.chunk.is_none() && fits(&s.job)) {
                let prefill_ms = std::mem::take(&mut slot.prefill_ms);
                let (question, number) = (slot.job.index as usize, slot.chunks);
                let size = batch + self.width(slot.job.chunk_size);
                let chunk = self.chunk(&slot.prefilled, slot.job, slot.next, number, prefill_ms);
                slot.chunk = Some(chunk.map_err(|e| e.at_question(question, number, size))?);
                slot.next = slot.chunk.as_ref().map_or(n, |c| c.samples.end);
                slot.chunks += 1;
                continue;
            }
            // The next question is taken from `jobs` only when it could join soon.
            if waiting.is_none() && slots.len() < room.questions && rows < room.rows {
                *waiting = jobs.next();
            }
            match *waiting {
                Some(job) if slots.len() < room.questions && fits(&job) => {
                    *waiting = None;
                    let t = Instant::now();
                    let prefilled = self
                        .prefill(job.index, job.prompt)
                        .map_err(|e| e.at_question(job.index as usize, 0, batch))?;
                    let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
                    meter.exclude(prefill_ms);
                    slots.push(Slot {
                        job,
                        prefilled,
                        chunk: None,
                        next: 0,
                        chunks: 0,
                        prefill_ms,
                        completions: Vec::with_capacity(n),
                        reports: Vec::new(),
                        right: 0,
                        stopped: None,
                    });
                }
                _ => return Ok(()),
            }
        }
    }

    /// A new chunk of `job`: samples `first..` (up to its chunk size), their first tokens drawn
    /// from the prompt's logits, and a cache forked from the prompt's.
    fn chunk(
        &self,
        (cache, logits): &Prefilled,
        job: Job,
        first: usize,
        number: usize,
        prefill_ms: f64,
    ) -> Result<Chunk> {
        let p = &self.params;
        let size = self.width(job.chunk_size);
        let samples = first..(first + size).min(p.oversample);
        let mut scratch = Vec::new();
        let mut rngs: Vec<Rng> = samples
            .clone()
            .map(|s| Rng::for_sample(p.seed, job.index, s as u64))
            .collect();
        let first: Vec<(u32, f32)> = rngs
            .iter_mut()
            .map(|rng| p.sampler.draw(logits, rng, &mut scratch))
            .collect();
        let outs = first
            .iter()
            .map(|&(t, _)| {
                let mut out = Vec::with_capacity(p.max_new_tokens);
                out.push(t);
                out
            })
            .collect();
        let logprobs = match p.logprobs {
            true => first.iter().map(|&(_, lp)| vec![lp]).collect(),
            false => vec![Vec::new(); first.len()],
        };
        let n = samples.len();
        Ok(Chunk {
            number,
            cache: self.model.fork(cache, n, p.max_new_tokens)?,
            samples,
            rngs,
            outs,
            logprobs,
            finished: vec![None; n],
            active: (0..n).collect(),
            prefill_ms,
            ms: 0.0,
            steps: 0.0,
            peaks: Peaks::default(),
            gpu_peak: None,
        })
    }

    /// Sequences a chunk of `chunk_size` holds: at least one, at most `oversample`.
    fn width(&self, chunk_size: usize) -> usize {
        chunk_size.clamp(1, self.params.oversample.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{device, GpuKernels, GpuOptions, WeightFormat, Weights};
    use crate::source::{GgufTokenizer, ModelSource};

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
            logprobs: false,
        }
    }

    /// The tiny random model and its tokenizer (the directory holds its file).
    fn tiny() -> (tempfile::TempDir, Model, GgufTokenizer) {
        tiny_as(WeightFormat::Native, None)
    }

    /// The tiny random model in `format`, on the CPU's kernels or on a GPU's (`gpu`).
    fn tiny_as(format: WeightFormat, gpu: Option<GpuOptions>) -> (tempfile::TempDir, Model, GgufTokenizer) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        crate::testing::write_tiny_model(&p, 5).unwrap();
        let mut source = ModelSource::open(&p).unwrap();
        let model = Model::build(&mut Weights::File(&mut source), format, &device::host(), gpu).unwrap();
        (d, model, source.tokenizer().unwrap())
    }

    /// Prompts of different lengths (the batch's caches sit at different positions).
    fn prompts(tokenizer: &GgufTokenizer, n: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| {
                let text = format!(
                    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
                    "hi ".repeat(i + 1)
                );
                tokenizer.encode(&text).unwrap()
            })
            .collect()
    }

    /// Each question's samples alone equal its samples in every (questions per batch, chunk
    /// size) of `settings`; question `long` asks for 7 rows whatever the chunk size (more than
    /// some batches hold: it still runs).
    fn batches_match_alone(
        generator: &Generator,
        prompts: &[Vec<u32>],
        settings: &[(usize, usize)],
        long: Option<usize>,
    ) {
        let alone: Vec<Vec<Completion>> = prompts
            .iter()
            .enumerate()
            .map(|(i, ids)| generator.question(i as u64, ids, &mut |_| {}).unwrap().0)
            .collect();
        for &(per_batch, chunk) in settings {
            let mut jobs = prompts.iter().enumerate().map(|(i, ids)| Job {
                index: i as u64,
                prompt: ids,
                chunk_size: if Some(i) == long { 7 } else { chunk },
            });
            let mut done: Vec<Finished> = Vec::new();
            generator
                .batch(&mut jobs, per_batch, &mut |_| {}, &mut |f| {
                    done.push(f);
                    Ok(())
                })
                .unwrap();
            done.sort_by_key(|f| f.index);
            assert_eq!(
                done.iter().map(|f| f.index).collect::<Vec<_>>(),
                (0..prompts.len() as u64).collect::<Vec<_>>()
            );
            for (f, reference) in done.iter().zip(&alone) {
                let mut got = f.completions.clone();
                got.sort_by_key(|c| c.sample);
                assert_eq!(&got, reference, "{per_batch} × {chunk}, question {}", f.index);
                let numbers: Vec<usize> = f.reports.iter().map(|r| r.chunk).collect();
                assert_eq!(numbers, (0..numbers.len()).collect::<Vec<_>>());
                assert!(f.reports[0].prefill_ms > 0.0);
            }
        }
    }

    #[test]
    fn a_batch_of_questions_gives_each_the_samples_it_gets_alone() {
        let (_d, model, tokenizer) = tiny();
        let generator = Generator {
            model: &model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: params(2),
            gpu: None,
            stop: None,
        };
        batches_match_alone(&generator, &prompts(&tokenizer, 5), &[(3, 2), (2, 7), (5, 1)], Some(2));
    }

    /// On the fused GPU kernels (run on the CPU: each kernel its reference) the tokens are drawn
    /// where the logits are (`Model::step_sample`): still one stream per sample, so a question's
    /// samples are the same alone, in chunks and in batches of questions; and close to the CPU
    /// kernels' own (the same streams; the logits differ in their last bits).
    #[test]
    fn device_sampling_is_the_same_at_every_chunk_and_batch() {
        let fused = GpuOptions {
            kernels: GpuKernels::Fused,
            batch_invariant: true,
        };
        let (_d, model, tokenizer) = tiny_as(WeightFormat::F32, Some(fused));
        let (_e, cpu, _) = tiny_as(WeightFormat::F32, None);
        let sampler = Sampler {
            temperature: 1.0,
            top_p: 1.0,
        };
        assert!(model.samples_on_device(&sampler) && !cpu.samples_on_device(&sampler));
        assert!(!model.samples_on_device(&Sampler { top_p: 0.9, ..sampler }));
        let generator = |model, chunk_size| Generator {
            model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: GenerationParams {
                sampler,
                ..params(chunk_size)
            },
            gpu: None,
            stop: None,
        };
        let prompts = prompts(&tokenizer, 4);
        batches_match_alone(&generator(&model, 1), &prompts, &[(1, 7), (3, 2), (4, 7)], None);
        let first = |m| -> Vec<u32> {
            let c = generator(m, 7).question(0, &prompts[0], &mut |_| {}).unwrap().0;
            c.iter().map(|x| x.tokens[0]).collect()
        };
        let (on_cpu, on_device) = (first(&cpu), first(&model));
        let same = on_cpu.iter().zip(&on_device).filter(|(a, b)| a == b).count();
        assert!(same >= 6, "first tokens: cpu {on_cpu:?}, device {on_device:?}");
    }

    /// With `logprobs`, the same tokens, each with its log-probability (the stop token's
    /// included), the same in every chunk size and batch.
    #[test]
    fn logprobs_are_the_same_at_every_chunk_and_batch() {
        let (_d, model, tokenizer) = tiny();
        let generator = |logprobs| Generator {
            model: &model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: GenerationParams { logprobs, ..params(3) },
            gpu: None,
            stop: None,
        };
        let prompts = prompts(&tokenizer, 4);
        batches_match_alone(&generator(true), &prompts, &[(1, 1), (2, 3), (4, 7)], Some(1));
        for (i, ids) in prompts.iter().enumerate() {
            let (with, _) = generator(true).question(i as u64, ids, &mut |_| {}).unwrap();
            let (without, _) = generator(false).question(i as u64, ids, &mut |_| {}).unwrap();
            for (a, b) in with.iter().zip(&without) {
                assert_eq!((&a.tokens, a.finish), (&b.tokens, b.finish));
                assert_eq!(b.logprobs, None);
                let lp = a.logprobs.as_ref().unwrap();
                assert_eq!(lp.len(), a.new_tokens);
                assert!(lp.iter().all(|&x| x <= 0.0 && x.is_finite()), "{lp:?}");
            }
        }
    }

    /// The cut on a hand-made verdict sequence, fed in pieces as chunks would: the kept samples
    /// are the first m of which k are right, wherever the chunks end.
    #[test]
    fn the_cut_is_the_first_m_samples_with_k_right() {
        let verdicts = [false, true, false, false, true, true, false, true];
        for k in 1..=5 {
            // Expected: the position after the k-th `true`, or none.
            let expected = verdicts
                .iter()
                .enumerate()
                .filter(|(_, &v)| v)
                .nth(k - 1)
                .map(|(i, _)| i + 1);
            for size in 1..=8 {
                let (mut right, mut got) = (0, None);
                for (c, piece) in verdicts.chunks(size).enumerate() {
                    got = cut_at(piece, c * size, &mut right, k);
                    if got.is_some() {
                        break;
                    }
                }
                assert_eq!(got, expected, "k {k}, chunks of {size}");
            }
        }
        assert_eq!(cut_at(&[true, true], 0, &mut 0, 2), Some(2));
        assert_eq!(cut_at(&[false, true, true], 4, &mut 1, 2), Some(6));
        assert_eq!(cut_at(&[false; 3], 0, &mut 0, 1), None);
    }

    /// With a judge (here: a sample is right when its first token is even), every chunk size and
    /// batch keeps exactly the first m samples of the full run such that k of them are right, and
    /// says how many it decoded and dropped.
    #[test]
    fn stopping_after_k_right_is_the_same_at_every_chunk_and_batch() {
        let (_d, model, tokenizer) = tiny();
        let judge = |_: u64, cs: &[Completion]| -> Result<Vec<bool>> {
            Ok(cs
                .iter()
                .map(|c| c.tokens.first().is_some_and(|t| t % 2 == 0))
                .collect())
        };
        let generator = |chunk, stop| Generator {
            model: &model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: params(chunk),
            gpu: None,
            stop,
        };
        let prompts = prompts(&tokenizer, 5);
        let full: Vec<Vec<Completion>> = prompts
            .iter()
            .enumerate()
            .map(|(i, ids)| generator(7, None).question(i as u64, ids, &mut |_| {}).unwrap().0)
            .collect();
        let mut stopped_somewhere = 0;
        for k in [1, 2, 3] {
            let stop = StopAfter {
                right: k,
                judge: &judge,
            };
            let expected: Vec<&[Completion]> = full
                .iter()
                .map(|f| {
                    let right = judge(0, f).unwrap();
                    let m = cut_at(&right, 0, &mut 0, k).unwrap_or(f.len());
                    &f[..m]
                })
                .collect();
            for (per_batch, chunk) in [(1, 1), (1, 3), (2, 2), (3, 7), (5, 1)] {
                let mut jobs = prompts.iter().enumerate().map(|(i, ids)| Job {
                    index: i as u64,
                    prompt: ids,
                    chunk_size: chunk,
                });
                let mut done: Vec<Finished> = Vec::new();
                generator(chunk, Some(stop))
                    .batch(&mut jobs, per_batch, &mut |_| {}, &mut |f| {
                        done.push(f);
                        Ok(())
                    })
                    .unwrap();
                done.sort_by_key(|f| f.index);
                for f in &done {
                    let want = expected[f.index as usize];
                    assert_eq!(
                        f.completions, want,
                        "k {k}, {per_batch} × {chunk}, question {}",
                        f.index
                    );
                    let decoded: usize = f.reports.iter().map(|r| r.size).sum();
                    let tokens: usize = f.reports.iter().map(|r| r.new_tokens).sum();
                    let kept: usize = want.iter().map(|c| c.new_tokens).sum();
                    match f.stopped {
                        Some(s) => {
                            assert_eq!((s.kept, s.decoded), (want.len(), decoded));
                            assert_eq!(s.dropped_tokens, tokens - kept);
                            assert_eq!(decoded, (want.len().div_ceil(chunk) * chunk).min(7));
                            stopped_somewhere += usize::from(s.kept < 7);
                        }
                        None => assert_eq!((want.len(), decoded, tokens), (7, 7, kept)),
                    }
                }
            }
        }
        assert!(stopped_somewhere > 0, "some question must stop early");
    }

    #[test]
    fn samples_do_not_depend_on_chunk_size() {
        let (_d, model, tokenizer) = tiny();
        let prompt = tokenizer
            .encode("<|im_start|>user\nhello 12<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        let generator = |cs| Generator {
            model: &model,
            shared: None,
            stop_ids: &tokenizer.stop_ids,
            params: params(cs),
            gpu: None,
            stop: None,
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
