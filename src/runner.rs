//! One run, end to end: resolve inputs and the content hash ([`prepare`]), then generate,
//! grade and store, resuming where a previous session stopped ([`run`]).
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{OnExceed, Resolved};
use crate::data::QuestionSet;
use crate::error::{Error, Result};
use crate::generate::{generate_question, GenerationParams, SharedPrefix};
use crate::model::{Loaded, Model};
use crate::plan::{self, Arch, Workload};
use crate::prompt::{self, ChatFormat};
use crate::report::{self, Metrics, Tally};
use crate::rft::{self, Dataset};
use crate::sampling::Sampler;
use crate::store::{self, Appender, ChunkRecord, Lock, Manifest, QuestionRecord, RunDir, SampleRecord, Status};
use crate::util::now_rfc3339;

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

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// A configuration with all its inputs resolved and digested: everything the hash depends on.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub resolved: Resolved,
    /// The GGUF file; for the default model, its place in the cache (it may not exist yet).
    pub model_path: PathBuf,
    pub model_is_default: bool,
    pub model_sha256: String,
    pub questions: QuestionSet,
    /// sha256 of the canonical config, 64 hex digits.
    pub hash: String,
    pub dir: PathBuf,
}

/// Resolves inputs and computes the run hash and directory, creating nothing. The default
/// model's digest is the pinned one (it is verified when fetched and when loaded).
pub fn prepare(resolved: Resolved, runs_dir: &Path) -> Result<Prepared> {
    let (model_path, model_is_default, model_sha256) = match &resolved.model_path {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::input(
                    p,
                    format!("model.path: no such file (set in {}); point it at a llama-architecture GGUF file, or remove it to use the default model", resolved.file.display()),
                ));
            }
            (p.clone(), false, crate::util::sha256_file(p)?)
        }
        None => (
            crate::fetch::default_model_path(),
            true,
            crate::fetch::DEFAULT_MODEL_SHA256.to_string(),
        ),
    };
    let questions = QuestionSet::from_config(resolved.data_path.as_deref(), resolved.config.data.limit)?;
    let input = resolved.hash_input(&model_sha256, &questions.sha256, questions.questions.len());
    let hash = crate::util::sha256_hex(crate::config::canonical_json(&input).as_bytes());
    let dir = store::run_dir_path(runs_dir, &resolved.config.name, &hash);
    Ok(Prepared {
        resolved,
        model_path,
        model_is_default,
        model_sha256,
        questions,
        hash,
        dir,
    })
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

/// Runs (or resumes, or reports) the prepared configuration.
pub fn run(p: &Prepared, force: bool, observer: &mut dyn Observer) -> Result<RunResult> {
    let session_start = Instant::now();
    if !force {
        if let Some(m) = store::read_manifest(&p.dir)? {
            if m.status == Status::Complete {
                let metrics = read_metrics(&p.dir)?;
                observer.log(&format!(
                    "{}: already complete (use --force to redo it)",
                    p.dir.display()
                ));
                return Ok(RunResult {
                    dir: p.dir.clone(),
                    outcome: Outcome::AlreadyComplete,
                    metrics,
                });
            }
        }
    }

    // Everything that can fail on bad input happens before the directory is created.
    let mut log = Log { observer, file: None };
    let c = &p.resolved.config;
    let Session {
        model_path,
        model,
        tokenizer,
        format,
        shared,
        load_s,
    } = open_session(p, &mut |s| log.line(s))?;
    let total = p.questions.questions.len();
    let prompts = tokenize_prompts(p, &tokenizer, format)?;
    let budget = Budget::new(p, &model_path, &prompts, shared.as_ref().map_or(0, |s| s.tokens.len()))?;

    let dir = RunDir::create(&p.dir)?;
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

    let recovered = dir.recover()?;
    for note in &recovered.notes {
        log.line(&format!("recovery: {note}"));
    }
    let mut tally = Tally::default();
    let mut dataset = Dataset::default();
    for q in &recovered.questions {
        tally.add_question(q);
        add_to_dataset(&mut dataset, q);
    }
    recovered.chunks.iter().for_each(|ch| tally.add_chunk(ch));
    let resumed_from = recovered.questions.len();

    let now = now_rfc3339();
    let mut manifest = match dir.read_manifest()? {
        Some(m) if m.hash == p.hash => m,
        _ => Manifest {
            layout_version: store::LAYOUT_VERSION,
            name: c.name.clone(),
            hash: p.hash.clone(),
            status: Status::Running,
            rftx_version: env!("CARGO_PKG_VERSION").into(),
            created_at: now.clone(),
            started_at: now.clone(),
            finished_at: None,
            inputs: store::Inputs {
                model: store::ModelInput {
                    path: model_path.display().to_string(),
                    sha256: p.model_sha256.clone(),
                    weights: c.model.weights.as_str().into(),
                },
                questions: store::QuestionsInput {
                    source: p.questions.source.clone(),
                    sha256: p.questions.sha256.clone(),
                    count: total,
                },
            },
            progress: store::Progress {
                questions_done: 0,
                questions_total: total,
            },
            sessions: Vec::new(),
            wall_s: 0.0,
            error: None,
        },
    };
    let earlier_wall_s = manifest.wall_s;
    manifest.status = Status::Running;
    manifest.error = None;
    manifest.finished_at = None;
    manifest.rftx_version = env!("CARGO_PKG_VERSION").into();
    manifest.progress.questions_done = resumed_from;
    manifest.sessions.push(store::Session {
        started_at: now,
        ended_at: None,
        resumed_at_question: resumed_from,
        pid: std::process::id(),
    });
    dir.write_manifest(&manifest)?;

    log.line(&format!(
        "run {} ({}): model {} [{} weights, {} MiB, loaded in {load_s:.2} s], {total} questions × {} samples, chunk size {}",
        &p.hash[..12],
        c.name,
        model_path.display(),
        c.model.weights.as_str(),
        model.weight_bytes >> 20,
        c.generation.oversample,
        c.generation.chunk_size
    ));
    if resumed_from > 0 {
        log.line(&format!(
            "resuming after question {resumed_from} of {total}: {resumed_from} questions were already durable"
        ));
    }

    let mut samples_out = dir.appender(store::SAMPLES_FILE)?;
    let mut chunks_out = dir.appender(store::CHUNKS_FILE)?;
    let params = generation_params(c, c.generation.chunk_size);
    let every = c.checkpoint.every;

    let checkpoint = |manifest: &mut Manifest,
                      tally: &Tally,
                      dataset: &Dataset,
                      samples_out: &mut Appender,
                      chunks_out: &mut Appender,
                      status: Status|
     -> Result<Metrics> {
        chunks_out.sync()?;
        samples_out.sync()?;
        let wall_s = earlier_wall_s + session_start.elapsed().as_secs_f64();
        let metrics = tally.metrics(total, wall_s, dataset.len());
        dir.write(store::DATASET_FILE, dataset.to_json().as_bytes())?;
        dir.write(
            store::METRICS_FILE,
            (serde_json::to_string_pretty(&metrics).expect("metrics serialise") + "\n").as_bytes(),
        )?;
        manifest.progress.questions_done = tally.questions();
        manifest.wall_s = wall_s;
        manifest.status = status;
        if status != Status::Running {
            let end = now_rfc3339();
            manifest.sessions.last_mut().expect("a session").ended_at = Some(end.clone());
            if status == Status::Complete {
                manifest.finished_at = Some(end);
            }
        }
        dir.write_manifest(manifest)?;
        Ok(metrics)
    };

    log.observer.begin(total, resumed_from, c.generation.oversample);
    let generated = (|| -> Result<()> {
        for (index, q) in p.questions.questions.iter().enumerate().skip(resumed_from) {
            let ids = &prompts[index];
            let mut params = params;
            let mut shrunk_from = None;
            if let Some(b) = &budget {
                let wanted = params.chunk_size.min(params.oversample);
                let chunk = b.chunk_for(index, ids.len(), wanted)?;
                if chunk < wanted {
                    log.line(&format!(
                        "memory.budget: question {index} runs in chunks of {chunk} instead of {wanted} (predicted peak over {})",
                        crate::util::human_bytes(b.bytes)
                    ));
                    shrunk_from = Some(params.chunk_size);
                    params.chunk_size = chunk;
                }
            }
            let obs = &mut *log.observer;
            let (completions, reports) = generate_question(
                &model,
                shared.as_ref(),
                ids,
                &tokenizer.stop_ids,
                index as u64,
                &params,
                &mut |n| obs.tokens(n),
            )?;
            if let Some(b) = &budget {
                for r in reports.iter().filter(|r| r.peaks.heap_bytes > b.bytes) {
                    log.line(&format!(
                        "warning: question {index} chunk {} measured a peak of {}, over memory.budget = {}",
                        r.chunk,
                        crate::util::human_bytes(r.peaks.heap_bytes),
                        crate::util::human_bytes(b.bytes)
                    ));
                }
            }
            let mut samples = Vec::with_capacity(completions.len());
            for comp in completions {
                let text = tokenizer
                    .decode(&comp.tokens)
                    .map_err(|e| Error::Run(format!("question {index}: cannot decode: {e}")))?;
                let parsed = rft::parse_answer(&text);
                let correct = parsed.is_some_and(|x| rft::is_correct(x, q.answer, c.rft.tolerance));
                samples.push(SampleRecord {
                    sample: comp.sample,
                    text,
                    new_tokens: comp.new_tokens,
                    finish: comp.finish,
                    parsed,
                    correct,
                });
            }
            let record = QuestionRecord {
                index,
                question: q.question.clone(),
                answer: q.answer,
                samples,
            };
            for r in &reports {
                let chunk = ChunkRecord {
                    question: index,
                    chunk: r.chunk,
                    size: r.size,
                    new_tokens: r.new_tokens,
                    prefill_ms: round3(r.prefill_ms),
                    ms: round3(r.ms),
                    peak_bytes: r.peaks.heap_bytes,
                    rss_peak_bytes: r.peaks.rss_bytes,
                    shrunk_from,
                };
                tally.add_chunk(&chunk);
                chunks_out.append(&chunk)?;
            }
            // The samples line commits the question.
            samples_out.append(&record)?;
            tally.add_question(&record);
            add_to_dataset(&mut dataset, &record);
            log.observer
                .question_done(tally.questions(), tally.accepted(), tally.samples());
            if tally.questions() % every == 0 && tally.questions() < total {
                checkpoint(
                    &mut manifest,
                    &tally,
                    &dataset,
                    &mut samples_out,
                    &mut chunks_out,
                    Status::Running,
                )?;
                log.line(&format!(
                    "checkpoint: {} of {total} questions durable",
                    tally.questions()
                ));
            }
        }
        Ok(())
    })();
    log.observer.end();

    if let Err(e) = generated {
        manifest.error = Some(e.to_string());
        let _ = checkpoint(
            &mut manifest,
            &tally,
            &dataset,
            &mut samples_out,
            &mut chunks_out,
            Status::Failed,
        );
        log.line(&format!("failed after {} questions: {e}", tally.questions()));
        return Err(e);
    }
    let metrics = checkpoint(
        &mut manifest,
        &tally,
        &dataset,
        &mut samples_out,
        &mut chunks_out,
        Status::Complete,
    )?;
    log.line(&format!("complete: {}", report::summary(&metrics).replace('\n', "; ")));
    Ok(RunResult {
        dir: dir.path.clone(),
        outcome: Outcome::Completed { resumed_from },
        metrics,
    })
}

/// A loaded model with what generation needs around it.
pub struct Session {
    pub model_path: PathBuf,
    pub model: Model,
    pub tokenizer: crate::tokenizer::GgufTokenizer,
    pub format: ChatFormat,
    pub shared: Option<SharedPrefix>,
    /// Seconds to load the model and prefill the shared prefix.
    pub load_s: f64,
}

/// Fetches the default model if needed (`say` gets progress lines), loads the model, recognises
/// its chat format and prefills the shared prompt prefix.
pub fn open_session(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Session> {
    let c = &p.resolved.config;
    let model_path = model_file(p, say)?;
    let start = Instant::now();
    let Loaded {
        model,
        tokenizer,
        chat_template,
    } = Model::load(&model_path, c.model.weights)?;
    let format = ChatFormat::detect(chat_template.as_deref())
        .map_err(|e| Error::input(&model_path, format!("cannot format prompts for this model: {e}")))?;
    let shared = shared_prefix(&model, &tokenizer, format, c)?;
    Ok(Session {
        model_path,
        model,
        tokenizer,
        format,
        shared,
        load_s: start.elapsed().as_secs_f64(),
    })
}

/// The model file: the configured one, or the default model, fetched and verified if needed.
fn model_file(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if p.model_is_default {
        crate::fetch::ensure_default_model(say)
    } else {
        Ok(p.model_path.clone())
    }
}

/// The chat-formatted prompt text of every question, in the model's chat format.
pub fn rendered_prompts(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Vec<String>> {
    let model_path = model_file(p, say)?;
    let (_, content) = crate::model::read_header(&model_path)?;
    let format =
        ChatFormat::detect(crate::model::chat_template(&content.metadata)).map_err(|e| Error::input(&model_path, e))?;
    Ok(p.questions
        .questions
        .iter()
        .map(|q| prompt_text(&p.resolved.config, format, &q.question))
        .collect())
}

/// The token ids of every question's prompt.
pub fn tokenize_prompts(
    p: &Prepared,
    tokenizer: &crate::tokenizer::GgufTokenizer,
    format: ChatFormat,
) -> Result<Vec<Vec<u32>>> {
    let c = &p.resolved.config;
    p.questions
        .questions
        .iter()
        .map(|q| tokenizer.encode(&prompt_text(c, format, &q.question)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Run(format!("cannot tokenize a prompt: {e}")))
}

/// The generation parameters of a config, at `chunk_size`.
pub fn generation_params(c: &crate::config::Config, chunk_size: usize) -> GenerationParams {
    GenerationParams {
        oversample: c.generation.oversample,
        chunk_size,
        max_new_tokens: c.generation.max_new_tokens,
        sampler: Sampler {
            temperature: c.generation.temperature,
            top_p: c.generation.top_p,
        },
        seed: c.seed,
    }
}

/// The cache of the prompt text all questions share (system, few-shot turns), computed once per
/// session; `None` if it tokenizes to nothing.
pub fn shared_prefix(
    model: &Model,
    tokenizer: &crate::tokenizer::GgufTokenizer,
    format: ChatFormat,
    c: &crate::config::Config,
) -> Result<Option<SharedPrefix>> {
    let tokens = tokenizer
        .encode(&prompt::shared_prefix(format, &c.prompt))
        .map_err(Error::Run)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    Ok(Some(SharedPrefix::new(model, tokens)?))
}

/// The chat-formatted prompt of one question.
pub fn prompt_text(c: &crate::config::Config, format: ChatFormat, question: &str) -> String {
    prompt::render(format, &prompt::messages(&c.prompt, question))
}

/// `memory.budget`, checked before every question's chunks against the predicted peak.
struct Budget {
    bytes: u64,
    on_exceed: OnExceed,
    arch: Arch,
    workload: Workload,
}

impl Budget {
    /// `None` without a budget. A budget too small for one sequence of the longest prompt is an
    /// input error, raised before anything runs.
    fn new(p: &Prepared, model_path: &Path, prompts: &[Vec<u32>], shared_tokens: usize) -> Result<Option<Budget>> {
        let c = &p.resolved.config;
        let Some(spec) = &c.memory.budget else { return Ok(None) };
        let device = plan::device(spec).map_err(|e| Error::input(&p.resolved.file, format!("memory.budget: {e}")))?;
        let arch = Arch::from_gguf(model_path)?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let workload = Workload {
            layout: plan::Layout::Rftx,
            ..workload(c, longest, shared_tokens)
        };
        let b = Budget {
            bytes: device.capacity_bytes,
            on_exceed: c.memory.on_exceed,
            arch,
            workload,
        };
        let one = b.predict(b.workload.prompt_tokens, 1);
        if one > b.bytes {
            return Err(Error::input(
                &p.resolved.file,
                format!(
                    "memory.budget = {spec:?} ({}) is below the predicted peak of even one sequence ({}); raise memory.budget or lower generation.max_new_tokens",
                    crate::util::human_bytes(b.bytes),
                    crate::util::human_bytes(one)
                ),
            ));
        }
        Ok(Some(b))
    }

    fn predict(&self, prompt_tokens: usize, chunk: usize) -> u64 {
        let w = Workload {
            prompt_tokens,
            chunk_size: chunk,
            ..self.workload.clone()
        };
        plan::predict(&self.arch, &w, false).total
    }

    /// The chunk size to use for a question: `wanted` if it fits, else (shrink) the largest that
    /// does, else (fail) an out-of-memory error.
    fn chunk_for(&self, question: usize, prompt_tokens: usize, wanted: usize) -> Result<usize> {
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
                crate::util::human_bytes(need),
                crate::util::human_bytes(self.bytes)
            ))),
        }
    }
}

/// The workload of a config (layout from `[plan]`) whose longest prompt has `prompt_tokens` tokens.
pub fn workload(c: &crate::config::Config, prompt_tokens: usize, shared_prefix_tokens: usize) -> Workload {
    Workload {
        layout: c.plan.layout,
        prompt_tokens,
        shared_prefix_tokens,
        max_new_tokens: c.generation.max_new_tokens,
        oversample: c.generation.oversample,
        chunk_size: c.generation.chunk_size,
        prompts_per_batch: c.plan.prompts_per_batch,
        weights: c.model.weights,
    }
}

fn add_to_dataset(dataset: &mut Dataset, q: &QuestionRecord) {
    for s in q.samples.iter().filter(|s| s.correct) {
        dataset.add(&q.question, q.answer, &s.text);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

pub fn read_metrics(dir: &Path) -> Result<Metrics> {
    let p = dir.join(store::METRICS_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("{}: cannot read", p.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::input(&p, format!("unreadable metrics ({e}); rerun with --force")))
}

/// The model file a plan reads its architecture and tokenizer from, if it is on disk.
fn model_on_disk(p: &Prepared) -> Option<PathBuf> {
    p.model_path.is_file().then(|| p.model_path.clone())
}

/// The longest prompt of the question set and the shared prefix, in tokens, with the tokenizer
/// of `model` (exact), or estimated at 3.5 characters per token when no model file is at hand.
fn prompt_lengths(p: &Prepared, model: Option<&Path>) -> Result<(usize, usize, bool)> {
    let c = &p.resolved.config;
    let longest_text = |format| {
        p.questions
            .questions
            .iter()
            .map(move |q| prompt_text(c, format, &q.question))
    };
    if let Some(path) = model {
        let (_, content) = crate::model::read_header(path)?;
        let tok = crate::tokenizer::GgufTokenizer::from_gguf_metadata(&content.metadata)
            .map_err(|e| Error::input(path, e))?;
        if let Ok(format) = ChatFormat::detect(crate::model::chat_template(&content.metadata)) {
            let mut longest = 0;
            for text in longest_text(format) {
                longest = longest.max(tok.encode(&text).map_err(Error::Run)?.len());
            }
            let shared = tok
                .encode(&prompt::shared_prefix(format, &c.prompt))
                .map_err(Error::Run)?
                .len();
            return Ok((longest, shared, false));
        }
    }
    let estimate = |chars: usize| (chars as f64 / 3.5).ceil() as usize;
    let longest = longest_text(ChatFormat::ChatMl)
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0);
    let shared = prompt::shared_prefix(ChatFormat::ChatMl, &c.prompt).chars().count();
    Ok((estimate(longest), estimate(shared), true))
}

/// A plan for a prepared config.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigPlan {
    #[serde(flatten)]
    pub plan: plan::Plan,
    /// Whether the prompt length was estimated (no tokenizer at hand) rather than counted.
    pub prompt_tokens_estimated: bool,
}

/// Plans the configured run. Architecture: `arch` (a preset) > `model.arch` > the configured
/// GGUF file > the default model's preset. Device: `device` > `plan.device` > this machine.
pub fn plan_config(p: &Prepared, arch: Option<&str>, device: Option<&str>) -> Result<ConfigPlan> {
    let c = &p.resolved.config;
    let bad = |e: String| Error::input(&p.resolved.file, e);
    let on_disk = model_on_disk(p);
    let arch = match arch.or(c.model.arch.as_deref()) {
        Some(name) => plan::arch_preset(name).ok_or_else(|| {
            bad(format!(
                "--arch {name}: not a known architecture; use one of: {}",
                plan::ARCH_PRESETS.join(", ")
            ))
        })?,
        None => match &on_disk {
            Some(path) => Arch::from_gguf(path)?,
            None => {
                let mut a = plan::arch_preset("smollm2-135m").expect("preset");
                // The default GGUF: Q4_1 matrices (20 bytes per 32 weights), Q8_0 embedding.
                a.native_bytes_per_weight = 20.0 / 32.0;
                a.name = crate::fetch::DEFAULT_MODEL_FILE.into();
                a
            }
        },
    };
    let device = plan::device(device.or(c.plan.device.as_deref()).unwrap_or("cpu")).map_err(bad)?;
    // The SmolLM2 family shares one tokenizer: the default model's serves presets too.
    let tokenizer_file = on_disk.clone().or_else(|| {
        let d = crate::fetch::default_model_path();
        d.is_file().then_some(d)
    });
    let (prompt_tokens, shared, estimated) = prompt_lengths(p, tokenizer_file.as_deref())?;
    let plan = plan::plan(arch, workload(c, prompt_tokens, shared), device);
    Ok(ConfigPlan {
        plan,
        prompt_tokens_estimated: estimated,
    })
}

/// One row of a plan check: predicted and measured heap peak of one chunk size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub chunk_size: usize,
    pub prompt_tokens: usize,
    pub predicted_peak_bytes: u64,
    pub measured_peak_bytes: u64,
    /// (predicted − measured) / measured.
    pub relative_error: f64,
}

/// Runs the first question of the config at each chunk size on the real model and compares the
/// measured heap peak (counting allocator) with the prediction. Needs the counting allocator.
pub fn check_plan(p: &Prepared, chunk_sizes: &[usize], observer: &mut dyn Observer) -> Result<Vec<CheckRow>> {
    if !crate::memory::heap_tracking() {
        return Err(Error::Run(
            "the counting allocator is not installed in this program".into(),
        ));
    }
    let c = &p.resolved.config;
    let session = open_session(p, &mut |s| observer.log(s))?;
    let Session {
        model_path,
        model,
        tokenizer,
        shared,
        ..
    } = &session;
    let arch = Arch::from_gguf(model_path)?;
    let ids = tokenize_prompts(p, tokenizer, session.format)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::input(&p.resolved.file, "no questions"))?;
    let mut rows = Vec::new();
    for &chunk in chunk_sizes {
        let params = GenerationParams {
            oversample: c.generation.oversample.max(chunk),
            ..generation_params(c, chunk)
        };
        let (_, reports) = generate_question(
            model,
            shared.as_ref(),
            &ids,
            &tokenizer.stop_ids,
            0,
            &params,
            &mut |n| observer.tokens(n),
        )?;
        let measured = reports.iter().map(|r| r.peaks.heap_bytes).max().unwrap_or(0);
        let w = Workload {
            layout: plan::Layout::Rftx,
            oversample: params.oversample,
            chunk_size: chunk,
            ..workload(c, ids.len(), shared.as_ref().map_or(0, |s| s.tokens.len()))
        };
        let predicted = plan::predict(&arch, &w, false).total;
        let relative_error = (predicted as f64 - measured as f64) / measured.max(1) as f64;
        observer.log(&format!(
            "chunk {chunk}: predicted {predicted}, measured {measured} ({:+.1} %)",
            100.0 * relative_error
        ));
        rows.push(CheckRow {
            chunk_size: chunk,
            prompt_tokens: ids.len(),
            predicted_peak_bytes: predicted,
            measured_peak_bytes: measured,
            relative_error,
        });
    }
    Ok(rows)
}
