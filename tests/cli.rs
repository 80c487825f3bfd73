//! The `rftx` binary end to end on a tiny random-weight model: run directories, hashing,
//! chunk-size invariance, resume, errors and exit codes.
mod common;

use std::path::Path;

use common::*;

fn hex12(dir_name: &str) -> &str {
    dir_name.rsplit('-').next().unwrap()
}

#[test]
fn run_writes_every_file_with_the_documented_fields() {
    let f = Fixture::new("");
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    assert!(dir.starts_with(f.runs()), "{}", dir.display());
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("tiny-") && hex12(name).len() == 12, "{name}");

    let manifest = read_json(&dir.join("manifest.json"));
    let hash = manifest["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.starts_with(hex12(name)));
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["progress"]["questions_done"], 4);
    assert_eq!(manifest["inputs"]["model"]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["finished_at"].is_string());

    let samples = check_samples(&dir);
    let chunks = check_chunks(&dir, samples.tokens);
    let m = read_json(&dir.join("metrics.json"));
    assert_eq!(m["questions"], 4);
    assert_eq!(m["samples"], 20);
    assert_eq!(m["new_tokens"].as_u64().unwrap(), samples.tokens);
    assert_eq!(m["accepted"].as_u64().unwrap() as usize, samples.correct);
    assert!(m["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(m["wall_s"].as_f64().unwrap() > 0.0);
    let rate = m["acceptance_rate"].as_f64().unwrap();
    assert!((rate - samples.correct as f64 / 20.0).abs() < 1e-12);
    assert_eq!(
        m["peak_bytes"],
        chunks.iter().map(|c| c["peak_bytes"].as_u64().unwrap()).max().unwrap()
    );
    check_dataset(&dir, &samples.records);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("chunk_size = 2"), "{config}");
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains("complete:"), "{log}");
    assert!(!dir.join("lock").exists(), "the lock is released");
}

/// What `samples.jsonl` of the fixture's run adds up to.
struct SampleTotals {
    tokens: u64,
    correct: usize,
    /// (question, trimmed text) of every correct sample: what the dataset must hold, once each.
    records: std::collections::BTreeSet<(String, String)>,
}

/// Checks every field of every line of `samples.jsonl` (4 questions × 5 samples).
fn check_samples(dir: &Path) -> SampleTotals {
    let samples = read_jsonl(&dir.join("samples.jsonl"));
    assert_eq!(samples.len(), 4);
    let mut totals = SampleTotals {
        tokens: 0,
        correct: 0,
        records: Default::default(),
    };
    for (i, q) in samples.iter().enumerate() {
        assert_eq!(q["index"], i);
        assert!(q["question"].is_string() && q["answer"].is_number());
        let s = q["samples"].as_array().unwrap();
        assert_eq!(s.len(), 5);
        for (j, x) in s.iter().enumerate() {
            assert_eq!(x["sample"], j);
            assert!(x["text"].is_string());
            let n = x["new_tokens"].as_u64().unwrap();
            assert!((1..=12).contains(&n));
            totals.tokens += n;
            assert!(x["finish"] == "eos" || x["finish"] == "length");
            assert!(x["parsed"].is_null() || x["parsed"].is_number());
            if x["correct"].as_bool().unwrap() {
                totals.correct += 1;
                let text = x["text"].as_str().unwrap().trim().to_string();
                totals
                    .records
                    .insert((q["question"].as_str().unwrap().to_string(), text));
            }
        }
    }
    totals
}

/// Checks `chunks.jsonl` (3 chunks per question, their tokens adding up to `tokens`); returns it.
fn check_chunks(dir: &Path, tokens: u64) -> Vec<serde_json::Value> {
    let chunks = read_jsonl(&dir.join("chunks.jsonl"));
    assert_eq!(chunks.len(), 4 * 3, "5 samples in chunks of 2 → 3 chunks per question");
    assert_eq!(
        chunks.iter().map(|c| c["new_tokens"].as_u64().unwrap()).sum::<u64>(),
        tokens
    );
    let fields = [
        "question",
        "chunk",
        "size",
        "new_tokens",
        "ms",
        "prefill_ms",
        "peak_bytes",
        "rss_peak_bytes",
    ];
    for c in &chunks {
        for k in fields {
            assert!(c[k].is_number(), "{k} in {c}");
        }
        assert!(
            c["peak_bytes"].as_u64().unwrap() > 0,
            "the counting allocator is installed"
        );
        assert!(c["rss_peak_bytes"].as_u64().unwrap() > c["peak_bytes"].as_u64().unwrap() / 2);
    }
    chunks
}

/// `dataset.json` holds every correct sample once per distinct (question, trimmed reasoning).
fn check_dataset(dir: &Path, expected: &std::collections::BTreeSet<(String, String)>) {
    let dataset = read_json(&dir.join("dataset.json"));
    let records: std::collections::BTreeSet<(String, String)> = dataset
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[2].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(&records, expected);
    assert_eq!(dataset.as_array().unwrap().len(), expected.len(), "no duplicates");
}

#[test]
fn hash_is_canonical_and_names_the_run_directory() {
    let f = Fixture::new("");
    let model = f.model.display().to_string();
    let h = |cfg: &Path, sets: &[&str]| {
        let mut args = vec!["hash", cfg.to_str().unwrap()];
        for s in sets {
            args.extend_from_slice(&["--set", s]);
        }
        let r = rftx(&args, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.last_line().to_string()
    };
    let base = h(&f.config, &[]);
    assert!(!f.runs().exists(), "hash creates nothing");

    // Same content: other key order, comments, whitespace, and a value moved to --set.
    let reordered = f.write_config(
        "reordered.toml",
        &format!(
            "# a comment\nseed = 1\nname = \"tiny\"\n\n[generation]\ntemperature = 1.0\nmax_new_tokens   =   12\nchunk_size = 2\noversample = 5\n\n[data]\nlimit = 4\n[model]\nweights = \"q8_0\"  # inline comment\npath = {model:?}\n"
        ),
    );
    assert_eq!(h(&reordered, &[]), base);
    assert_eq!(h(&f.config, &["generation.temperature=1.0"]), base);
    assert_eq!(
        h(&f.config, &["checkpoint.every=7"]),
        base,
        "checkpoint.every only changes durability"
    );

    // Any semantic change moves the directory.
    let mut seen = std::collections::HashSet::from([base.clone()]);
    for set in [
        "generation.temperature=0.9",
        "generation.chunk_size=3",
        "generation.oversample=6",
        "generation.top_p=0.5",
        "generation.max_new_tokens=13",
        "seed=2",
        "data.limit=3",
        "rft.tolerance=0.01",
        "prompt.system=\"other\"",
        "model.weights=\"f32\"",
    ] {
        assert!(seen.insert(h(&f.config, &[set])), "{set} must change the hash");
    }
    // The name is the directory prefix, not part of the hash.
    let renamed = h(&f.config, &["name=other"]);
    assert_eq!(hex12(&renamed), hex12(&base));
    assert!(renamed.ends_with(&format!("other-{}", hex12(&base))));

    // The model's content is part of the hash.
    rftx::testing::write_tiny_model(&f.model, 12).unwrap();
    assert_ne!(h(&f.config, &[]), base);

    // And the run lands exactly there.
    rftx::testing::write_tiny_model(&f.model, 11).unwrap();
    assert_eq!(f.run(&[]).last_line(), base);
}

#[test]
fn samples_are_identical_whatever_the_chunk_size_and_batch() {
    let f = Fixture::new("");
    let mut reference = None;
    let mut dirs = std::collections::HashSet::new();
    for (cs, ppb) in [("1", "1"), ("3", "1"), ("5", "1"), ("2", "2"), ("1", "4"), ("3", "3")] {
        let r = f.run(&[
            "--set",
            &format!("generation.chunk_size={cs}"),
            "--set",
            &format!("generation.prompts_per_batch={ppb}"),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let dir = printed_dir(&r, f.path());
        assert!(dirs.insert(dir.clone()), "another setting, another directory");
        let samples = std::fs::read(dir.join("samples.jsonl")).unwrap();
        let chunks = read_jsonl(&dir.join("chunks.jsonl"));
        let cs: usize = cs.parse().unwrap();
        assert_eq!(chunks.len(), 4 * 5usize.div_ceil(cs));
        // Chunk lines follow question order; a question's chunks are numbered in order.
        let order: Vec<(u64, u64)> = chunks
            .iter()
            .map(|c| (c["question"].as_u64().unwrap(), c["chunk"].as_u64().unwrap()))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // How full the batch was: rows decoded per step over the rows it holds.
        let m = read_json(&dir.join("metrics.json"));
        let occupancy = m["occupancy"].as_f64().unwrap();
        assert!(occupancy > 0.3 && occupancy <= 1.0 + 1e-9, "{occupancy}");
        let rows = m["mean_batch_rows"].as_f64().unwrap();
        let full = (cs.min(5) * ppb.parse::<usize>().unwrap()) as f64;
        assert!(
            (rows - occupancy * full).abs() < 1e-6 * full,
            "{rows} {occupancy} {full}"
        );
        match &reference {
            None => reference = Some(samples),
            Some(r) => assert!(
                r == &samples,
                "chunk_size {cs}, prompts_per_batch {ppb} changed the samples"
            ),
        }
    }
}

/// The lean settings (the 4-bit kernel, an f16 cache that grows by pages) are batch-invariant
/// too, and are other samples than the default's.
#[test]
fn lean_samples_are_identical_whatever_the_chunk_size_and_batch() {
    let f = Fixture::new("");
    let samples = |sets: &[&str]| {
        let mut args = Vec::new();
        for s in sets {
            args.extend(["--set", s]);
        }
        let r = f.run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read(printed_dir(&r, f.path()).join("samples.jsonl")).unwrap()
    };
    // 33 new tokens (the tiny model has 512 positions): caches grow past their first page of
    // 16 positions twice.
    let lean = [
        "model.weights=\"q4_1\"",
        "model.kv_cache=\"f16\"",
        "generation.max_new_tokens=33",
    ];
    let reference = samples(&lean);
    for (cs, ppb) in [("3", "1"), ("2", "2"), ("5", "3")] {
        let (cs, ppb) = (
            format!("generation.chunk_size={cs}"),
            format!("generation.prompts_per_batch={ppb}"),
        );
        assert!(
            samples(&[lean[0], lean[1], lean[2], &cs, &ppb]) == reference,
            "{cs}, {ppb}"
        );
    }
    let tokens: usize = String::from_utf8_lossy(&reference)
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["samples"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|s| s["new_tokens"].as_u64().unwrap() as usize)
        .sum();
    assert!(tokens > 4 * 5 * 16, "{tokens} tokens: few samples grew past a page");
    assert!(
        samples(&[lean[2]]) != reference,
        "the lean settings decode other tokens"
    );
}

#[test]
fn a_complete_run_is_reported_and_force_redoes_it() {
    let f = Fixture::new("");
    let first = f.run(&[]);
    let dir = printed_dir(&first, f.path());
    let samples = std::fs::read(dir.join("samples.jsonl")).unwrap();
    let before = std::fs::metadata(dir.join("samples.jsonl"))
        .unwrap()
        .modified()
        .unwrap();

    let again = f.run(&[]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.starts_with("already complete"), "{}", again.stdout);
    assert_eq!(again.last_line(), first.last_line());
    assert_eq!(
        std::fs::metadata(dir.join("samples.jsonl"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    let forced = f.run(&["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(!forced.stdout.starts_with("already complete"));
    assert_eq!(std::fs::read(dir.join("samples.jsonl")).unwrap(), samples);
    assert_eq!(
        read_json(&dir.join("manifest.json"))["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "--force starts a fresh manifest"
    );
}

#[test]
fn an_interrupted_run_resumes_to_the_same_output() {
    let f = Fixture::new("[checkpoint]\nevery = 1\n");
    let full = f.run(&[]);
    let dir = printed_dir(&full, f.path());
    let samples = std::fs::read(dir.join("samples.jsonl")).unwrap();
    let dataset = std::fs::read(dir.join("dataset.json")).unwrap();
    let metrics = read_json(&dir.join("metrics.json"));

    // Simulate a crash: two questions committed, the third torn mid-line, a chunk line of the
    // third written, the manifest still running.
    let text = String::from_utf8(samples.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(
        dir.join("samples.jsonl"),
        format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..40]),
    )
    .unwrap();
    let chunks = std::fs::read_to_string(dir.join("chunks.jsonl")).unwrap();
    let kept: Vec<&str> = chunks.lines().take(3 * 2 + 1).collect();
    std::fs::write(dir.join("chunks.jsonl"), kept.join("\n") + "\n").unwrap();
    let mut manifest = read_json(&dir.join("manifest.json"));
    manifest["status"] = "running".into();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();

    let resumed = rftx(&["run", f.config.to_str().unwrap()], &[], f.path());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("resuming after question 2 of 4"),
        "{}",
        resumed.stderr
    );
    assert!(resumed.stderr.contains("torn last line"), "{}", resumed.stderr);
    assert_eq!(std::fs::read(dir.join("samples.jsonl")).unwrap(), samples);
    assert_eq!(std::fs::read(dir.join("dataset.json")).unwrap(), dataset);
    let m = read_json(&dir.join("metrics.json"));
    for k in [
        "questions",
        "samples",
        "new_tokens",
        "accepted",
        "chunks",
        "dataset_records",
    ] {
        assert_eq!(m[k], metrics[k], "{k}");
    }
    let manifest = read_json(&dir.join("manifest.json"));
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["sessions"][1]["resumed_at_question"], 2);
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(log.contains("resuming after question 2"), "{log}");
    assert!(log.contains("checkpoint: 1 of 4"), "{log}");
}

#[test]
fn bad_input_exits_2_and_creates_no_run_directory() {
    let f = Fixture::new("");
    let cases = [
        ("generation.chunk_size=0", "generation.chunk_size = 0: must be ≥ 1"),
        ("generation.oversample=0", "generation.oversample = 0: must be ≥ 1"),
        ("generation.temperature=-1", "generation.temperature = -1: must be ≥ 0"),
        ("generation.top_p=0", "generation.top_p = 0: must be in (0, 1]"),
        (
            "generation.max_new_tokens=0",
            "generation.max_new_tokens = 0: must be ≥ 1",
        ),
        ("generation.chunk", "expected KEY=VALUE"),
        ("generation.chunks=2", "generation.chunks: unknown key"),
        ("generation.oversample=\"many\"", "generation.oversample: wrong type"),
        ("model.path=\"missing.gguf\"", "no such file"),
        ("data.source=\"missing.json\"", "missing.json"),
    ];
    for (set, needle) in cases {
        let r = rftx(&["run", f.config.to_str().unwrap(), "--set", set], &[], f.path());
        assert_eq!(r.code, 2, "{set}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{set}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "one clear message: {}", r.stderr);
        assert!(entries(&f.runs()).is_empty(), "{set} left {:?}", entries(&f.runs()));
    }
}

#[test]
fn bad_files_exit_2_naming_the_file_and_create_no_run_directory() {
    let f = Fixture::new("");
    let bad_toml = f.write_config("bad.toml", "[generation\n");
    let r = rftx(&["run", bad_toml.to_str().unwrap()], &[], f.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.toml: invalid TOML"), "{}", r.stderr);

    let unknown = f.write_config("unknown.toml", "[generation]\ntemprature = 1.0\n");
    let r = rftx(&["run", unknown.to_str().unwrap()], &[], f.path());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("unknown.toml: generation.temprature: unknown key (did you mean `temperature`?)"),
        "{}",
        r.stderr
    );

    let junk = f.path().join("junk.gguf");
    std::fs::write(&junk, "not a model").unwrap();
    let r = f.run(&["--set", &format!("model.path={:?}", junk.display().to_string())]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a readable GGUF file"), "{}", r.stderr);

    let questions = f.write_config("q.json", "[[\"How far?\", \"far\"]]");
    let r = f.run(&["--set", &format!("data.source={:?}", questions.display().to_string())]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("q.json: question 0: the answer \"far\" has no number (rft.grader = \"numeric\""),
        "{}",
        r.stderr
    );

    let r = rftx(&["run", "nowhere.toml"], &[], f.path());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("nowhere.toml: cannot read the config file"),
        "{}",
        r.stderr
    );
    assert!(entries(&f.runs()).is_empty());
}

#[test]
fn environment_sits_between_the_file_and_set() {
    let f = Fixture::new("");
    let cfg = f.config.to_str().unwrap();
    let dir = |env: &[(&str, &str)], sets: &[&str]| {
        let mut a = vec!["hash", cfg];
        for s in sets {
            a.extend_from_slice(&["--set", s]);
        }
        let r = rftx(&a, env, f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.last_line().to_string()
    };
    let three = dir(&[], &["generation.chunk_size=3"]);
    assert_eq!(dir(&[("RFTX_GENERATION__CHUNK_SIZE", "3")], &[]), three);
    assert_eq!(
        dir(&[("RFTX_GENERATION__CHUNK_SIZE", "4")], &["generation.chunk_size=3"]),
        three
    );
    let r = rftx(&["hash", cfg], &[("RFTX_GENERATION__CHUNK_SIZE", "0")], f.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("RFTX_GENERATION__CHUNK_SIZE"), "{}", r.stderr);
    // rftx's own variables are not config keys (the reliability test's RFTX_TEST_KILLS reaches
    // every rftx it spawns).
    assert_eq!(
        dir(
            &[("RFTX_TEST_KILLS", "100"), ("RFTX_MODELS_DIR", "/tmp")],
            &["generation.chunk_size=3"]
        ),
        three
    );
    // --runs-dir and RFTX_RUNS_DIR place the directory.
    let elsewhere = dir(&[("RFTX_RUNS_DIR", "/tmp/rftx-elsewhere")], &[]);
    assert!(elsewhere.starts_with("/tmp/rftx-elsewhere/tiny-"), "{elsewhere}");
}

#[test]
fn data_command_writes_the_builtin_set() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("q.json");
    let r = rftx(
        &["data", "--out", out.to_str().unwrap(), "--count", "25"],
        &[],
        d.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = read_json(&out);
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 25);
    assert!(items.iter().all(|p| p[0].is_string() && p[1].is_number()));
    assert_eq!(
        rftx::core::data::QuestionSet::from_config(Some(&out), &Default::default(), None)
            .unwrap()
            .questions,
        rftx::core::data::builtin(25)
    );
}

#[test]
fn help_documents_exit_codes() {
    let r = rftx(&["--help"], &[], Path::new("."));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("Exit codes:")
            && r.stdout.contains("2  bad input")
            && r.stdout.contains("75 a condition that may clear by itself"),
        "{}",
        r.stdout
    );
}

#[test]
fn bench_reports_each_chunk_size_and_identical_samples() {
    let f = Fixture::new("");
    let r = rftx(
        &[
            "bench",
            f.config.to_str().unwrap(),
            "--chunks",
            "1,2,5",
            "--format",
            "json",
        ],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|x| x["chunk_size"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 5]
    );
    assert_eq!(v["samples_identical"], true);
    for x in rows {
        assert_eq!(x["samples"], 20);
        assert_eq!(x["new_tokens"], rows[0]["new_tokens"]);
        assert_eq!(x["samples_sha256"], rows[0]["samples_sha256"]);
        assert!(x["tokens_per_s"].as_f64().unwrap() > 0.0 && x["peak_bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(rows[0]["speed_ratio"], 1.0);
    // The prompts it would feed to another engine.
    let out = f.path().join("prompts.json");
    let r = rftx(
        &[
            "bench",
            f.config.to_str().unwrap(),
            "--write-prompts",
            out.to_str().unwrap(),
        ],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(prompts.len(), 4);
    assert!(prompts
        .iter()
        .all(|p| p.starts_with("<|im_start|>system\n") && p.ends_with("<|im_start|>assistant\n")));
}

/// `rftx bench --kernels` on the CPU: the fused kernels' reference against itself, every check
/// exact; the JSON names each kernel and the whole decode steps.
#[test]
fn bench_kernels_checks_every_kernel_and_step() {
    let f = Fixture::new("");
    let r = rftx(
        &["bench", f.config.to_str().unwrap(), "--kernels", "--format", "json"],
        &[],
        f.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let checks: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for kernel in ["add_rmsnorm F32", "silu_mul F16", "fused decode step 4", "a row alone"] {
        assert!(names.iter().any(|n| n.starts_with(kernel)), "{kernel} in {names:?}");
    }
    assert!(checks
        .iter()
        .all(|c| c["ok"] == true && c["max_abs_diff"] == 0.0 && c["values"].as_u64() > Some(0)));
}

#[test]
fn gpu_settings_without_a_gpu_are_input_errors_that_say_what_to_do() {
    let f = Fixture::new("");
    let config = f.config.to_str().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("device=tpu", &["device = \"tpu\"", "use auto, cpu, cuda or cuda:N"]),
        ("model.init=random", &["model.init = \"random\"", "needs model.arch"]),
        ("model.weights=bf16", &["bf16", "GPUs only"]),
        ("memory.device_limit=t4", &["memory.device_limit", "GPU runs"]),
    ];
    for (set, wanted) in cases {
        let r = rftx(&["run", config, "--quiet", "--set", set], &[], f.path());
        assert_eq!(r.code, 2, "{set}: {}", r.stderr);
        for w in wanted {
            assert!(r.stderr.contains(w), "{set}: {}", r.stderr);
        }
    }
    if !cfg!(feature = "cuda") {
        let gpu = [
            "run",
            config,
            "--quiet",
            "--set",
            "device=cuda",
            "--set",
            "model.weights=auto",
        ];
        let r = rftx(&gpu, &[], f.path());
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("built without CUDA") && r.stderr.contains("scripts/build-cuda.sh"),
            "{}",
            r.stderr
        );
    }
    assert!(entries(&f.runs()).is_empty(), "nothing ran: {:?}", entries(&f.runs()));
    // The default device on a machine without CUDA is the CPU, and CPU hashes do not name it.
    let auto = rftx(&["hash", config], &[], f.path());
    let cpu = rftx(&["hash", config, "--set", "device=cpu"], &[], f.path());
    assert_eq!(auto.last_line(), cpu.last_line());
}
