//! Shards of a run: a run's questions split into `K` balanced contiguous ranges, each generated
//! into its own directory under the run's (`runs/<name>-<hash12>/shards/shard-0003/`), then
//! merged into exactly the bytes an unsharded run writes.
//!
//! - `shards/plan.json` fixes the shard count the first time a shard starts (created with an
//!   atomic link, so concurrent first starts agree); a different count later is an input error.
//! - A shard directory is an ordinary run directory holding the questions `first..end` (same
//!   durability: appends, recovery, lock), plus `done.json`, written last, with the digests of
//!   its files. Only `done.json` says a shard is done: a scheduler's "COMPLETED" is not trusted.
//! - [`merge`] checks every shard (done, digests, line counts, ranges tiling the questions, one
//!   kind of device) and writes the run's own files from theirs.
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::report::{self, Metrics, ShardRow, Tally};
use crate::rft::Dataset;
use crate::store::{self, ChunkRecord, Manifest, QuestionRecord, ShardOf, Status};

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
            created_at: crate::util::now_rfc3339(),
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
            let path = Plan::path(run_dir);
            static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!(".{PLAN_FILE}.tmp-{}-{seq}", std::process::id()));
            let text = serde_json::to_string_pretty(&wanted).expect("plan serialises") + "\n";
            let written = std::fs::File::create(&tmp).and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(format!("{}: cannot write", tmp.display()), e));
            }
            // A hard link fails if the plan exists: the first writer wins, atomically.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::io(format!("{}: cannot write", path.display()), e))
                }
                _ => crate::util::sync_dir(&dir),
            }
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
            samples_sha256: crate::util::sha256_file(&shard_dir.join(store::SAMPLES_FILE))?,
            chunks_sha256: crate::util::sha256_file(&shard_dir.join(store::CHUNKS_FILE))?,
            finished_at: crate::util::now_rfc3339(),
        };
        let text = serde_json::to_string_pretty(&done).expect("done serialises") + "\n";
        crate::util::write_atomic(&shard_dir.join(DONE_FILE), text.as_bytes())?;
        Ok(done)
    }
}

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
    fn label(&self) -> String {
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
        let mut out = crate::util::align_columns(&rows, 4);
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

/// What [`merge`] wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    pub dir: PathBuf,
    pub shards: usize,
    pub metrics: Metrics,
}

/// Checks every shard of the run in `run_dir` and writes the run's `samples.jsonl`,
/// `chunks.jsonl`, `dataset.json`, `metrics.json`, `config.toml` and, last, its manifest
/// (`complete`). The same shards always give the same bytes. Shards computed on different
/// devices are refused unless `force`.
pub fn merge(run_dir: &Path, force: bool) -> Result<Merged> {
    let overview = Overview::read(run_dir)?;
    require_all_done(&overview)?;
    let plan = &overview.plan;
    let dirs: Vec<PathBuf> = (0..plan.shards).map(|i| shard_dir(run_dir, i)).collect();
    let manifests = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| verify_shard(d, plan, i))
        .collect::<Result<Vec<_>>>()?;
    let device = one_device(&manifests, force)?;
    let (_lock, _) = store::Lock::acquire(run_dir)?;
    let (tally, dataset) = read_records(&dirs, plan)?;
    concatenate(&dirs, store::SAMPLES_FILE, &run_dir.join(store::SAMPLES_FILE))?;
    concatenate(&dirs, store::CHUNKS_FILE, &run_dir.join(store::CHUNKS_FILE))?;
    let mut rows = Vec::new();
    for (i, (d, m)) in dirs.iter().zip(&manifests).enumerate() {
        rows.push(shard_row(d, m, plan, i)?);
    }
    let wall_s = rows.iter().map(|r| r.wall_s).sum();
    let mut metrics = tally.metrics(plan.questions, wall_s, dataset.len());
    metrics.shards = rows;
    let run = store::RunDir {
        path: run_dir.to_path_buf(),
    };
    let config = std::fs::read(dirs[0].join(store::CONFIG_FILE))
        .ctx(|| format!("{}: cannot read", dirs[0].join(store::CONFIG_FILE).display()))?;
    run.write(store::CONFIG_FILE, &config)?;
    run.write(store::DATASET_FILE, dataset.to_json().as_bytes())?;
    run.write(store::METRICS_FILE, report::metrics_json(&metrics).as_bytes())?;
    run.write_manifest(&merged_manifest(&manifests, plan, wall_s))?;
    let mut log = run.appender(store::LOG_FILE)?;
    let line = format!(
        "{} merged {} shards ({} questions; device {device})\n",
        crate::util::now_rfc3339(),
        plan.shards,
        plan.questions
    );
    log.append_raw(line.as_bytes())?;
    Ok(Merged {
        dir: run_dir.to_path_buf(),
        shards: plan.shards,
        metrics,
    })
}

fn require_all_done(o: &Overview) -> Result<()> {
    let (todo, running) = (o.todo(), o.running());
    if todo.is_empty() && running.is_empty() {
        return Ok(());
    }
    let list = |v: &[usize]| {
        v.iter()
            .map(|&i| format!("{} ({})", i, o.shards[i].label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut msg = format!("cannot merge {}: ", o.dir.display());
    if !running.is_empty() {
        msg.push_str(&format!("shards still running: {}; ", list(&running)));
    }
    if !todo.is_empty() {
        msg.push_str(&format!(
            "shards not done: {} (--array={}); run them with `rftx slurm submit {args} --shards {}` (it submits only these) or `rftx shard run {args} --shard I --of {}`; ",
            list(&todo),
            array_expr(&todo),
            o.plan.shards,
            o.plan.shards,
            args = o.plan.command_args(&o.dir),
        ));
    }
    msg.push_str("then merge again");
    Err(Error::Run(msg))
}

/// Checks a done shard against its marker and the plan; returns its manifest.
fn verify_shard(dir: &Path, plan: &Plan, index: usize) -> Result<Manifest> {
    let bad = |what: String| {
        Error::Run(format!(
            "shard {index} ({}): {what}; remove that directory and run the shard again",
            dir.display()
        ))
    };
    let done = Done::read(dir)?.ok_or_else(|| bad(format!("no {DONE_FILE}")))?;
    let manifest = store::read_manifest(dir)?.ok_or_else(|| bad("no manifest".into()))?;
    if done.hash != plan.hash || manifest.hash != plan.hash {
        return Err(bad("it belongs to another run (hash differs)".into()));
    }
    if done.shard != plan.shard_of(index) || manifest.status != Status::Complete {
        return Err(bad(format!(
            "it is not shard {index} of {} as planned, or not complete",
            plan.shards
        )));
    }
    for (file, digest) in [
        (store::SAMPLES_FILE, &done.samples_sha256),
        (store::CHUNKS_FILE, &done.chunks_sha256),
    ] {
        if &crate::util::sha256_file(&dir.join(file))? != digest {
            return Err(bad(format!(
                "{file} changed after the shard was marked done (sha256 differs)"
            )));
        }
    }
    Ok(manifest)
}

/// The one device all shards' sessions computed on; several are refused unless `force`.
fn one_device(manifests: &[Manifest], force: bool) -> Result<String> {
    let mut devices: Vec<(String, usize)> = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        for s in &m.sessions {
            let d = s.device.clone().unwrap_or_else(|| "unknown".into());
            if !devices.iter().any(|(x, _)| *x == d) {
                devices.push((d, i));
            }
        }
    }
    if devices.len() <= 1 || force {
        let names: Vec<String> = devices.into_iter().map(|(d, _)| d).collect();
        return Ok(names.join(" + "));
    }
    let list: Vec<String> = devices
        .iter()
        .map(|(d, i)| format!("`{d}` (first in shard {i})"))
        .collect();
    Err(Error::Run(format!(
        "the shards were computed on different devices: {}; their numerics differ, so the merged samples would not be those of any one run. Rerun the odd shards on one kind of device (remove their directories), or merge anyway with --force",
        list.join(", ")
    )))
}

/// Tallies every shard's committed records in question order, checking that the indices tile
/// the run's questions, and builds the dataset exactly as a single run would.
fn read_records(dirs: &[PathBuf], plan: &Plan) -> Result<(Tally, Dataset)> {
    let (mut tally, mut dataset) = (Tally::default(), Dataset::default());
    let mut next = 0;
    for (i, dir) in dirs.iter().enumerate() {
        let range = plan.range(i);
        for_each_line::<QuestionRecord>(&dir.join(store::SAMPLES_FILE), |q| {
            if q.index != next || !range.contains(&q.index) {
                return Err(format!(
                    "question {} where {next} of {}..{} was expected",
                    q.index, range.start, range.end
                ));
            }
            next += 1;
            tally.add_question(&q);
            dataset.add_question(&q);
            Ok(())
        })?;
        if next != range.end {
            return Err(Error::Run(format!(
                "shard {i} ({}) holds questions {}..{next}, not {}..{}; remove that directory and run the shard again",
                dir.display(),
                range.start,
                range.start,
                range.end
            )));
        }
        for_each_line::<ChunkRecord>(&dir.join(store::CHUNKS_FILE), |c| {
            tally.add_chunk(&c);
            Ok(())
        })?;
    }
    Ok((tally, dataset))
}

/// Parses every line of a JSON Lines file in turn.
fn for_each_line<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut f: impl FnMut(T) -> std::result::Result<(), String>,
) -> Result<()> {
    let file = std::fs::File::open(path).ctx(|| format!("{}: cannot open", path.display()))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.ctx(|| format!("{}: cannot read", path.display()))?;
        let record = serde_json::from_str(&line).map_err(|e| e.to_string());
        record.and_then(&mut f).map_err(|e| {
            Error::Run(format!(
                "{} line {}: {e}; remove that shard's directory and run it again",
                path.display(),
                n + 1
            ))
        })?;
    }
    Ok(())
}

/// Writes the concatenation of every shard's `name` to `out`, atomically.
fn concatenate(dirs: &[PathBuf], name: &str, out: &Path) -> Result<()> {
    crate::util::write_atomic_with(out, |f| {
        let mut w = std::io::BufWriter::new(f);
        for d in dirs {
            std::io::copy(&mut std::fs::File::open(d.join(name))?, &mut w)?;
        }
        w.flush()
    })
}

fn shard_row(dir: &Path, m: &Manifest, plan: &Plan, index: usize) -> Result<ShardRow> {
    let x = report::read_metrics(dir)?;
    let range = plan.range(index);
    let mut hosts: Vec<String> = m.sessions.iter().filter_map(|s| s.host.clone()).collect();
    hosts.dedup();
    let mut devices: Vec<String> = m.sessions.iter().filter_map(|s| s.device.clone()).collect();
    devices.dedup();
    Ok(ShardRow {
        shard: index,
        first: range.start,
        end: range.end,
        new_tokens: x.new_tokens,
        wall_s: x.wall_s,
        generation_s: x.generation_s,
        tokens_per_s: x.tokens_per_s,
        peak_bytes: x.peak_bytes,
        rss_peak_bytes: x.rss_peak_bytes,
        gpu_peak_bytes: x.gpu_peak_bytes,
        hosts,
        device: devices.join(" + "),
    })
}

/// The merged run's manifest, a function of the shards' only (merging twice writes the same
/// bytes): their inputs, sessions in shard order, summed wall time, first start, last finish.
fn merged_manifest(manifests: &[Manifest], plan: &Plan, wall_s: f64) -> Manifest {
    let first = &manifests[0];
    let mut m = Manifest {
        shard: None,
        merged_shards: Some(plan.shards),
        sessions: manifests.iter().flat_map(|m| m.sessions.clone()).collect(),
        ..first.clone()
    };
    m.created_at = manifests.iter().map(|m| m.created_at.clone()).min().unwrap_or_default();
    m.started_at = manifests.iter().map(|m| m.started_at.clone()).min().unwrap_or_default();
    m.finished_at = manifests.iter().filter_map(|m| m.finished_at.clone()).max();
    m.progress = store::Progress {
        questions_done: plan.questions,
        questions_total: plan.questions,
    };
    m.inputs.questions.count = plan.questions;
    m.status = Status::Complete;
    m.wall_s = wall_s;
    m.error = None;
    m.interrupted_by = None;
    m
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
    fn array_expressions() {
        assert_eq!(array_expr(&[]), "");
        assert_eq!(array_expr(&[2]), "2");
        assert_eq!(array_expr(&[1, 3, 4, 5]), "1,3-5");
        assert_eq!(array_expr(&[0, 1, 3, 4, 5, 9]), "0-1,3-5,9");
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
