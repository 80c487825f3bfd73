//! `rftx verify` through the real binary on the tiny model: an untouched run verifies, an edited
//! completion is found and named, a run copied elsewhere verifies with its model given, and a
//! wrong model or a changed config is refused. (A merged shard run: tests/shard.rs.)
mod common;

use std::path::Path;

use common::*;

fn verify(dir: &Path, args: &[&str], cwd: &Path) -> Ran {
    let mut all = vec!["verify", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    rftx(&all, &[], cwd)
}

/// The files of a run directory with their bytes, to see that verifying writes nothing.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = entries(dir);
    names.sort();
    names
        .into_iter()
        .filter(|n| dir.join(n).is_file())
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn verify_regenerates_samples_alone_and_names_the_first_that_differs() {
    // Four questions of 5 samples, in chunks of 2 and two questions per batch.
    let f = Fixture::new("");
    let r = f.run(&["--set", "generation.prompts_per_batch=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    let before = snapshot(&dir);

    let v = verify(&dir, &["--samples", "6", "--seed", "3"], f.path());
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert_eq!(v.last_line(), "6 of 6 identical");
    assert!(v.stdout.contains("6 of 20 (question, sample) pairs"), "{}", v.stdout);
    assert_eq!(
        v.stderr
            .lines()
            .filter(|l| l.ends_with(" s)") && l.contains(": identical ("))
            .count(),
        6,
        "{}",
        v.stderr
    );
    // Every pair, each alone: the same bytes as the run's batches of two questions × chunks of 2.
    let all = verify(&dir, &["--samples", "20", "--quiet"], f.path());
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_eq!(all.last_line(), "20 of 20 identical");
    assert!(all.stderr.is_empty(), "--quiet: {}", all.stderr);
    assert!(snapshot(&dir) == before, "verify writes nothing into the run");

    // One completion edited: found, named, exit 1 with what the run was made on.
    let samples = dir.join("samples.jsonl");
    let mut lines: Vec<serde_json::Value> = read_jsonl(&samples);
    let text = lines[1]["samples"][3]["text"].as_str().unwrap().to_string();
    lines[1]["samples"][3]["text"] = format!("{text}!").into();
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&samples, edited).unwrap();
    let bad = verify(&dir, &["--samples", "20", "--seed", "1", "--quiet"], f.path());
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert_eq!(bad.last_line(), "19 of 20 identical");
    let device = read_json(&dir.join("manifest.json"))["sessions"][0]["device"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        bad.stderr.contains("error: question 1, sample 3 is not what")
            && bad.stderr.contains(&format!("the run was made on `{device}`"))
            && bad.stderr.contains("built for x86_64")
            && bad.stderr.contains("!\""),
        "{}",
        bad.stderr
    );
    // Drawn at random, the edited pair may be missed; drawn, it is named.
    let some = verify(&dir, &["--samples", "1", "--seed", "5", "--quiet"], f.path());
    assert!(matches!(some.code, 0 | 1), "{}", some.stderr);
    assert_eq!(
        some.code == 1,
        some.stderr.contains("question 1, sample 3"),
        "{}",
        some.stderr
    );

    // --samples 0 and a directory that is not a run are input errors.
    let zero = verify(&dir, &["--samples", "0"], f.path());
    assert_eq!(zero.code, 2, "{}", zero.stderr);
    assert!(zero.stderr.contains("--samples 0: must be ≥ 1"), "{}", zero.stderr);
    let not_run = verify(f.path(), &[], f.path());
    assert_eq!(not_run.code, 2, "{}", not_run.stderr);
}

#[test]
fn a_run_copied_elsewhere_verifies_with_its_model_and_nothing_else() {
    let f = Fixture::new("");
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());

    // Another machine: the run directory alone, the model at another path.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join(dir.file_name().unwrap());
    std::fs::create_dir(&copy).unwrap();
    for name in ["config.toml", "manifest.json", "samples.jsonl"] {
        std::fs::copy(dir.join(name), copy.join(name)).unwrap();
    }
    let model = elsewhere.path().join("the-same-model.gguf");
    std::fs::rename(&f.model, &model).unwrap();
    let missing = verify(&copy, &["--samples", "3"], elsewhere.path());
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("no such file here; pass the run's model with --model PATH"),
        "{}",
        missing.stderr
    );
    let ok = verify(
        &copy,
        &["--samples", "5", "--seed", "9", "--model", model.to_str().unwrap()],
        elsewhere.path(),
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.last_line(), "5 of 5 identical");

    // Another model is refused, naming both digests.
    let other = elsewhere.path().join("other.gguf");
    rftx::testing::write_tiny_model(&other, 12).unwrap();
    let wrong = verify(&copy, &["--model", other.to_str().unwrap()], elsewhere.path());
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("not the model this run was made with"),
        "{}",
        wrong.stderr
    );
    // A config.toml that no longer gives the run's hash: nothing to verify against.
    let config = copy.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("temperature = 1.0", "temperature = 0.5")).unwrap();
    let changed = verify(&copy, &["--model", model.to_str().unwrap()], elsewhere.path());
    assert_eq!(changed.code, 2, "{}", changed.stderr);
    assert!(changed.stderr.contains("config.toml was changed"), "{}", changed.stderr);
}
