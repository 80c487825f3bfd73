//! Reading question files as rows: JSON (a list of `[question, answer]` pairs or of objects),
//! JSON Lines, CSV (a header line, then one question per record; every value a string) and
//! Parquet (Snappy-compressed or plain, as the hub writes it), and datasets in the local Hugging
//! Face hub cache (`Org/Name[@revision]`, offline): the data files of `data.config` and
//! `data.split` in the snapshot, in path order.
use std::path::{Path, PathBuf};

use super::Question;
use crate::base::error::{Error, Result};
use crate::base::record::Answer;
use crate::core::config::DataConfig;

/// One row of a question file: a `[question, answer]` pair, or an object whose fields
/// `data.*_field` name.
#[derive(Debug, Clone)]
pub(super) enum Item {
    Pair(Question),
    Row(serde_json::Value),
}

/// A file's rows, each with where it is (`line 3`, `row 7`, `main/test-0.parquet row 2`).
pub(super) struct Rows {
    /// The file (or hub snapshot) errors name.
    pub path: PathBuf,
    /// What `QuestionSet::source` says.
    pub source: String,
    pub items: Vec<(String, Item)>,
}

/// Extensions read as question files.
const EXTENSIONS: [&str; 5] = ["json", "jsonl", "ndjson", "csv", "parquet"];

/// Reads `data.source` (resolved to `path`); a path that is not on disk but reads as a
/// repository id is a dataset in the hub cache.
pub(super) fn load(path: &Path, data: &DataConfig) -> Result<Rows> {
    let spec = path.to_string_lossy();
    if !path.exists() && crate::source::hub::looks_like_repo_id(&spec) {
        return hub_dataset(&spec, data);
    }
    for (key, value) in [("data.split", &data.split), ("data.config", &data.config)] {
        if let Some(v) = value {
            return Err(Error::input(path, format!("{key} = {v:?}: only a hub dataset (data.source = \"Org/Name\") has splits and configs; remove it, or point data.source at the split's file")));
        }
    }
    let items = read_file(path, "")?;
    if items.is_empty() {
        return Err(Error::input(path, "the question file has no rows"));
    }
    Ok(Rows {
        path: path.to_path_buf(),
        source: path.display().to_string(),
        items,
    })
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The rows of one file; `prefix` starts every row's place (a hub file's relative path).
fn read_file(path: &Path, prefix: &str) -> Result<Vec<(String, Item)>> {
    let at = |what: String| format!("{prefix}{what}");
    let bad = |why: String| Error::input(path, why);
    match extension(path).as_str() {
        "json" => {
            let text = read(path)?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "not valid JSON ({e}); expected a list of [question, answer] pairs or of objects"
                ))
            })?;
            let list = value.as_array().ok_or_else(|| {
                bad("expected a JSON list of [question, answer] pairs or of objects at the top level".into())
            })?;
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    Ok((
                        at(format!("record {i}")),
                        json_item(v).map_err(|why| bad(format!("record {i}: {why}")))?,
                    ))
                })
                .collect()
        }
        "jsonl" | "ndjson" => {
            let text = read(path)?;
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| bad(format!("line {}: not valid JSON ({e})", i + 1)))?;
                if !v.is_object() {
                    return Err(bad(format!(
                        "line {}: expected a JSON object, one question per line",
                        i + 1
                    )));
                }
                out.push((at(format!("line {}", i + 1)), Item::Row(v)));
            }
            Ok(out)
        }
        "csv" => read_csv(path, prefix),
        "parquet" => read_parquet(path, prefix),
        other => Err(bad(format!(
            "cannot read a `.{other}` question file; data.source takes {} files, \"builtin\", or a hub dataset id",
            EXTENSIONS.map(|e| format!(".{e}")).join(", ")
        ))),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::input(path, format!("cannot read the question file: {e}")))
}

/// A JSON list element: a `[question, answer]` pair or an object.
fn json_item(v: &serde_json::Value) -> std::result::Result<Item, String> {
    if v.is_object() {
        return Ok(Item::Row(v.clone()));
    }
    let pair = v
        .as_array()
        .filter(|a| a.len() >= 2)
        .ok_or("not a [question, answer] list or an object; expected [question, answer] such as [\"How many grams are in 2 kg?\", 2000]")?;
    let question = pair[0]
        .as_str()
        .filter(|q| !q.trim().is_empty())
        .ok_or("the question is not a non-empty string")?;
    // A number, or a string holding one, is numeric as it always was; other strings are text.
    let answer = match &pair[1] {
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map_or_else(|| Answer::Text(s.clone()), Answer::Number),
        other => Answer::from_json(other).ok_or_else(|| format!("the answer {other} is not a number or a string"))?,
    };
    Ok(Item::Pair(Question::new(question.to_string(), answer)))
}

fn read_csv(path: &Path, prefix: &str) -> Result<Vec<(String, Item)>> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| Error::input(path, format!("cannot read the CSV file: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| Error::input(path, format!("cannot read the CSV header line: {e}")))?
        .clone();
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| Error::input(path, format!("line {line}: {e}")))?;
        let row: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        out.push((
            format!("{prefix}line {line}"),
            Item::Row(serde_json::Value::Object(row)),
        ));
    }
    Ok(out)
}

fn read_parquet(path: &Path, prefix: &str) -> Result<Vec<(String, Item)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let hint = "rftx reads uncompressed and Snappy-compressed Parquet (the hub's and pandas' default)";
    let file =
        std::fs::File::open(path).map_err(|e| Error::input(path, format!("cannot read the question file: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::input(path, format!("not a readable Parquet file ({e}); {hint}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| Error::input(path, format!("cannot read its rows ({e}); {hint}")))?;
    rows.enumerate()
        .map(|(i, r)| {
            let r = r.map_err(|e| Error::input(path, format!("row {}: unreadable ({e}); {hint}", i + 1)))?;
            Ok((format!("{prefix}row {}", i + 1), Item::Row(r.to_json_value())))
        })
        .collect()
}

/// `Org/Name[@revision]` in the hub cache: the files of the configured config and split.
fn hub_dataset(spec: &str, data: &DataConfig) -> Result<Rows> {
    let snapshot = crate::source::hub::resolve_dataset(spec, &crate::source::hub::cache_dir())
        .map_err(|e| Error::input(Path::new(spec), e))?;
    let mut files = Vec::new();
    collect(&snapshot, &snapshot, &mut files);
    files.sort();
    let chosen = choose(&files, data).map_err(|e| Error::input(&snapshot, format!("{spec}: {e}")))?;
    let mut items = Vec::new();
    for rel in &chosen {
        items.extend(read_file(&snapshot.join(rel), &format!("{} ", rel.display()))?);
    }
    if items.is_empty() {
        return Err(Error::input(&snapshot, format!("{spec}: its split has no rows")));
    }
    Ok(Rows {
        path: snapshot,
        source: spec.to_string(),
        items,
    })
}

/// Data files under `dir`, relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if p.is_dir() && !hidden {
            collect(root, &p, out);
        } else if !hidden && EXTENSIONS.contains(&extension(&p).as_str()) {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
}

/// The config of a file: its first folder, unless that is `data` (the default config's).
fn config_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_string_lossy().to_string();
    (parts.next().is_some() && first != "data").then_some(first)
}

/// The split of a file: a folder named like a split, or its name up to the first `-`, `_` or `.`
/// (`train-00000-of-00001.parquet`, `test.jsonl`).
fn split_of(rel: &Path) -> String {
    let stem = rel
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let from_name = stem.split(['-', '_', '.']).next().unwrap_or("").to_string();
    let folders: Vec<String> = rel
        .parent()
        .map(|p| p.iter().map(|c| c.to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    let known = ["train", "test", "validation", "dev", "valid"];
    folders
        .into_iter()
        .rev()
        .find(|f| known.contains(&f.as_str()))
        .unwrap_or(from_name)
}

fn choose(files: &[PathBuf], data: &DataConfig) -> std::result::Result<Vec<PathBuf>, String> {
    if files.is_empty() {
        return Err(format!("its snapshot has no data files ({})", EXTENSIONS.join(", ")));
    }
    let mut configs: Vec<String> = files.iter().filter_map(|f| config_of(f)).collect();
    configs.dedup();
    let in_config: Vec<&PathBuf> = match (&data.config, configs.len()) {
        (Some(c), _) if !configs.contains(c) => {
            return Err(format!(
                "no config {c:?}; it has {}",
                list(&configs, "only the default one")
            ));
        }
        (Some(c), _) => files.iter().filter(|f| config_of(f).as_ref() == Some(c)).collect(),
        (None, n) if n > 1 => {
            return Err(format!(
                "it has several configs: {}; set data.config to one",
                configs.join(", ")
            ))
        }
        (None, _) => files.iter().collect(),
    };
    let mut splits: Vec<String> = in_config.iter().map(|f| split_of(f)).collect();
    splits.sort();
    splits.dedup();
    let split = match &data.split {
        Some(s) => s.clone(),
        None if splits.len() == 1 => splits[0].clone(),
        None => "train".into(),
    };
    let chosen: Vec<PathBuf> = in_config
        .into_iter()
        .filter(|f| split_of(f) == split)
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "no split {split:?}; its splits are {}; set data.split to one",
            splits.join(", ")
        ));
    }
    Ok(chosen)
}

fn list(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(split: Option<&str>, config: Option<&str>) -> DataConfig {
        DataConfig {
            split: split.map(String::from),
            config: config.map(String::from),
            ..DataConfig::default()
        }
    }

    #[test]
    fn hub_files_by_config_and_split() {
        let files: Vec<PathBuf> = [
            "main/test-00000-of-00001.parquet",
            "main/train-00000-of-00001.parquet",
            "socratic/train-00000-of-00001.parquet",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert!(choose(&files, &data(None, None))
            .unwrap_err()
            .contains("several configs: main, socratic"));
        assert_eq!(
            choose(&files, &data(Some("test"), Some("main"))).unwrap(),
            [PathBuf::from("main/test-00000-of-00001.parquet")]
        );
        assert_eq!(
            choose(&files, &data(None, Some("main"))).unwrap(),
            [PathBuf::from("main/train-00000-of-00001.parquet")]
        );
        assert!(choose(&files, &data(Some("dev"), Some("main")))
            .unwrap_err()
            .contains("no split \"dev\"; its splits are test, train"));
        assert!(choose(&files, &data(None, Some("x")))
            .unwrap_err()
            .contains("no config \"x\"; it has main, socratic"));
        let flat: Vec<PathBuf> = [
            "data/train-0.parquet",
            "data/test-0.parquet",
            "default/validation/0000.parquet",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(split_of(&flat[2]), "validation");
        assert_eq!(
            choose(&flat[..2], &data(None, None)).unwrap(),
            [PathBuf::from("data/train-0.parquet")]
        );
        let one = [PathBuf::from("test.jsonl")];
        assert_eq!(choose(&one, &data(None, None)).unwrap(), one);
    }
}
