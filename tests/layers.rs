//! The layering of docs/architecture.md, read from the sources: cli → commands → run → core →
//! engine → source → base, a module naming only its own layer or those below it; `base` naming
//! nothing but itself (not the crate root's re-exports, not the test fixtures, in its tests
//! neither); and no two files that import each other.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = ["cli", "commands", "run", "core", "engine", "source", "base"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to `src/` (`engine/cuda/mod.rs` → `engine::cuda`).
fn module(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// A line without its comment (the crude cut is enough for `crate::` paths).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// The paths a line names: `crate::a::b`, and, on a file's top level, `use super::a::b`.
fn named_paths(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let word = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let mut out: Vec<Vec<String>> = line
        .match_indices("crate::")
        .map(|(i, _)| word(&line[i + 7..]))
        .collect();
    if let Some(rest) = line.strip_prefix("use super::") {
        // `super` of `engine/linear.rs` is `engine`; of `engine/cuda/mod.rs`, `engine` too.
        let mut base: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        base.extend(word(rest));
        out.push(base);
    }
    out
}

/// The file module that a path names: its longest prefix that is a file's module.
fn owner<'a>(path: &[String], files: &'a BTreeMap<Vec<String>, PathBuf>) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|n| files.get_key_value(&path[..n]).map(|(k, _)| k))
}

struct Source {
    rel: PathBuf,
    module: Vec<String>,
    text: String,
}

fn read_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_path_buf();
            Source {
                module: module(&rel),
                text: std::fs::read_to_string(&p).unwrap(),
                rel,
            }
        })
        .collect()
}

#[test]
fn every_module_names_only_its_layer_and_those_below() {
    let mut wrong = Vec::new();
    for s in read_sources() {
        let Some(layer) = s.module.first().and_then(|m| LAYERS.iter().position(|l| l == m)) else {
            continue;
        };
        let mut in_tests = false;
        for (i, line) in s.text.lines().enumerate() {
            in_tests |= line.trim() == "#[cfg(test)]";
            for path in named_paths(code(line), &s.module) {
                let Some(first) = path.first() else { continue };
                let target = LAYERS.iter().position(|l| l == first);
                let ok = match (layer, target) {
                    // base: itself only, its tests included.
                    (6, t) => t == Some(6),
                    (_, Some(t)) => t >= layer,
                    // The test fixtures, from tests only; the crate root's re-exports.
                    _ => first != "testing" || in_tests,
                };
                if !ok {
                    wrong.push(format!("src/{}:{}: {}", s.rel.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_files_import_each_other() {
    let sources = read_sources();
    let files: BTreeMap<Vec<String>, PathBuf> = sources.iter().map(|s| (s.module.clone(), s.rel.clone())).collect();
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for s in &sources {
        for line in s.text.lines().take_while(|l| l.trim() != "#[cfg(test)]") {
            for path in named_paths(code(line), &s.module) {
                if let Some(to) = owner(&path, &files) {
                    // A folder's mod.rs declares its children: only file-to-file imports count.
                    if *to != s.module && !s.module.starts_with(to) && !to.starts_with(&s.module) {
                        edges.insert((s.module.clone(), to.clone()));
                    }
                }
            }
        }
    }
    let both: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} <-> {}", files[a].display(), files[b].display()))
        .collect();
    assert!(both.is_empty(), "files that import each other:\n{}", both.join("\n"));
}
