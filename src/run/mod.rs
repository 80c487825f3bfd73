//! One run, end to end: resolve inputs and the content hash ([`prepare`]), open the model
//! ([`Session`]), then generate, grade and store question by question, resuming where a
//! previous session stopped ([`run`]).
//!
//! - [`prepare`]: the config's inputs, digests, hash and directory (nothing created);
//! - [`session`]: the loaded model, tokenizer, chat format and shared prefix;
//! - [`budget`]: `memory.budget`, checked before every question;
//! - `journal`: the durable record (appends, checkpoints, manifest) of a run in progress;
//! - [`plan_check`]: `rftx plan` for a config and `plan --check` on the real model;
//! - [`shard`]: one shard of a run (`rftx shard run`);
//! - [`verify`]: samples of a run generated again, each alone, and compared (`rftx verify`).
mod batching;
mod budget;
mod journal;
pub mod plan_check;
pub mod prepare;
pub mod session;
pub mod shard;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::base::error::{Error, Result};
use crate::base::util::{human_bytes, now_rfc3339};
use crate::core::config::{ModelInit, OnExceed};
use crate::core::generate::{ChunkReport, Finished, Job, StopAfter};
use crate::core::report::{self, Metrics};
use crate::core::rft::Item;
use crate::core::store::{
    self, Appender, Batching, ChunkRecord, Lock, Manifest, QuestionRecord, RunDir, SampleRecord, ShardOf, Status,
};
pub use budget::workload;
use budget::Budget;
use journal::Journal;
pub use plan_check::{check_plan, plan_config, render_expected, CheckRow, ConfigPlan, Expected};
pub use prepare::{prepare, Prepared};
pub use session::{check_kernels, generation_params, rendered_prompts, Session};
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

/// The batching a run of `p` would use with `chunk_size` and `prompts_per_batch` instead of the
/// configured values (`rftx bench`), `"auto"` resolved on this machine.
pub fn resolve_batching(
    p: &Prepared,
    session: &Session,
    prompts: &[Vec<u32>],
    chunk_size: crate::core::config::Count,
    prompts_per_batch: crate::core::config::Count,
) -> Result<Batching> {
    let mut q = p.clone();
    q.resolved.config.generation.chunk_size = chunk_size;
    q.resolved.config.generation.prompts_per_batch = prompts_per_batch;
    batching_for(&q, session, prompts, 0..prompts.len(), &mut |_| {})
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
        if let Some(done) = already_complete(&target.dir, observer, "already complete (use --force to redo it)")? {
            return Ok(done);
        }
    }
    // Everything that can fail on bad input happens before the directory is created.
    let mut log = Log { observer, file: None };
    let session = Session::open(p, &mut |s| log.line(s))?;
    let prompts = session.prompts_in(p, target.range.clone())?;
    let mut notes = Vec::new();
    let batching = batching_for(p, &session, &prompts, target.range.clone(), &mut |s| {
        notes.push(s.to_string())
    })?;
    let budget = Budget::new(p, &session.arch, &prompts, session.shared_tokens(), &batching)?;
    let runner = Runner {
        p,
        session: &session,
        prompts: &prompts,
        budget: budget.as_ref(),
        target,
        batching,
    };
    let device = crate::engine::device::numerics(p.device, session.gpu_info.as_ref());
    p.grader.start().map_err(|e| Error::input(&p.resolved.file, e))?;
    if let (false, Some(m)) = (force, store::read_manifest(&target.dir)?) {
        same_numerics(&m, store::committed_questions(&target.dir), &device, &target.dir)?;
    }
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
    log_recovery(&mut log, &dir, &recovered);
    let manifest = match dir.read_manifest()? {
        Some(m) if m.hash == p.hash => m,
        _ => runner.new_manifest(),
    };
    let mut journal = Journal::open(
        &dir,
        manifest,
        &recovered,
        started,
        &p.resolved.config,
        device,
        batching,
    )?;
    let resumed_from = recovered.questions.len();
    runner.log_start(&mut log, resumed_from);
    for note in &notes {
        log.line(note);
    }

    if let Err(e) = runner.questions(resumed_from, &mut journal, &mut log) {
        return Err(stopped(e, &mut journal, &mut log, target.range.len()));
    }
    let metrics = journal.checkpoint(Status::Complete)?;
    log.line(&format!("complete: {}", report::summary(&metrics).replace('\n', "; ")));
    Ok(RunResult {
        dir: dir.path.clone(),
        outcome: Outcome::Completed { resumed_from },
        metrics,
    })
}

/// What recovering the directory did: torn lines dropped, stale temporaries removed.
fn log_recovery(log: &mut Log, dir: &RunDir, recovered: &store::Recovered) {
    for note in &recovered.notes {
        log.line(&format!("recovery: {note}"));
    }
    for name in dir.remove_stale_temporaries() {
        log.line(&format!(
            "recovery: removed {name}, left by a process that died while writing"
        ));
    }
}

/// A run is continued only on the kind of device its committed questions were computed on (the
/// run hash names the kind, CPU or GPU, not the GPU model or the CPU's instruction sets): on
/// another, the samples would differ from what a single session writes. Checked before the
/// directory is touched.
fn same_numerics(m: &Manifest, committed: usize, device: &str, dir: &Path) -> Result<()> {
    if committed == 0 {
        return Ok(());
    }
    let Some(other) = m
        .sessions
        .iter()
        .filter_map(|s| s.device.as_deref())
        .find(|d| *d != device)
    else {
        return Ok(());
    };
    Err(Error::input(
        dir,
        format!(
            "its {committed} committed questions were computed on `{other}`, and this process computes on `{device}`, whose samples differ: continue it where `{other}` is (with Slurm: --constraint or --gres naming that device), or start it over here with --force"
        ),
    ))
}

/// Records why generation stopped (a signal: `interrupted`; anything else: `failed`) in the
/// manifest and the log, and returns the error to report.
fn stopped(e: Error, journal: &mut Journal, log: &mut Log, total: usize) -> Error {
    let done = journal.tally().questions();
    if let Error::Interrupted { signal, .. } = e {
        let name = crate::base::interrupt::Signal(signal).name();
        journal.manifest.interrupted_by = Some(name.into());
        let _ = journal.checkpoint(Status::Interrupted);
        log.line(&format!("interrupted by {name} after {done} of {total} questions"));
        return Error::Interrupted {
            signal,
            message: format!("interrupted after question {done} of {total}; run the same command to resume"),
        };
    }
    journal.manifest.error = Some(e.to_string());
    let _ = journal.checkpoint(Status::Failed);
    log.line(&format!("failed after {done} questions: {e}"));
    e
}

/// The batching of questions `range` of `p` on this machine (`run::batching`); `say` gets the
/// lines for the log.
fn batching_for(
    p: &Prepared,
    session: &Session,
    prompts: &[Vec<u32>],
    range: Range<usize>,
    say: &mut dyn FnMut(&str),
) -> Result<Batching> {
    let longest = prompts[range.clone()].iter().map(Vec::len).max().unwrap_or(0);
    batching::resolve(
        p,
        &session.arch,
        session.gpu_info.as_ref(),
        longest,
        session.shared_tokens(),
        range.len(),
        say,
    )
}

/// The result of a run (or shard) whose directory is already complete (`store::is_complete`),
/// if it is; `observer` is told `why` it is left alone.
fn already_complete(dir: &Path, observer: &mut dyn Observer, why: &str) -> Result<Option<RunResult>> {
    if !store::is_complete(dir)? {
        return Ok(None);
    }
    observer.log(&format!("{}: {why}", dir.display()));
    Ok(Some(RunResult {
        dir: dir.to_path_buf(),
        outcome: Outcome::AlreadyComplete,
        metrics: report::read_metrics(dir)?,
    }))
}

/// What generating a run's questions needs, once the model is open.
struct Runner<'a> {
    p: &'a Prepared,
    session: &'a Session,
    prompts: &'a [Vec<u32>],
    budget: Option<&'a Budget>,
    target: &'a Target,
    batching: Batching,
}

/// Where a run's commits stand: the next question to commit, the questions finished ahead of
/// it, and the out-of-memory retries of each question.
struct Progress {
    next: usize,
    waiting: BTreeMap<usize, Finished>,
    retried: HashMap<usize, usize>,
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
            gpu: self.session.gpu_info.as_ref().map(|g| store::GpuInput {
                device: p.device.as_str(),
                name: g.name.clone(),
                compute_capability: g.compute_capability.clone(),
                total_bytes: g.total_bytes,
                device_limit_bytes: c
                    .memory
                    .device_limit
                    .as_deref()
                    .and_then(|l| crate::core::plan::device(l).ok())
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
            "run {} ({}){part}: model {} [{} weights, {} MiB, loaded in {:.2} s], {total} questions × {} samples, chunk size {}, {} question(s) per batch",
            &p.hash[..12],
            c.name,
            self.session.model_path.display(),
            p.weights.as_str(),
            self.session.model.weight_bytes >> 20,
            self.session.load_s,
            c.generation.oversample,
            self.batching.chunk_size,
            self.batching.prompts_per_batch
        ));
        if resumed_from > 0 {
            log.line(&format!(
                "resuming after question {resumed_from} of {total}: {resumed_from} questions were already durable"
            ));
        }
    }

    /// Generates and commits the questions after the first `resumed_from`, checkpointing every
    /// `checkpoint.every` questions. Questions finish out of order when several decode together;
    /// they are committed in order. An out-of-memory (`memory.on_exceed = "shrink"`) restarts
    /// the questions not yet finished with fewer questions per batch, then smaller chunks.
    fn questions(&self, resumed_from: usize, journal: &mut Journal, log: &mut Log) -> Result<()> {
        let c = &self.p.resolved.config;
        log.observer
            .begin(self.target.range.len(), resumed_from, c.generation.oversample);
        let mut state = Progress {
            next: self.target.range.start + resumed_from,
            waiting: BTreeMap::new(),
            retried: HashMap::new(),
        };
        let mut batching = self.batching;
        let result = loop {
            match self.attempt(batching, &mut state, journal, log) {
                Err(e @ Error::OutOfMemory { .. }) => {
                    let Some(smaller) = self.after_oom(batching) else {
                        break Err(self.out_of_memory(e));
                    };
                    log.line(&format!(
                        "{e}: retrying the unfinished questions with {} per batch in chunks of {}",
                        smaller.prompts_per_batch, smaller.chunk_size
                    ));
                    batching = smaller;
                }
                other => break other,
            }
        };
        log.observer.end();
        result
    }

    /// Half the questions per batch, else half the chunk size; `None` when nothing is left to
    /// halve or `memory.on_exceed` is `fail`.
    fn after_oom(&self, b: Batching) -> Option<Batching> {
        let c = &self.p.resolved.config;
        if c.memory.on_exceed != OnExceed::Shrink {
            return None;
        }
        let chunk = b.chunk_size.min(c.generation.oversample);
        if b.prompts_per_batch > 1 {
            Some(Batching {
                prompts_per_batch: b.prompts_per_batch / 2,
                ..b
            })
        } else if chunk > 1 {
            Some(Batching {
                chunk_size: chunk / 2,
                ..b
            })
        } else {
            None
        }
    }

    /// One pass over the questions from `state.next` on (skipping those finished and waiting
    /// for their turn to commit), `batching.prompts_per_batch` at a time.
    fn attempt(&self, batching: Batching, state: &mut Progress, journal: &mut Journal, log: &mut Log) -> Result<()> {
        let c = &self.p.resolved.config;
        let skip: Vec<usize> = state.waiting.keys().copied().collect();
        let stop: std::cell::RefCell<Option<Error>> = Default::default();
        let handed_out: std::cell::RefCell<Vec<usize>> = Default::default();
        let log = std::cell::RefCell::new(log);
        let mut jobs = (state.next..self.target.range.end)
            .filter(|i| !skip.contains(i))
            .map_while(|index| {
                let prompt = &self.prompts[index];
                match self.chunk_for(index, prompt.len(), batching.chunk_size, &mut log.borrow_mut()) {
                    Ok(chunk_size) => {
                        handed_out.borrow_mut().push(index);
                        Some(Job {
                            index: index as u64,
                            prompt,
                            chunk_size,
                        })
                    }
                    Err(e) => {
                        *stop.borrow_mut() = Some(e);
                        None
                    }
                }
            });
        let params = generation_params(c, batching.chunk_size);
        // `generation.stop_after_correct`: a chunk's samples judged as they will be committed.
        let judge = |index: u64, completions: &[crate::base::record::Completion]| -> Result<Vec<bool>> {
            let record = self.grade(index as usize, completions.to_vec())?;
            Ok(record.samples.iter().map(|s| s.correct).collect())
        };
        let stop_after = c
            .generation
            .stop_after_correct
            .map(|right| StopAfter { right, judge: &judge });
        let generated = self.session.generate_batch(
            &mut jobs,
            batching.prompts_per_batch,
            (params, stop_after),
            &mut |n| log.borrow_mut().observer.tokens(n),
            &mut |finished| {
                state.waiting.insert(finished.index as usize, finished);
                self.commit_ready(state, journal, &mut log.borrow_mut())
            },
        );
        if let Err(Error::OutOfMemory { .. }) = &generated {
            // Every question handed out and not finished is retried.
            for &i in handed_out.borrow().iter() {
                if i >= state.next && !state.waiting.contains_key(&i) {
                    *state.retried.entry(i).or_default() += 1;
                }
            }
        }
        generated?;
        match stop.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The chunk size of question `index`: `wanted`, unless `memory.budget` makes it smaller.
    fn chunk_for(&self, index: usize, prompt_tokens: usize, wanted: usize, log: &mut Log) -> Result<usize> {
        let wanted = wanted.min(self.p.resolved.config.generation.oversample);
        let Some(b) = self.budget else { return Ok(wanted) };
        let chunk = b.chunk_for(index, prompt_tokens, wanted)?;
        if chunk < wanted {
            log.line(&format!(
                "memory.budget: question {index} runs in chunks of {chunk} instead of {wanted} (predicted peak over {})",
                human_bytes(b.bytes)
            ));
        }
        Ok(chunk)
    }

    /// Grades and commits the finished questions that are next in order.
    fn commit_ready(&self, state: &mut Progress, journal: &mut Journal, log: &mut Log) -> Result<()> {
        let c = &self.p.resolved.config;
        let total = self.target.range.len();
        while let Some(finished) = state.waiting.remove(&state.next) {
            let index = state.next;
            // The question's chunk size, as its first chunk ran (budgets and retries may have
            // made it smaller than configured).
            let chunk = finished.reports.first().map_or(0, |r| r.size);
            self.warn_over_budget(index, &finished.reports, log);
            let record = self.grade(index, finished.completions)?;
            let configured = c.generation.chunk_size.fixed().unwrap_or(self.batching.chunk_size);
            let shrunk_from = (chunk < configured.min(c.generation.oversample)).then_some(configured);
            let retries = state.retried.get(&index).copied().unwrap_or(0);
            let chunks: Vec<ChunkRecord> = finished
                .reports
                .iter()
                .map(|r| chunk_record(index, r, shrunk_from, retries))
                .collect();
            journal.commit(&record, &chunks)?;
            state.next += 1;
            let t = journal.tally();
            log.observer.question_done(t.questions(), t.accepted(), t.samples());
            let done = t.questions();
            if done.is_multiple_of(c.checkpoint.every) && done < total {
                journal.checkpoint(Status::Running)?;
                log.line(&format!("checkpoint: {done} of {total} questions durable"));
            }
        }
        Ok(())
    }

    fn warn_over_budget(&self, index: usize, reports: &[ChunkReport], log: &mut Log) {
        let Some(b) = self.budget else { return };
        for r in reports.iter().filter(|r| r.peaks.heap_bytes > b.bytes) {
            log.line(&format!(
                "warning: question {index} chunk {} measured a peak of {}, over memory.budget = {}",
                r.chunk,
                human_bytes(r.peaks.heap_bytes),
                human_bytes(b.bytes)
            ));
        }
    }

    /// The error of an out-of-memory that is not retried (`e`, an [`Error::OutOfMemory`]):
    /// where, under which limit, what to change.
    fn out_of_memory(&self, e: Error) -> Error {
        let c = &self.p.resolved.config;
        let Error::OutOfMemory {
            site,
            question,
            chunk,
            size,
            message,
        } = e
        else {
            return e;
        };
        let limit = match &c.memory.device_limit {
            Some(l) => format!("memory.device_limit = {l:?}"),
            None if self.p.device.is_gpu() => "the whole GPU".into(),
            None => "the machine's memory".into(),
        };
        let fix = match c.memory.on_exceed {
            OnExceed::Fail => "set memory.on_exceed = \"shrink\", lower generation.prompts_per_batch, generation.chunk_size or generation.max_new_tokens, or raise memory.device_limit",
            OnExceed::Shrink => "memory.on_exceed = \"shrink\" went down to one question per batch in chunks of one and it still does not fit: lower generation.max_new_tokens, raise memory.device_limit, or use smaller weights (model.weights) or a smaller model",
        };
        Error::Run(format!(
            "out of memory at question {question}, chunk {chunk} ({size} sequences of up to {} new tokens) in {} with {limit} ({message}); {fix}; the questions done so far are kept and a re-run resumes",
            c.generation.max_new_tokens,
            site.describe()
        ))
    }

    /// Decodes and grades a question's completions (see [`grade_completions`]).
    fn grade(&self, index: usize, completions: Vec<crate::base::record::Completion>) -> Result<QuestionRecord> {
        let fix = "; the questions before it are committed: fix the verifier and run the same command to resume";
        grade_completions(self.p, self.session, index, completions, fix)
    }
}

/// Question `index`'s record with `completions` decoded and graded, as a run commits it (in one
/// batch: the `command` grader asks its verifier about them together); `rftx verify` builds the
/// samples it compares the same way. `fix` ends the message of a grader's failure.
pub(crate) fn grade_completions(
    p: &Prepared,
    session: &Session,
    index: usize,
    completions: Vec<crate::base::record::Completion>,
    fix: &str,
) -> Result<QuestionRecord> {
    let q = &p.questions.questions[index];
    let texts = completions
        .iter()
        .map(|comp| {
            session
                .tokenizer
                .decode(&comp.tokens)
                .map_err(|e| Error::Run(format!("question {index}: cannot decode: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let row = crate::core::rft::command::row(index, q.id.as_deref(), &q.question);
    let items: Vec<Item> = texts
        .iter()
        .map(|t| Item {
            completion: t,
            answer: &q.answer,
            row: &row,
        })
        .collect();
    let verdicts = p
        .grader
        .grade_all(&items)
        .map_err(|e| Error::Run(format!("question {index}: {e}{fix}")))?;
    let samples = completions
        .into_iter()
        .zip(texts)
        .zip(verdicts)
        .map(|((comp, text), verdict)| SampleRecord {
            sample: comp.sample,
            text,
            new_tokens: comp.new_tokens,
            finish: comp.finish,
            parsed: verdict.parsed,
            correct: verdict.correct,
            reason: verdict.reason,
            logprob_sum: comp.logprobs.as_deref().map(store::logprob_sum),
            logprobs: comp.logprobs,
        })
        .collect();
    Ok(QuestionRecord {
        index,
        id: q.id.clone(),
        question: q.question.clone(),
        user: q.user.clone(),
        answer: q.answer.clone(),
        samples,
    })
}

/// The `chunks.jsonl` line of a chunk's report.
pub fn chunk_record(question: usize, r: &ChunkReport, shrunk_from: Option<usize>, oom_retries: usize) -> ChunkRecord {
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
        steps: round3(r.steps),
        batch_rows: r.batch_rows,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
