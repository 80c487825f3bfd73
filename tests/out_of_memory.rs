//! Out of memory anywhere is out of memory: every device allocation of a run (weights, prompt
//! and chunk caches, retire, prefill, step, logits) fails as the one out-of-memory error, here
//! injected at each site in turn (`RFTX_TEST_OOM=SITE:ROWS[:FROM]`, the way a GPU fails, on a
//! machine without one). `fail` stops with exit 1 naming where and what to change, the committed
//! questions kept; `shrink` retries smaller and ends with the bytes of an unconstrained run. And
//! logits that are not finite stop the run instead of becoming arbitrary tokens.
mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `RFTX_TEST_OOM` makes chunk caches of more than 2 sequences fail as a device out-of-memory
/// would, from the fifth (question 2's first) on. `fail` stops with exit 1, says where and what to
/// change, and keeps the two committed questions; `shrink` retries at half the size and ends with
/// the bytes of an unconstrained run.
#[test]
fn out_of_memory_fails_cleanly_or_shrinks_to_the_same_bytes() {
    let f = Fixture::new("");
    let (r, reference) = oom_run(&f, "ref", &["generation.chunk_size=1"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let oom = [("RFTX_TEST_OOM", "chunk-cache:2:4")];

    let (r, dir) = oom_run(&f, "fail", &["generation.chunk_size=4"], &oom);
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

    let shrink = ["generation.chunk_size=4", "memory.on_exceed=\"shrink\""];
    let (r, dir) = oom_run(&f, "shrink", &shrink, &oom);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_samples_and_retried(&dir, &reference);
    // Question 2 ran out of memory once; the rest of the run keeps the smaller chunks.
    for c in read_jsonl(&dir.join("chunks.jsonl")) {
        let q = c["question"].as_u64().unwrap();
        let retries = (q == 2).then_some(1);
        if q >= 2 {
            assert_eq!(
                (c["shrunk_from"].as_u64(), c["oom_retries"].as_u64()),
                (Some(4), retries),
                "{c}"
            );
            assert!(c["size"].as_u64().unwrap() <= 2, "{c}");
        } else {
            assert!(c.get("oom_retries").is_none() && c.get("shrunk_from").is_none(), "{c}");
        }
    }

    // Three questions per batch: the batch that runs out of memory is retried with fewer
    // questions; the bytes are those of one sample at a time.
    let batch = [
        "generation.chunk_size=2",
        "generation.prompts_per_batch=3",
        "memory.on_exceed=\"shrink\"",
    ];
    let (r, dir) = oom_run(&f, "batch", &batch, &[("RFTX_TEST_OOM", "step:5:0")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_samples_and_retried(&dir, &reference);
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["sessions"][0]["batching"]["prompts_per_batch"], 3);
}

/// Runs the fixture's config with `sets` and `env` into the runs directory `runs`; returns what
/// it printed and the run directory (from `rftx hash`, which a failed run does not print).
fn oom_run(f: &Fixture, runs: &str, sets: &[&str], env: &[(&str, &str)]) -> (Ran, PathBuf) {
    let config = f.config.to_str().unwrap();
    let args = |verb: &'static str| {
        let mut a = vec![verb, config, "--runs-dir", runs];
        for s in sets {
            a.extend(["--set", *s]);
        }
        a
    };
    let mut run = args("run");
    run.push("--quiet");
    let r = rftx(&run, env, f.path());
    let dir = printed_dir(&rftx(&args("hash"), &[], f.path()), f.path());
    (r, dir)
}

/// The run in `dir` wrote the samples of `reference` and logged its out-of-memory retry.
fn assert_same_samples_and_retried(dir: &Path, reference: &Path) {
    assert_eq!(
        std::fs::read(dir.join("samples.jsonl")).unwrap(),
        std::fs::read(reference.join("samples.jsonl")).unwrap(),
        "samples do not depend on the chunk size an out-of-memory left"
    );
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains("retrying the unfinished questions with 1 per batch in chunks of 2"),
        "{log}"
    );
}

/// Every allocation site, its first allocation failing: exit 1 with one message that names it.
#[test]
fn every_allocation_site_fails_as_the_one_out_of_memory() {
    let f = Fixture::new("");
    let sites = [
        ("weights", "the model's weights"),
        ("prompt-cache", "a prompt's KV cache"),
        ("prefill", "a prompt's prefill"),
        ("chunk-cache", "a chunk's KV cache"),
        ("retire", "a chunk's cache without its finished rows"),
        ("step", "a decoding step"),
        ("logits", "the logits"),
    ];
    for (site, what) in sites {
        let spec = format!("{site}:0:0");
        let (r, _) = oom_run(&f, site, &[], &[("RFTX_TEST_OOM", &spec)]);
        assert_eq!(r.code, 1, "{site}: {}", r.stderr);
        assert!(
            r.stderr.contains("out of memory") && r.stderr.contains(what),
            "{site}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("raise memory.device_limit"), "{site}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{site}: one message: {}", r.stderr);
    }
}

/// At every site whose size depends on the batch, `shrink` ends with the bytes of an
/// unconstrained run: allocations for more than one sequence fail from the third on (a chunk's
/// cache loses finished rows only while it has more than one: there, any fails).
#[test]
fn shrinking_after_an_out_of_memory_at_any_site_gives_the_same_bytes() {
    let f = Fixture::new("");
    let (r, reference) = oom_run(&f, "ref", &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shrink = ["generation.chunk_size=4", "memory.on_exceed=\"shrink\""];
    for (site, spec) in [
        ("chunk-cache", "chunk-cache:1:2"),
        ("retire", "retire:0:0"),
        ("step", "step:1:2"),
        ("logits", "logits:1:2"),
    ] {
        let (r, dir) = oom_run(&f, site, &shrink, &[("RFTX_TEST_OOM", spec)]);
        assert_eq!(r.code, 0, "{site}: {}", r.stderr);
        assert_eq!(
            std::fs::read(dir.join("samples.jsonl")).unwrap(),
            std::fs::read(reference.join("samples.jsonl")).unwrap(),
            "{site}"
        );
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
        assert!(log.contains("retrying the unfinished questions"), "{site}: {log}");
    }
}

/// Logits that are not finite (an f16 overflow, a broken file) stop the run with a message that
/// says which weights to try, instead of being sampled as arbitrary tokens.
#[test]
fn non_finite_logits_stop_the_run_and_say_what_to_try() {
    let f = Fixture::new("");
    let poisoned = f.path().join("inf.gguf");
    rftx::testing::write_tiny_model_with_output_norm(&poisoned, 11, f32::INFINITY).unwrap();
    let set = format!("model.path={:?}", poisoned.display().to_string());
    let (r, dir) = oom_run(&f, "inf", &[&set], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for wanted in ["logits at question 0 are not finite", "model.weights = \"f32\""] {
        assert!(r.stderr.contains(wanted), "{wanted}: {}", r.stderr);
    }
    assert_eq!(read_json(&dir.join("manifest.json"))["status"], "failed");
    assert_eq!(committed(&dir), 0);
}
