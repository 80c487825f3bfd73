//! Where each shard of a run stands (`rftx shard status`): done, running, partial or missing.
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::plan::{shard_dir, Plan, DONE_FILE, PLAN_FILE, SHARDS_DIR};
use crate::base::error::{Error, Result};
use crate::core::store::{self, Status};

/// Where a shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `done.json` is there.
    Done,
    /// A live process holds its lock; `done` questions committed.
    Running { done: usize },
    /// Started, not done, nobody working on it.
    Partial { done: usize },
    /// Never started, or nothing committed.
    Missing,
}

impl State {
    /// `done`, `running`, `partial` or `missing`.
    pub fn name(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running { .. } => "running",
            State::Partial { .. } => "partial",
            State::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShardStatus {
    pub index: usize,
    pub range: Range<usize>,
    pub state: State,
    /// The shard manifest's status and error, if it has one.
    pub note: Option<String>,
}

impl ShardStatus {
    /// Questions committed (all of its range once done).
    pub fn questions_done(&self) -> usize {
        match self.state {
            State::Done => self.range.len(),
            State::Running { done } | State::Partial { done } => done,
            State::Missing => 0,
        }
    }

    /// `partial 3/6`.
    pub(super) fn label(&self) -> String {
        format!("{} {}/{}", self.state.name(), self.questions_done(), self.range.len())
    }
}

/// A sharded run's plan and every shard's state.
#[derive(Debug, Clone)]
pub struct Overview {
    pub dir: PathBuf,
    pub plan: Plan,
    pub shards: Vec<ShardStatus>,
}

impl Overview {
    /// Reads the state of every shard of the run in `run_dir`.
    pub fn read(run_dir: &Path) -> Result<Overview> {
        let plan = Plan::read(run_dir)?.ok_or_else(|| {
            Error::input(
                run_dir,
                format!(
                    "not a sharded run (no {}/{PLAN_FILE}); `rftx shard run CONFIG --shard I --of K` or `rftx slurm submit CONFIG --shards K` starts one",
                    SHARDS_DIR
                ),
            )
        })?;
        let shards = (0..plan.shards)
            .map(|i| shard_status(run_dir, &plan, i))
            .collect::<Result<_>>()?;
        Ok(Overview {
            dir: run_dir.to_path_buf(),
            plan,
            shards,
        })
    }

    /// Shards that need running: not done, and no live process on them.
    pub fn todo(&self) -> Vec<usize> {
        let idle = |s: &&ShardStatus| !matches!(s.state, State::Done | State::Running { .. });
        self.shards.iter().filter(idle).map(|s| s.index).collect()
    }

    pub fn running(&self) -> Vec<usize> {
        let busy = |s: &&ShardStatus| matches!(s.state, State::Running { .. });
        self.shards.iter().filter(busy).map(|s| s.index).collect()
    }

    /// Questions committed over all shards.
    pub fn questions_done(&self) -> usize {
        self.shards.iter().map(ShardStatus::questions_done).sum()
    }

    /// `rftx shard status`: a table of the shards, then what is left and how to run it.
    pub fn render(&self) -> String {
        let mut rows = vec![vec!["SHARD".into(), "QUESTIONS".into(), "STATE".into(), "NOTE".into()]];
        for s in &self.shards {
            rows.push(vec![
                s.index.to_string(),
                format!("{}..{}", s.range.start, s.range.end),
                s.label(),
                s.note.clone().unwrap_or_default(),
            ]);
        }
        let mut out = crate::base::util::align_columns(&rows, 4);
        let (p, done) = (
            &self.plan,
            self.shards.iter().filter(|s| s.state == State::Done).count(),
        );
        out.push_str(&format!(
            "{done} of {} shards done, {} of {} questions\n",
            p.shards,
            self.questions_done(),
            p.questions
        ));
        let (todo, running) = (self.todo(), self.running());
        if !running.is_empty() {
            out.push_str(&format!("running: {}\n", array_expr(&running)));
        }
        if todo.is_empty() && running.is_empty() {
            out.push_str(&format!("all done: rftx merge {}\n", self.dir.display()));
        } else if !todo.is_empty() {
            out.push_str(&format!("missing: --array={}\n", array_expr(&todo)));
            let args = p.command_args(&self.dir);
            out.push_str(&format!(
                "run them: rftx slurm submit {args} --shards {} (submits only these), or for each I: rftx shard run {args} --shard I --of {}\n",
                p.shards, p.shards
            ));
        }
        out
    }
}

fn shard_status(run_dir: &Path, plan: &Plan, index: usize) -> Result<ShardStatus> {
    let dir = shard_dir(run_dir, index);
    let range = plan.range(index);
    let manifest = store::read_manifest(&dir).ok().flatten();
    let note = manifest
        .as_ref()
        .and_then(|m| match (&m.status, &m.error, &m.interrupted_by) {
            (Status::Failed, Some(e), _) => Some(format!("failed: {e}")),
            (Status::Interrupted, _, Some(by)) => Some(format!("interrupted by {by}")),
            _ => None,
        });
    let state = if dir.join(DONE_FILE).is_file() {
        State::Done
    } else {
        let done = store::committed_questions(&dir);
        match (store::lock_held(&dir), done) {
            (true, _) => State::Running { done },
            (false, 0) => State::Missing,
            (false, _) => State::Partial { done },
        }
    };
    Ok(ShardStatus {
        index,
        range,
        state,
        note: if state == State::Done { None } else { note },
    })
}

/// Indices as a Slurm `--array` expression: `[0, 1, 3, 4, 5, 9]` → `0-1,3-5,9`.
pub fn array_expr(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(match j > i {
            true => format!("{}-{}", indices[i], indices[j]),
            false => indices[i].to_string(),
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_expressions() {
        assert_eq!(array_expr(&[]), "");
        assert_eq!(array_expr(&[2]), "2");
        assert_eq!(array_expr(&[1, 3, 4, 5]), "1,3-5");
        assert_eq!(array_expr(&[0, 1, 3, 4, 5, 9]), "0-1,3-5,9");
    }
}
