//! `shards/plan.json`, which fixes how a run is split, and `done.json`, which marks a shard done.
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::core::store::{self, ShardOf};

pub const SHARDS_DIR: &str = "shards";
pub const PLAN_FILE: &str = "plan.json";
pub use store::DONE_FILE;

/// `shards/plan.json`: how a run is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub layout_version: u32,
    pub name: String,
    /// The run hash (64 hex digits): the same as the unsharded run's.
    pub hash: String,
    pub questions: usize,
    pub shards: usize,
    /// The config file the plan was made from, as given, and its `--set` overrides (used in the
    /// messages that say how to run what is missing).
    pub config: String,
    #[serde(default)]
    pub sets: Vec<String>,
    pub created_at: String,
}

impl Plan {
    pub fn new(name: &str, hash: &str, questions: usize, shards: usize, config: &Path, sets: &[String]) -> Plan {
        Plan {
            layout_version: store::LAYOUT_VERSION,
            name: name.into(),
            hash: hash.into(),
            questions,
            shards,
            config: config.display().to_string(),
            sets: sets.to_vec(),
            created_at: crate::base::util::now_rfc3339(),
        }
    }

    /// `CONFIG [--set K=V]… [--runs-dir DIR]`: the arguments that name this run to `rftx shard
    /// run` and `rftx slurm submit`.
    pub fn command_args(&self, run_dir: &Path) -> String {
        let mut out = self.config.clone();
        for s in &self.sets {
            out.push_str(&format!(" --set {s}"));
        }
        match run_dir.parent() {
            Some(runs) if runs != Path::new("runs") => out.push_str(&format!(" --runs-dir {}", runs.display())),
            _ => {}
        }
        out
    }

    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(SHARDS_DIR).join(PLAN_FILE)
    }

    /// The plan of a run directory, if it has one.
    pub fn read(run_dir: &Path) -> Result<Option<Plan>> {
        let p = Plan::path(run_dir);
        read_if_present(&p, |e| {
            Error::input(
                &p,
                format!("unreadable shard plan ({e}); remove the run directory's shards/ to plan again"),
            )
        })
    }

    /// Writes `wanted` as the run's plan unless one exists; returns the plan in force, which
    /// must have the same hash, questions and shard count. Safe when many shards start at once.
    pub fn establish(run_dir: &Path, wanted: Plan) -> Result<Plan> {
        let dir = run_dir.join(SHARDS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::input(
                &dir,
                format!("cannot create the shards directory ({e}); is the runs directory writable?"),
            )
        })?;
        if Plan::read(run_dir)?.is_none() {
            // Created new: of several shards starting at once, on any host, the first wins.
            let text = serde_json::to_string_pretty(&wanted).expect("plan serialises") + "\n";
            crate::base::util::write_new_atomic(&Plan::path(run_dir), text.as_bytes())?;
        }
        let plan = Plan::read(run_dir)?.expect("the plan was just written");
        plan.agrees_with(&wanted, run_dir)?;
        Ok(plan)
    }

    fn agrees_with(&self, wanted: &Plan, run_dir: &Path) -> Result<()> {
        if self.hash != wanted.hash || self.questions != wanted.questions {
            return Err(Error::input(
                Plan::path(run_dir),
                format!(
                    "this plan belongs to another run (hash {}, {} questions); remove {} to plan again",
                    &self.hash[..12],
                    self.questions,
                    run_dir.join(SHARDS_DIR).display()
                ),
            ));
        }
        if self.shards != wanted.shards {
            return Err(Error::input(
                Plan::path(run_dir),
                format!(
                    "this run was planned as {} shards (on {}), not {}: use --of {} (or --shards {}); to split it differently, remove {} first (its shards' work is lost)",
                    self.shards,
                    self.created_at,
                    wanted.shards,
                    self.shards,
                    self.shards,
                    run_dir.join(SHARDS_DIR).display()
                ),
            ));
        }
        Ok(())
    }

    /// Shard `index`'s questions: balanced contiguous ranges tiling `0..questions`.
    pub fn range(&self, index: usize) -> Range<usize> {
        balanced(self.questions, self.shards, index)
    }

    pub fn shard_of(&self, index: usize) -> ShardOf {
        let r = self.range(index);
        ShardOf {
            index,
            of: self.shards,
            first: r.start,
            end: r.end,
        }
    }
}

/// The `index`-th of `k` balanced contiguous ranges of `0..n` (lengths differ by at most one).
pub fn balanced(n: usize, k: usize, index: usize) -> Range<usize> {
    index * n / k..(index + 1) * n / k
}

/// The directory of shard `index` of the run in `run_dir`.
pub fn shard_dir(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join(SHARDS_DIR).join(format!("shard-{index:04}"))
}

/// A JSON file, or `None` where there is none; `unreadable` makes the error for bad JSON.
fn read_if_present<T: for<'de> Deserialize<'de>>(
    path: &Path,
    unreadable: impl FnOnce(serde_json::Error) -> Error,
) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(unreadable),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("{}: cannot read", path.display()), e)),
    }
}

/// `done.json`: a shard is done, and what its files held when it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub shard: ShardOf,
    pub hash: String,
    pub questions: usize,
    pub samples_sha256: String,
    pub chunks_sha256: String,
    pub finished_at: String,
}

impl Done {
    pub fn read(shard_dir: &Path) -> Result<Option<Done>> {
        let p = shard_dir.join(DONE_FILE);
        read_if_present(&p, |e| {
            Error::Run(format!(
                "{}: unreadable ({e}); remove it and run the shard again",
                p.display()
            ))
        })
    }

    /// Marks a complete shard directory done: the last file a shard writes.
    pub fn write(shard_dir: &Path, shard: ShardOf, hash: &str) -> Result<Done> {
        let done = Done {
            shard,
            hash: hash.into(),
            questions: store::committed_questions(shard_dir),
            samples_sha256: crate::base::util::sha256_file(&shard_dir.join(store::SAMPLES_FILE))?,
            chunks_sha256: crate::base::util::sha256_file(&shard_dir.join(store::CHUNKS_FILE))?,
            finished_at: crate::base::util::now_rfc3339(),
        };
        let text = serde_json::to_string_pretty(&done).expect("done serialises") + "\n";
        crate::base::util::write_atomic(&shard_dir.join(DONE_FILE), text.as_bytes())?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_balanced_and_tile_the_questions() {
        for n in 1..40 {
            for k in 1..=n {
                let ranges: Vec<_> = (0..k).map(|i| balanced(n, k, i)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[k - 1].end, n);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1 && *lo >= 1, "n={n} k={k}: {lens:?}");
            }
        }
        assert_eq!(balanced(10, 4, 1), 2..5);
    }

    #[test]
    fn the_first_plan_wins_and_a_different_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Path::new("c.toml");
        let hash = "ab".repeat(32);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (d, h) = (dir.path().to_path_buf(), hash.clone());
                std::thread::spawn(move || Plan::establish(&d, Plan::new("x", &h, 10, 4 + t % 2, cfg, &[])))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let planned = Plan::read(dir.path()).unwrap().unwrap().shards;
        for r in &results {
            match r {
                Ok(p) => assert_eq!(p.shards, planned),
                Err(e) => assert!(e.to_string().contains(&format!("planned as {planned} shards")), "{e}"),
            }
        }
        assert!(results.iter().filter(|r| r.is_ok()).count() >= 4);
        let err = Plan::establish(dir.path(), Plan::new("x", &hash, 11, planned, cfg, &[])).unwrap_err();
        assert!(err.to_string().contains("another run"), "{err}");
        let leftovers = std::fs::read_dir(dir.path().join(SHARDS_DIR)).unwrap().count();
        assert_eq!(leftovers, 1, "only plan.json, no temporary file");
    }
}
