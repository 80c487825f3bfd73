//! Hub repository ids (`HuggingFaceTB/SmolLM2-360M-Instruct`, optionally `@revision`) resolved
//! **offline** in the local Hugging Face cache, the layout `huggingface_hub` writes:
//! `<cache>/models--<org>--<name>/refs/<revision>` holds a commit id, and
//! `snapshots/<commit>/` the files. The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Nothing is downloaded.
use std::path::{Path, PathBuf};

/// Whether a `model.path` value that is not on disk reads as a repository id.
pub fn looks_like_repo_id(s: &str) -> bool {
    let s = s.split_once(':').map_or(s, |(repo, _)| repo);
    let id = s.split_once('@').map_or(s, |(id, _)| id);
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let file = [
        ".gguf",
        ".safetensors",
        ".json",
        ".bin",
        ".jsonl",
        ".ndjson",
        ".csv",
        ".parquet",
    ]
    .iter()
    .any(|e| id.ends_with(e));
    matches!(id.split('/').collect::<Vec<_>>()[..], [org, name] if ok(org) && ok(name) && !org.starts_with('.') && !file)
}

/// The hub cache directory, from the environment.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("HF_HUB_CACHE") {
        return d;
    }
    if let Some(d) = var("HF_HOME") {
        return d.join("hub");
    }
    let base = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")));
    base.unwrap_or_else(|| PathBuf::from(".cache")).join("huggingface/hub")
}

/// The model `repo[@revision][:file]` in `cache`: the snapshot folder of a model repository (it
/// holds config.json), or one GGUF file of a GGUF repository — the one named after `:` (a file
/// name, or a quantisation such as `Q4_K_M` that exactly one file name holds between `-` or `.`),
/// or the only one the snapshot holds. The error says where it looked and what to do.
pub fn resolve(spec: &str, cache: &Path) -> Result<PathBuf, String> {
    let (repo, file) = match spec.split_once(':') {
        Some((repo, file)) => (repo, Some(file)),
        None => (spec, None),
    };
    if file.is_none() {
        if let Ok(folder) = snapshot(repo, cache, "models", Some(super::hf::CONFIG)) {
            return Ok(folder);
        }
    }
    let snap = snapshot(repo, cache, "models", None)?;
    let ggufs = gguf_files(&snap);
    let chosen: Vec<&String> = match file {
        Some(f) => ggufs.iter().filter(|g| names_file(g, f)).collect(),
        None => ggufs.iter().collect(),
    };
    match (chosen.as_slice(), file) {
        ([one], _) => Ok(snap.join(one)),
        ([], None) if ggufs.is_empty() => {
            let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
            Err(not_cached(repo, id, revision, "models", &snap.join(super::hf::CONFIG)))
        }
        (_, _) => Err(format!(
            "`{spec}`: {} of the GGUF files in {} ({}); name one after `:` (`{repo}:Q4_K_M` or `{repo}:FILE.gguf`)",
            if chosen.is_empty() {
                "none".to_string()
            } else {
                format!("{} are candidates", chosen.len())
            },
            snap.display(),
            if ggufs.is_empty() {
                "none".to_string()
            } else {
                ggufs.join(", ")
            }
        )),
    }
}

/// The `.gguf` files of a snapshot's top folder, sorted.
fn gguf_files(snap: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(snap)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    v.sort();
    v
}

/// Whether `want` (after `:`) names the GGUF file `name`: the whole name, or a part of it between
/// `-` or `.` (`Q4_K_M` names `x-q4_k_m.gguf`, not `x-q4_k_s.gguf`), ignoring case.
fn names_file(name: &str, want: &str) -> bool {
    let (name, want) = (name.to_ascii_lowercase(), want.to_ascii_lowercase());
    name == want
        || name
            .trim_end_matches(".gguf")
            .split(['-', '.'])
            .any(|part| part == want)
}

/// The snapshot folder of the dataset `repo[@revision]` in `cache` (`datasets--org--name`).
pub fn resolve_dataset(spec: &str, cache: &Path) -> Result<PathBuf, String> {
    snapshot(spec, cache, "datasets", None)
}

/// `<cache>/<kind>--org--name/snapshots/<commit>`, holding `marker` when one is named. The
/// revision is a ref name or a commit hash, and the snapshot it leads to lies in the repository's
/// `snapshots/` (never elsewhere on disk: not through `..`, an absolute path or a `refs/` file).
fn snapshot(spec: &str, cache: &Path, kind: &str, marker: Option<&str>) -> Result<PathBuf, String> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    check_revision(revision).map_err(|why| {
        format!("`{spec}`: the revision {revision:?} {why}; a revision is a branch or tag name (`main`, `v1.0`, `refs/pr/1`) or a commit hash")
    })?;
    let repo = cache.join(format!("{kind}--{}", id.replace('/', "--")));
    let refs = repo.join("refs").join(revision);
    let snapshots = repo.join("snapshots");
    let commit = match std::fs::read_to_string(&refs) {
        Ok(c) if is_commit_name(c.trim()) => c.trim().to_string(),
        Ok(c) => {
            return Err(format!(
                "{}: {:?} is not a commit hash: a hub cache's refs/ file holds the commit of a snapshot; fetch the repository again, or name a commit (`{id}@<commit>`)",
                refs.display(),
                c.trim()
            ))
        }
        Err(_) if is_commit_name(revision) => revision.to_string(),
        Err(_) => return Err(not_cached(spec, id, revision, kind, &refs)),
    };
    let snapshot = snapshots.join(&commit);
    let looked = marker.map_or(snapshot.clone(), |m| snapshot.join(m));
    if looked.exists() {
        return inside(&snapshots, snapshot);
    }
    Err(not_cached(spec, id, revision, kind, &looked))
}

/// `snapshot` itself, where it really lies in `snapshots` (a link to elsewhere is refused).
fn inside(snapshots: &Path, snapshot: PathBuf) -> Result<PathBuf, String> {
    let real = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: cannot resolve: {e}", p.display()));
    if real(&snapshot)?.parent() == Some(real(snapshots)?.as_path()) {
        return Ok(snapshot);
    }
    Err(format!(
        "{}: the snapshot leads outside {}; a hub cache's snapshots are folders of it (fetch the repository again)",
        snapshot.display(),
        snapshots.display()
    ))
}

/// A ref name as git and the hub accept it (`main`, `v1.0`, `refs/pr/1`): the reason it is not.
fn check_revision(r: &str) -> Result<(), &'static str> {
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    if r.is_empty() {
        Err("is empty")
    } else if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        Err("is not a name: it starts or ends with `/`, or has an empty part")
    } else if r
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        Err("has a part that starts with `.` (`..` leads out of the cache) or ends with `.lock`")
    } else if r.chars().any(bad_char) || r.contains("@{") || r.ends_with('.') {
        Err("holds a character a ref name cannot (space, control, ~ ^ : ? * [ \\ or @{) or ends with `.`")
    } else {
        Ok(())
    }
}

/// A snapshot's folder name: a commit hash (hex digits; 40 in a cache that huggingface_hub wrote).
fn is_commit_name(c: &str) -> bool {
    !c.is_empty() && c.len() <= 64 && c.chars().all(|c| c.is_ascii_hexdigit())
}

fn not_cached(spec: &str, id: &str, revision: &str, kind: &str, looked: &Path) -> String {
    let rev = if revision == "main" {
        String::new()
    } else {
        format!(" --revision {revision}")
    };
    let (flag, key, what) = if kind == "datasets" {
        (" --repo-type dataset", "data.source", "a question file")
    } else {
        ("", "model.path", "a model folder")
    };
    format!(
        "`{spec}` is not in the local Hugging Face cache (looked for {}; the cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). rftx never downloads: where a network is, run `huggingface-cli download{flag} {id}{rev}` (with the same HF_HOME), or point {key} at {what} (if `{id}` is a path: nothing is there, relative to the config file)",
        looked.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for yes in [
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "Qwen/Qwen2.5-0.5B-Instruct@main",
            "a/b@0123abc",
        ] {
            assert!(looks_like_repo_id(yes), "{yes}");
        }
        for no in [
            "model.gguf",
            "models/x.gguf",
            "/abs/dir",
            "a/b/c",
            "./x/y",
            "../x",
            "a b/c",
            "",
        ] {
            assert!(!looks_like_repo_id(no), "{no}");
        }
    }

    #[test]
    fn resolves_refs_and_commits_offline() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--Org--Tiny");
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(resolve("Org/Tiny", cache.path()).unwrap(), snap);
        assert_eq!(resolve("Org/Tiny@abc123", cache.path()).unwrap(), snap);
        let e = resolve("Org/Tiny@v2", cache.path()).unwrap_err();
        assert!(e.contains("huggingface-cli download Org/Tiny --revision v2"), "{e}");
        let e = resolve("Org/Other", cache.path()).unwrap_err();
        assert!(
            e.contains("models--Org--Other") && e.contains("huggingface-cli download Org/Other`"),
            "{e}"
        );
    }

    #[test]
    fn a_gguf_repository_resolves_to_the_file_named_after_the_colon() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--Qwen--Coder-GGUF");
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        for f in ["coder-q4_k_m.gguf", "coder-q4_k_s.gguf", "coder-q8_0.gguf", "README.md"] {
            std::fs::write(snap.join(f), "x").unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        let c = cache.path();
        assert!(looks_like_repo_id("Qwen/Coder-GGUF:Q4_K_M"));
        assert!(looks_like_repo_id("Qwen/Coder-GGUF@main:coder-q8_0.gguf"));
        for (spec, file) in [
            ("Qwen/Coder-GGUF:Q4_K_M", "coder-q4_k_m.gguf"),
            ("Qwen/Coder-GGUF@main:q4_k_s", "coder-q4_k_s.gguf"),
            ("Qwen/Coder-GGUF@abc123:coder-q8_0.gguf", "coder-q8_0.gguf"),
        ] {
            assert_eq!(resolve(spec, c).unwrap(), snap.join(file), "{spec}");
        }
        // Several files and none named, a name that is only part of a quantisation, none at all.
        for (spec, says) in [
            ("Qwen/Coder-GGUF", "3 are candidates"),
            ("Qwen/Coder-GGUF:Q4_K", "none of the GGUF files"),
            ("Qwen/Coder-GGUF:Q5_0", "none of the GGUF files"),
        ] {
            let e = resolve(spec, c).unwrap_err();
            assert!(
                e.contains(says) && e.contains("coder-q4_k_m.gguf, coder-q4_k_s.gguf, coder-q8_0.gguf"),
                "{spec}: {e}"
            );
        }
        std::fs::remove_file(snap.join("coder-q4_k_s.gguf")).unwrap();
        std::fs::remove_file(snap.join("coder-q8_0.gguf")).unwrap();
        assert_eq!(resolve("Qwen/Coder-GGUF", c).unwrap(), snap.join("coder-q4_k_m.gguf"));
        std::fs::remove_file(snap.join("coder-q4_k_m.gguf")).unwrap();
        let e = resolve("Qwen/Coder-GGUF", c).unwrap_err();
        assert!(e.contains("huggingface-cli download Qwen/Coder-GGUF"), "{e}");
    }

    /// A cache with `Org/Tiny` at commit `abc123` (refs/main), and a folder outside the cache
    /// that a revision must never reach.
    fn cache_and_outside() -> (tempfile::TempDir, PathBuf) {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("datasets--Org--Tiny");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        let outside = cache.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("config.json"), "{}").unwrap();
        (cache, outside)
    }

    #[test]
    fn a_revision_never_leads_out_of_the_cache() {
        let (cache, outside) = cache_and_outside();
        let c = cache.path();
        let abs = format!("Org/Tiny@{}", outside.display());
        for spec in [
            abs.as_str(),
            "Org/Tiny@../../outside",
            "Org/Tiny@..",
            "Org/Tiny@a b",
            "Org/Tiny@",
        ] {
            let e = resolve_dataset(spec, c).unwrap_err();
            assert!(e.contains("a revision is a branch or tag name"), "{spec}: {e}");
            assert!(resolve(spec, c).is_err(), "{spec}");
        }
        // A refs/ file naming a path instead of a commit.
        let refs = c.join("datasets--Org--Tiny/refs");
        std::fs::write(refs.join("evil"), outside.display().to_string()).unwrap();
        let e = resolve_dataset("Org/Tiny@evil", c).unwrap_err();
        assert!(e.contains("is not a commit hash") && e.contains("refs/evil"), "{e}");
        std::fs::write(refs.join("up"), "../../outside").unwrap();
        assert!(resolve_dataset("Org/Tiny@up", c)
            .unwrap_err()
            .contains("is not a commit hash"));
        // A snapshot that is a link to elsewhere.
        let snaps = c.join("datasets--Org--Tiny/snapshots");
        std::os::unix::fs::symlink(&outside, snaps.join("beef")).unwrap();
        let e = resolve_dataset("Org/Tiny@beef", c).unwrap_err();
        assert!(e.contains("leads outside"), "{e}");
        // What a cache holds still resolves: a ref, a commit, a ref name with slashes.
        std::fs::create_dir_all(refs.join("refs/pr")).unwrap();
        std::fs::write(refs.join("refs/pr/1"), "abc123\n").unwrap();
        for ok in ["Org/Tiny", "Org/Tiny@main", "Org/Tiny@abc123", "Org/Tiny@refs/pr/1"] {
            assert_eq!(resolve_dataset(ok, c).unwrap(), snaps.join("abc123"), "{ok}");
        }
    }
}
