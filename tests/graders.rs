//! Grading through the real binary: `rftx grade` from the command line (flags, `--config`,
//! `--set`, exit codes, its summary line); `rft.grader = "command"` with math_verify on the
//! committed cases, and verifiers that crash, hang or answer garbage; a run whose verifier
//! crashes, resumed to the bytes of an uninterrupted run; pass@k on mixed verdicts against the
//! estimator worked by hand; `rft.dedup` on real duplicates.
mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A verifier in `sh`: answers `{"correct": true}` for the requests whose number (1, 2, … over
/// the verifier's life) is in `right`, else false.
fn counting_verifier(right: &[usize]) -> String {
    let cases = right.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("|");
    format!(
        r#"n=0; while read -r l; do n=$((n+1)); case $n in {cases}) echo '{{"correct": true}}';; *) echo '{{"correct": false, "reason": "request '$n'"}}';; esac; done"#
    )
}

/// A verifier in `sh` whose verdict depends on the request alone (its length even), which
/// exits with status 3 after `$CRASH_AFTER` answers when that is set.
const CONTENT_VERIFIER: &str = r#"n=0; while read -r l; do n=$((n+1)); if [ -n "$CRASH_AFTER" ] && [ "$n" -gt "$CRASH_AFTER" ]; then echo "verifier crashed on request $n" >&2; exit 3; fi; if [ $(( ${#l} % 2 )) = 0 ]; then echo '{"correct": true}'; else echo '{"correct": false}'; fi; done"#;

/// `rft.command = ["sh", "-c", script]` as a `--set` argument.
fn sh_command(script: &str) -> String {
    format!("rft.command={}", serde_json::json!(["sh", "-c", script]))
}

/// `[rft]` of a config whose grader is `sh -c script`.
fn command_toml(script: &str) -> String {
    format!(
        "[rft]\ngrader = \"command\"\ncommand = {}\n",
        serde_json::json!(["sh", "-c", script])
    )
}

fn write_cases(dir: &Path, lines: &[serde_json::Value]) -> PathBuf {
    let p = dir.join("cases.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn grade(cases: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all = vec!["grade", cases.to_str().unwrap()];
    all.extend_from_slice(args);
    rftx(&all, env, cases.parent().unwrap())
}

fn verdicts(r: &Ran) -> Vec<bool> {
    r.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["correct"]
                .as_bool()
                .unwrap()
        })
        .collect()
}

#[test]
fn rftx_grade_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = write_cases(
        d.path(),
        &[
            serde_json::json!({"completion": "<answer>72</answer>", "answer": "48 + 24 = 72\n#### 72", "id": "a"}),
            serde_json::json!({"completion": "<answer>73</answer>", "answer": "48 + 24 = 72\n#### 72"}),
            serde_json::json!({"completion": "<answer>1040</answer>", "answer": 1000}),
        ],
    );
    // Whole-number references are exact by default: 73 and 1040 are wrong.
    let r = grade(&cases, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(verdicts(&r), [true, false, false]);
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "a");
    assert_eq!(first["extracted"], "72");
    assert_eq!(first["parsed"], 72.0);
    assert!(r.stderr.starts_with("1 of 3 correct (rft = {"), "{}", r.stderr);
    // An explicit tolerance is what it says, and is in the summary.
    let r = grade(&cases, &["--set", "rft.tolerance=0.05"], &[]);
    assert_eq!(verdicts(&r), [true, true, true]);
    assert!(
        r.stderr.starts_with("3 of 3 correct (rft = {") && r.stderr.contains("\"tolerance\":0.05"),
        "{}",
        r.stderr
    );
    // --config takes [rft] from a file; --set goes over it.
    let config = d.path().join("g.toml");
    std::fs::write(&config, "[rft]\ntolerance = 0.1\nextract = \"last_number\"\n").unwrap();
    let c = config.to_str().unwrap();
    let r = grade(&cases, &["--config", c], &[]);
    assert_eq!((r.code, verdicts(&r)), (0, vec![true, true, true]), "{}", r.stderr);
    let r = grade(&cases, &["--config", c, "--set", "rft.tolerance=0"], &[]);
    assert_eq!(verdicts(&r), [true, false, false]);
    // Exit 2: an unknown key, a wrong value, a line that is no case, a regex that is none.
    let r = grade(&cases, &["--set", "rft.tolerence=0.1"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("rft.tolerence: unknown key (did you mean `tolerance`?)"),
        "{}",
        r.stderr
    );
    let r = grade(&cases, &["--set", "rft.tolerance=-1"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("rft.tolerance = -1: must be a finite number ≥ 0"),
        "{}",
        r.stderr
    );
    let bad = write_cases(
        d.path(),
        &[
            serde_json::json!({"completion": "x", "answer": 1}),
            serde_json::json!({"answer": 2}),
        ],
    );
    let r = grade(&bad, &[], &[]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert!(
        r.stderr.contains("cases.jsonl: line 2: no string `completion`"),
        "{}",
        r.stderr
    );
    let regex = write_cases(
        d.path(),
        &[
            serde_json::json!({"completion": "<answer>abc</answer>", "answer": "a|z"}),
            serde_json::json!({"completion": "<answer>abc</answer>", "answer": "a)|(z"}),
        ],
    );
    let r = grade(&regex, &["--set", "rft.grader=regex"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cases.jsonl: line 2: the answer \"a)|(z\" is not a regular expression"),
        "{}",
        r.stderr
    );
}

#[test]
fn math_verify_through_the_command_grader_agrees_with_the_cases() {
    let python = std::env::var("RFTX_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import math_verify"])
        .output();
    if !has.is_ok_and(|o| o.status.success()) {
        return rftx::testing::skip(&format!(
            "{python} has no `math_verify` (pip install math-verify==0.9.0; .ci/run does)"
        ));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let labelled = read_jsonl(&root.join("tests/data/math_verify_cases.jsonl"));
    let d = tempfile::tempdir().unwrap();
    let lines: Vec<serde_json::Value> = labelled
        .iter()
        .map(|c| serde_json::json!({"completion": c["pred"], "answer": c["gold"]}))
        .collect();
    let cases = write_cases(d.path(), &lines);
    let verifier = root.join("examples/verifiers/math_verify_verifier.py");
    let command = serde_json::json!([python, verifier]);
    let r = grade(
        &cases,
        &[
            "--set",
            "rft.grader=command",
            "--set",
            &format!("rft.command={command}"),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = verdicts(&r);
    let want: Vec<bool> = labelled.iter().map(|c| c["math_verify"].as_bool().unwrap()).collect();
    assert_eq!(got.len(), want.len());
    let differ: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
    assert!(differ.is_empty(), "lines {differ:?} differ from math_verify's labels");
    assert!(want.contains(&true) && want.contains(&false));
    let right = want.iter().filter(|&&c| c).count();
    assert!(
        r.stderr.starts_with(&format!("{right} of {} correct", want.len())),
        "{}",
        r.stderr
    );
}

#[test]
fn verifiers_that_crash_hang_or_answer_garbage_are_exit_1() {
    let d = tempfile::tempdir().unwrap();
    let cases = write_cases(
        d.path(),
        &[
            serde_json::json!({"completion": "a", "answer": 1}),
            serde_json::json!({"completion": "b", "answer": 2}),
        ],
    );
    let with = |script: &str, extra: &[&str]| {
        let command = sh_command(script);
        let mut args = vec!["--set", "rft.grader=command", "--set", command.as_str()];
        args.extend_from_slice(extra);
        grade(&cases, &args, &[])
    };
    let ok = with(&counting_verifier(&[2]), &[]);
    assert_eq!((ok.code, verdicts(&ok)), (0, vec![false, true]), "{}", ok.stderr);
    assert!(ok.stdout.contains("\"reason\":\"request 1\""), "{}", ok.stdout);

    let crash = with("read -r l; echo 'no model here' >&2; exit 3", &[]);
    assert_eq!(crash.code, 1, "{}", crash.stderr);
    for needle in [
        "rft.command `sh -c",
        "exited (exit status: 3)",
        "no model here",
        "lines 1–2",
    ] {
        assert!(crash.stderr.contains(needle), "{needle}: {}", crash.stderr);
    }
    let started = std::time::Instant::now();
    let hang = with("exec sleep 60", &["--set", "rft.command_timeout_s=0.5"]);
    assert_eq!(hang.code, 1, "{}", hang.stderr);
    assert!(
        hang.stderr
            .contains("gave no answer to request 1 of a batch of 2 within 0.5 s (rft.command_timeout_s)"),
        "{}",
        hang.stderr
    );
    assert!(started.elapsed().as_secs() < 30);
    let garbage = with("while read -r l; do echo 'looks right to me'; done", &[]);
    assert_eq!(garbage.code, 1, "{}", garbage.stderr);
    assert!(
        garbage
            .stderr
            .contains("answered request 1 of a batch of 2 with \"looks right to me\""),
        "{}",
        garbage.stderr
    );
    // Nothing written for a failed grading; a command that cannot start is exit 2.
    assert!(garbage.stdout.is_empty());
    let missing = grade(
        &cases,
        &[
            "--set",
            "rft.grader=command",
            "--set",
            "rft.command=[\"/no/such/verifier\"]",
        ],
        &[],
    );
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("`/no/such/verifier` cannot be started"),
        "{}",
        missing.stderr
    );
    let unset = grade(&cases, &["--set", "rft.grader=command"], &[]);
    assert_eq!(unset.code, 2);
    assert!(
        unset.stderr.contains("rft.grader = \"command\": needs rft.command"),
        "{}",
        unset.stderr
    );
}

#[test]
fn a_run_whose_verifier_crashes_resumes_to_the_same_bytes() {
    let f = Fixture::new(&command_toml(CONTENT_VERIFIER));
    let config = f.config.to_str().unwrap();
    // 5 samples a question: the verifier dies on the 8th request, in question 1.
    let crashed = rftx(&["run", config, "--quiet"], &[("CRASH_AFTER", "7")], f.path());
    assert_eq!(crashed.code, 1, "{}", crashed.stderr);
    for needle in [
        "question 1: rft.command `sh -c",
        "exited (exit status: 3)",
        "verifier crashed on request 8",
    ] {
        assert!(crashed.stderr.contains(needle), "{needle}: {}", crashed.stderr);
    }
    let runs = entries(&f.runs());
    assert_eq!(runs.len(), 1);
    let dir = f.runs().join(&runs[0]);
    assert_eq!(committed(&dir), 1);
    assert_eq!(read_json(&dir.join("manifest.json"))["status"], "failed");
    let resumed = rftx(&["run", config, "--quiet"], &[], f.path());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(printed_dir(&resumed, f.path()), dir);

    let fresh = Fixture::new(&command_toml(CONTENT_VERIFIER));
    let whole = fresh.run(&[]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let other = printed_dir(&whole, fresh.path());
    assert_eq!(other.file_name(), dir.file_name(), "the same config, the same hash");
    let files = ["samples.jsonl", "dataset.json", "sft_messages.jsonl"];
    assert_eq!(contents(&dir, &files), contents(&other, &files));
    let samples = read_jsonl(&dir.join("samples.jsonl"));
    let verdicts: Vec<bool> = samples
        .iter()
        .flat_map(|q| q["samples"].as_array().unwrap().iter().map(|s| s["correct"] == true))
        .collect();
    assert!(verdicts.contains(&true) && verdicts.contains(&false), "{verdicts:?}");
}

/// Chen et al.'s unbiased pass@k for n samples of which c are correct, from its definition:
/// 1 − C(n−c, k) / C(n, k).
fn pass_at(n: u64, c: u64, k: u64) -> f64 {
    let choose = |n: u64, k: u64| -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).map(|i| (n - i) as f64 / (k - i) as f64).product()
    };
    1.0 - choose(n - c, k) / choose(n, k)
}

#[test]
fn pass_at_k_on_mixed_verdicts() {
    // 4 questions × 5 samples, requests 1–20 in question and sample order: 3, 1, 1 and 0 right.
    let f = Fixture::new(&command_toml(&counting_verifier(&[2, 4, 5, 7, 12])));
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    let correct: Vec<u64> = read_jsonl(&dir.join("samples.jsonl"))
        .iter()
        .map(|q| {
            q["samples"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["correct"] == true)
                .count() as u64
        })
        .collect();
    assert_eq!(correct, [3, 1, 1, 0]);
    // By hand: pass@1 = 5/20; pass@2 = (0.9 + 0.4 + 0.4 + 0)/4; pass@3 = (1 + 0.6 + 0.6 + 0)/4;
    // pass@5 = 3/4.
    let by_hand = [(1, 0.25), (2, 0.425), (3, 0.55), (5, 0.75)];
    for (k, want) in by_hand {
        let mean = correct.iter().map(|&c| pass_at(5, c, k)).sum::<f64>() / 4.0;
        assert!(
            (mean - want).abs() < 1e-12,
            "pass@{k}: {mean} by the formula, {want} by hand"
        );
    }
    let m = read_json(&dir.join("metrics.json"));
    assert!((m["pass_at_1"].as_f64().unwrap() - 0.25).abs() < 1e-12, "{m}");
    assert!((m["pass_at_k"].as_f64().unwrap() - 0.75).abs() < 1e-12, "{m}");
    assert_eq!(m["k"], 5);
    assert_eq!(m["accepted"], 5);
    let csv = std::fs::read_to_string(dir.join("pass_at_k.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    for (row, &c) in rows.iter().zip(&correct) {
        assert_eq!((row[3].parse::<u64>().unwrap(), row[2].as_str()), (c, "5"), "{csv}");
        assert!((row[4].parse::<f64>().unwrap() - c as f64 / 5.0).abs() < 1e-9, "{csv}");
        assert!(
            (row[5].parse::<f64>().unwrap() - pass_at(5, c, 5)).abs() < 1e-9,
            "{csv}"
        );
    }
    let run = dir.to_str().unwrap();
    let show = rftx(&["show", run, "--pass-at", "1,2,3,5,6"], &[], f.path());
    assert_eq!(show.code, 0, "{}", show.stderr);
    for line in [
        "pass@1     25.00 %",
        "pass@2     42.50 %",
        "pass@3     55.00 %",
        "pass@5     75.00 %",
        "pass@6     — (a question has fewer than 6 samples)",
    ] {
        assert!(show.stdout.contains(line), "{line}:\n{}", show.stdout);
    }
}

#[test]
fn dedup_keeps_a_repeated_completion_once() {
    // Greedy decoding: a question's 5 samples are one text; the verifier accepts everything.
    let always = "while read -r l; do echo '{\"correct\": true}'; done";
    let f = Fixture::new(&command_toml(always));
    let r = f.run(&["--set", "generation.temperature=0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    for q in read_jsonl(&dir.join("samples.jsonl")) {
        let texts: Vec<&str> = q["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts.len(), 5);
        assert!(texts.iter().all(|t| *t == texts[0] && !t.is_empty()), "{texts:?}");
    }
    let m = read_json(&dir.join("metrics.json"));
    assert_eq!(
        (m["accepted"].as_u64(), m["dataset_records"].as_u64()),
        (Some(20), Some(4)),
        "{m}"
    );
    let records = |d: &Path| read_json(&d.join("dataset.json")).as_array().unwrap().len();
    assert_eq!(records(&dir), 4);
    assert_eq!(
        std::fs::read_to_string(dir.join("sft_messages.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let again = rftx(
        &["regrade", dir.to_str().unwrap(), "--set", "rft.dedup=false"],
        &[],
        f.path(),
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("dataset    20 records"), "{}", again.stdout);
    let regraded = PathBuf::from(again.stdout.lines().next().unwrap().rsplit(" into ").next().unwrap());
    assert_eq!(records(&regraded), 20);
}

#[test]
fn the_command_enters_the_hash_only_when_it_grades() {
    let f = Fixture::new("");
    let hash = |sets: &[&str]| {
        let mut args = vec!["hash", f.config.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        let r = rftx(&args, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.last_line().to_string()
    };
    let command = sh_command("cat");
    let plain = hash(&[]);
    assert_eq!(hash(&[&command]), plain, "a command the numeric grader does not use");
    let graded = hash(&["rft.grader=command", &command]);
    assert_ne!(graded, plain);
    assert_eq!(
        hash(&["rft.grader=command", &command, "rft.command_timeout_s=5"]),
        graded
    );
    assert_ne!(hash(&["rft.grader=command", &sh_command("cat -u")]), graded);
}
