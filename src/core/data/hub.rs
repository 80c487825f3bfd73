//! Which files of a hub dataset's snapshot hold the rows of `data.config` and `data.split`.
//!
//! As `datasets` decides it: the dataset card's `configs:` (the YAML header of `README.md`), each
//! config's `data_files` patterns per split (or its `data_dir`); without them, the hub's naming
//! convention — `data/{split}-00000-of-00001.parquet` and the like (any split name), `{split}.jsonl`,
//! `{split}-*.csv` or a `{split}/` folder for the split names `datasets` knows (train, test,
//! validation, …), in `data/` or the snapshot's top (the default config) or in a `{config}/`
//! folder. Nothing else is read as rows: `dataset_infos.json` is not a split, and
//! `test_metadata.json` is not part of `test`.
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};
use yaml_rust2::{Yaml, YamlLoader};

use crate::core::config::DataConfig;

/// Extensions read as question files.
pub(super) const EXTENSIONS: [&str; 5] = ["json", "jsonl", "ndjson", "csv", "parquet"];

/// Split names `datasets` finds in file and folder names (its `SPLIT_KEYWORDS`).
const SPLIT_WORDS: [&str; 10] = [
    "train",
    "training",
    "validation",
    "valid",
    "dev",
    "val",
    "test",
    "testing",
    "eval",
    "evaluation",
];

/// The dataset card.
const CARD: &str = "README.md";

/// A config of the dataset card: its name, whether it is the default, and its splits' files.
#[derive(Debug, PartialEq)]
struct CardConfig {
    name: String,
    default: bool,
    /// Each split with its path patterns, relative to the snapshot; empty with `data_dir`.
    splits: Vec<(String, Vec<String>)>,
    data_dir: Option<String>,
}

/// The data files (relative to `snapshot`, in path order) of the configured config and split.
pub(super) fn data_files(snapshot: &Path, data: &DataConfig) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    collect(snapshot, snapshot, &mut files);
    files.sort();
    let mut chosen = match card_configs(&snapshot.join(CARD))? {
        Some(configs) => from_card(&configs, &files, data)?,
        None => by_convention(&files, data)?,
    };
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

/// Every file under `dir` (hidden ones and `_`-prefixed folders left out), relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
}

fn is_data_file(rel: &Path) -> bool {
    let ext = rel
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    EXTENSIONS.contains(&ext.as_str())
}

/// The split a file name gives: `{split}-00000-of-00001…` (any split name), else `{word}.ext` or
/// `{word}-….ext` for a split word `datasets` knows (`test_metadata.json` is none).
fn split_in_name(name: &str) -> Option<String> {
    let head = name.split(['-', '.']).next().unwrap_or("");
    let word = !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let shard = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    let sharded = name[head.len()..]
        .strip_prefix('-')
        .and_then(|t| t.split_once("-of-"))
        .is_some_and(|(i, n)| shard(i) && n.get(..5).is_some_and(shard));
    (word && (sharded || SPLIT_WORDS.contains(&head))).then(|| head.to_string())
}

/// Where the hub's convention places a file: its config (`None`, the default one) and split;
/// `None` for a file that is not a data file by it.
fn place(rel: &Path) -> Option<(Option<String>, String)> {
    if !is_data_file(rel) {
        return None;
    }
    let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
    let (name, dirs) = parts.split_last()?;
    let config = |d: &str| (d != "data").then(|| d.to_string());
    let numbered = name
        .split('.')
        .next()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    match dirs {
        [] => Some((None, split_in_name(name)?)),
        [d] if SPLIT_WORDS.contains(d) => Some((None, d.to_string())),
        [d] => Some((config(d), split_in_name(name)?)),
        // `{config}/{split}/0000.parquet`, as the hub's Parquet conversion writes it.
        [c, s] if SPLIT_WORDS.contains(s) || numbered => Some((config(c), s.to_string())),
        _ => None,
    }
}

/// The files of `data.config` and `data.split` by the hub's naming convention.
fn by_convention(files: &[PathBuf], data: &DataConfig) -> Result<Vec<PathBuf>, String> {
    let placed: Vec<(&PathBuf, Option<String>, String)> =
        files.iter().filter_map(|f| place(f).map(|(c, s)| (f, c, s))).collect();
    if placed.is_empty() {
        return Err(no_data_files(files));
    }
    let config = pick_config(&placed, data)?;
    let in_config: Vec<(&PathBuf, String)> = placed
        .into_iter()
        .filter(|(_, c, _)| *c == config)
        .map(|(f, _, s)| (f, s))
        .collect();
    pick_split(group(in_config), data)
}

/// The config of `data.config` among the placed files' (`None`: the default one, files in the
/// top folder or `data/`); unset: the only one there is.
fn pick_config(placed: &[(&PathBuf, Option<String>, String)], data: &DataConfig) -> Result<Option<String>, String> {
    let mut named: Vec<String> = placed.iter().filter_map(|(_, c, _)| c.clone()).collect();
    named.sort();
    named.dedup();
    let has_default = placed.iter().any(|(_, c, _)| c.is_none());
    match &data.config {
        Some(c) if named.contains(c) => Ok(Some(c.clone())),
        Some(c) if c == "default" && has_default => Ok(None),
        Some(c) => {
            let mut all = named.clone();
            if has_default {
                all.insert(0, "default".into());
            }
            Err(format!(
                "no config {c:?}; it has {}",
                list(&all, "only the default one")
            ))
        }
        None if named.is_empty() => Ok(None),
        None if named.len() == 1 && !has_default => Ok(Some(named.remove(0))),
        None => {
            if has_default {
                named.insert(0, "default (the top folder and data/)".into());
            }
            Err(format!(
                "it has several configs: {}; set data.config to one",
                named.join(", ")
            ))
        }
    }
}

/// Files grouped by split, splits in name order.
fn group(files: Vec<(&PathBuf, String)>) -> Vec<(String, Vec<PathBuf>)> {
    let mut out: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (f, s) in files {
        match out.iter_mut().find(|(name, _)| *name == s) {
            Some((_, v)) => v.push(f.clone()),
            None => out.push((s, vec![f.clone()])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `data.split`'s files; unset: the only split, else `train`.
fn pick_split(splits: Vec<(String, Vec<PathBuf>)>, data: &DataConfig) -> Result<Vec<PathBuf>, String> {
    let mut names: Vec<String> = splits.iter().map(|(s, _)| s.clone()).collect();
    names.sort();
    let split = match &data.split {
        Some(s) => s.clone(),
        None if names.len() == 1 => names[0].clone(),
        None => "train".into(),
    };
    match splits.into_iter().find(|(s, _)| *s == split) {
        Some((_, files)) if files.is_empty() => Err(format!(
            "split {split:?}: its data_files match no file rftx reads ({})",
            EXTENSIONS.map(|e| format!(".{e}")).join(", ")
        )),
        Some((_, files)) => Ok(files),
        None => Err(format!(
            "no split {split:?}; its splits are {}; set data.split to one",
            list(&names, "none")
        )),
    }
}

fn no_data_files(files: &[PathBuf]) -> String {
    let shown: Vec<String> = files.iter().take(8).map(|f| f.display().to_string()).collect();
    format!(
        "its snapshot has no data files by the hub's naming convention ({} found: {}). rftx reads what the dataset card's `configs:` names (README.md), else `data/{{split}}-00000-of-00001.parquet`, `{{split}}.jsonl`, `{{split}}-*.csv`, a `{{split}}/` folder ({}), in the top folder, `data/` or a `{{config}}/` folder; or point data.source at one file",
        files.len(),
        list(&shown, "nothing"),
        SPLIT_WORDS.join(", ")
    )
}

fn list(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

/// The `configs:` of the dataset card's YAML header; `None` without a card, a header or the key.
fn card_configs(card: &Path) -> Result<Option<Vec<CardConfig>>, String> {
    let Ok(text) = std::fs::read_to_string(card) else {
        return Ok(None);
    };
    let Some(header) = front_matter(&text) else {
        return Ok(None);
    };
    let at = |why: String| format!("{}: the YAML header's configs: {why}", card.display());
    let docs = YamlLoader::load_from_str(header).map_err(|e| at(format!("not valid YAML ({e})")))?;
    let Some(configs) = docs.first().map(|d| &d["configs"]).filter(|c| !c.is_badvalue()) else {
        return Ok(None);
    };
    let list = configs.as_vec().ok_or_else(|| at("not a list of configs".into()))?;
    list.iter()
        .map(card_config)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(at)
}

/// The text between a leading `---` line and the next one.
fn front_matter(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---")?.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n'))?;
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some(&rest[..at]);
        }
        at += line.len();
    }
    None
}

fn card_config(c: &Yaml) -> Result<CardConfig, String> {
    let name = c["config_name"].as_str().unwrap_or("default").to_string();
    let at = |why: &str| format!("config {name:?}: {why}");
    let data_dir = c["data_dir"].as_str().map(String::from);
    let splits = match &c["data_files"] {
        Yaml::BadValue if data_dir.is_some() => Vec::new(),
        Yaml::BadValue => return Err(at("no data_files (and no data_dir)")),
        files => split_patterns(files).map_err(|e| at(&e))?,
    };
    Ok(CardConfig {
        default: c["default"].as_bool().unwrap_or(false),
        name,
        splits,
        data_dir,
    })
}

/// `data_files` as `datasets` reads it: a pattern or a list of them (the `train` split), a list
/// of `{split, path}` (a path or a list of paths), or a mapping of split to path(s).
fn split_patterns(files: &Yaml) -> Result<Vec<(String, Vec<String>)>, String> {
    let bad = || "data_files: expected a path, a list of paths, or a list of {split, path}".to_string();
    let paths = |y: &Yaml| -> Result<Vec<String>, String> {
        match y {
            Yaml::String(s) => Ok(vec![s.clone()]),
            Yaml::Array(a) => a.iter().map(|p| p.as_str().map(String::from).ok_or_else(bad)).collect(),
            _ => Err(bad()),
        }
    };
    match files {
        Yaml::Array(items) if items.iter().all(|i| i.as_hash().is_some()) => items
            .iter()
            .map(|i| {
                let split = i["split"].as_str().unwrap_or("train").to_string();
                Ok((split, paths(&i["path"])?))
            })
            .collect(),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| Ok((k.as_str().ok_or_else(bad)?.to_string(), paths(v)?)))
            .collect(),
        other => Ok(vec![("train".to_string(), paths(other)?)]),
    }
}

/// The files of `data.config` and `data.split` as the dataset card names them.
fn from_card(configs: &[CardConfig], files: &[PathBuf], data: &DataConfig) -> Result<Vec<PathBuf>, String> {
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    let config = match &data.config {
        Some(want) => configs
            .iter()
            .find(|c| c.name == *want)
            .ok_or_else(|| format!("no config {want:?}; it has {} (README.md's configs)", names.join(", ")))?,
        None => match configs {
            [one] => one,
            _ => configs
                .iter()
                .find(|c| c.default)
                .or_else(|| configs.iter().find(|c| c.name == "default"))
                .ok_or_else(|| format!("it has several configs: {}; set data.config to one", names.join(", ")))?,
        },
    };
    let splits = match &config.data_dir {
        Some(dir) if config.splits.is_empty() => in_data_dir(dir, files),
        _ => matched(config, files)?,
    };
    pick_split(splits, data).map_err(|e| format!("config {:?}: {e}", config.name))
}

/// A `data_dir` config: the conventions inside that folder (its default config only).
fn in_data_dir(dir: &str, files: &[PathBuf]) -> Vec<(String, Vec<PathBuf>)> {
    let dir = Path::new(dir.trim_start_matches("./"));
    let inside: Vec<(&PathBuf, String)> = files
        .iter()
        .filter_map(|f| match place(f.strip_prefix(dir).ok()?) {
            Some((None, split)) => Some((f, split)),
            _ => None,
        })
        .collect();
    group(inside)
}

/// Each split's data files matched by its patterns (`*` within a folder, `**` across folders).
fn matched(config: &CardConfig, files: &[PathBuf]) -> Result<Vec<(String, Vec<PathBuf>)>, String> {
    let options = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut out = Vec::new();
    for (split, patterns) in &config.splits {
        let mut hits = Vec::new();
        for p in patterns {
            let p = p.trim_start_matches("./");
            let pattern =
                Pattern::new(p).map_err(|e| format!("config {:?}: data_files pattern {p:?}: {e}", config.name))?;
            hits.extend(
                files
                    .iter()
                    .filter(|f| is_data_file(f) && pattern.matches_path_with(f, options))
                    .cloned(),
            );
        }
        hits.sort();
        hits.dedup();
        out.push((split.clone(), hits));
    }
    Ok(out)
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

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn hub_files_by_config_and_split() {
        let files = paths(&[
            "main/test-00000-of-00001.parquet",
            "main/train-00000-of-00001.parquet",
            "socratic/train-00000-of-00001.parquet",
        ]);
        assert!(by_convention(&files, &data(None, None))
            .unwrap_err()
            .contains("several configs: main, socratic"));
        assert_eq!(
            by_convention(&files, &data(Some("test"), Some("main"))).unwrap(),
            paths(&["main/test-00000-of-00001.parquet"])
        );
        assert_eq!(
            by_convention(&files, &data(None, Some("main"))).unwrap(),
            paths(&["main/train-00000-of-00001.parquet"])
        );
        assert!(by_convention(&files, &data(Some("dev"), Some("main")))
            .unwrap_err()
            .contains("no split \"dev\"; its splits are test, train"));
        assert!(by_convention(&files, &data(None, Some("x")))
            .unwrap_err()
            .contains("no config \"x\"; it has main, socratic"));
        let flat = paths(&[
            "data/train-0.parquet",
            "data/test-0.parquet",
            "default/validation/0000.parquet",
        ]);
        assert_eq!(place(&flat[2]), Some((Some("default".into()), "validation".into())));
        assert_eq!(
            by_convention(&flat[..2], &data(None, None)).unwrap(),
            paths(&["data/train-0.parquet"])
        );
        let one = paths(&["test.jsonl"]);
        assert_eq!(by_convention(&one, &data(None, None)).unwrap(), one);
    }

    #[test]
    fn stray_files_are_not_splits() {
        let files = paths(&[
            "README.md",
            "dataset_infos.json",
            "test_metadata.json",
            "metadata.csv",
            "data/test-00000-of-00001.parquet",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/extra-00000-of-00001.parquet",
            "test.jsonl",
            "scripts/convert.json",
            "notes/train/x.txt",
        ]);
        for stray in [
            "README.md",
            "dataset_infos.json",
            "test_metadata.json",
            "metadata.csv",
            "scripts/convert.json",
        ] {
            assert_eq!(place(Path::new(stray)), None, "{stray}");
        }
        // A split name of any kind in the sharded form; `dataset` is no split.
        let e = by_convention(&files, &data(Some("dataset"), None)).unwrap_err();
        assert!(e.contains("its splits are extra, test, train;"), "{e}");
        assert_eq!(
            by_convention(&files, &data(Some("test"), None)).unwrap(),
            paths(&["data/test-00000-of-00001.parquet", "test.jsonl"])
        );
        assert_eq!(
            by_convention(&files, &data(None, None)).unwrap(),
            paths(&["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"])
        );
        let e = by_convention(&paths(&["dataset_infos.json", "notes.csv"]), &data(None, None)).unwrap_err();
        assert!(
            e.contains("no data files by the hub's naming convention (2 found: dataset_infos.json, notes.csv)"),
            "{e}"
        );
    }

    #[test]
    fn the_cards_configs_name_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let card = "---\nlicense: mit\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: main/train-*\n  - split: test\n    path:\n    - \"main/test-*\"\n    - extra/*.jsonl\n  default: true\n- config_name: flat\n  data_files: \"flat/**/*.csv\"\n- config_name: kept\n  data_dir: kept\n---\n# GSM8K\n";
        let files = [
            "README.md",
            "main/train-00000-of-00001.parquet",
            "main/test-00000-of-00001.parquet",
            "main/test_metadata.json",
            "extra/more.jsonl",
            "flat/a/b.csv",
            "flat/c.csv",
            "kept/test.jsonl",
            "kept/dataset_infos.json",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, if f == "README.md" { card } else { "" }).unwrap();
        }
        let got = |split, config| data_files(dir.path(), &data(split, config));
        assert_eq!(got(None, None).unwrap(), paths(&["main/train-00000-of-00001.parquet"]));
        assert_eq!(
            got(Some("test"), Some("main")).unwrap(),
            paths(&["extra/more.jsonl", "main/test-00000-of-00001.parquet"])
        );
        assert_eq!(got(None, Some("flat")).unwrap(), paths(&["flat/a/b.csv", "flat/c.csv"]));
        assert_eq!(got(None, Some("kept")).unwrap(), paths(&["kept/test.jsonl"]));
        let e = got(None, Some("x")).unwrap_err();
        assert!(e.contains("no config \"x\"; it has main, flat, kept"), "{e}");
        let e = got(Some("dev"), Some("main")).unwrap_err();
        assert!(
            e.contains("config \"main\": no split \"dev\"; its splits are test, train"),
            "{e}"
        );
        std::fs::write(dir.path().join("README.md"), "---\nconfigs: [\n---\n").unwrap();
        assert!(got(None, None)
            .unwrap_err()
            .contains("README.md: the YAML header's configs: not valid YAML"));
    }
}
