//! One run identity wherever it is computed: the run directory is a function of the config and
//! its inputs, never of the machine that reads it; a run is continued only on the kind of device
//! its committed questions were computed on.
mod common;

use common::*;

/// `rftx hash`'s run directory of the fixture's config with `sets`.
fn hashed(f: &Fixture, sets: &[&str]) -> String {
    let mut args = vec!["hash", f.config.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{sets:?}: {}", r.stderr);
    r.last_line().to_string()
}

#[test]
fn a_gpu_config_hashes_and_submits_without_a_gpu_and_only_generating_needs_one() {
    let f = Fixture::new("");
    let cpu = hashed(&f, &["device=\"cpu\""]);
    // (The fixture pins q8_0, a CPU format; `auto` is what a config that runs anywhere says.)
    let gpu = ["device=\"cuda\"", "model.weights=\"auto\""];
    let cuda = hashed(&f, &gpu);
    assert_ne!(cpu, cuda, "CPU and GPU samples differ: two runs");
    // Which GPU, and how many of them, is the session's business, not the run's name.
    assert_eq!(hashed(&f, &["device=\"cuda:1\"", "model.weights=\"auto\""]), cuda);
    // `auto` is decided by the build, never by probing: the CPU in a build without CUDA.
    assert_eq!(
        hashed(&f, &["device=\"auto\""]),
        *if cfg!(feature = "cuda") { &cuda } else { &cpu }
    );
    // The GPU's weights follow from the config: `auto` is f16 on a GPU, whatever the host.
    assert_eq!(hashed(&f, &["device=\"cuda\"", "model.weights=\"f16\""]), cuda);

    // A login node without a GPU writes the scripts of the run the GPU nodes will compute.
    let cfg = f.config.to_str().unwrap();
    let args = [
        "slurm",
        "submit",
        cfg,
        "--shards",
        "2",
        "--dry-run",
        "--set",
        gpu[0],
        "--set",
        gpu[1],
    ];
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.last_line(), cuda);

    if !cfg!(feature = "cuda") {
        let r = f.run(&["--set", gpu[0], "--set", gpu[1]]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("built without CUDA"), "{}", r.stderr);
        assert!(
            !f.path().join(&cuda).join("manifest.json").exists(),
            "nothing was created"
        );
    }
}

#[test]
fn a_run_is_continued_only_on_the_device_its_questions_were_computed_on() {
    let f = Fixture::new("");
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    // As if its first session had run elsewhere and stopped after two questions.
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let first_two: String = samples.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("samples.jsonl"), &first_two).unwrap();
    let mut m = read_json(&dir.join("manifest.json"));
    let here = m["sessions"][0]["device"].as_str().unwrap().to_string();
    m["status"] = "interrupted".into();
    m["sessions"][0]["device"] = "cuda NVIDIA T4 (cc 7.5)".into();
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();

    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    let r = f.run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for wanted in [
        "2 committed questions were computed on `cuda NVIDIA T4 (cc 7.5)`",
        &here,
        "--force",
    ] {
        assert!(r.stderr.contains(wanted), "{wanted}: {}", r.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("samples.jsonl")).unwrap(),
        first_two,
        "nothing touched"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("run.log")).unwrap(),
        log,
        "not even the log"
    );

    // Started over here, it is the same run as before.
    let r = f.run(&["--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("samples.jsonl")).unwrap(), samples);
}

/// The fixture's run with `sets` (and 15 samples a question): its directory and `samples.jsonl`.
fn run_with(f: &Fixture, sets: &[&str]) -> (std::path::PathBuf, Vec<u8>) {
    let mut args = vec!["--set", "generation.oversample=15"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let r = f.run(&args);
    assert_eq!(r.code, 0, "{sets:?}: {}", r.stderr);
    let dir = printed_dir(&r, f.path());
    let samples = std::fs::read(dir.join("samples.jsonl")).unwrap();
    (dir, samples)
}

const SETTINGS: [(&str, &str); 5] = [("1", "1"), ("3", "1"), ("15", "1"), ("3", "2"), ("1", "4")];

/// `generation.logprobs`: the same bytes at chunk sizes 1, 3 and 15 and several questions per
/// batch; one value per token, their sum as `logprob_sum`; the tokens those of the run without.
#[test]
fn logprobs_are_identical_whatever_the_chunk_size_and_batch() {
    let f = Fixture::new("");
    let (plain_dir, plain) = run_with(&f, &[]);
    let mut reference: Option<Vec<u8>> = None;
    for (cs, ppb) in SETTINGS {
        let (cs, ppb) = (
            format!("generation.chunk_size={cs}"),
            format!("generation.prompts_per_batch={ppb}"),
        );
        let (dir, samples) = run_with(&f, &["generation.logprobs=true", &cs, &ppb]);
        assert_ne!(dir, plain_dir, "the key is in the hash when set");
        match &reference {
            None => reference = Some(samples),
            Some(r) => assert!(r == &samples, "{cs}, {ppb} changed the samples"),
        }
    }
    let with = String::from_utf8(reference.unwrap()).unwrap();
    let plain = String::from_utf8(plain).unwrap();
    assert!(!plain.contains("logprob"));
    let mut tokens = 0;
    for (a, b) in with.lines().zip(plain.lines()) {
        let mut a: serde_json::Value = serde_json::from_str(a).unwrap();
        let b: serde_json::Value = serde_json::from_str(b).unwrap();
        for s in a["samples"].as_array_mut().unwrap() {
            let values: Vec<f32> = s["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(values.len() as u64, s["new_tokens"].as_u64().unwrap());
            assert!(values.iter().all(|&x| x <= 0.0), "{values:?}");
            let sum = values.iter().map(|&x| x as f64).sum::<f64>() as f32;
            assert_eq!(s["logprob_sum"].as_f64().unwrap() as f32, sum);
            tokens += values.len();
            let m = s.as_object_mut().unwrap();
            m.remove("logprobs");
            m.remove("logprob_sum");
        }
        assert_eq!(a, b, "the same samples otherwise");
    }
    assert!(tokens > 100, "{tokens}");
    // Unset and `false` are the run every earlier config made.
    assert_eq!(run_with(&f, &["generation.logprobs=false"]).0, plain_dir);
}

/// The fixture's four questions in a file whose references are regular expressions: a sample is
/// right when the last lowercase letter of its text is one of `a`–`m` (the `regex` grader on
/// `extract = "regex"`), about half of the tiny model's samples.
fn regex_graded(f: &Fixture) -> Vec<String> {
    let data = f.path().join("q.jsonl");
    let rows: String = (0..4)
        .map(|i| format!("{{\"question\": \"q{i}\", \"answer\": \"[a-m]\"}}\n"))
        .collect();
    std::fs::write(&data, rows).unwrap();
    [
        format!("data.source={:?}", data.display().to_string()),
        "rft.grader=\"regex\"".into(),
        "rft.extract=\"regex\"".into(),
        "rft.pattern=\"[a-z]\"".into(),
    ]
    .to_vec()
}

/// `generation.stop_after_correct = 3`: each question keeps the first m samples of the full run
/// such that 3 are right, at chunk sizes 1, 3 and 15 and several questions per batch, resumed and
/// sharded alike; the metrics say what it skipped, and chunks of one drop nothing.
#[test]
fn stopping_after_k_right_keeps_the_same_samples_whatever_the_chunk_size_batch_resume_and_shard() {
    let f = Fixture::new("");
    let graded = regex_graded(&f);
    let mut sets: Vec<&str> = graded.iter().map(String::as_str).collect();
    let (_, full) = run_with(&f, &sets);
    let full = String::from_utf8(full).unwrap();
    // The expected lines: the full run's, each question cut after its third right sample.
    let mut expected = String::new();
    let mut kept = 0;
    for line in full.lines() {
        let mut q: serde_json::Value = serde_json::from_str(line).unwrap();
        let samples = q["samples"].as_array_mut().unwrap();
        let mut right = 0;
        let m = samples
            .iter()
            .position(|s| {
                right += usize::from(s["correct"].as_bool().unwrap());
                right == 3
            })
            .map_or(samples.len(), |i| i + 1);
        samples.truncate(m);
        kept += m;
        expected += &format!("{}\n", serde_json::to_string(&q).unwrap());
    }
    assert!(kept < 4 * 15 - 10, "the cut must save something: {kept} kept");
    sets.push("generation.stop_after_correct=3");
    let mut dirs = Vec::new();
    for (cs, ppb) in SETTINGS {
        let (cs, ppb) = (
            format!("generation.chunk_size={cs}"),
            format!("generation.prompts_per_batch={ppb}"),
        );
        let mut with = sets.clone();
        with.extend([cs.as_str(), ppb.as_str()]);
        let (dir, samples) = run_with(&f, &with);
        assert_eq!(String::from_utf8(samples).unwrap(), expected, "{cs}, {ppb}");
        let m = read_json(&dir.join("metrics.json"));
        let s = &m["stop_after_correct"];
        assert_eq!(s["k"], 3);
        assert_eq!(s["samples_skipped"].as_u64().unwrap() as usize, 4 * 15 - kept);
        let decoded = s["tokens_decoded"].as_u64().unwrap();
        assert_eq!(
            decoded - s["tokens_dropped"].as_u64().unwrap(),
            m["new_tokens"].as_u64().unwrap()
        );
        if cs.ends_with("=1") {
            assert_eq!(
                (
                    s["samples_decoded"].as_u64().unwrap() as usize,
                    s["tokens_dropped"].as_u64().unwrap()
                ),
                (kept, 0)
            );
        }
        // Chunks of 15 decode every sample (nothing saved, only dropped); smaller ones save.
        let never = 4 * 15 - s["samples_decoded"].as_u64().unwrap();
        assert_eq!(s["tokens_saved_estimate"].as_u64().unwrap() > 0, never > 0, "{cs}: {s}");
        assert_eq!(never == 0, cs.ends_with("=15"), "{cs}: {s}");
        dirs.push(dir);
    }
    // Resumed after two committed questions: the same bytes.
    let dir = &dirs[1];
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let first_two: String = samples.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("samples.jsonl"), &first_two).unwrap();
    let mut manifest = read_json(&dir.join("manifest.json"));
    manifest["status"] = "interrupted".into();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let mut with = sets.clone();
    with.push("generation.chunk_size=3");
    let (again, resumed) = run_with(&f, &with);
    assert_eq!((&again, String::from_utf8(resumed).unwrap()), (dir, expected.clone()));
    // Two shards, merged.
    let cfg = f.config.to_str().unwrap();
    let mut args: Vec<&str> = vec!["--quiet", "--runs-dir", "sharded", "--set", "generation.oversample=15"];
    for s in &with {
        args.extend(["--set", s]);
    }
    for shard in ["0", "1"] {
        let mut a = vec!["shard", "run", cfg, "--shard", shard, "--of", "2"];
        a.extend(&args);
        let r = rftx(&a, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let mut a = vec!["merge", cfg];
    a.extend(&args[1..]);
    let r = rftx(&a, &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let merged = printed_dir(&r, f.path());
    assert_eq!(std::fs::read_to_string(merged.join("samples.jsonl")).unwrap(), expected);
    let m = read_json(&merged.join("metrics.json"));
    assert_eq!(
        m["stop_after_correct"]["samples_skipped"].as_u64().unwrap() as usize,
        4 * 15 - kept
    );
}
