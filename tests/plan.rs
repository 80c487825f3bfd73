//! `rftx plan` and `[memory]` budgets through the real binary.
mod common;

use std::path::Path;

use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `rftx plan CONFIG --arch smollm2-1.7b --device t4`, run from the repository.
fn plan_17b_on_t4(config: &str) -> Ran {
    rftx(
        &["plan", config, "--arch", "smollm2-1.7b", "--device", "t4"],
        &[],
        repo(),
    )
}

#[test]
fn the_seeds_before_and_after_on_a_t4() {
    let before = plan_17b_on_t4("configs/t4_before_fix.toml");
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert!(before.stdout.contains("OUT OF MEMORY"), "{}", before.stdout);
    assert!(
        before.stdout.contains("hf: 32 prompts × 15 samples = 480 sequences"),
        "{}",
        before.stdout
    );
    let after = plan_17b_on_t4("configs/t4_oversample15.toml");
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(
        after.stdout.contains("verdict                     fits"),
        "{}",
        after.stdout
    );
    assert!(
        after.stdout.contains("largest chunk_size          15"),
        "{}",
        after.stdout
    );
}

#[test]
fn json_plan_has_the_documented_fields() {
    let r = rftx(
        &[
            "plan",
            "configs/t4_oversample15.toml",
            "--arch",
            "smollm2-360m",
            "--device",
            "1GiB",
            "--format",
            "json",
        ],
        &[],
        repo(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["capacity_bytes"], 1u64 << 30);
    let peak = v["predicted_peak_bytes"].as_u64().unwrap();
    assert_eq!(v["fits"], peak <= 1 << 30);
    let b = &v["breakdown"];
    let sum: u64 = ["weights", "kv_cache", "activations", "logits", "overhead"]
        .iter()
        .map(|k| b[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, peak);
    // 360M in q8_0 on this CPU: 361.8M weights × 36/32 bytes (f32 block scales for the AVX2 kernel).
    assert!(
        (b["weights"].as_f64().unwrap() / (361.8e6 * 36.0 / 32.0) - 1.0).abs() < 0.01,
        "{b}"
    );
    assert!(v["max_chunk_size"].as_u64().unwrap() >= 1);
    assert_eq!(v["workload"]["chunk_size"], 3);
    let bad = rftx(
        &["plan", "configs/t4_oversample15.toml", "--device", "tpu"],
        &[],
        repo(),
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("`tpu` is neither a device"), "{}", bad.stderr);
}

/// Predicted peak of the tiny config at a chunk size, from `rftx plan --format json`.
fn predicted(f: &Fixture, chunk: usize) -> u64 {
    let r = rftx(
        &[
            "plan",
            f.config.to_str().unwrap(),
            "--format",
            "json",
            "--set",
            LONG,
            "--set",
            &format!("generation.chunk_size={chunk}"),
        ],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["predicted_peak_bytes"].as_u64().unwrap()
}

/// A short prompt and a long budget: the decoding caches, not the prefill, hold the peak.
const SHORT_PROMPT: &str = "[prompt]\nsystem = \"Be brief.\"\nexamples = []\n";
const LONG: &str = "generation.max_new_tokens=400";

#[test]
fn budgets_fail_or_shrink_and_a_fixed_config_resumes() {
    let f = Fixture::new(SHORT_PROMPT);
    // Chunks of 5 wanted; the budget leaves room for k < 5 sequences, the smallest k whose
    // successor needs more memory (the prompt's prefill may dominate the smallest chunks).
    let peaks: Vec<u64> = (1..=5).map(|c| predicted(&f, c)).collect();
    let k = (1..5)
        .find(|&k| peaks[k - 1] < peaks[k])
        .expect("peaks grow with the chunk size");
    let budget = format!("memory.budget=\"{}\"", (peaks[k - 1] + peaks[k]) / 2);
    let five = "generation.chunk_size=5";
    let reference = f.run(&["--set", LONG]);
    let reference_samples = std::fs::read(printed_dir(&reference, f.path()).join("samples.jsonl")).unwrap();

    // Too small for even one sequence: an input error before anything runs.
    let tiny = format!("memory.budget=\"{}\"", peaks[0] - 1);
    let r = f.run(&["--set", LONG, "--set", five, "--set", &tiny, "--runs-dir", "runs-b"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("below the predicted peak of even one sequence"),
        "{}",
        r.stderr
    );
    assert!(entries(&f.path().join("runs-b")).is_empty());

    // `fail` stops at the first question and keeps the directory.
    let r = f.run(&["--set", LONG, "--set", five, "--set", &budget, "--runs-dir", "runs-b"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("out of memory budget at question 0"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("generation.chunk_size ≤ {k}")),
        "{}",
        r.stderr
    );
    let dir = f
        .path()
        .join("runs-b")
        .join(entries(&f.path().join("runs-b")).pop().unwrap());
    assert_eq!(read_json(&dir.join("manifest.json"))["status"], "failed");

    // The fixed config (shrink) maps to the same directory, resumes it, records the reduction,
    // and the samples are those of an unconstrained run.
    let shrink = "memory.on_exceed=\"shrink\"";
    let r = f.run(&[
        "--set",
        LONG,
        "--set",
        five,
        "--set",
        &budget,
        "--set",
        shrink,
        "--runs-dir",
        "runs-b",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(printed_dir(&r, f.path()), dir);
    assert_eq!(std::fs::read(dir.join("samples.jsonl")).unwrap(), reference_samples);
    let chunks = read_jsonl(&dir.join("chunks.jsonl"));
    assert!(
        chunks
            .iter()
            .all(|c| c["size"].as_u64().unwrap() <= k as u64 && c["shrunk_from"] == 5),
        "{chunks:?}"
    );
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains(&format!("runs in chunks of {k} instead of 5")), "{log}");
}

/// Predicted peak of the tiny config with `sets`, from `rftx plan --format json`.
fn predicted_with(f: &Fixture, sets: &[&str]) -> u64 {
    let mut args = vec!["plan", f.config.to_str().unwrap(), "--format", "json"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["predicted_peak_bytes"].as_u64().unwrap()
}

#[test]
fn a_batch_over_the_budget_fails_before_it_runs_or_takes_fewer_questions() {
    let f = Fixture::new(SHORT_PROMPT);
    let at = |ppb: usize| predicted_with(&f, &[LONG, &format!("generation.prompts_per_batch={ppb}")]);
    let (two, four) = (at(2), at(4));
    assert!(two < at(3) && at(3) < four, "peaks grow with the questions per batch");
    let budget = format!("memory.budget=\"{two}\"");
    let four_per_batch = "generation.prompts_per_batch=4";
    let reference = f.run(&["--set", LONG]);
    let reference_samples = std::fs::read(printed_dir(&reference, f.path()).join("samples.jsonl")).unwrap();

    let r = f.run(&["--set", LONG, "--set", four_per_batch, "--set", &budget]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("generation.prompts_per_batch = 4"), "{}", r.stderr);
    assert!(
        r.stderr.contains("set generation.prompts_per_batch ≤ 2"),
        "{}",
        r.stderr
    );

    let r = f.run(&[
        "--set",
        LONG,
        "--set",
        four_per_batch,
        "--set",
        &budget,
        "--set",
        "memory.on_exceed=\"shrink\"",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    assert_eq!(std::fs::read(dir.join("samples.jsonl")).unwrap(), reference_samples);
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains("memory.budget: 2 questions per batch instead of 4"),
        "{log}"
    );
    let session = &read_json(&dir.join("manifest.json"))["sessions"][0]["batching"];
    assert_eq!(
        (session["prompts_per_batch"].as_u64(), session["chunk_size"].as_u64()),
        (Some(2), Some(2))
    );

    // "auto" under the budget picks what fits in it less the margin, and says so.
    let r = f.run(&[
        "--set",
        LONG,
        "--set",
        "generation.prompts_per_batch=\"auto\"",
        "--set",
        &format!("memory.budget=\"{}\"", four * 2),
        "--set",
        "memory.on_exceed=\"shrink\"",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    assert_eq!(std::fs::read(dir.join("samples.jsonl")).unwrap(), reference_samples);
    let session = &read_json(&dir.join("manifest.json"))["sessions"][0]["batching"];
    assert_eq!(session["auto_prompts_per_batch"], true);
    let picked = session["prompts_per_batch"].as_u64().unwrap() as usize;
    assert!((1..=4).contains(&picked), "{session}");
    assert!(at(picked) as f64 <= 0.8 * (four * 2) as f64, "{picked}");
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains(&format!("generation.prompts_per_batch = \"auto\": {picked}")),
        "{log}"
    );
}

#[test]
fn planning_for_this_cpu_says_what_auto_picks_and_the_tokens_per_s_to_expect() {
    let r = rftx(&["plan", "configs/w60.toml", "--format", "json"], &[], repo());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        v["safe_prompts_per_batch"].as_u64().unwrap() >= 4,
        "plenty of memory: {v}"
    );
    let Some(t) = v.get("throughput") else {
        return; // no AVX2: nothing measured
    };
    // 20 questions, chunks of 15, at most 64 rows on the CPU: 4 questions per batch.
    assert_eq!(
        (t["prompts_per_batch"].as_u64(), t["chunk_size"].as_u64()),
        (Some(4), Some(15))
    );
    let (ceiling, expected) = (
        t["ceiling_tokens_per_s"].as_f64().unwrap(),
        t["expected_tokens_per_s"].as_f64().unwrap(),
    );
    assert!(expected > 0.0 && expected < ceiling, "{t}");
    let text = rftx(&["plan", "configs/w60.toml"], &[], repo());
    assert!(text.stdout.contains("auto prompts_per_batch      4"), "{}", text.stdout);
    assert!(text.stdout.contains("expected throughput"), "{}", text.stdout);
    // Planning for another device measures nothing.
    let t4 = rftx(
        &["plan", "configs/w60.toml", "--device", "t4", "--format", "json"],
        &[],
        repo(),
    );
    let v: serde_json::Value = serde_json::from_str(&t4.stdout).unwrap();
    assert!(v.get("throughput").is_none());
}
