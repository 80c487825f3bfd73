//! Finding and reading finished (or unfinished) runs: `rftx ls`, `rftx show` and the run
//! references that `rftx compare` accepts (a run directory, a sweep directory, a hash prefix, a
//! directory name or a config file).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::base::error::{Error, Result};
use crate::core::report::Metrics;
use crate::core::rft::pass;
use crate::core::store::{self, Manifest};
use crate::run::shard;

/// One run directory as read from disk.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// `config.toml` of the run (the resolved config it was started with).
    pub config: toml::Table,
    /// `metrics.json`, once the first checkpoint wrote it.
    pub metrics: Option<Metrics>,
}

impl RunInfo {
    /// Reads a run directory: its manifest, config and (if present) metrics. A sharded run that
    /// is not merged yet is read from its shards ([`RunInfo::load_sharded`]).
    pub fn load(dir: &Path) -> Result<RunInfo> {
        if !dir.join(store::MANIFEST_FILE).is_file() && shard::Plan::path(dir).is_file() {
            return RunInfo::load_sharded(dir);
        }
        let manifest = store::read_manifest(dir)?.ok_or_else(|| {
            Error::input(
                dir,
                format!(
                    "not a run directory (no {}); `rftx ls` lists the runs",
                    store::MANIFEST_FILE
                ),
            )
        })?;
        let config_path = dir.join(store::CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::io(format!("{}: cannot read", config_path.display()), e))?;
        let config = toml::from_str(&text)
            .map_err(|e| Error::input(&config_path, format!("unreadable run config ({e}); rerun with --force")))?;
        let mut manifest = manifest;
        // The truth about runs that are not complete: a `running` run whose process is gone is
        // interrupted, and progress is what samples.jsonl holds, not the last checkpoint.
        if manifest.status != store::Status::Complete {
            if manifest.status == store::Status::Running && !store::lock_held(dir) {
                manifest.status = store::Status::Interrupted;
            }
            manifest.progress.questions_done = store::committed_questions(dir);
        }
        let metrics = match dir.join(store::METRICS_FILE).is_file() {
            true => Some(crate::core::report::read_metrics(dir)?),
            false => None,
        };
        Ok(RunInfo {
            dir: dir.to_path_buf(),
            manifest,
            config,
            metrics,
        })
    }

    /// A sharded run before `rftx merge`: the first started shard's inputs and config, the
    /// progress of all shards, `running` while any shard is, else `interrupted`.
    fn load_sharded(dir: &Path) -> Result<RunInfo> {
        let o = shard::Overview::read(dir)?;
        let started = (0..o.plan.shards)
            .map(|i| shard::shard_dir(dir, i))
            .find(|d| d.join(store::MANIFEST_FILE).is_file())
            .ok_or_else(|| {
                Error::input(
                    dir,
                    format!(
                        "a sharded run whose shards have not started; `rftx shard status {}` says more",
                        dir.display()
                    ),
                )
            })?;
        let mut info = RunInfo::load(&started)?;
        info.dir = dir.to_path_buf();
        info.metrics = None;
        let m = &mut info.manifest;
        m.shard = None;
        m.progress = store::Progress {
            questions_done: o.questions_done(),
            questions_total: o.plan.questions,
        };
        m.status = match o.running().is_empty() {
            true => store::Status::Interrupted,
            false => store::Status::Running,
        };
        Ok(info)
    }

    /// The directory name, `<name>-<hash12>`.
    pub fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// `complete 8/8`, `running 3/8`, `failed 2/8`.
    pub fn status_line(&self) -> String {
        format!(
            "{} {}/{}",
            self.manifest.status.as_str(),
            self.manifest.progress.questions_done,
            self.manifest.progress.questions_total
        )
    }

    /// Every parameter of the run as `dotted.key → value`: the config keys, plus the digests of
    /// the model file and the question set (`inputs.*`).
    pub fn params(&self) -> BTreeMap<String, toml::Value> {
        let mut out = BTreeMap::new();
        crate::base::util::flatten("", &self.config, &mut out);
        out.retain(|k, _| !k.starts_with("sweep."));
        let inputs = &self.manifest.inputs;
        out.insert("inputs.model.sha256".into(), inputs.model.sha256.clone().into());
        out.insert("inputs.questions.sha256".into(), inputs.questions.sha256.clone().into());
        out
    }

    /// sha256 of `samples.jsonl`: equal digests mean byte-identical samples.
    pub fn samples_sha256(&self) -> Result<Option<String>> {
        let p = self.dir.join(store::SAMPLES_FILE);
        match p.is_file() {
            true => crate::base::util::sha256_file(&p).map(Some),
            false => Ok(None),
        }
    }
}

/// Config keys that `rftx ls` shows for every run.
const LS_KEYS: [(&str, &str); 4] = [
    ("generation.oversample", "N"),
    ("generation.chunk_size", "CHUNK"),
    ("generation.max_new_tokens", "MAX_NEW"),
    ("generation.temperature", "TEMP"),
];

/// `rftx ls --format json`: one object per run.
pub fn summary_json(r: &RunInfo) -> serde_json::Value {
    let params = r.params();
    let key_params: serde_json::Map<String, serde_json::Value> = LS_KEYS
        .iter()
        .map(|(k, _)| (k.to_string(), serde_json::json!(params.get(*k))))
        .collect();
    serde_json::json!({
        "id": r.id(),
        "dir": r.dir.display().to_string(),
        "name": r.manifest.name,
        "hash": r.manifest.hash,
        "status": r.manifest.status,
        "created_at": r.manifest.created_at,
        "questions_done": r.manifest.progress.questions_done,
        "questions_total": r.manifest.progress.questions_total,
        "params": key_params,
        "metrics": r.metrics,
    })
}

/// `rftx ls`: one aligned line per run.
pub fn render_list(runs: &[RunInfo]) -> String {
    use crate::base::util::human_bytes;
    let mut header = vec!["RUN".to_string(), "STATUS".to_string()];
    header.extend(LS_KEYS.iter().map(|(_, h)| h.to_string()));
    header.extend(["TOKENS/S", "PEAK HEAP", "PEAK RSS", "ACCEPTED"].map(String::from));
    let gpu = runs
        .iter()
        .any(|r| r.metrics.as_ref().is_some_and(|m| m.gpu_peak_bytes.is_some()));
    if gpu {
        header.push("PEAK GPU".into());
    }
    let mut rows = vec![header];
    for r in runs {
        let params = r.params();
        let mut row = vec![r.id(), r.status_line()];
        row.extend(
            LS_KEYS
                .iter()
                .map(|(k, _)| params.get(*k).map(display_value).unwrap_or_default()),
        );
        match &r.metrics {
            Some(m) => row.extend([
                format!("{:.1}", m.tokens_per_s),
                human_bytes(m.peak_bytes),
                human_bytes(m.rss_peak_bytes),
                format!("{:.1} %", 100.0 * m.acceptance_rate),
            ]),
            None => row.extend(["—"; 4].map(String::from)),
        }
        if gpu {
            let g = r.metrics.as_ref().and_then(|m| m.gpu_peak_bytes);
            row.push(g.map(human_bytes).unwrap_or_else(|| "—".into()));
        }
        rows.push(row);
    }
    crate::base::util::align_columns(&rows, 2)
}

impl RunInfo {
    /// The pass-rate histogram of `metrics.json`'s `correct_counts` (empty before the first
    /// checkpoint).
    pub fn pass_rate_histogram(&self) -> Vec<pass::Bin> {
        self.metrics
            .as_ref()
            .map(|m| pass::Counts::from_rows(&m.correct_counts).histogram())
            .unwrap_or_default()
    }

    /// `rft.keep_pass_rate` of the run's config, if set.
    pub fn keep_pass_rate(&self) -> Option<[f64; 2]> {
        let v = self.config.get("rft")?.get("keep_pass_rate")?.as_array()?;
        let num = |x: &toml::Value| x.as_float().or_else(|| x.as_integer().map(|i| i as f64));
        match v.as_slice() {
            [lo, hi] => Some([num(lo)?, num(hi)?]),
            _ => None,
        }
    }

    /// `rftx show`'s pass-rate histogram and what `rft.keep_pass_rate` keeps of it; empty
    /// without per-question counts.
    fn render_pass_rates(&self) -> String {
        let Some(m) = self.metrics.as_ref().filter(|m| !m.correct_counts.is_empty()) else {
            return String::new();
        };
        let mut out = format!("\n{}", pass::render_histogram(&self.pass_rate_histogram()));
        if let Some(keep @ [lo, hi]) = self.keep_pass_rate() {
            let counts = pass::Counts::from_rows(&m.correct_counts);
            let kept = counts.count_where(|c, n| crate::core::rft::preference::keeps(Some(keep), c, n));
            out += &format!(
                "rft.keep_pass_rate = [{lo}, {hi}] keeps {kept} of {} questions in {}\n",
                m.questions,
                store::RL_PROMPTS_FILE
            );
        }
        out
    }
}

/// `rftx show`: status, inputs, sessions, metrics and the config of one run.
pub fn render_show(r: &RunInfo) -> String {
    let m = &r.manifest;
    let mut out = format!("run        {}\n", r.dir.display());
    out += &format!("status     {} questions\n", r.status_line());
    out += &format!("hash       {}\n", m.hash);
    out += &format!("created    {}\n", m.created_at);
    if let Some(f) = &m.finished_at {
        out += &format!("finished   {f}\n");
    }
    out += &format!(
        "model      {} ({}, sha256 {})\n",
        m.inputs.model.path, m.inputs.model.weights, m.inputs.model.sha256
    );
    if let Some(arch) = &m.inputs.model.arch {
        out += &format!("weights    RANDOM, of the {arch} shape: the samples and acceptance mean nothing\n");
    }
    if let Some(g) = &m.inputs.gpu {
        out += &format!(
            "device     {} {} (compute capability {})\n",
            g.device, g.name, g.compute_capability
        );
    }
    out += &format!(
        "questions  {} ({} questions, sha256 {})\n",
        m.inputs.questions.source, m.inputs.questions.count, m.inputs.questions.sha256
    );
    out += &format!("sessions   {} ({:.1} s wall in all)\n", m.sessions.len(), m.wall_s);
    if let Some(k) = m.merged_shards {
        out += &format!(
            "shards     merged from {k} (`rftx shard status {}` lists them)\n",
            r.dir.display()
        );
    } else if shard::Plan::path(&r.dir).is_file() {
        out += &format!("shards     not merged yet: `rftx shard status {}`\n", r.dir.display());
    }
    if let Some(e) = &m.error {
        out += &format!("error      {e}\n");
    }
    match &r.metrics {
        Some(metrics) => out += &format!("\n{}\n", crate::core::report::summary(metrics)),
        None => out += "\nno metrics yet (written at the first checkpoint)\n",
    }
    out += &r.render_pass_rates();
    out += "\nconfig.toml:\n";
    let config = toml::to_string(&r.config).unwrap_or_default();
    for line in config.lines() {
        out += &format!("  {line}\n");
    }
    out
}

/// A value as a person reads it: strings without quotes, everything else as TOML.
pub fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every run directory under `runs_dir`, oldest first. Directories that are not runs (no
/// manifest, such as `sweeps/`) are skipped; unreadable runs are returned as problems.
pub fn list(runs_dir: &Path) -> Result<(Vec<RunInfo>, Vec<String>)> {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for dir in subdirs(runs_dir)? {
        if !dir.join(store::MANIFEST_FILE).is_file() && !shard::Plan::path(&dir).is_file() {
            continue;
        }
        match RunInfo::load(&dir) {
            Ok(r) => runs.push(r),
            Err(e) => problems.push(e.to_string()),
        }
    }
    runs.sort_by(|a, b| (a.manifest.created_at.as_str(), a.id()).cmp(&(b.manifest.created_at.as_str(), b.id())));
    Ok((runs, problems))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("{}: cannot list", dir.display()), e)),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

/// The run directories a reference names, in order:
/// - a run directory → itself; a sweep directory → its member runs;
/// - a config file, with `sets` applied → the directory it hashes to (its sweep's runs if it
///   has a `[sweep]` table);
/// - otherwise a directory name or a hash prefix (at least 4 hex digits) of a run or a sweep
///   under `runs_dir`.
pub fn resolve(reference: &str, sets: &[String], runs_dir: &Path) -> Result<Vec<PathBuf>> {
    let path = Path::new(reference);
    if path.is_dir() {
        if path.join(store::MANIFEST_FILE).is_file() || shard::Plan::path(path).is_file() {
            return Ok(vec![path.to_path_buf()]);
        }
        if path.join(crate::commands::sweep::RECORD_FILE).is_file() {
            return crate::commands::sweep::Record::read(path)?.member_dirs(path);
        }
        return Err(Error::input(
            path,
            format!(
                "neither a run directory (no {}) nor a sweep directory (no {})",
                store::MANIFEST_FILE,
                crate::commands::sweep::RECORD_FILE
            ),
        ));
    }
    if path.is_file() {
        return resolve_config(path, sets, runs_dir);
    }
    let mut matches = Vec::new();
    let hex = reference.len() >= 4 && reference.chars().all(|c| c.is_ascii_hexdigit());
    let sweeps = runs_dir.join(crate::commands::sweep::SWEEPS_DIR);
    for dir in subdirs(runs_dir)?.into_iter().chain(subdirs(&sweeps)?) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = dir_hash(&dir);
        if name == reference
            || (hex
                && hash
                    .as_deref()
                    .is_some_and(|h| h.starts_with(&reference.to_lowercase())))
        {
            matches.push(dir);
        }
    }
    match matches.len() {
        1 => resolve(&matches[0].display().to_string(), sets, runs_dir),
        0 => Err(Error::input(
            runs_dir,
            format!(
                "no run or sweep matches `{reference}`: give a run directory, a config file, a directory name or a hash prefix of at least 4 hex digits (`rftx ls` lists the runs)"
            ),
        )),
        _ => Err(Error::input(
            runs_dir,
            format!(
                "`{reference}` is ambiguous; it matches {}; give more hex digits",
                matches.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The full hash of a run or sweep directory, from its manifest or record.
fn dir_hash(dir: &Path) -> Option<String> {
    if let Ok(Some(m)) = store::read_manifest(dir) {
        return Some(m.hash);
    }
    if let Ok(Some(p)) = shard::Plan::read(dir) {
        return Some(p.hash);
    }
    crate::commands::sweep::Record::read(dir).ok().map(|r| r.hash)
}

fn resolve_config(file: &Path, sets: &[String], runs_dir: &Path) -> Result<Vec<PathBuf>> {
    let resolved = crate::core::config::load(file, sets)?;
    let dirs = if resolved.config.sweep.is_empty() {
        vec![crate::run::prepare(resolved, runs_dir)?.dir]
    } else {
        let sweep = crate::commands::sweep::prepare(file, sets, &[], runs_dir)?;
        sweep.points.into_iter().map(|p| p.prepared.dir).collect()
    };
    for d in &dirs {
        if !d.join(store::MANIFEST_FILE).is_file() && !shard::Plan::path(d).is_file() {
            return Err(Error::input(
                file,
                format!(
                    "this config maps to {}, which has not been run yet: run `rftx run {}{}` first (or check --runs-dir)",
                    d.display(),
                    file.display(),
                    sets.iter().map(|s| format!(" --set {s}")).collect::<String>()
                ),
            ));
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_gives_dotted_keys() {
        let t: toml::Table = toml::from_str(
            "name = \"x\"\n[generation]\nchunk_size = 3\ntemperature = 0.7\n[model]\nweights = \"q8_0\"\n",
        )
        .unwrap();
        let mut out = BTreeMap::new();
        crate::base::util::flatten("", &t, &mut out);
        let got: Vec<(&str, String)> = out.iter().map(|(k, v)| (k.as_str(), display_value(v))).collect();
        let want = [
            ("generation.chunk_size", "3"),
            ("generation.temperature", "0.7"),
            ("model.weights", "q8_0"),
            ("name", "x"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k, v.to_string())));
    }
}
