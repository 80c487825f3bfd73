//! Reading question files as rows: JSON (a list of `[question, answer]` pairs or of objects),
//! JSON Lines, CSV (a header line, then one question per record; every value a string) and
//! Parquet (Snappy-compressed or plain, as the hub writes it), and datasets in the local Hugging
//! Face hub cache (`Org/Name[@revision]`, offline): the data files of `data.config` and
//! `data.split` in the snapshot (`hub` chooses them), in path order. `data.limit` applies while
//! reading: the rows after it are never read as rows (a `.json` file, one document, is still
//! parsed to its end).
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

use super::hub::EXTENSIONS;

/// Reads `data.source` (resolved to `path`), its first `data.limit` rows; a path that is not on
/// disk but reads as a repository id is a dataset in the hub cache.
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
    let items = read_file(path, "", data.limit.unwrap_or(usize::MAX))?;
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

/// The first `limit` rows of one file; `prefix` starts every row's place (a hub file's relative
/// path).
fn read_file(path: &Path, prefix: &str, limit: usize) -> Result<Vec<(String, Item)>> {
    match extension(path).as_str() {
        "json" => read_json(path, prefix, limit),
        "jsonl" | "ndjson" => read_jsonl(path, prefix, limit),
        "csv" => read_csv(path, prefix, limit),
        "parquet" => read_parquet(path, prefix, limit),
        other => Err(Error::input(
            path,
            format!(
                "cannot read a `.{other}` question file; data.source takes {} files, \"builtin\", or a hub dataset id",
                EXTENSIONS.map(|e| format!(".{e}")).join(", ")
            ),
        )),
    }
}

/// A JSON list's first `limit` elements; the rest is parsed (the file is one document) but not
/// kept.
fn read_json(path: &Path, prefix: &str, limit: usize) -> Result<Vec<(String, Item)>> {
    let bad = |why: String| Error::input(path, why);
    let text = read(path)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let list = serde::Deserializer::deserialize_seq(&mut de, FirstValues(limit))
        .and_then(|list| de.end().map(|()| list))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                bad("expected a JSON list of [question, answer] pairs or of objects at the top level".into())
            }
            _ => bad(format!(
                "not valid JSON ({e}); expected a list of [question, answer] pairs or of objects"
            )),
        })?;
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let item = json_item(v).map_err(|why| bad(format!("record {i}: {why}")))?;
            Ok((format!("{prefix}record {i}"), item))
        })
        .collect()
}

/// A serde visitor: the first N values of a sequence, the others skipped.
struct FirstValues(usize);

impl<'de> serde::de::Visitor<'de> for FirstValues {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list at the top level")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while out.len() < self.0 {
            match seq.next_element()? {
                Some(v) => out.push(v),
                None => return Ok(out),
            }
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(out)
    }
}

/// The first `limit` objects of a JSON Lines file, read line by line; blank lines skipped.
fn read_jsonl(path: &Path, prefix: &str, limit: usize) -> Result<Vec<(String, Item)>> {
    use std::io::BufRead;
    let bad = |why: String| Error::input(path, why);
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read the question file: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        if out.len() == limit {
            break;
        }
        let line = line.map_err(|e| bad(format!("line {}: cannot read: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {}: not valid JSON ({e})", i + 1)))?;
        if !v.is_object() {
            return Err(bad(format!(
                "line {}: expected a JSON object, one question per line",
                i + 1
            )));
        }
        out.push((format!("{prefix}line {}", i + 1), Item::Row(v)));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::input(path, format!("cannot read the question file: {e}")))
}

/// A JSON list element: a `[question, answer]` pair or an object.
fn json_item(v: serde_json::Value) -> std::result::Result<Item, String> {
    if v.is_object() {
        return Ok(Item::Row(v));
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

fn read_csv(path: &Path, prefix: &str, limit: usize) -> Result<Vec<(String, Item)>> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| Error::input(path, format!("cannot read the CSV file: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| Error::input(path, format!("cannot read the CSV header line: {e}")))?
        .clone();
    let mut out = Vec::new();
    for (i, record) in reader.records().take(limit).enumerate() {
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

fn read_parquet(path: &Path, prefix: &str, limit: usize) -> Result<Vec<(String, Item)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let hint = "rftx reads uncompressed and Snappy-compressed Parquet (the hub's and pandas' default)";
    let file =
        std::fs::File::open(path).map_err(|e| Error::input(path, format!("cannot read the question file: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::input(path, format!("not a readable Parquet file ({e}); {hint}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| Error::input(path, format!("cannot read its rows ({e}); {hint}")))?;
    rows.take(limit)
        .enumerate()
        .map(|(i, r)| {
            let r = r.map_err(|e| Error::input(path, format!("row {}: unreadable ({e}); {hint}", i + 1)))?;
            Ok((format!("{prefix}row {}", i + 1), Item::Row(r.to_json_value())))
        })
        .collect()
}

/// `Org/Name[@revision]` in the hub cache: the first `data.limit` rows of the configured config
/// and split's files.
fn hub_dataset(spec: &str, data: &DataConfig) -> Result<Rows> {
    let snapshot = crate::source::hub::resolve_dataset(spec, &crate::source::hub::cache_dir())
        .map_err(|e| Error::input(Path::new(spec), e))?;
    let chosen =
        super::hub::data_files(&snapshot, data).map_err(|e| Error::input(&snapshot, format!("{spec}: {e}")))?;
    let limit = data.limit.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    for rel in &chosen {
        if items.len() == limit {
            break;
        }
        let prefix = format!("{} ", rel.display());
        items.extend(read_file(&snapshot.join(rel), &prefix, limit - items.len())?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows after the limit are not read: a bad one there fails nothing.
    #[test]
    fn the_limit_applies_while_reading() {
        let d = tempfile::tempdir().unwrap();
        let cases: [(&str, &str); 4] = [
            (
                "q.jsonl",
                "{\"question\": \"a\", \"answer\": 1}\n\n{\"question\": \"b\", \"answer\": 2}\nnot json\n",
            ),
            (
                "q.json",
                "[[\"a\", 1], {\"question\": \"b\", \"answer\": 2}, 7, \"bad\"]",
            ),
            ("q.csv", "question,answer\na,1\nb,2\n\"unterminated\n"),
            ("pairs.json", "[[\"a\", 1], [\"b\", 2], [\"\", 3]]"),
        ];
        for (name, text) in cases {
            let path = d.path().join(name);
            std::fs::write(&path, text).unwrap();
            let rows = read_file(&path, "", 2).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(rows.len(), 2, "{name}");
            assert!(
                read_file(&path, "", usize::MAX).is_err(),
                "{name}: the whole file has a bad row"
            );
            assert_eq!(read_file(&path, "", 1).unwrap().len(), 1, "{name}");
        }
        // A file that is no JSON list is still refused.
        let path = d.path().join("obj.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        assert!(read_file(&path, "", 1)
            .unwrap_err()
            .to_string()
            .contains("expected a JSON list"));
        std::fs::write(&path, "[[\"a\", 1], [").unwrap();
        assert!(read_file(&path, "", 1)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }
}
