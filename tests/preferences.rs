//! What to train on next, through the real binary: `dpo_pairs.jsonl`, `kto.jsonl` and
//! `rl_prompts.jsonl` of a run whose verdicts are known (a verifier that says which requests are
//! right), the pairing rule and the pass-rate filter checked pair by pair, `regrade` under other
//! settings, `show`'s histogram, and the files loaded by `datasets` and TRL
//! (`scripts/check_preference_files.py`).
mod common;

use std::path::Path;

use common::*;

/// A verifier in `sh`: `{"correct": true}` for the requests whose number (1, 2, … over the
/// verifier's life) is in `right`, else false.
fn counting_verifier(right: &[usize]) -> String {
    let cases = right.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("|");
    format!(
        r#"n=0; while read -r l; do n=$((n+1)); case $n in {cases}) echo '{{"correct": true}}';; *) echo '{{"correct": false}}';; esac; done"#
    )
}

/// 4 questions × 5 samples, asked in question and sample order (requests 1–20): samples 1, 3
/// and 4 of question 0 are right, sample 1 of questions 1 and 2, none of question 3.
fn fixture() -> Fixture {
    let script = counting_verifier(&[2, 4, 5, 7, 12]);
    Fixture::new(&format!(
        "[rft]\ngrader = \"command\"\ncommand = {}\n",
        serde_json::json!(["sh", "-c", script])
    ))
}

/// Each sample's text (trimmed, as the files hold it) → (question, sample).
fn sample_of(dir: &Path) -> std::collections::HashMap<String, (u64, u64)> {
    let mut map = std::collections::HashMap::new();
    for q in read_jsonl(&dir.join("samples.jsonl")) {
        for s in q["samples"].as_array().unwrap() {
            let text = s["text"].as_str().unwrap().trim().to_string();
            let at = (q["index"].as_u64().unwrap(), s["sample"].as_u64().unwrap());
            assert!(map.insert(text, at).is_none(), "no two samples alike in this fixture");
        }
    }
    map
}

/// `dpo_pairs.jsonl` of `dir` as (question, chosen sample, rejected sample).
fn pairs(dir: &Path, run: &Path) -> Vec<(u64, u64, u64)> {
    let of = sample_of(run);
    read_jsonl(&dir.join("dpo_pairs.jsonl"))
        .iter()
        .map(|p| {
            let chosen = of[p["chosen"][0]["content"].as_str().unwrap()];
            let rejected = of[p["rejected"][0]["content"].as_str().unwrap()];
            assert_eq!(chosen.0, rejected.0, "a pair is of one question");
            (chosen.0, chosen.1, rejected.1)
        })
        .collect()
}

fn rl_indices(dir: &Path) -> Vec<u64> {
    read_jsonl(&dir.join("rl_prompts.jsonl"))
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn preference_pairs_labels_and_rl_prompts_follow_the_verdicts() {
    let f = fixture();
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());

    // Every right sample with the question's wrong ones in turn.
    assert_eq!(
        pairs(&dir, &dir),
        [(0, 1, 0), (0, 3, 2), (0, 4, 0), (1, 1, 0), (2, 1, 0)]
    );
    let dpo = read_jsonl(&dir.join("dpo_pairs.jsonl"));
    assert_eq!(
        dpo[3]["prompt"],
        serde_json::json!([
            {"role": "system", "content": rftx::core::config::DEFAULT_SYSTEM},
            {"role": "user", "content": read_jsonl(&dir.join("samples.jsonl"))[1]["question"]}
        ])
    );
    // Every sample labelled, in question and sample order.
    let of = sample_of(&dir);
    let kto: Vec<((u64, u64), bool)> = read_jsonl(&dir.join("kto.jsonl"))
        .iter()
        .map(|l| {
            (
                of[l["completion"][0]["content"].as_str().unwrap()],
                l["label"].as_bool().unwrap(),
            )
        })
        .collect();
    let right = [(0, 1), (0, 3), (0, 4), (1, 1), (2, 1)];
    let want: Vec<((u64, u64), bool)> = (0..4)
        .flat_map(|q| (0..5).map(move |s| ((q, s), right.contains(&(q, s)))))
        .collect();
    assert_eq!(kto, want);
    // Every question, with its pass rate (no rft.keep_pass_rate).
    let rl = read_jsonl(&dir.join("rl_prompts.jsonl"));
    let rates: Vec<(f64, u64, u64)> = rl
        .iter()
        .map(|l| {
            (
                l["pass_rate"].as_f64().unwrap(),
                l["correct"].as_u64().unwrap(),
                l["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rates, [(0.6, 3, 5), (0.2, 1, 5), (0.2, 1, 5), (0.0, 0, 5)]);
    let samples = read_jsonl(&dir.join("samples.jsonl"));
    // The reference as text (as in dataset.parquet): numbers too, so the column has one type.
    let text = rl[2]["answer"].as_str().unwrap();
    match samples[2]["answer"].as_f64() {
        Some(x) => assert_eq!(text.parse::<f64>().unwrap(), x),
        None => assert_eq!(text, samples[2]["answer"].as_str().unwrap()),
    }
    assert_eq!(rl[2]["question"], samples[2]["question"]);
    check_with_python(&dir, [5, 5, 15, 4]);

    // show: the histogram of pass rates.
    let show = rftx(&["show", dir.to_str().unwrap()], &[], f.path());
    assert_eq!(show.code, 0, "{}", show.stderr);
    let histogram = "pass rate  questions\n0/5                1  ###############\n1/5                2  ##############################\n2/5                0\n3/5                1  ###############\n4/5                0\n5/5                0\n";
    assert!(show.stdout.contains(histogram), "{}", show.stdout);
    let json = rftx(&["show", dir.to_str().unwrap(), "--format", "json"], &[], f.path());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["pass_rate_histogram"][1],
        serde_json::json!({"bin": "1/5", "questions": 2})
    );

    regrades(&f, &dir);
}

/// `rftx regrade` rebuilds the three files under other `rft.*` settings.
fn regrades(f: &Fixture, dir: &Path) {
    let regrade = |sets: &[&str]| {
        let mut args = vec!["regrade", dir.to_str().unwrap()];
        for s in sets {
            args.extend(["--set", s]);
        }
        let r = rftx(&args, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let out = r.stdout.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        (std::path::PathBuf::from(out), r.stdout)
    };
    // Both bounds are kept: 0.2 and 0.6.
    let (out, stdout) = regrade(&["rft.keep_pass_rate=[0.2, 0.6]"]);
    assert_eq!(rl_indices(&out), [0, 1, 2]);
    assert!(stdout.contains("rl prompts 3 of 4 questions"), "{stdout}");
    assert!(stdout.contains("dpo pairs  5"), "{stdout}");
    let (out, _) = regrade(&["rft.keep_pass_rate=[0.21, 0.6]"]);
    assert_eq!(rl_indices(&out), [0]);
    let (out, _) = regrade(&["rft.keep_pass_rate=[0, 0.19]"]);
    assert_eq!(rl_indices(&out), [3]);
    let (out, stdout) = regrade(&["rft.max_pairs_per_question=1"]);
    assert_eq!(pairs(&out, dir), [(0, 1, 0), (1, 1, 0), (2, 1, 0)]);
    assert!(stdout.contains("dpo pairs  3"), "{stdout}");
    assert!(stdout.contains("kto        5 desirable, 15 undesirable"), "{stdout}");
    // A bad range is exit 2 naming the key and the fix.
    let r = rftx(
        &[
            "regrade",
            dir.to_str().unwrap(),
            "--set",
            "rft.keep_pass_rate=[0.9, 0.1]",
        ],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("rft.keep_pass_rate = [0.9, 0.1]: lo must be ≤ hi"),
        "{}",
        r.stderr
    );
}

#[test]
fn keep_pass_rate_in_a_config_is_another_run_and_show_says_what_it_keeps() {
    let f = fixture();
    let plain = rftx(&["hash", f.config.to_str().unwrap()], &[], f.path());
    let r = f.run(&["--set", "rft.keep_pass_rate=[0.2, 0.6]"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    assert_ne!(
        dir,
        printed_dir(&plain, f.path()),
        "rft.* keys are in the run hash when set"
    );
    assert_eq!(rl_indices(&dir), [0, 1, 2]);
    let show = rftx(&["show", dir.to_str().unwrap()], &[], f.path());
    assert!(
        show.stdout
            .contains("rft.keep_pass_rate = [0.2, 0.6] keeps 3 of 4 questions in rl_prompts.jsonl"),
        "{}",
        show.stdout
    );
}

/// The three files loaded by Hugging Face `datasets` and, where installed, checked by TRL's own
/// dataset preparation (`scripts/check_preference_files.py`), with `$RFTX_TEST_PYTHON`.
fn check_with_python(dir: &Path, counts: [usize; 4]) {
    let mut args = vec![dir.display().to_string()];
    args.extend(counts.map(|c| c.to_string()));
    let Some((ok, text)) = common::python_check("check_preference_files.py", &args) else {
        return;
    };
    assert!(ok && text.contains("ok: 5 pairs"), "{text}");
    if !text.contains("accept the three files") {
        rftx::testing::skip(&format!("the test Python has no `trl` (.ci/run installs it): {text}"));
    }
}
