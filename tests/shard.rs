//! Shards as plain processes (no scheduler): killed, stopped and resumed, merged to exactly the
//! bytes of an unsharded run; status, refusals and a second merge.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

const MERGED: [&str; 5] = [
    "samples.jsonl",
    "dataset.json",
    "chunks.jsonl",
    "metrics.json",
    "manifest.json",
];

fn spawn_shard(f: &Fixture, runs: &Path, shard: usize, of: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rftx"))
        .args(["shard", "run", f.config.to_str().unwrap(), "--quiet", "--runs-dir"])
        .arg(runs)
        .args(["--shard", &shard.to_string(), "--of", &of.to_string()])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .current_dir(f.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn shard_args<'a>(f: &'a Fixture, runs: &'a str, shard: &'a str, of: &'a str) -> Vec<&'a str> {
    let cfg = f.config.to_str().unwrap();
    vec![
        "shard",
        "run",
        cfg,
        "--quiet",
        "--runs-dir",
        runs,
        "--shard",
        shard,
        "--of",
        of,
    ]
}

/// Starts shard `i` and stops it with `sig` once it has committed a question; returns its
/// exit code and how many questions it had committed.
fn stop_mid_way(f: &Fixture, runs: &Path, shard_dir: &Path, i: usize, sig: &str) -> (Option<i32>, usize) {
    let mut child = spawn_shard(f, runs, i, 4);
    wait_for(60, "a shard's first committed question", || committed(shard_dir) >= 1);
    signal(child.id(), sig);
    let code = child.wait().unwrap().code();
    (code, committed(shard_dir))
}

#[test]
fn killed_and_stopped_shards_resume_and_merge_to_the_bytes_of_an_unsharded_run() {
    let f = sized_fixture(24, 40);
    let reference = f.run(&["--runs-dir", "reference"]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    let reference = printed_dir(&reference, f.path());
    let runs = f.path().join("sharded");
    let run = runs.join(reference.file_name().unwrap());
    let shard = |i: usize| run.join(format!("shards/shard-{i:04}"));

    // Shard 1 dies by kill -9 and shard 2 is stopped by SIGTERM, each after some questions.
    let (code, k1) = stop_mid_way(&f, &runs, &shard(1), 1, "KILL");
    assert_eq!(
        (code, k1 < 6),
        (None, true),
        "shard 1 killed mid-way ({k1} of 6 committed)"
    );
    let (code, k2) = stop_mid_way(&f, &runs, &shard(2), 2, "TERM");
    assert_eq!((code, k2 < 6), (Some(143), true), "shard 2 stopped mid-way ({k2} of 6)");
    for i in [0, 3] {
        let r = rftx(&shard_args(&f, "sharded", &i.to_string(), "4"), &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(printed_dir(&r, f.path()), shard(i));
    }

    // The count is fixed, the index must fit it.
    let r = rftx(&shard_args(&f, "sharded", "0", "3"), &[], f.path());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("planned as 4 shards") && r.stderr.contains("use --of 4"),
        "{}",
        r.stderr
    );
    let r = rftx(&shard_args(&f, "sharded", "4", "4"), &[], f.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("numbered 0 to 3"), "{}", r.stderr);

    status_and_merge_say_what_is_left(&f, &run, k1, k2);

    // The stopped shards resume where they stopped.
    for i in [1, 2] {
        let r = rftx(&shard_args(&f, "sharded", &i.to_string(), "4"), &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let sessions = read_json(&shard(i).join("manifest.json"))["sessions"].clone();
        assert_eq!(sessions.as_array().unwrap().len(), 2);
        assert_eq!(sessions[1]["resumed_at_question"], [k1, k2][i - 1]);
    }
    check_merge(&f, &run, &reference);
}

/// With shards 0 and 3 done and 1 and 2 stopped after `k1` and `k2` questions: status and a
/// refused merge say what is left and how to run it; `ls` shows the run interrupted.
fn status_and_merge_say_what_is_left(f: &Fixture, run: &Path, k1: usize, k2: usize) {
    let cfg = f.config.to_str().unwrap();
    let st = rftx(&["shard", "status", cfg, "--runs-dir", "sharded"], &[], f.path());
    assert_eq!(st.code, 0, "{}", st.stderr);
    let row = |i: usize| {
        st.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{i} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row(0).contains("done 6/6") && row(3).contains("done 6/6"),
        "{}",
        st.stdout
    );
    assert!(row(1).contains(&format!("partial {k1}/6")), "{}", st.stdout);
    assert!(
        row(2).contains(&format!("partial {k2}/6")) && row(2).contains("SIGTERM"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("missing: --array=1-2"), "{}", st.stdout);
    assert!(
        st.stdout.contains(&format!("{k} of 24 questions", k = 12 + k1 + k2)),
        "{}",
        st.stdout
    );
    let m = rftx(&["merge", cfg, "--runs-dir", "sharded"], &[], f.path());
    assert_eq!(m.code, 1);
    assert!(
        m.stderr.contains("--array=1-2") && m.stderr.contains("rftx slurm submit"),
        "{}",
        m.stderr
    );
    assert!(!run.join("samples.jsonl").exists(), "nothing merged");
    let ls = rftx(&["ls", "--runs-dir", "sharded"], &[], f.path());
    assert!(
        ls.stdout.contains(&format!("interrupted {}/24", 12 + k1 + k2)),
        "{}",
        ls.stdout
    );
}

/// Merges, compares with the unsharded run, merges again, and checks the device refusal.
fn check_merge(f: &Fixture, run: &Path, reference: &Path) {
    let cfg = f.config.to_str().unwrap();
    let m = rftx(&["merge", cfg, "--runs-dir", "sharded"], &[], f.path());
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert_eq!(printed_dir(&m, f.path()), run);
    for name in [
        "samples.jsonl",
        "dataset.json",
        "dpo_pairs.jsonl",
        "kto.jsonl",
        "rl_prompts.jsonl",
    ] {
        assert!(
            std::fs::read(run.join(name)).unwrap() == std::fs::read(reference.join(name)).unwrap(),
            "{name} differs from the unsharded run's"
        );
    }
    // A reader of the merged run regenerates some of its samples, each alone.
    let v = rftx(
        &[
            "verify",
            run.to_str().unwrap(),
            "--samples",
            "6",
            "--seed",
            "2",
            "--quiet",
        ],
        &[],
        f.path(),
    );
    assert_eq!((v.code, v.last_line()), (0, "6 of 6 identical"), "{}", v.stderr);
    let first = contents(run, &MERGED);
    let metrics = read_json(&run.join("metrics.json"));
    let rows = metrics["shards"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    let max = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).max().unwrap();
    assert_eq!(metrics["new_tokens"].as_u64().unwrap(), sum("new_tokens"));
    assert_eq!(metrics["peak_bytes"].as_u64().unwrap(), max("peak_bytes"));
    assert_eq!(metrics["questions"], 24);
    let manifest = read_json(&run.join("manifest.json"));
    assert_eq!(
        (manifest["status"].as_str(), manifest["merged_shards"].as_u64()),
        (Some("complete"), Some(4))
    );
    assert_eq!(
        manifest["sessions"].as_array().unwrap().len(),
        6,
        "every shard session kept"
    );

    let again = rftx(&["merge", run.to_str().unwrap()], &[], f.path());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(contents(run, &MERGED) == first, "a second merge writes the same bytes");
    let done = rftx(&["run", cfg, "--runs-dir", "sharded"], &[], f.path());
    assert!(done.stdout.starts_with("already complete"), "{}", done.stdout);

    // A shard that ran on another kind of device is refused unless forced.
    let path = run.join("shards/shard-0003/manifest.json");
    let saved = std::fs::read_to_string(&path).unwrap();
    let mut m3: serde_json::Value = serde_json::from_str(&saved).unwrap();
    m3["sessions"][0]["device"] = "cuda NVIDIA H100 80GB HBM3 (cc 9.0)".into();
    std::fs::write(&path, serde_json::to_string_pretty(&m3).unwrap()).unwrap();
    let refused = rftx(&["merge", run.to_str().unwrap()], &[], f.path());
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("different devices") && refused.stderr.contains("shard 3"),
        "{}",
        refused.stderr
    );
    let forced = rftx(&["merge", run.to_str().unwrap(), "--force"], &[], f.path());
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    std::fs::write(&path, saved).unwrap();
}

/// A shard whose files changed after it was marked done is refused, and says what to do.
#[test]
fn a_tampered_shard_is_refused_by_the_merge() {
    let f = sized_fixture(4, 8);
    for i in 0..2 {
        let r = rftx(&shard_args(&f, "runs", &i.to_string(), "2"), &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let run: PathBuf = f.runs().join(entries(&f.runs()).pop().unwrap());
    let samples = run.join("shards/shard-0001/samples.jsonl");
    let text = std::fs::read_to_string(&samples).unwrap();
    std::fs::write(&samples, text.replacen("\"correct\":false", "\"correct\":true", 1)).unwrap();
    let m = rftx(&["merge", run.to_str().unwrap()], &[], f.path());
    assert_eq!(m.code, 1);
    assert!(
        m.stderr.contains("shard 1") && m.stderr.contains("changed after the shard was marked done"),
        "{}",
        m.stderr
    );
    // Redone with --force (its done marker removed first, then written anew), the shard merges.
    let marker = run.join("shards/shard-0001/done.json");
    let mut done = read_json(&marker);
    done["finished_at"] = "1970-01-01T00:00:00Z".into();
    std::fs::write(&marker, done.to_string()).unwrap();
    let mut args = shard_args(&f, "runs", "1", "2");
    args.push("--force");
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(
        read_json(&marker)["finished_at"],
        "1970-01-01T00:00:00Z",
        "done.json was written anew"
    );
    let m = rftx(&["merge", run.to_str().unwrap()], &[], f.path());
    assert_eq!(m.code, 0, "{}", m.stderr);
}

/// A runs directory and a working directory with a space, `#` and `%`: the scripts' `#SBATCH`
/// lines quote and escape them as sbatch reads them (`%%` in a log name); a runs directory
/// with a backslash, which turns off Slurm's log name patterns, is refused before anything is
/// written.
#[test]
fn slurm_directives_carry_any_path() {
    let f = Fixture::new("");
    let cfg = f.config.to_str().unwrap();
    let cwd = f.path().join("work dir #2 %x");
    std::fs::create_dir(&cwd).unwrap();
    let dry_run = |runs_dir: &str| {
        let args = [
            "slurm",
            "submit",
            cfg,
            "--shards",
            "2",
            "--dry-run",
            "--runs-dir",
            runs_dir,
        ];
        rftx(&args, &[], &cwd)
    };
    let r = dry_run("runs with space#x%y");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let run = printed_dir(&r, &cwd);
    let logs = run
        .join("slurm")
        .display()
        .to_string()
        .replace('#', "\\#")
        .replace('%', "%%");
    let shard = std::fs::read_to_string(run.join("slurm/shard.sbatch")).unwrap();
    let merge = std::fs::read_to_string(run.join("slurm/merge.sbatch")).unwrap();
    let chdir = format!(
        "#SBATCH --chdir=\"{}\"\n",
        cwd.display().to_string().replace('#', "\\#")
    );
    assert!(
        shard.contains(&format!("#SBATCH --output=\"{logs}/shard-%a.log\"\n")),
        "{shard}"
    );
    assert!(
        merge.contains(&format!("#SBATCH --output=\"{logs}/merge.log\"\n")),
        "{merge}"
    );
    assert!(shard.contains(&chdir) && merge.contains(&chdir), "{shard}\n{merge}");
    // The dry run's sbatch lines as a shell reads them back.
    let script = run
        .strip_prefix(&cwd)
        .unwrap()
        .join("slurm/shard.sbatch")
        .display()
        .to_string();
    assert!(r.stdout.contains(&format!("'{script}'")), "{}", r.stdout);
    let r = dry_run("runs\\x");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds a backslash"), "{}", r.stderr);
    assert!(!cwd.join("runs\\x").exists(), "nothing written");
}

/// `--of` larger than the questions, and `--shard` taken from SLURM_ARRAY_TASK_ID.
#[test]
fn shard_arguments_are_checked_and_the_index_comes_from_slurm() {
    let f = sized_fixture(3, 4);
    let cfg = f.config.to_str().unwrap();
    let r = rftx(
        &["shard", "run", cfg, "--quiet", "--shard", "0", "--of", "4"],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("more shards than the run has questions (3)"),
        "{}",
        r.stderr
    );
    let r = rftx(
        &["shard", "run", cfg, "--quiet", "--of", "3"],
        &[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "1")],
        f.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.last_line().ends_with("shards/shard-0002"), "{}", r.stdout);
    let plan = read_json(&printed_dir(&r, f.path()).join("../plan.json"));
    assert_eq!(
        plan["shards"], 3,
        "the count comes from --of, never from SLURM_ARRAY_TASK_COUNT"
    );
}

/// The shard script's decision for each exit of rftx, run by bash with a stand-in for rftx (it
/// exits with `$RC`) and for `scontrol` (it logs its arguments): no cluster needed.
#[test]
fn the_shard_script_requeues_what_may_succeed_later_and_only_that() {
    let f = Fixture::new("");
    let cfg = f.config.to_str().unwrap();
    let r = rftx(&["slurm", "submit", cfg, "--shards", "2", "--dry-run"], &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let run = printed_dir(&r, f.path());
    let script = std::fs::read_to_string(run.join("slurm/shard.sbatch")).unwrap();
    let bin = f.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        p
    };
    let fake_rftx = fake("rftx", "exit \"$RC\"");
    fake("scontrol", "echo \"$@\" >> \"$SCONTROL_LOG\"");
    let rftx_line = script.lines().find(|l| l.starts_with("rftx=")).unwrap();
    let script = script.replace(rftx_line, &format!("rftx={}", fake_rftx.display()));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for (rc, says, requeued) in [
        (0, "done", false),
        (2, "bad input (exit 2): not requeued", false),
        (
            75,
            "retryable (exit 75: run locked, GPU unavailable or download failed): requeueing",
            true,
        ),
        (1, "exit 1: requeueing", true),
    ] {
        let log = f.path().join(format!("scontrol-{rc}.log"));
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("PATH", &path)
            .env("RC", rc.to_string())
            .env("SCONTROL_LOG", &log)
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env_remove("SLURM_RESTART_COUNT")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(rc), "{stdout}");
        assert!(stdout.contains(says), "exit {rc}: {stdout}");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(calls.trim() == "requeue 7_1", requeued, "exit {rc}: scontrol {calls:?}");
    }
}

/// A shard tokenizes the prompts of its own questions only.
#[test]
fn a_shard_tokenizes_only_its_range() {
    let f = Fixture::new("");
    let resolved = rftx::core::config::load(&f.config, &[]).unwrap();
    let p = rftx::run::prepare(resolved, &f.runs()).unwrap();
    let session = rftx::run::Session::open(&p, &mut |_| {}).unwrap();
    let all = session.prompts(&p).unwrap();
    let some = session.prompts_in(&p, 1..3).unwrap();
    assert_eq!(some.len(), all.len(), "indexed by question");
    for (i, (a, s)) in all.iter().zip(&some).enumerate() {
        assert!(!a.is_empty());
        assert_eq!(s.is_empty(), !(1..3).contains(&i), "question {i}");
        if !s.is_empty() {
            assert_eq!(a, s);
        }
    }
}
