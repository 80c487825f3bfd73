//! `manifest.json`: a run's identity, inputs, status, progress and sessions.
use serde::{Deserialize, Serialize};

use super::LAYOUT_VERSION;

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
        let now = crate::base::util::now_rfc3339();
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
            started_at: crate::base::util::now_rfc3339(),
            ended_at: None,
            resumed_at_question: done,
            pid: std::process::id(),
            device: Some(device),
            host: crate::base::util::hostname(),
            built_for: Some(crate::engine::device::built_for()),
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
            let end = crate::base::util::now_rfc3339();
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
    /// The instruction sets the rftx binary was compiled for (`x86_64 avx,avx2,fma,f16c,…`): a
    /// node needs all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_for: Option<String>,
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
