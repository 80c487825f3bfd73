//! Run metrics, accumulated from the committed records so that a resumed run reports the same
//! counts as an uninterrupted one.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::base::record::Finish;
use crate::core::rft::{pass, Dataset};
use crate::core::store::{self, ChunkRecord, QuestionRecord};

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Questions completed.
    pub questions: usize,
    /// Questions in the configured set (after `data.limit`).
    pub questions_total: usize,
    pub samples: usize,
    /// Tokens generated, end-of-turn tokens included.
    pub new_tokens: usize,
    /// Wall time of all sessions, model loading included.
    pub wall_s: f64,
    /// Time spent in prefill and decoding.
    pub generation_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// `new_tokens / generation_s`.
    pub tokens_per_s: f64,
    /// Samples whose parsed answer is correct.
    pub accepted: usize,
    /// `accepted / samples`.
    pub acceptance_rate: f64,
    /// Records in dataset.json (accepted samples, duplicates removed).
    pub dataset_records: usize,
    /// Questions with at least one accepted sample.
    pub questions_with_accepted: usize,
    /// pass@1, the unbiased estimator averaged over questions: the mean share of correct samples.
    #[serde(default)]
    pub pass_at_1: f64,
    /// pass@k at k = [`Metrics::k`]: the share of questions with a correct sample.
    #[serde(default)]
    pub pass_at_k: f64,
    /// The k of `pass_at_k`: the fewest samples of any question (`generation.oversample`).
    #[serde(default)]
    pub k: usize,
    /// Questions by samples n and correct samples c, as `[n, c, questions]`: pass@k at any k
    /// follows (`rftx show --pass-at`).
    #[serde(default)]
    pub correct_counts: Vec<[usize; 3]>,
    /// Samples that contained a parsable `<answer>` tag.
    pub parsed: usize,
    /// Samples that ended with an end-of-turn token rather than the token budget.
    pub finished_eos: usize,
    pub chunks: usize,
    /// How full the batch was while decoding: rows decoded per step over the rows it holds
    /// when full (`prompts_per_batch` × chunk size), averaged over all steps; 1 = always full.
    #[serde(default)]
    pub occupancy: f64,
    /// Rows decoded per step, on average.
    #[serde(default)]
    pub mean_batch_rows: f64,
    /// Highest heap bytes over all chunks (counting allocator; weights included).
    pub peak_bytes: u64,
    /// Highest resident set size over all chunks.
    pub rss_peak_bytes: u64,
    /// Highest GPU memory in use over all chunks (GPU runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peak_bytes: Option<u64>,
    /// `generation.stop_after_correct`: what ending questions early saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_correct: Option<StopMetrics>,
    /// A merged run's shards, one row each (`rftx merge`); the fields above are their sums
    /// (times, counts) and maxima (peaks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
}

/// `metrics.json`'s `stop_after_correct`: the samples a run with `generation.stop_after_correct
/// = k` did not keep, and the tokens it did not decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopMetrics {
    pub k: usize,
    /// Questions that reached k right samples before their last (kept fewer than `oversample`).
    pub questions_stopped: usize,
    /// Σ over questions of `oversample` − samples kept (the same at every chunk size).
    pub samples_skipped: usize,
    /// Samples decoded (chunks started), those dropped past a question's cut included.
    pub samples_decoded: usize,
    /// Tokens decoded, those of dropped samples included (`new_tokens` counts the kept ones).
    pub tokens_decoded: usize,
    /// Tokens of samples decoded in a question's last chunk past its cut, then dropped.
    pub tokens_dropped: usize,
    /// Samples never decoded × the mean tokens of a decoded sample: what decoding every sample
    /// would have added (an estimate; `bench/stop_after_correct.sh` measures it exactly).
    pub tokens_saved_estimate: usize,
}

/// One shard of a merged run, in `metrics.json`'s `shards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    pub shard: usize,
    /// Its questions: `first..end`.
    pub first: usize,
    pub end: usize,
    pub new_tokens: usize,
    pub wall_s: f64,
    pub generation_s: f64,
    pub tokens_per_s: f64,
    pub peak_bytes: u64,
    pub rss_peak_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peak_bytes: Option<u64>,
    /// Where its sessions ran (host names, in order, repeats removed).
    pub hosts: Vec<String>,
    /// What its numerics depended on (`Session::device` of its sessions).
    pub device: String,
}

#[derive(Debug, Default, Clone)]
pub struct Tally {
    questions: usize,
    samples: usize,
    new_tokens: usize,
    accepted: usize,
    parsed: usize,
    eos: usize,
    questions_with_accepted: usize,
    prefill_ms: f64,
    decode_ms: f64,
    chunks: usize,
    /// Σ rows decoded over all steps, Σ steps, Σ steps × full batch rows.
    row_steps: f64,
    steps: f64,
    slot_steps: f64,
    peak_bytes: u64,
    rss_peak_bytes: u64,
    gpu_peak_bytes: Option<u64>,
    /// Each question's index, id, samples and correct samples: pass@k and `pass_at_k.csv`.
    per_question: Vec<(usize, Option<String>, usize, usize)>,
    /// `generation.stop_after_correct` as (oversample, k), and Σ chunk sizes and tokens.
    stop: Option<(usize, usize)>,
    chunk_samples: usize,
    chunk_tokens: usize,
}

impl Tally {
    /// An empty tally of a run generated with `g`.
    pub fn of(g: &crate::core::config::GenerationConfig) -> Tally {
        Tally {
            stop: g.stop_after_correct.map(|k| (g.oversample, k)),
            ..Tally::default()
        }
    }

    pub fn add_question(&mut self, q: &QuestionRecord) {
        self.questions += 1;
        self.samples += q.samples.len();
        let accepted = q.samples.iter().filter(|s| s.correct).count();
        self.accepted += accepted;
        self.questions_with_accepted += usize::from(accepted > 0);
        self.per_question
            .push((q.index, q.id.clone(), q.samples.len(), accepted));
        self.parsed += q.samples.iter().filter(|s| s.parsed.is_some()).count();
        self.eos += q.samples.iter().filter(|s| s.finish == Finish::Eos).count();
        self.new_tokens += q.samples.iter().map(|s| s.new_tokens).sum::<usize>();
    }

    pub fn add_chunk(&mut self, c: &ChunkRecord) {
        self.chunks += 1;
        self.chunk_samples += c.size;
        self.chunk_tokens += c.new_tokens;
        self.prefill_ms += c.prefill_ms;
        self.decode_ms += c.ms;
        // A chunk's first tokens come from the prompt's logits, the others from steps.
        self.row_steps += c.new_tokens.saturating_sub(c.size) as f64;
        self.steps += c.steps;
        self.slot_steps += c.steps * c.batch_rows as f64;
        self.peak_bytes = self.peak_bytes.max(c.peak_bytes);
        self.rss_peak_bytes = self.rss_peak_bytes.max(c.rss_peak_bytes);
        if let Some(g) = c.gpu_peak_bytes {
            self.gpu_peak_bytes = Some(self.gpu_peak_bytes.unwrap_or(0).max(g));
        }
    }

    pub fn questions(&self) -> usize {
        self.questions
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn accepted(&self) -> usize {
        self.accepted
    }

    pub fn metrics(&self, questions_total: usize, wall_s: f64, dataset_records: usize) -> Metrics {
        let pass = self.pass_counts();
        let generation_s = (self.prefill_ms + self.decode_ms) / 1e3;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Metrics {
            questions: self.questions,
            questions_total,
            samples: self.samples,
            new_tokens: self.new_tokens,
            wall_s,
            generation_s,
            prefill_s: self.prefill_ms / 1e3,
            decode_s: self.decode_ms / 1e3,
            tokens_per_s: ratio(self.new_tokens as f64, generation_s),
            accepted: self.accepted,
            acceptance_rate: ratio(self.accepted as f64, self.samples as f64),
            dataset_records,
            questions_with_accepted: self.questions_with_accepted,
            pass_at_1: pass.mean(1).unwrap_or(0.0),
            k: pass.min_samples().unwrap_or(0),
            pass_at_k: pass.min_samples().and_then(|k| pass.mean(k)).unwrap_or(0.0),
            correct_counts: pass.rows(),
            parsed: self.parsed,
            finished_eos: self.eos,
            chunks: self.chunks,
            occupancy: ratio(self.row_steps, self.slot_steps),
            mean_batch_rows: ratio(self.row_steps, self.steps),
            peak_bytes: self.peak_bytes,
            rss_peak_bytes: self.rss_peak_bytes,
            gpu_peak_bytes: self.gpu_peak_bytes,
            stop_after_correct: self.stop_metrics(),
            shards: Vec::new(),
        }
    }

    fn stop_metrics(&self) -> Option<StopMetrics> {
        let (oversample, k) = self.stop?;
        let never = (self.questions * oversample).saturating_sub(self.chunk_samples);
        let per_sample = self.chunk_tokens as f64 / self.chunk_samples.max(1) as f64;
        Some(StopMetrics {
            k,
            questions_stopped: self.per_question.iter().filter(|q| q.2 < oversample).count(),
            samples_skipped: (self.questions * oversample).saturating_sub(self.samples),
            samples_decoded: self.chunk_samples,
            tokens_decoded: self.chunk_tokens,
            tokens_dropped: self.chunk_tokens.saturating_sub(self.new_tokens),
            tokens_saved_estimate: (never as f64 * per_sample).round() as usize,
        })
    }
}

impl Tally {
    /// How many questions had n samples with c correct.
    fn pass_counts(&self) -> pass::Counts {
        let mut counts = pass::Counts::default();
        self.per_question.iter().for_each(|&(_, _, n, c)| counts.add(n, c));
        counts
    }

    /// `pass_at_k.csv`: per question its index, id, samples, correct samples, pass@1 and
    /// pass@k at k = the run's [`Metrics::k`].
    pub fn pass_csv(&self) -> String {
        let k = self.pass_counts().min_samples().unwrap_or(0);
        let mut out = format!("index,id,samples,correct,pass_at_1,pass_at_{k}\n");
        for (index, id, n, c) in &self.per_question {
            let p = |k| pass::pass_at_k(*n, *c, k).map_or(String::new(), |p| format!("{p:.6}"));
            let id = id.as_deref().map(crate::base::util::csv_field).unwrap_or_default();
            out += &format!("{index},{id},{n},{c},{},{}\n", p(1), p(k));
        }
        out
    }
}

impl Metrics {
    /// pass@k averaged over questions, from `correct_counts`; `None` past the fewest samples.
    pub fn pass_at(&self, k: usize) -> Option<f64> {
        pass::Counts::from_rows(&self.correct_counts).mean(k)
    }
}

/// The files a finished run (or merge, or regrade) derives from its records: `dataset.json`, the
/// trainer files (`core::rft::outputs`) and `pass_at_k.csv`, with their bytes.
pub fn finished_files(dataset: &Dataset, tally: &Tally) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut files = vec![(store::DATASET_FILE, dataset.to_json().into_bytes())];
    files.extend(dataset.trainer_files().map_err(Error::Run)?);
    files.push((store::PASS_FILE, tally.pass_csv().into_bytes()));
    Ok(files)
}

/// Reads a run directory's `metrics.json`.
pub fn read_metrics(dir: &Path) -> Result<Metrics> {
    let p = dir.join(store::METRICS_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("{}: cannot read", p.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::input(&p, format!("unreadable metrics ({e}); rerun with --force")))
}

/// `metrics.json` as written: pretty JSON and a final newline.
pub fn metrics_json(m: &Metrics) -> String {
    serde_json::to_string_pretty(m).expect("metrics serialise") + "\n"
}

/// A few human-readable lines summarising a run.
pub fn summary(m: &Metrics) -> String {
    use crate::base::util::human_bytes;
    let gpu = m
        .gpu_peak_bytes
        .map(|g| format!(", peak GPU {}", human_bytes(g)))
        .unwrap_or_default();
    format!(
        "{} questions, {} samples, {} tokens in {:.1} s generation ({:.1} tokens/s), {:.1} s wall\n\
         accepted {} of {} samples ({:.1} %), {} unique dataset records, {} of {} questions covered\n\
         pass@1 {:.1} %, pass@{} {:.1} %\n\
         peak heap {} (per chunk, weights included), peak RSS {}{gpu}",
        m.questions,
        m.samples,
        m.new_tokens,
        m.generation_s,
        m.tokens_per_s,
        m.wall_s,
        m.accepted,
        m.samples,
        100.0 * m.acceptance_rate,
        m.dataset_records,
        m.questions_with_accepted,
        m.questions,
        100.0 * m.pass_at_1,
        m.k,
        100.0 * m.pass_at_k,
        human_bytes(m.peak_bytes),
        human_bytes(m.rss_peak_bytes),
    ) + &m.stop_after_correct.as_ref().map(stop_line).unwrap_or_default()
}

/// The summary's line for `generation.stop_after_correct`.
fn stop_line(s: &StopMetrics) -> String {
    format!(
        "\nstop_after_correct = {}: {} questions stopped early, {} samples skipped, about {} tokens saved ({} decoded, {} of them dropped past a cut)",
        s.k, s.questions_stopped, s.samples_skipped, s.tokens_saved_estimate, s.tokens_decoded, s.tokens_dropped
    )
}
