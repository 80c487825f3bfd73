//! GGUF files: the header (metadata, tensor directory) read once, tensors read on demand.
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;

use super::ModelSpec;
use crate::base::error::{Error, Result};

/// `general.architecture`s rftx runs: llama's decoder, qwen2's (q/k/v biases) and qwen3's
/// (per-head q/k norms); Qwen's files keep q/k rows in the checkpoint's layout.
const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3"];

/// An open GGUF file and its parsed header.
pub(super) struct GgufFile {
    file: std::fs::File,
    pub(super) content: gguf_file::Content,
}

impl GgufFile {
    /// Reads one tensor's data onto `device`.
    pub(super) fn tensor(&mut self, name: &str, device: &Device) -> candle_core::Result<QTensor> {
        self.content.tensor(&mut self.file, name, device)
    }
}

/// The chat template a GGUF file's metadata carries, if any.
pub fn chat_template(md: &HashMap<String, gguf_file::Value>) -> Option<&str> {
    md.get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// Opens a GGUF file and reads its header (metadata and tensor directory) and architecture.
pub(super) fn open(path: &Path) -> Result<(GgufFile, ModelSpec)> {
    let bad = |m: String| Error::input(path, m);
    let mut file = std::fs::File::open(path).map_err(|e| {
        bad(format!(
            "cannot open the model file: {e}; set model.path to a GGUF file, or leave it unset for the default model"
        ))
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        bad(format!(
            "not a readable GGUF file ({e}); is it truncated or of another format?"
        ))
    })?;
    let mut spec = spec_from_metadata(&content.metadata).map_err(bad)?;
    if content.tensor_infos.contains_key(ROPE_FREQS) {
        let factors = content
            .tensor(&mut file, ROPE_FREQS, &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| bad(format!("cannot read {ROPE_FREQS}: {e}")))?;
        if factors.len() != spec.head_dim / 2 || factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
            return Err(bad(format!(
                "{ROPE_FREQS} has {} values, not {} positive ones (half a head)",
                factors.len(),
                spec.head_dim / 2
            )));
        }
        spec.rope_freq_factors = Some(factors);
    }
    Ok((GgufFile { file, content }, spec))
}

/// Llama 3's rotary frequency scaling as llama.cpp's converter stores it: a divisor per pair of
/// dimensions of a head.
const ROPE_FREQS: &str = "rope_freqs.weight";

pub(super) fn spec_from_metadata(md: &HashMap<String, gguf_file::Value>) -> std::result::Result<ModelSpec, String> {
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or("metadata general.architecture is missing")?;
    if !SUPPORTED.contains(&arch.as_str()) {
        return Err(format!("architecture `{arch}` is not supported: rftx runs GGUF models of the {} architectures (SmolLM2, Llama, TinyLlama; Qwen2.5; Qwen3)", SUPPORTED.join(", ")));
    }
    let get = |k: &str| -> std::result::Result<usize, String> {
        md.get(&format!("{arch}.{k}"))
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .map(|v| v as usize)
            .ok_or(format!("metadata {arch}.{k} is missing"))
    };
    let float = |k: &str| md.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok());
    let n_embd = get("embedding_length")?;
    let n_head = get("attention.head_count")?;
    let n_kv_head = get("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = ModelSpec::head_dim(n_embd, n_head, n_kv_head, get("attention.key_length").ok())?;
    if let Ok(rope_dim) = get("rope.dimension_count") {
        if rope_dim != head_dim {
            return Err(format!(
                "partial rotary embeddings ({rope_dim} of {head_dim} dims) are not supported"
            ));
        }
    }
    let vocab_size = match get("vocab_size") {
        Ok(v) => v,
        Err(_) => match md.get("tokenizer.ggml.tokens") {
            Some(gguf_file::Value::Array(a)) => a.len(),
            _ => return Err(format!("metadata {arch}.vocab_size is missing")),
        },
    };
    Ok(ModelSpec {
        arch: arch.clone(),
        name: md
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default(),
        n_layer: get("block_count")?,
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: get("feed_forward_length")?,
        vocab_size,
        context_length: get("context_length").unwrap_or(2048),
        rope_base: float("rope.freq_base").unwrap_or(10_000.0),
        rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
        rope_scaling: None,
        rope_freq_factors: None,
    })
}
