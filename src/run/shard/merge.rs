//! `rftx merge`: every shard checked, then the run's own files written from theirs, byte for
//! byte those of an unsharded run.
use std::io::Write;
use std::path::{Path, PathBuf};

use super::plan::{shard_dir, Done, Plan, DONE_FILE};
use super::status::{array_expr, Overview};
use crate::base::error::{Error, IoContext, Result};
use crate::core::report::{self, Metrics, ShardRow, Tally};
use crate::core::rft::{Dataset, Preferences};
use crate::core::store::{self, jsonl, ChunkRecord, Manifest, QuestionRecord, Status};

/// What to do about a shard whose files do not check out.
const REDO: &str = "remove that shard's directory and run it again";

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
    let config = crate::core::config::read_run_config(&dirs[0].join(store::CONFIG_FILE))?;
    let mut dataset = Dataset::new(&config.rft, &config.prompt.system);
    let preferences = Preferences::new(&config.rft, &config.prompt.system);
    let tally = read_records(&dirs, plan, &mut dataset, Tally::of(&config.generation))?;
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
    for (name, bytes) in report::finished_files(&dataset, &tally)? {
        run.write(name, &bytes)?;
    }
    preferences.write_files(run_dir, &run_dir.join(store::SAMPLES_FILE), None)?;
    run.write(store::METRICS_FILE, report::metrics_json(&metrics).as_bytes())?;
    run.write_manifest(&merged_manifest(&manifests, plan, wall_s))?;
    let mut log = run.appender(store::LOG_FILE)?;
    let line = format!(
        "{} merged {} shards ({} questions; device {device})\n",
        crate::base::util::now_rfc3339(),
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
        if &crate::base::util::sha256_file(&dir.join(file))? != digest {
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
fn read_records(dirs: &[PathBuf], plan: &Plan, dataset: &mut Dataset, mut tally: Tally) -> Result<Tally> {
    let mut next = 0;
    for (i, dir) in dirs.iter().enumerate() {
        let range = plan.range(i);
        jsonl::for_each::<QuestionRecord>(&dir.join(store::SAMPLES_FILE), REDO, |q| {
            if q.index != next || !range.contains(&q.index) {
                return Err(format!(
                    "question {} where {next} of {}..{} was expected",
                    q.index, range.start, range.end
                ));
            }
            next += 1;
            tally.add_question(&q);
            dataset.add_question(&q, None);
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
        jsonl::for_each::<ChunkRecord>(&dir.join(store::CHUNKS_FILE), REDO, |c| {
            tally.add_chunk(&c);
            Ok(())
        })?;
    }
    Ok(tally)
}

/// Writes the concatenation of every shard's `name` to `out`, atomically.
fn concatenate(dirs: &[PathBuf], name: &str, out: &Path) -> Result<()> {
    crate::base::util::write_atomic_with(out, |f| {
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
