//! Hugging Face model folders: a folder converted from the tiny GGUF model (f32 weights, q/k rows
//! in the checkpoint's rotary layout, tokenizer.json, chat template in tokenizer_config.json)
//! gives the same samples as the GGUF file, at f32 and through the int8 path; its digest covers
//! its content and is cached; what is not supported is refused with exit 2.
mod common;

use common::*;

fn run_with(f: &Fixture, sets: &[&str]) -> Ran {
    let mut args = vec!["run", f.config.to_str().unwrap(), "--quiet"];
    for s in sets {
        args.extend_from_slice(&["--set", s]);
    }
    rftx(&args, &[], f.path())
}

#[test]
fn a_model_folder_gives_the_samples_of_the_gguf_it_was_converted_from() {
    let f = Fixture::new("");
    let folder = f.path().join("tiny-hf");
    rftx::testing::write_hf_folder(&f.model, &folder, None).unwrap();
    let from_folder = format!("model.path={}", folder.display());
    for weights in ["model.weights=\"f32\"", "model.weights=\"q8_0\""] {
        let gguf = run_with(&f, &[weights]);
        assert_eq!(gguf.code, 0, "{}", gguf.stderr);
        let hf = run_with(&f, &[weights, &from_folder]);
        assert_eq!(hf.code, 0, "{}", hf.stderr);
        let (a, b) = (printed_dir(&gguf, f.path()), printed_dir(&hf, f.path()));
        assert_ne!(a, b, "the model's digest is part of the hash");
        let read = |d: &std::path::Path| std::fs::read(d.join("samples.jsonl")).unwrap();
        assert!(
            read(&a) == read(&b),
            "{weights}: the folder's samples differ from the GGUF's"
        );
    }
    // The digest is of the content, cached by size and mtime: the same after a rewrite.
    let hash = |f: &Fixture| {
        rftx(
            &["hash", f.config.to_str().unwrap(), "--set", &from_folder],
            &[],
            f.path(),
        )
    };
    let first = hash(&f).last_line().to_string();
    assert!(f.path().join("models/digests.json").is_file());
    let config = std::fs::read(folder.join("config.json")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(folder.join("config.json"), &config).unwrap();
    assert_eq!(hash(&f).last_line(), first, "same content, same run");
    let mut changed: serde_json::Value = serde_json::from_slice(&config).unwrap();
    changed["rms_norm_eps"] = 1e-6.into();
    std::fs::write(folder.join("config.json"), changed.to_string()).unwrap();
    assert_ne!(hash(&f).last_line(), first, "another config, another run");
}

#[test]
fn unsupported_folders_are_refused_with_what_to_do() {
    let f = Fixture::new("");
    let folder = f.path().join("qwen");
    rftx::testing::write_hf_folder(&f.model, &folder, None).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("config.json")).unwrap()).unwrap();
    config["model_type"] = "mistral".into();
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    let r = run_with(&f, &[&format!("model.path={}", folder.display())]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("model_type `mistral` is not supported"),
        "{}",
        r.stderr
    );

    let empty = f.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = run_with(&f, &[&format!("model.path={}", empty.display())]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("a directory without config.json"), "{}", r.stderr);
    assert!(!f.runs().exists(), "no run directory for bad input");
}

/// `model.path = "Org/Name[@rev]"` is found offline in the hub cache; a missing one says where it
/// looked and the command that fetches it.
#[test]
fn a_repository_id_is_resolved_in_the_local_hub_cache() {
    let f = Fixture::new("");
    let hub = f.path().join("hub");
    let repo = hub.join("models--Org--Tiny");
    rftx::testing::write_hf_folder(&f.model, &repo.join("snapshots/0123abcd"), None).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let env = [("HF_HUB_CACHE", hub.to_str().unwrap())];
    let cfg = f.config.to_str().unwrap();
    let by_id = rftx(&["run", cfg, "--quiet", "--set", "model.path=Org/Tiny"], &env, f.path());
    assert_eq!(by_id.code, 0, "{}", by_id.stderr);
    let folder = format!("model.path={}", repo.join("snapshots/0123abcd").display());
    let by_path = rftx(&["run", cfg, "--quiet", "--set", &folder], &env, f.path());
    assert_eq!(
        printed_dir(&by_id, f.path()),
        printed_dir(&by_path, f.path()),
        "the same content: the same run"
    );
    let saved = std::fs::read_to_string(printed_dir(&by_id, f.path()).join("config.toml")).unwrap();
    assert!(
        saved.contains("path = \"Org/Tiny\""),
        "the id is kept as written: {saved}"
    );

    let missing = rftx(&["run", cfg, "--set", "model.path=Org/Other@v2"], &env, f.path());
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("models--Org--Other")
            && missing
                .stderr
                .contains("huggingface-cli download Org/Other --revision v2"),
        "{}",
        missing.stderr
    );
}

/// qwen2: the llama decoder with q/k/v biases. Zero biases give the llama folder's samples (the
/// same weights otherwise); non-zero ones are applied (other samples), at f32 and q8_0.
#[test]
fn a_qwen2_folder_adds_its_biases() {
    let f = Fixture::new("");
    let samples = |folder: &std::path::Path, weights: &str| {
        let r = run_with(&f, &[weights, &format!("model.path={}", folder.display())]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read(printed_dir(&r, f.path()).join("samples.jsonl")).unwrap()
    };
    for (name, biases) in [("llama", None), ("qwen-zero", Some(0.0)), ("qwen", Some(0.5))] {
        rftx::testing::write_hf_folder(&f.model, &f.path().join(name), biases).unwrap();
    }
    for weights in ["model.weights=\"f32\"", "model.weights=\"q8_0\""] {
        let llama = samples(&f.path().join("llama"), weights);
        assert!(
            samples(&f.path().join("qwen-zero"), weights) == llama,
            "{weights}: zero biases change nothing"
        );
        assert!(
            samples(&f.path().join("qwen"), weights) != llama,
            "{weights}: biases are applied"
        );
    }
}

/// Weights split over two safetensors files named by `model.safetensors.index.json`, as large
/// checkpoints are stored, load as one.
#[test]
fn a_sharded_checkpoint_loads_as_one() {
    let f = Fixture::new("");
    let (whole, sharded) = (f.path().join("whole"), f.path().join("sharded"));
    rftx::testing::write_hf_folder(&f.model, &whole, None).unwrap();
    rftx::testing::write_hf_folder(&f.model, &sharded, None).unwrap();
    let device = candle_core::Device::Cpu;
    let tensors = candle_core::safetensors::load(sharded.join("model.safetensors"), &device).unwrap();
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let subset: std::collections::HashMap<String, candle_core::Tensor> =
            part.iter().map(|n| (n.to_string(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&subset, sharded.join(file)).unwrap();
        part.iter().for_each(|n| {
            weight_map.insert(n.to_string(), file.into());
        });
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let samples = |folder: &std::path::Path| {
        let r = run_with(&f, &[&format!("model.path={}", folder.display())]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read(printed_dir(&r, f.path()).join("samples.jsonl")).unwrap()
    };
    assert!(
        samples(&sharded) == samples(&whole),
        "a sharded checkpoint gives the same samples"
    );
}
