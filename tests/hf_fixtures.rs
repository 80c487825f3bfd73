//! Models written by others (`scripts/make_hf_fixtures.py`: tiny random llama (also with Llama
//! 3's rope scaling: `rope_parameters` in the folder, `rope_freqs.weight` in the GGUF file), qwen2
//! and qwen3 checkpoints saved by transformers' `save_pretrained`, and the same weights as GGUF files
//! written by the `gguf` package as llama.cpp's converter lays them out, committed under
//! `tests/fixtures/hf/` with the logits and greedy tokens transformers computed): rftx's loaders
//! against foreign writers, in every CI run. At f32 every logit is within [`TOLERANCE`] of
//! transformers' and the greedy tokens are the same, from the folder and from the GGUF file.
mod common;

use std::path::{Path, PathBuf};

use common::read_json;
use rftx::engine::{device, Model, WeightFormat};
use rftx::source::ModelSource;

/// The largest difference allowed between a logit of rftx and transformers' at f32: the two sum
/// in different orders (float rounding), nothing more.
const TOLERANCE: f32 = 1e-4;

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(arch)
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    best.0 as u32
}

/// Prefills the prompt, then steps through transformers' greedy tokens with the model of fixture
/// `name`'s folder (`gguf`: its GGUF file), which must read as architecture `arch`: every
/// position's logits within the tolerance, every greedy token rftx's own argmax. Returns the
/// largest difference.
fn check(name: &str, arch: &str, gguf: bool) -> f32 {
    let dir = fixture(name);
    let expected = read_json(&dir.join("expected.json"));
    let path = if gguf { dir.join("model.gguf") } else { dir.clone() };
    let (prompt, greedy) = (ids(&expected["prompt"]), ids(&expected["greedy"]));
    let logits: Vec<Vec<f32>> = expected["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(logits.len(), greedy.len());
    let mut source = ModelSource::open(&path).unwrap();
    assert_eq!(source.spec().arch, arch);
    let model = Model::load(&mut source, WeightFormat::F32, &device::host(), None).unwrap();
    let (mut cache, mut ours) = model.prefill(&prompt, prompt.len() + greedy.len()).unwrap();
    let mut worst = 0f32;
    for (i, (theirs, &token)) in logits.iter().zip(&greedy).enumerate() {
        assert_eq!(ours.len(), theirs.len(), "{name}: vocabulary");
        let diff = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            diff <= TOLERANCE,
            "{}, position {i}: logits differ by {diff}",
            path.display()
        );
        worst = worst.max(diff);
        assert_eq!(argmax(&ours), token, "{}: greedy token {i}", path.display());
        ours = model.step(&mut cache, &[token]).unwrap();
    }
    worst
}

/// [`check`] of the fixture's folder, then of its GGUF twin.
fn check_folder_and_gguf(name: &str, arch: &str) {
    for gguf in [false, true] {
        let worst = check(name, arch, gguf);
        eprintln!("{name} (gguf: {gguf}): largest logit difference {worst:e}");
    }
}

#[test]
fn a_llama_checkpoint_saved_by_transformers_gives_its_logits_and_greedy_tokens() {
    check_folder_and_gguf("llama", "llama");
}

#[test]
fn a_qwen2_checkpoint_with_biases_gives_its_logits_and_greedy_tokens() {
    check_folder_and_gguf("qwen2", "qwen2");
}

#[test]
fn a_qwen3_checkpoint_with_wide_normed_heads_gives_its_logits_and_greedy_tokens() {
    check_folder_and_gguf("qwen3", "qwen3");
}

#[test]
fn llama_3_rope_scaling_from_config_json_and_from_rope_freqs_gives_its_logits_and_greedy_tokens() {
    check_folder_and_gguf("llama3", "llama");
}
