//! Sweeps: the cartesian product of a few keys' values, each point an ordinary run in its own
//! hashed directory, and a sweep record `runs/sweeps/<name>-<hash12>/sweep.json` that lists
//! the member runs.
//!
//! Axes come from the config's `[sweep]` table (`generation.chunk_size = [1, 3, 5, 15]`) and
//! from `--over KEY=V1,V2,…`, which replaces the table's list for the same key. The sweep hash
//! covers the axes and the member runs' hashes: the same sweep maps to the same record.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::core::config::{self, SetArg};
use crate::run::{self, Observer, Prepared, RunResult};

/// Sweep records live in this directory under the runs directory.
pub const SWEEPS_DIR: &str = "sweeps";
pub const RECORD_FILE: &str = "sweep.json";
/// Version of the sweep record and of the sweep hash's input.
pub const SWEEP_FORMAT: &str = "rftx-sweep-v1";

/// One swept key and its values (TOML values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

impl Axis {
    /// Parses `--over generation.chunk_size=1,3,5,15`. Each value is TOML or else a string
    /// (`model.weights=q8_0,f16`).
    pub fn parse_over(raw: &str) -> Result<Axis, String> {
        let example = "e.g. --over generation.chunk_size=1,3,5,15";
        let Some((key, values)) = raw.split_once('=') else {
            return Err(format!("--over {raw}: expected KEY=V1,V2,…, {example}"));
        };
        // Reuse --set's key check.
        let key = SetArg::parse(&format!("{}=0", key.trim()))
            .map_err(|_| format!("--over {raw}: `{}` is not a key path, {example}", key.trim()))?
            .key()
            .to_string();
        let values: Vec<toml::Value> = values.split(',').map(config::parse_value).collect();
        if values
            .iter()
            .any(|v| matches!(v, toml::Value::String(s) if s.is_empty()))
        {
            return Err(format!(
                "--over {raw}: an empty value; separate values with single commas, {example}"
            ));
        }
        Ok(Axis { key, values })
    }

    /// The axes of a `[sweep]` table: nested tables are key paths, leaves are non-empty lists.
    pub fn from_table(table: &toml::Table) -> Result<Vec<Axis>, String> {
        let mut leaves = std::collections::BTreeMap::new();
        crate::base::util::flatten("", table, &mut leaves);
        leaves
            .into_iter()
            .map(|(key, v)| match v {
                toml::Value::Array(values) if !values.is_empty() => Ok(Axis { key, values }),
                other => Err(format!(
                    "sweep.{key} = {other}: expected a non-empty list of values, e.g. sweep.generation.chunk_size = [1, 3, 5, 15]"
                )),
            })
            .collect()
    }
}

/// The cartesian product of the axes, the first axis varying slowest.
pub fn product(axes: &[Axis]) -> Vec<Vec<(String, toml::Value)>> {
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
}

/// `generation.chunk_size=3, model.weights="f16"`.
pub fn point_label(values: &[(String, toml::Value)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One point of a sweep: its values and the run they resolve to.
#[derive(Debug, Clone)]
pub struct Point {
    pub values: Vec<(String, toml::Value)>,
    pub prepared: Prepared,
}

/// A sweep with every point resolved (configs validated, hashes computed); nothing run yet.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub file: PathBuf,
    pub sets: Vec<String>,
    pub axes: Vec<Axis>,
    pub points: Vec<Point>,
    pub hash: String,
    /// `runs_dir/sweeps/<name>-<hash12>`.
    pub dir: PathBuf,
}

/// Resolves the sweep of `file` (its `[sweep]` table, then `overs`) with `sets` applied to every
/// point. Every point is validated before anything runs: a bad value is an input error.
pub fn prepare(file: &Path, sets: &[String], overs: &[String], runs_dir: &Path) -> Result<Sweep> {
    let base = config::load(file, sets)?;
    let mut axes = Axis::from_table(&base.config.sweep).map_err(|e| Error::input(file, e))?;
    for raw in overs {
        let axis = Axis::parse_over(raw).map_err(|e| Error::input(file, e))?;
        match axes.iter_mut().find(|a| a.key == axis.key) {
            Some(a) => *a = axis,
            None => axes.push(axis),
        }
    }
    if axes.is_empty() {
        return Err(Error::input(
            file,
            "nothing to sweep: add --over KEY=V1,V2,… (e.g. --over generation.chunk_size=1,3,5,15) or a [sweep] table of key = [values]",
        ));
    }
    let set_keys: Vec<String> = sets
        .iter()
        .filter_map(|s| SetArg::parse(s).ok().map(|a| a.key().to_string()))
        .collect();
    for a in &axes {
        if a.key == "sweep" || a.key.starts_with("sweep.") {
            return Err(Error::input(
                file,
                format!("{}: a sweep cannot sweep [sweep] itself", a.key),
            ));
        }
        if set_keys.contains(&a.key) {
            return Err(Error::input(
                file,
                format!("{} is both swept and set with --set: drop one of them", a.key),
            ));
        }
    }
    let mut points = Vec::new();
    for values in product(&axes) {
        let label = point_label(&values);
        let mut point_sets = sets.to_vec();
        point_sets.extend(values.iter().map(|(k, v)| format!("{k}={v}")));
        let mut resolved =
            config::load(file, &point_sets).map_err(|e| Error::input(file, format!("sweep point {label}: {e}")))?;
        resolved.config.sweep.clear();
        let prepared = run::prepare(resolved, runs_dir)?;
        if let Some(same) = points.iter().find(|p: &&Point| p.prepared.dir == prepared.dir) {
            return Err(Error::input(
                file,
                format!(
                    "sweep points {} and {label} are the same run ({}): the swept key does not change the run hash (see `rftx hash`); sweep a key that changes the samples or the measurements",
                    point_label(&same.values),
                    prepared.dir.display()
                ),
            ));
        }
        points.push(Point { values, prepared });
    }
    let name = base.config.name.clone();
    let input = serde_json::json!({
        "format": SWEEP_FORMAT,
        "axes": axes,
        "runs": points.iter().map(|p| p.prepared.hash.as_str()).collect::<Vec<_>>(),
    });
    let hash = crate::base::util::sha256_hex(config::canonical_json(&input).as_bytes());
    let dir = runs_dir.join(SWEEPS_DIR).join(format!("{name}-{}", &hash[..12]));
    Ok(Sweep {
        name,
        file: file.to_path_buf(),
        sets: sets.to_vec(),
        axes,
        points,
        hash,
        dir,
    })
}

/// `sweep.json`: what was swept and the member runs, by directory name under the runs
/// directory (`../../<run>` from the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: String,
    pub name: String,
    pub hash: String,
    pub config: String,
    pub sets: Vec<String>,
    pub axes: Vec<Axis>,
    pub created_at: String,
    pub updated_at: String,
    pub points: Vec<RecordPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPoint {
    /// Swept key → value.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The run directory's name under the runs directory.
    pub run: String,
    pub hash: String,
    /// `pending`, `complete` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    pub fn read(dir: &Path) -> Result<Record> {
        let p = dir.join(RECORD_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("{}: cannot read", p.display()), e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input(
                &p,
                format!("unreadable sweep record ({e}); run the sweep again to rewrite it"),
            )
        })
    }

    /// The member run directories, in point order (`dir` is the sweep directory).
    pub fn member_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let runs_dir = dir
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| Error::input(dir, "a sweep directory lives in <runs dir>/sweeps/"))?;
        Ok(self.points.iter().map(|p| runs_dir.join(&p.run)).collect())
    }

    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("{}: cannot create the sweep directory", dir.display()), e))?;
        let json = serde_json::to_string_pretty(self).expect("records serialise") + "\n";
        crate::base::util::write_atomic(&dir.join(RECORD_FILE), json.as_bytes())
    }
}

/// What a sweep did: each point's run, or why it failed.
pub struct SweepResult {
    pub record: Record,
    pub runs: Vec<std::result::Result<RunResult, Error>>,
}

/// Runs every point in order (complete ones are reported, partial ones resumed), updating the
/// sweep record after each. A failing point does not stop the sweep.
pub fn run(sweep: &Sweep, force: bool, observer: &mut dyn Observer) -> Result<SweepResult> {
    let now = crate::base::util::now_rfc3339();
    let created_at = Record::read(&sweep.dir)
        .map(|r| r.created_at)
        .unwrap_or_else(|_| now.clone());
    let mut record = Record {
        format: SWEEP_FORMAT.into(),
        name: sweep.name.clone(),
        hash: sweep.hash.clone(),
        config: sweep.file.display().to_string(),
        sets: sweep.sets.clone(),
        axes: sweep.axes.clone(),
        created_at,
        updated_at: now,
        points: sweep
            .points
            .iter()
            .map(|p| RecordPoint {
                values: p
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("TOML values are JSON")))
                    .collect(),
                run: p
                    .prepared
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                hash: p.prepared.hash.clone(),
                status: "pending".into(),
                error: None,
            })
            .collect(),
    };
    record.write(&sweep.dir)?;
    let n = sweep.points.len();
    let mut runs = Vec::with_capacity(n);
    for (k, point) in sweep.points.iter().enumerate() {
        observer.sweep_point(k, n, &point_label(&point.values), &point.prepared.dir);
        let result = run::run(&point.prepared, force, observer);
        let rp = &mut record.points[k];
        if let Err(e @ Error::Interrupted { .. }) = result {
            // A stop request ends the sweep: this point and the rest resume with the same command.
            rp.status = "interrupted".into();
            record.updated_at = crate::base::util::now_rfc3339();
            record.write(&sweep.dir)?;
            return Err(e);
        }
        match &result {
            Ok(_) => rp.status = "complete".into(),
            Err(e) => {
                rp.status = "failed".into();
                rp.error = Some(e.to_string());
                observer.log(&format!("sweep point {}/{n} failed: {e}", k + 1));
            }
        }
        record.updated_at = crate::base::util::now_rfc3339();
        record.write(&sweep.dir)?;
        runs.push(result);
    }
    observer.sweep_point(n, n, "", &sweep.dir);
    Ok(SweepResult { record, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(a: &Axis) -> Vec<i64> {
        a.values.iter().map(|v| v.as_integer().unwrap()).collect()
    }

    #[test]
    fn over_parses_values_as_toml_or_strings() {
        let a = Axis::parse_over("generation.chunk_size=1,3, 5,15").unwrap();
        assert_eq!(a.key, "generation.chunk_size");
        assert_eq!(ints(&a), [1, 3, 5, 15]);
        let w = Axis::parse_over("model.weights=q8_0,\"f16\"").unwrap();
        assert_eq!(w.values, [toml::Value::from("q8_0"), toml::Value::from("f16")]);
        for bad in [
            "generation.chunk_size",
            "=1,2",
            "generation..x=1",
            "generation.chunk_size=1,,3",
        ] {
            assert!(Axis::parse_over(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sweep_tables_nest_or_quote_their_keys() {
        let t: toml::Table =
            toml::from_str("generation.chunk_size = [1, 3]\n\"generation.max_new_tokens\" = [40]\n").unwrap();
        let axes = Axis::from_table(&t).unwrap();
        let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["generation.chunk_size", "generation.max_new_tokens"]);
        let bad: toml::Table = toml::from_str("generation.chunk_size = 3\n").unwrap();
        assert!(Axis::from_table(&bad)
            .unwrap_err()
            .contains("sweep.generation.chunk_size = 3"));
        let empty: toml::Table = toml::from_str("generation.chunk_size = []\n").unwrap();
        assert!(Axis::from_table(&empty).is_err());
    }

    #[test]
    fn product_varies_the_last_axis_fastest() {
        let axes = [
            Axis::parse_over("a.x=1,2").unwrap(),
            Axis::parse_over("a.y=7,8,9").unwrap(),
        ];
        let labels: Vec<String> = product(&axes).iter().map(|p| point_label(p)).collect();
        assert_eq!(
            labels,
            [
                "a.x=1, a.y=7",
                "a.x=1, a.y=8",
                "a.x=1, a.y=9",
                "a.x=2, a.y=7",
                "a.x=2, a.y=8",
                "a.x=2, a.y=9"
            ]
        );
    }
}
