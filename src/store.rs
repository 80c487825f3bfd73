//! The content-hashed run directory `runs/<name>-<hash12>/` and its files.
//!
//! - `config.toml`, `manifest.json`, `dataset.json`, `metrics.json`: whole files, written
//!   atomically (temporary file, fsync, rename).
//! - `samples.jsonl`, `chunks.jsonl`: append-only. A question's chunk lines are appended first
//!   and its samples line last: the samples line commits the question. Lines are written whole
//!   with one `write` each and fsynced at every checkpoint. On resume, a torn last line is
//!   dropped, and chunk lines of uncommitted questions are removed.
//! - `run.log`: a human-readable log, append-only.
//! - `lock`: the pid of the process writing the directory.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::generate::Finish;

pub const CONFIG_FILE: &str = "config.toml";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const CHUNKS_FILE: &str = "chunks.jsonl";
pub const DATASET_FILE: &str = "dataset.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const LOG_FILE: &str = "run.log";
pub const LOCK_FILE: &str = "lock";
/// A shard directory's marker that it is done (`shard::Done`), written last.
pub const DONE_FILE: &str = "done.json";

/// Version of the directory layout, recorded in every manifest.
pub const LAYOUT_VERSION: u32 = 1;

/// `runs_dir/<name>-<first 12 hex of hash>`.
pub fn run_dir_path(runs_dir: &Path, name: &str, hash: &str) -> PathBuf {
    runs_dir.join(format!("{name}-{}", &hash[..12]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Complete,
    Failed,
    /// Stopped by a signal at a safe point, or (as `ls` and `show` read it) a `running` run
    /// whose process is gone.
    Interrupted,
}

impl Status {
    /// The name written in manifest.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Complete => "complete",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub layout_version: u32,
    pub name: String,
    /// sha256 of the canonical config (64 hex digits).
    pub hash: String,
    pub status: Status,
    pub rftx_version: String,
    pub created_at: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub inputs: Inputs,
    pub progress: Progress,
    /// One entry per `rftx run` invocation that worked on this directory.
    pub sessions: Vec<Session>,
    /// Wall time of all sessions together, model loading included.
    pub wall_s: f64,
    pub error: Option<String>,
    /// The signal that interrupted the last session (`SIGINT`, `SIGTERM`, `SIGUSR1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
    /// Set in a shard's own manifest (`rftx shard run`): which part of the run it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardOf>,
    /// Set by `rftx merge`: the number of shards this run was merged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_shards: Option<usize>,
}

/// Shard `index` of `of` (0-based) of a run: its questions `first..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOf {
    pub index: usize,
    pub of: usize,
    pub first: usize,
    pub end: usize,
}

impl Manifest {
    /// The manifest of a run that starts now, with no session yet.
    pub fn new(name: &str, hash: &str, inputs: Inputs) -> Manifest {
        let now = crate::util::now_rfc3339();
        let questions_total = inputs.questions.count;
        Manifest {
            layout_version: LAYOUT_VERSION,
            name: name.to_string(),
            hash: hash.to_string(),
            status: Status::Running,
            rftx_version: env!("CARGO_PKG_VERSION").into(),
            created_at: now.clone(),
            started_at: now,
            finished_at: None,
            inputs,
            progress: Progress {
                questions_done: 0,
                questions_total,
            },
            sessions: Vec::new(),
            wall_s: 0.0,
            error: None,
            interrupted_by: None,
            shard: None,
            merged_shards: None,
        }
    }

    /// Opens a session of this process on `device` (see [`Session::device`]), `done` questions
    /// being durable already.
    pub fn begin_session(&mut self, done: usize, device: String) {
        self.status = Status::Running;
        self.error = None;
        self.interrupted_by = None;
        self.finished_at = None;
        self.rftx_version = env!("CARGO_PKG_VERSION").into();
        self.progress.questions_done = done;
        self.sessions.push(Session {
            started_at: crate::util::now_rfc3339(),
            ended_at: None,
            resumed_at_question: done,
            pid: std::process::id(),
            device: Some(device),
            host: crate::util::hostname(),
            batching: None,
        });
    }

    /// Records progress; a status other than `running` ends the current session (and
    /// `complete` the run).
    pub fn update(&mut self, status: Status, questions_done: usize, wall_s: f64) {
        self.progress.questions_done = questions_done;
        self.wall_s = wall_s;
        self.status = status;
        if status != Status::Running {
            let end = crate::util::now_rfc3339();
            if let Some(session) = self.sessions.last_mut() {
                session.ended_at = Some(end.clone());
            }
            if status == Status::Complete {
                self.finished_at = Some(end);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub model: ModelInput,
    pub questions: QuestionsInput,
    /// The GPU a run computed on (absent: the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuInput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInput {
    /// `cuda:0`.
    pub device: String,
    pub name: String,
    pub compute_capability: String,
    pub total_bytes: u64,
    /// `memory.device_limit` in bytes, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    pub path: String,
    pub sha256: String,
    pub weights: String,
    /// `random` for random weights (`model.init`): the file gave only the tokenizer and template,
    /// the samples mean nothing and acceptance is not a measure of anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The preset random weights were shaped after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionsInput {
    pub source: String,
    pub sha256: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub questions_done: usize,
    pub questions_total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Questions already durable when the session started.
    pub resumed_at_question: usize,
    pub pid: u32,
    /// What the session's numerics depend on: `cpu x86_64 avx2,fma` or
    /// `cuda NVIDIA H100 80GB HBM3 (cc 9.0)`. `rftx merge` refuses shards whose sessions differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The machine's host name (provenance: which node of a cluster ran it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How the session batched its questions (`"auto"` settings resolved on its machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
}

/// How questions are batched: values of `generation.prompts_per_batch` and
/// `generation.chunk_size` as a session ran them, and which of them were `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    pub prompts_per_batch: usize,
    pub chunk_size: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_prompts_per_batch: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_chunk_size: bool,
}

/// One line of `samples.jsonl`: a question and all its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRecord {
    pub index: usize,
    pub question: String,
    pub answer: f64,
    pub samples: Vec<SampleRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub sample: usize,
    pub text: String,
    pub new_tokens: usize,
    pub finish: Finish,
    pub parsed: Option<f64>,
    pub correct: bool,
}

/// One line of `chunks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub question: usize,
    pub chunk: usize,
    pub size: usize,
    pub new_tokens: usize,
    pub prefill_ms: f64,
    pub ms: f64,
    pub peak_bytes: u64,
    pub rss_peak_bytes: u64,
    /// Peak GPU memory in use during the chunk (GPU runs only; see `engine::device::GpuMemory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peak_bytes: Option<u64>,
    /// Set when `memory.budget` or an out-of-memory made this question run in smaller chunks:
    /// the configured size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrunk_from: Option<usize>,
    /// Out-of-memory retries of this question before it fitted (`memory.on_exceed = "shrink"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_retries: Option<usize>,
    /// The chunk's share of the batch's decoding steps (each step split among the chunks decoded
    /// in it by their rows; `ms` is split the same way).
    #[serde(default)]
    pub steps: f64,
    /// Rows the batch held when full: `prompts_per_batch` × chunk size.
    #[serde(default)]
    pub batch_rows: usize,
}

#[cfg(test)]
impl ChunkRecord {
    /// A chunk of one sample of one token (test fixture).
    pub(crate) fn example(question: usize) -> ChunkRecord {
        ChunkRecord {
            question,
            chunk: 0,
            size: 1,
            new_tokens: 1,
            prefill_ms: 1.0,
            ms: 1.0,
            peak_bytes: 1,
            rss_peak_bytes: 1,
            gpu_peak_bytes: None,
            shrunk_from: None,
            oom_retries: None,
            steps: 0.0,
            batch_rows: 1,
        }
    }
}

/// What a directory held when it was opened for (re)writing.
#[derive(Debug, Default)]
pub struct Recovered {
    pub questions: Vec<QuestionRecord>,
    pub chunks: Vec<ChunkRecord>,
    /// Human-readable notes on what was repaired (torn lines dropped, …).
    pub notes: Vec<String>,
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates the directory (and the runs directory) if needed.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::input(
                path,
                format!(
                    "cannot create the run directory ({e}); is the runs directory writable? --runs-dir chooses another"
                ),
            )
        })?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn read_manifest(&self) -> Result<Option<Manifest>> {
        read_manifest(&self.path)
    }

    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        self.write(
            MANIFEST_FILE,
            (serde_json::to_string_pretty(m).expect("manifest serialises") + "\n").as_bytes(),
        )
    }

    /// Writes a whole file atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        crate::util::write_atomic(&self.file(name), bytes)
    }

    /// Rewrites the manifest atomically but without fsync: progress between checkpoints.
    pub fn update_manifest(&self, m: &Manifest) -> Result<()> {
        crate::util::write_replace(
            &self.file(MANIFEST_FILE),
            (serde_json::to_string_pretty(m).expect("manifest serialises") + "\n").as_bytes(),
        )
    }

    /// Removes temporary files that another (dead: we hold the lock) process left behind when
    /// a write failed or it died mid-write. Returns their names.
    pub fn remove_stale_temporaries(&self) -> Vec<String> {
        let me = format!(".tmp-{}", std::process::id());
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with('.') && name.contains(".tmp-") && !name.ends_with(&me);
            if stale && std::fs::remove_file(e.path()).is_ok() {
                removed.push(name);
            }
        }
        removed.sort();
        removed
    }

    /// Deletes the generated outputs (for `--force`), keeping the lock and the log; a shard's done
    /// marker goes first, so that a shard being redone is never taken for done.
    pub fn clear_outputs(&self) -> Result<()> {
        for f in [
            DONE_FILE,
            SAMPLES_FILE,
            CHUNKS_FILE,
            DATASET_FILE,
            METRICS_FILE,
            MANIFEST_FILE,
        ] {
            match std::fs::remove_file(self.file(f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("{}: cannot remove", self.file(f).display()), e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the committed questions and their chunk records, repairing the files so that
    /// appends continue after the last committed question. The directory holds the questions
    /// from `first` on (0 for a whole run, the start of its range for a shard).
    pub fn recover(&self, first: usize) -> Result<Recovered> {
        let mut rec = Recovered::default();
        let (questions, valid_len, note) =
            read_jsonl_prefix::<QuestionRecord>(&self.file(SAMPLES_FILE), |i, q| q.index == first + i)?;
        if let Some(n) = note {
            rec.notes.push(format!("{SAMPLES_FILE}: {n}"));
        }
        truncate(&self.file(SAMPLES_FILE), valid_len)?;
        let committed = first + questions.len();
        let (chunks, valid_len, note) =
            read_jsonl_prefix::<ChunkRecord>(&self.file(CHUNKS_FILE), |_, c| (first..committed).contains(&c.question))?;
        if let Some(n) = note {
            rec.notes.push(format!("{CHUNKS_FILE}: {n}"));
        }
        truncate(&self.file(CHUNKS_FILE), valid_len)?;
        rec.questions = questions;
        rec.chunks = chunks;
        Ok(rec)
    }

    pub fn appender(&self, name: &str) -> Result<Appender> {
        Appender::open(&self.file(name))
    }
}

pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let p = dir.join(MANIFEST_FILE);
    match std::fs::read_to_string(&p) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
            Error::input(
                &p,
                format!("unreadable manifest ({e}); rerun with --force to start this run again"),
            )
        }),
        // Not there yet (or its parent is not a directory: creating it will say so).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io(format!("{}: cannot read", p.display()), e)),
    }
}

/// Parses complete, valid lines from the start of a JSON Lines file while `accept(i, record)`
/// holds. Returns the records, the byte length of that prefix and a note if anything after it
/// was dropped.
fn read_jsonl_prefix<T: for<'de> Deserialize<'de>>(
    path: &Path,
    accept: impl Fn(usize, &T) -> bool,
) -> Result<(Vec<T>, u64, Option<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, None)),
        Err(e) => return Err(Error::io(format!("{}: cannot read", path.display()), e)),
    };
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let Some(nl) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            let note = format!(
                "dropped a torn last line ({} bytes without a newline)",
                bytes.len() - offset
            );
            return Ok((out, offset as u64, Some(note)));
        };
        let line = &bytes[offset..offset + nl];
        match serde_json::from_slice::<T>(line) {
            Ok(r) if accept(out.len(), &r) => out.push(r),
            Ok(_) => {
                let note = format!(
                    "dropped {} bytes of records after the last committed question",
                    bytes.len() - offset
                );
                return Ok((out, offset as u64, Some(note)));
            }
            Err(e) => {
                let note = format!("dropped an invalid line and everything after it ({e})");
                return Ok((out, offset as u64, Some(note)));
            }
        }
        offset += nl + 1;
    }
    Ok((out, offset as u64, None))
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if meta.len() == len {
        return Ok(());
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .ctx(|| format!("{}: cannot open", path.display()))?;
    f.set_len(len).ctx(|| format!("{}: cannot truncate", path.display()))?;
    f.sync_all().ctx(|| format!("{}: cannot sync", path.display()))
}

/// An append-only JSON Lines file. Each line goes out in one `write` call; [`Appender::sync`]
/// makes everything appended so far durable.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("{}: cannot open for appending", path.display()))?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        self.append_raw(&line)
    }

    pub fn append_raw(&mut self, line: &[u8]) -> Result<()> {
        self.file
            .write_all(line)
            .ctx(|| format!("{}: cannot append", self.path.display()))
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("{}: cannot sync", self.path.display()))
    }
}

/// Exclusive ownership of a run directory: an advisory lock (`flock`) on the `lock` file, which
/// also holds the owner's pid for messages. The kernel releases the lock when its process dies,
/// however it dies, so a lock left behind is recognised as stale without guessing from pids,
/// and taking it over is the same atomic `flock` as taking a fresh one.
pub struct Lock {
    path: PathBuf,
    /// Holds the lock while open.
    _file: File,
}

impl Lock {
    /// Returns the lock, and the pid written by a previous holder that died without releasing
    /// it (`Some(0)` when its pid was unreadable).
    pub fn acquire(dir: &Path) -> Result<(Lock, Option<u32>)> {
        let path = dir.join(LOCK_FILE);
        // A holder that releases the lock removes the file first: whoever opened the old file
        // just before then locks an orphan, notices, and tries again.
        for _ in 0..5 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .ctx(|| format!("{}: cannot create the lock file", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_pid(&mut file)
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default();
                    return Err(Error::Locked(format!(
                        "{}: another rftx process{holder} is writing this run; wait for it to finish or stop it",
                        dir.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("{}: cannot lock", path.display()), e))
                }
            }
            if !same_file(&file, &path) {
                continue;
            }
            let mut previous = String::new();
            let _ = file.read_to_string(&mut previous);
            let stale = (!previous.is_empty()).then(|| previous.trim().parse::<u32>().unwrap_or(0));
            let what = || format!("{}: cannot write", path.display());
            file.set_len(0).ctx(what)?;
            file.seek(SeekFrom::Start(0)).ctx(what)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .ctx(what)?;
            file.sync_all().ok();
            return Ok((Lock { path, _file: file }, stale));
        }
        Err(Error::Locked(format!("{}: could not take the lock", dir.display())))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked (the file is closed, and unlocked, right after).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a live process holds the run directory's lock (on this host: `flock` is released
/// when its process dies, however it dies).
pub fn lock_held(dir: &Path) -> bool {
    let Ok(f) = OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match f.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Questions committed in a run directory: the complete lines of `samples.jsonl`.
pub fn committed_questions(dir: &Path) -> usize {
    std::fs::read(dir.join(SAMPLES_FILE))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Whether `path` still names the file `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(i: usize) -> QuestionRecord {
        QuestionRecord {
            index: i,
            question: format!("q{i}"),
            answer: i as f64,
            samples: vec![SampleRecord {
                sample: 0,
                text: "t".into(),
                new_tokens: 1,
                finish: Finish::Eos,
                parsed: None,
                correct: false,
            }],
        }
    }

    fn c(question: usize) -> ChunkRecord {
        ChunkRecord::example(question)
    }

    #[test]
    fn recover_drops_torn_lines_and_uncommitted_chunks() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::create(&d.path().join("r")).unwrap();
        let mut s = run.appender(SAMPLES_FILE).unwrap();
        let mut ch = run.appender(CHUNKS_FILE).unwrap();
        for i in 0..3 {
            ch.append(&c(i)).unwrap();
            s.append(&q(i)).unwrap();
        }
        ch.append(&c(3)).unwrap(); // question 3 never committed
        s.append_raw(b"{\"index\":3,\"quest").unwrap(); // torn
        let r = run.recover(0).unwrap();
        assert_eq!(r.questions.len(), 3);
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(r.notes[0].contains("torn"));
        // Files now end at the committed prefix; appending continues cleanly.
        let mut s = run.appender(SAMPLES_FILE).unwrap();
        s.append(&q(3)).unwrap();
        let again = run.recover(0).unwrap();
        assert_eq!(again.questions.len(), 4);
        assert!(again.notes.is_empty());
        assert_eq!(again.chunks.len(), 3);
    }

    #[test]
    fn a_shard_recovers_from_the_start_of_its_range() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::create(&d.path().join("shard")).unwrap();
        let mut s = run.appender(SAMPLES_FILE).unwrap();
        let mut ch = run.appender(CHUNKS_FILE).unwrap();
        for i in 10..12 {
            ch.append(&c(i)).unwrap();
            s.append(&q(i)).unwrap();
        }
        ch.append(&c(12)).unwrap(); // question 12 never committed
        s.append_raw(b"{\"index\":12,").unwrap(); // torn
        let r = run.recover(10).unwrap();
        let indices: Vec<usize> = r.questions.iter().map(|q| q.index).collect();
        assert_eq!(indices, [10, 11]);
        assert_eq!(r.chunks.iter().map(|c| c.question).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        // Read as a whole run (from 0), nothing in it is question 0: nothing is committed.
        assert!(run.recover(0).unwrap().questions.is_empty());
    }

    #[test]
    fn recover_stops_at_gaps() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::create(&d.path().join("r")).unwrap();
        let mut s = run.appender(SAMPLES_FILE).unwrap();
        s.append(&q(0)).unwrap();
        s.append(&q(2)).unwrap();
        assert_eq!(run.recover(0).unwrap().questions.len(), 1);
    }

    #[test]
    fn lock_is_exclusive_and_stale_locks_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let lock_file = d.path().join(LOCK_FILE);
        let (lock, stale) = Lock::acquire(d.path()).unwrap();
        assert_eq!(stale, None);
        assert_eq!(
            std::fs::read_to_string(&lock_file).unwrap(),
            format!("{}\n", std::process::id())
        );
        // A second acquisition fails while the first is held (flock conflicts between open
        // files, also within one process) and names the holder.
        let e = Lock::acquire(d.path()).err().unwrap();
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_INPUT);
        drop(lock);
        assert!(!lock_file.exists(), "released locks are removed");
        // A lock file that nobody holds is stale, whatever pid it names: taken over, and the
        // previous holder's pid reported.
        std::fs::write(&lock_file, "4194303\n").unwrap();
        let (again, stale) = Lock::acquire(d.path()).unwrap();
        assert_eq!(stale, Some(4194303));
        drop(again);
        std::fs::write(&lock_file, "garbage").unwrap();
        assert_eq!(Lock::acquire(d.path()).unwrap().1, Some(0));
    }

    #[test]
    fn concurrent_takeovers_of_a_stale_lock_leave_one_owner() {
        let d = tempfile::tempdir().unwrap();
        for round in 0..20 {
            std::fs::write(d.path().join(LOCK_FILE), "4194303\n").unwrap();
            let barrier = std::sync::Barrier::new(4);
            let owners = std::sync::atomic::AtomicUsize::new(0);
            let peak = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        barrier.wait();
                        if let Ok((lock, _)) = Lock::acquire(d.path()) {
                            let now = owners.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            owners.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            drop(lock);
                        }
                    });
                }
            });
            assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 1, "round {round}");
        }
    }

    #[test]
    fn dir_name() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(
            run_dir_path(Path::new("runs"), "t4", &h),
            PathBuf::from("runs/t4-0123456789ab")
        );
    }
}
