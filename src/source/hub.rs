//! Hub repository ids (`HuggingFaceTB/SmolLM2-360M-Instruct`, optionally `@revision`) resolved
//! **offline** in the local Hugging Face cache, the layout `huggingface_hub` writes:
//! `<cache>/models--<org>--<name>/refs/<revision>` holds a commit id, and
//! `snapshots/<commit>/` the files. The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Nothing is downloaded.
use std::path::{Path, PathBuf};

/// Whether a `model.path` value that is not on disk reads as a repository id.
pub fn looks_like_repo_id(s: &str) -> bool {
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

/// The snapshot folder of `repo[@revision]` in `cache`; the error says where it looked and the
/// command that fetches it where a network is.
pub fn resolve(spec: &str, cache: &Path) -> Result<PathBuf, String> {
    snapshot(spec, cache, "models", Some(super::hf::CONFIG))
}

/// The snapshot folder of the dataset `repo[@revision]` in `cache` (`datasets--org--name`).
pub fn resolve_dataset(spec: &str, cache: &Path) -> Result<PathBuf, String> {
    snapshot(spec, cache, "datasets", None)
}

/// `<cache>/<kind>--org--name/snapshots/<commit>`, holding `marker` when one is named.
fn snapshot(spec: &str, cache: &Path, kind: &str, marker: Option<&str>) -> Result<PathBuf, String> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let repo = cache.join(format!("{kind}--{}", id.replace('/', "--")));
    let commit = std::fs::read_to_string(repo.join("refs").join(revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snapshot = repo.join("snapshots").join(&commit);
    let looked = marker.map_or(snapshot.clone(), |m| snapshot.join(m));
    if looked.exists() {
        return Ok(snapshot);
    }
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
    Err(format!(
        "`{spec}` is not in the local Hugging Face cache (looked for {}; the cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). rftx never downloads: where a network is, run `huggingface-cli download{flag} {id}{rev}` (with the same HF_HOME), or point {key} at {what} (if `{id}` is a path: nothing is there, relative to the config file)",
        looked.display()
    ))
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
}
