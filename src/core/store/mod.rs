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
//!
//! Modules: `manifest` (`manifest.json`), `records` (the lines of the JSON Lines files),
//! [`jsonl`] (reading, appending and truncating them), `lock`.
pub mod jsonl;
mod lock;
mod manifest;
mod records;

use std::path::{Path, PathBuf};

use crate::base::error::{Error, Result};
pub use jsonl::Appender;
pub use lock::{lock_held, Lock};
pub use manifest::{
    Batching, GpuInput, Inputs, Manifest, ModelInput, Progress, QuestionsInput, Session, ShardOf, Status,
};
pub use records::{logprob_sum, ChunkRecord, QuestionRecord, SampleRecord};

pub const CONFIG_FILE: &str = "config.toml";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const CHUNKS_FILE: &str = "chunks.jsonl";
pub const DATASET_FILE: &str = "dataset.json";
pub const METRICS_FILE: &str = "metrics.json";
/// The kept samples as TRL's conversational language-modeling files (see `core::rft::outputs`).
pub const SFT_MESSAGES_FILE: &str = "sft_messages.jsonl";
/// The kept samples as TRL's conversational prompt-completion files.
pub const SFT_PROMPT_COMPLETION_FILE: &str = "sft_prompt_completion.jsonl";
/// The kept samples as a flat Parquet table.
pub const PARQUET_FILE: &str = "dataset.parquet";
/// pass@1 and pass@k of every question, as CSV.
pub const PASS_FILE: &str = "pass_at_k.csv";
/// Right and wrong samples of a question paired, TRL's conversational preference format (see
/// `core::rft::preference`).
pub const DPO_PAIRS_FILE: &str = "dpo_pairs.jsonl";
/// Every sample labelled by its verdict, TRL's conversational unpaired preference format.
pub const KTO_FILE: &str = "kto.jsonl";
/// Every question with its reference and pass rate (under `rft.keep_pass_rate`), for RL.
pub const RL_PROMPTS_FILE: &str = "rl_prompts.jsonl";
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
        crate::base::util::write_atomic(&self.file(name), bytes)
    }

    /// Rewrites the manifest atomically but without fsync: progress between checkpoints.
    pub fn update_manifest(&self, m: &Manifest) -> Result<()> {
        crate::base::util::write_replace(
            &self.file(MANIFEST_FILE),
            (serde_json::to_string_pretty(m).expect("manifest serialises") + "\n").as_bytes(),
        )
    }

    /// Removes temporary files that another (dead: we hold the lock) process left behind when
    /// a write failed or it died mid-write. Returns their names.
    pub fn remove_stale_temporaries(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if crate::base::util::is_temporary(&name) && std::fs::remove_file(e.path()).is_ok() {
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
            SFT_MESSAGES_FILE,
            SFT_PROMPT_COMPLETION_FILE,
            PARQUET_FILE,
            PASS_FILE,
            DPO_PAIRS_FILE,
            KTO_FILE,
            RL_PROMPTS_FILE,
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
            jsonl::read_prefix::<QuestionRecord>(&self.file(SAMPLES_FILE), |i, q| q.index == first + i)?;
        if let Some(n) = note {
            rec.notes.push(format!("{SAMPLES_FILE}: {n}"));
        }
        jsonl::truncate(&self.file(SAMPLES_FILE), valid_len)?;
        let committed = first + questions.len();
        let (chunks, valid_len, note) = jsonl::read_prefix::<ChunkRecord>(&self.file(CHUNKS_FILE), |_, c| {
            (first..committed).contains(&c.question)
        })?;
        if let Some(n) = note {
            rec.notes.push(format!("{CHUNKS_FILE}: {n}"));
        }
        jsonl::truncate(&self.file(CHUNKS_FILE), valid_len)?;
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

/// Whether the run (or shard) in `dir` is complete: its manifest says so. The one test of
/// "already done" that `run`, `shard run` and `slurm submit` share.
pub fn is_complete(dir: &Path) -> Result<bool> {
    Ok(read_manifest(dir)?.is_some_and(|m| m.status == Status::Complete))
}

/// Questions committed in a run directory: the complete lines of `samples.jsonl`.
pub fn committed_questions(dir: &Path) -> usize {
    std::fs::read(dir.join(SAMPLES_FILE))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::record::Finish;

    fn q(i: usize) -> QuestionRecord {
        QuestionRecord {
            index: i,
            id: None,
            question: format!("q{i}"),
            user: None,
            answer: crate::base::record::Answer::Number(i as f64),
            samples: vec![SampleRecord {
                sample: 0,
                text: "t".into(),
                new_tokens: 1,
                finish: Finish::Eos,
                parsed: None,
                correct: false,
                reason: None,
                logprobs: None,
                logprob_sum: None,
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
    fn dir_name() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(
            run_dir_path(Path::new("runs"), "t4", &h),
            PathBuf::from("runs/t4-0123456789ab")
        );
    }
}
