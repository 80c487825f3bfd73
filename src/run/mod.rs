//! One run, end to end: resolve inputs and the content hash ([`prepare`]), open the model
//! ([`Session`]), then generate, grade and store question by question, resuming where a
//! previous session stopped ([`run`]).
//!
//! - [`prepare`]: the config's inputs, digests, hash and directory (nothing created);
//! - [`session`]: the loaded model, tokenizer, chat format and shared prefix;
//! - [`budget`]: `memory.budget`, checked before every question;
//! - `journal`: the durable record (appends, checkpoints, manifest) of a run in progress;
//! - [`plan_check`]: `rftx plan` for a config and `plan --check` on the real model;
//! - [`shard`]: one shard of a run (`rftx shard run`).
mod budget;
mod journal;
pub mod plan_check;
pub mod prepare;
pub mod session;
pub mod shard;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{ModelInit, OnExceed};
use crate::error::{Error, Result};
use crate::generate::ChunkReport;
use crate::report::{self, Metrics};
use crate::rft;
use crate::store::{
    self, Appender, ChunkRecord, Lock, Manifest, QuestionRecord, RunDir, SampleRecord, ShardOf, Status,
};
use crate::util::{human_bytes, now_rfc3339};
pub use budget::workload;
use budget::Budget;
use journal::Journal;
pub use plan_check::{check_plan, plan_config, CheckRow, ConfigPlan};
pub use prepare::{prepare, Prepared};
pub use session::{generation_params, rendered_prompts, Session};
pub use shard::run_shard;

/// Receives what a run does, for progress display. Every method has a no-op default.
pub trait Observer {
    /// A human-readable line (also written to run.log once the directory exists).
    fn log(&mut self, _line: &str) {}
    /// Generation starts: `done` of `total` questions are already complete.
    fn begin(&mut self, _total: usize, _done: usize, _samples_per_question: usize) {}
    /// `n` tokens were generated.
    fn tokens(&mut self, _n: usize) {}
    /// A question was committed.
    fn question_done(&mut self, _done: usize, _accepted: usize, _samples: usize) {}
    fn end(&mut self) {}
    /// A sweep starts point `k` (0-based) of `n`, running in `dir`; `k == n` when it is done.
    fn sweep_point(&mut self, _k: usize, _n: usize, _label: &str, _dir: &Path) {}
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Generation ran in this session, starting after `resumed_from` committed questions.
    Completed { resumed_from: usize },
    /// The directory already held a complete run; nothing was redone.
    AlreadyComplete,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub dir: PathBuf,
    pub outcome: Outcome,
    pub metrics: Metrics,
}

/// Logs to the observer and, once the run directory exists, to run.log.
struct Log<'a> {
    observer: &'a mut dyn Observer,
    file: Option<Appender>,
}

impl Log<'_> {
    fn line(&mut self, msg: &str) {
        self.observer.log(msg);
        if let Some(f) = &mut self.file {
            let _ = f.append_raw(format!("{} {msg}\n", now_rfc3339()).as_bytes());
        }
    }
}

/// Where a run's work goes: all its questions into the run directory, or a shard's range of
/// them into the shard's directory.
pub(crate) struct Target {
    pub dir: PathBuf,
    pub range: Range<usize>,
    pub shard: Option<ShardOf>,
}

/// Runs (or resumes, or reports) the prepared configuration.
pub fn run(p: &Prepared, force: bool, observer: &mut dyn Observer) -> Result<RunResult> {
    let whole = Target {
        dir: p.dir.clone(),
        range: 0..p.questions.questions.len(),
        shard: None,
    };
    execute(p, &whole, force, observer)
}

/// Runs (or resumes, or reports) the questions of `target`.
pub(crate) fn execute(p: &Prepared, target: &Target, force: bool, observer: &mut dyn Observer) -> Result<RunResult> {
    let started = Instant::now();
    if !force {
        if let Some(done) = already_complete(&target.dir, observer)? {
            return Ok(done);
        }
    }
    // Everything that can fail on bad input happens before the directory is created.
    let mut log = Log { observer, file: None };
    let session = Session::open(p, &mut |s| log.line(s))?;
    let prompts = session.prompts(p)?;
    let budget = Budget::new(p, &session.arch, &prompts, session.shared_tokens())?;
    let runner = Runner {
        p,
        session: &session,
        prompts: &prompts,
        budget: budget.as_ref(),
        target,
    };

    let dir = RunDir::create(&target.dir)?;
    let (_lock, stale) = Lock::acquire(&dir.path)?;
    log.file = Some(dir.appender(store::LOG_FILE)?);
    if let Some(pid) = stale {
        log.line(&format!(
            "took over a stale lock left by pid {pid}, which is no longer running"
        ));
    }
    if force {
        dir.clear_outputs()?;
        log.line("--force: previous outputs removed, starting again");
    }
    dir.write(store::CONFIG_FILE, p.resolved.to_toml().as_bytes())?;
    let recovered = dir.recover(target.range.start)?;
    for note in &recovered.notes {
        log.line(&format!("recovery: {note}"));
    }
    for name in dir.remove_stale_temporaries() {
        log.line(&format!(
            "recovery: removed {name}, left by a process that died while writing"
        ));
    }
    let manifest = match dir.read_manifest()? {
        Some(m) if m.hash == p.hash => m,
        _ => runner.new_manifest(),
    };
    let device = crate::engine::device::numerics(p.device, p.gpu.as_ref());
    let mut journal = Journal::open(&dir, manifest, &recovered, started, device)?;
    let resumed_from = recovered.questions.len();
    runner.log_start(&mut log, resumed_from);

    let generated = runner.questions(resumed_from, &mut journal, &mut log);
    if let Err(Error::Interrupted { signal, .. }) = generated {
        let name = crate::interrupt::Signal(signal).name();
        let (done, total) = (journal.tally().questions(), target.range.len());
        journal.manifest.interrupted_by = Some(name.into());
        let _ = journal.checkpoint(Status::Interrupted);
        log.line(&format!("interrupted by {name} after {done} of {total} questions"));
        return Err(Error::Interrupted {
            signal,
            message: format!("interrupted after question {done} of {total}; run the same command to resume"),
        });
    }
    if let Err(e) = generated {
        journal.manifest.error = Some(e.to_string());
        let _ = journal.checkpoint(Status::Failed);
        log.line(&format!("failed after {} questions: {e}", journal.tally().questions()));
        return Err(e);
    }
    let metrics = journal.checkpoint(Status::Complete)?;
    log.line(&format!("complete: {}", report::summary(&metrics).replace('\n', "; ")));
    Ok(RunResult {
        dir: dir.path.clone(),
        outcome: Outcome::Completed { resumed_from },
        metrics,
    })
}

/// The result of a run (or shard) whose directory is already complete, if it is.
fn already_complete(dir: &Path, observer: &mut dyn Observer) -> Result<Option<RunResult>> {
    match store::read_manifest(dir)? {
        Some(m) if m.status == Status::Complete => {
            let metrics = report::read_metrics(dir)?;
            observer.log(&format!("{}: already complete (use --force to redo it)", dir.display()));
            Ok(Some(RunResult {
                dir: dir.to_path_buf(),
                outcome: Outcome::AlreadyComplete,
                metrics,
            }))
        }
        _ => Ok(None),
    }
}

/// What generating a run's questions needs, once the model is open.
struct Runner<'a> {
    p: &'a Prepared,
    session: &'a Session,
    prompts: &'a [Vec<u32>],
    budget: Option<&'a Budget>,
    target: &'a Target,
}

impl Runner<'_> {
    /// The manifest of a run (or shard) that starts now.
    fn new_manifest(&self) -> Manifest {
        let mut m = Manifest::new(&self.p.resolved.config.name, &self.p.hash, self.inputs());
        m.progress.questions_total = self.target.range.len();
        m.shard = self.target.shard;
        m
    }

    fn inputs(&self) -> store::Inputs {
        let (p, c) = (self.p, &self.p.resolved.config);
        store::Inputs {
            model: store::ModelInput {
                path: self.session.model_path.display().to_string(),
                sha256: p.model_sha256.clone(),
                weights: p.weights.as_str().into(),
                init: (c.model.init == ModelInit::Random).then(|| "random".into()),
                arch: (c.model.init == ModelInit::Random).then(|| c.model.arch.clone().unwrap_or_default()),
            },
            questions: store::QuestionsInput {
                source: p.questions.source.clone(),
                sha256: p.questions.sha256.clone(),
                count: p.questions.questions.len(),
            },
            gpu: p.gpu.as_ref().map(|g| store::GpuInput {
                device: p.device.as_str(),
                name: g.name.clone(),
                compute_capability: g.compute_capability.clone(),
                total_bytes: g.total_bytes,
                device_limit_bytes: c
                    .memory
                    .device_limit
                    .as_deref()
                    .and_then(|l| crate::plan::device(l).ok())
                    .map(|d| d.capacity_bytes),
            }),
        }
    }

    fn log_start(&self, log: &mut Log, resumed_from: usize) {
        let (p, c) = (self.p, &self.p.resolved.config);
        let total = self.target.range.len();
        let part = match self.target.shard {
            Some(s) => format!(" shard {} of {} (questions {}..{})", s.index, s.of, s.first, s.end),
            None => String::new(),
        };
        log.line(&format!(
            "run {} ({}){part}: model {} [{} weights, {} MiB, loaded in {:.2} s], {total} questions × {} samples, chunk size {}",
            &p.hash[..12],
            c.name,
            self.session.model_path.display(),
            p.weights.as_str(),
            self.session.model.weight_bytes >> 20,
            self.session.load_s,
            c.generation.oversample,
            c.generation.chunk_size
        ));
        if resumed_from > 0 {
            log.line(&format!(
                "resuming after question {resumed_from} of {total}: {resumed_from} questions were already durable"
            ));
        }
    }

    /// Generates and commits the questions after the first `resumed_from`, checkpointing every
    /// `checkpoint.every` questions.
    fn questions(&self, resumed_from: usize, journal: &mut Journal, log: &mut Log) -> Result<()> {
        let c = &self.p.resolved.config;
        let (first, end) = (self.target.range.start, self.target.range.end);
        let total = end - first;
        log.observer.begin(total, resumed_from, c.generation.oversample);
        let result = (first + resumed_from..end).try_for_each(|index| {
            crate::interrupt::check()?;
            self.question(index, journal, log)?;
            let done = journal.tally().questions();
            if done.is_multiple_of(c.checkpoint.every) && done < total {
                journal.checkpoint(Status::Running)?;
                log.line(&format!("checkpoint: {done} of {total} questions durable"));
            }
            Ok(())
        });
        log.observer.end();
        result
    }

    /// Generates, grades and commits question `index`; owns its chunk size.
    fn question(&self, index: usize, journal: &mut Journal, log: &mut Log) -> Result<()> {
        let c = &self.p.resolved.config;
        let ids = &self.prompts[index];
        let mut params = generation_params(c, c.generation.chunk_size);
        let mut shrunk_from = None;
        if let Some(b) = self.budget {
            let wanted = params.chunk_size.min(params.oversample);
            let chunk = b.chunk_for(index, ids.len(), wanted)?;
            if chunk < wanted {
                log.line(&format!(
                    "memory.budget: question {index} runs in chunks of {chunk} instead of {wanted} (predicted peak over {})",
                    human_bytes(b.bytes)
                ));
                shrunk_from = Some(params.chunk_size);
                params.chunk_size = chunk;
            }
        }
        let mut oom_retries = 0;
        let (completions, reports) = loop {
            let obs = &mut *log.observer;
            match self.session.generate(index, ids, params, &mut |n| obs.tokens(n)) {
                Ok(done) => break done,
                Err(Error::OutOfMemory { chunk, size, message }) => {
                    let shrink = c.memory.on_exceed == OnExceed::Shrink && params.chunk_size > 1;
                    if !shrink {
                        return Err(self.out_of_memory(index, chunk, size, &message));
                    }
                    let half = (params.chunk_size.min(params.oversample) / 2).max(1);
                    log.line(&format!(
                        "CUDA out of memory at question {index} chunk {chunk} ({size} sequences): retrying the question in chunks of {half}"
                    ));
                    shrunk_from.get_or_insert(c.generation.chunk_size);
                    params.chunk_size = half;
                    oom_retries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(b) = self.budget {
            for r in reports.iter().filter(|r| r.peaks.heap_bytes > b.bytes) {
                log.line(&format!(
                    "warning: question {index} chunk {} measured a peak of {}, over memory.budget = {}",
                    r.chunk,
                    human_bytes(r.peaks.heap_bytes),
                    human_bytes(b.bytes)
                ));
            }
        }
        let record = self.grade(index, completions)?;
        let chunks: Vec<ChunkRecord> = reports
            .iter()
            .map(|r| chunk_record(index, r, shrunk_from, oom_retries))
            .collect();
        journal.commit(&record, &chunks)?;
        let t = journal.tally();
        log.observer.question_done(t.questions(), t.accepted(), t.samples());
        Ok(())
    }

    /// The error of an out-of-memory that is not retried: where, under which limit, what to change.
    fn out_of_memory(&self, index: usize, chunk: usize, size: usize, message: &str) -> Error {
        let c = &self.p.resolved.config;
        let limit = match &c.memory.device_limit {
            Some(l) => format!("memory.device_limit = {l:?}"),
            None => "the whole GPU".into(),
        };
        Error::Run(format!(
            "CUDA out of memory at question {index}, chunk {chunk} ({size} sequences of up to {} new tokens) with {limit} ({message}); set memory.on_exceed = \"shrink\", lower generation.chunk_size or generation.max_new_tokens, or raise memory.device_limit; the questions done so far are kept and a re-run resumes",
            c.generation.max_new_tokens
        ))
    }

    /// Decodes and grades a question's completions.
    fn grade(&self, index: usize, completions: Vec<crate::generate::Completion>) -> Result<QuestionRecord> {
        let c = &self.p.resolved.config;
        let q = &self.p.questions.questions[index];
        let samples = completions
            .into_iter()
            .map(|comp| {
                let text = self
                    .session
                    .tokenizer
                    .decode(&comp.tokens)
                    .map_err(|e| Error::Run(format!("question {index}: cannot decode: {e}")))?;
                let parsed = rft::parse_answer(&text);
                let correct = parsed.is_some_and(|x| rft::is_correct(x, q.answer, c.rft.tolerance));
                Ok(SampleRecord {
                    sample: comp.sample,
                    text,
                    new_tokens: comp.new_tokens,
                    finish: comp.finish,
                    parsed,
                    correct,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QuestionRecord {
            index,
            question: q.question.clone(),
            answer: q.answer,
            samples,
        })
    }
}

fn chunk_record(question: usize, r: &ChunkReport, shrunk_from: Option<usize>, oom_retries: usize) -> ChunkRecord {
    ChunkRecord {
        question,
        chunk: r.chunk,
        size: r.size,
        new_tokens: r.new_tokens,
        prefill_ms: round3(r.prefill_ms),
        ms: round3(r.ms),
        peak_bytes: r.peaks.heap_bytes,
        rss_peak_bytes: r.peaks.rss_bytes,
        gpu_peak_bytes: r.gpu_peak_bytes,
        shrunk_from,
        oom_retries: (oom_retries > 0).then_some(oom_retries),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
