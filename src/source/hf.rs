//! Hugging Face model folders of the llama and qwen2 architectures, as `save_pretrained` writes
//! them: `config.json`, the weights in
//! `model.safetensors` or in shards listed by `model.safetensors.index.json`, `tokenizer.json`,
//! and the chat template in `chat_template.jinja` or `tokenizer_config.json`; end-of-turn ids
//! from `generation_config.json` and `config.json`.
//!
//! The engine asks for tensors by their GGUF names; they are mapped to the checkpoint's names
//! here, converted to f32, and the rows of `q_proj` and `k_proj` are permuted once from the
//! checkpoint's half-split rotary layout to the interleaved one of GGUF (what llama.cpp's
//! converter does), so that the engine has one layout to know.
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use serde_json::Value;

use super::{ModelSpec, RopeScaling, TensorSize};
use crate::base::error::{Error, Result};

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
const INDEX: &str = "model.safetensors.index.json";
/// `model_type`s of `config.json` that rftx runs: the llama decoder, and qwen2's (the same with
/// biases on the q, k and v projections).
const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3"];
const SINGLE: &str = "model.safetensors";

/// The files of a model folder whose content changes samples (the run hash covers them).
pub const CONTENT_FILES: &[&str] = &[
    CONFIG,
    TOKENIZER,
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    INDEX,
];

/// An open model folder: its config, its tensors (memory-mapped) and its metadata files.
pub(super) struct HfFolder {
    dir: PathBuf,
    config: Value,
    tensors: MmapedSafetensors,
}

/// Whether `path` is a model folder (a directory with `config.json`).
pub fn is_folder(path: &Path) -> bool {
    path.is_dir() && path.join(CONFIG).is_file()
}

/// The weight files of a folder: the shards its index names, or `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX);
    if !index.is_file() {
        let single = dir.join(SINGLE);
        if !single.is_file() {
            return Err(Error::input(
                dir,
                format!("no {SINGLE} and no {INDEX}: not a safetensors model folder"),
            ));
        }
        return Ok(vec![single]);
    }
    let v = read_json(&index)?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| Error::input(&index, "no weight_map object"))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The digest of a folder's content: sha256 over the sorted `name sha256` lines of the files
/// that change samples ([`CONTENT_FILES`] present, and the weight files). File digests are cached
/// in `cache` (a JSON file) by path, size and modification time, so that a multi-gigabyte folder
/// is hashed once, not on every `rftx hash`.
pub fn content_digest(dir: &Path, cache: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = CONTENT_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect();
    files.extend(weight_files(dir)?);
    let mut known: serde_json::Map<String, Value> = std::fs::read_to_string(cache)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut lines = Vec::new();
    let mut changed = false;
    for f in &files {
        let meta = std::fs::metadata(f).map_err(|e| Error::input(f, format!("cannot read: {e}")))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let stamp = format!("{} {}", meta.len(), mtime.map_or(0, |d| d.as_nanos()));
        let key = crate::base::util::absolute(f).display().to_string();
        let digest = match known.get(&key) {
            Some(v) if v["stamp"] == stamp.as_str() => v["sha256"].as_str().unwrap_or_default().to_string(),
            _ => {
                let d = crate::base::util::sha256_file(f)?;
                known.insert(key, serde_json::json!({"stamp": stamp, "sha256": d}));
                changed = true;
                d
            }
        };
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lines.push(format!("{name} {digest}\n"));
    }
    if changed {
        // A cache only: a failure to write it costs time later, not correctness.
        let text = serde_json::to_string_pretty(&known).expect("cache serialises");
        let _ = std::fs::create_dir_all(cache.parent().unwrap_or(Path::new(".")));
        let _ = crate::base::util::write_atomic(cache, text.as_bytes());
    }
    lines.sort();
    Ok(crate::base::util::sha256_hex(lines.concat().as_bytes()))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::input(path, format!("not valid JSON: {e}")))
}

/// Opens a model folder and reads its architecture; tensors are mapped, not read.
pub(super) fn open(dir: &Path) -> Result<(HfFolder, ModelSpec)> {
    let config = read_json(&dir.join(CONFIG))?;
    let spec = spec_from_config(&config).map_err(|m| Error::input(dir.join(CONFIG), m))?;
    let files = weight_files(dir)?;
    // SAFETY: the files are mapped read-only for the life of this command; rftx never writes
    // them, and a model folder (a hub snapshot) is not rewritten in place while it is used.
    let tensors = unsafe { MmapedSafetensors::multi(&files) }
        .map_err(|e| Error::input(dir, format!("cannot read the safetensors files: {e}")))?;
    let folder = HfFolder {
        dir: dir.to_path_buf(),
        config,
        tensors,
    };
    Ok((folder, spec))
}

/// The architecture from `config.json` (the forms of transformers 4 and 5).
fn spec_from_config(c: &Value) -> std::result::Result<ModelSpec, String> {
    let model_type = c["model_type"].as_str().unwrap_or_default();
    if !SUPPORTED.contains(&model_type) {
        return Err(format!(
            "model_type `{model_type}` is not supported: rftx runs {} folders (SmolLM2, Llama, TinyLlama; Qwen2.5; Qwen3)",
            SUPPORTED.join(", ")
        ));
    }
    if c["use_sliding_window"].as_bool() == Some(true) {
        return Err("use_sliding_window = true: sliding-window attention is not supported".into());
    }
    let get = |k: &str| {
        c[k].as_u64()
            .map(|v| v as usize)
            .ok_or(format!("{k} is missing or not a number"))
    };
    let (n_embd, n_head) = (get("hidden_size")?, get("num_attention_heads")?);
    let n_kv_head = get("num_key_value_heads").unwrap_or(n_head);
    let head_dim = ModelSpec::head_dim(n_embd, n_head, n_kv_head, get("head_dim").ok())?;
    let rope = &c["rope_parameters"];
    let rope_base = c["rope_theta"]
        .as_f64()
        .or(rope["rope_theta"].as_f64())
        .unwrap_or(10_000.0);
    Ok(ModelSpec {
        arch: model_type.into(),
        name: c["_name_or_path"].as_str().unwrap_or_default().into(),
        n_layer: get("num_hidden_layers")?,
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: get("intermediate_size")?,
        vocab_size: get("vocab_size")?,
        context_length: get("max_position_embeddings").unwrap_or(2048),
        rope_base: rope_base as f32,
        rms_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-5),
        rope_scaling: rope_scaling(c)?,
        rope_freq_factors: None,
    })
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (5): none, `default`, or `llama3`.
fn rope_scaling(c: &Value) -> std::result::Result<Option<RopeScaling>, String> {
    let r = if c["rope_scaling"].is_object() {
        &c["rope_scaling"]
    } else {
        &c["rope_parameters"]
    };
    let kind = r["rope_type"].as_str().or(r["type"].as_str()).unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let get = |k: &str| {
                r[k].as_f64()
                    .map(|v| v as f32)
                    .ok_or(format!("rope scaling llama3: {k} is missing"))
            };
            Ok(Some(RopeScaling {
                factor: get("factor")?,
                low_freq_factor: get("low_freq_factor")?,
                high_freq_factor: get("high_freq_factor")?,
                original_context: get("original_max_position_embeddings")? as usize,
            }))
        }
        other => Err(format!("rope scaling `{other}` is not supported (supported: llama3)")),
    }
}

/// The checkpoint name of a GGUF tensor name, and the heads to permute its rows over (q, k).
pub fn checkpoint_name(gguf: &str, spec: &ModelSpec) -> Option<(String, Option<usize>)> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some((n.into(), None));
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, what) = rest.split_once('.')?;
    let (part, heads) = match what {
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(spec.n_head)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(spec.n_kv_head)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_q.bias" => ("self_attn.q_proj.bias", Some(spec.n_head)),
        "attn_k.bias" => ("self_attn.k_proj.bias", Some(spec.n_kv_head)),
        "attn_v.bias" => ("self_attn.v_proj.bias", None),
        // Qwen3's RMSNorm over each head's q and k: its weights follow a head's rows.
        "attn_q_norm.weight" => ("self_attn.q_norm.weight", Some(1)),
        "attn_k_norm.weight" => ("self_attn.k_norm.weight", Some(1)),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{part}"), heads))
}

/// Rows of a q/k projection from the half-split rotary layout (each head's first half of
/// dimensions, then its second) to the interleaved one (pairs), as llama.cpp's converter does.
pub fn interleave_rotary_rows(w: &candle_core::Tensor, heads: usize) -> candle_core::Result<candle_core::Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// A q or k tensor (matrix, bias or per-head norm: its rows follow the heads) in the interleaved
/// rotary layout, as f32.
pub(super) fn interleaved(t: &candle_core::Tensor, heads: usize) -> candle_core::Result<QTensor> {
    let t = t.to_dtype(DType::F32)?;
    let rows = t.dim(0)?;
    let t = interleave_rotary_rows(&t.reshape((rows, ()))?, heads)?.reshape(t.shape())?;
    QTensor::quantize(&t, GgmlDType::F32)
}

impl HfFolder {
    pub(super) fn has_tensor(&self, gguf: &str, spec: &ModelSpec) -> bool {
        checkpoint_name(gguf, spec).is_some_and(|(n, _)| self.tensors.get(&n).is_ok())
    }

    /// Reads a tensor by its GGUF name, as f32 in the interleaved rotary layout.
    pub(super) fn tensor(&self, gguf: &str, spec: &ModelSpec, device: &Device) -> candle_core::Result<QTensor> {
        let (name, heads) = checkpoint_name(gguf, spec)
            .ok_or_else(|| candle_core::Error::Msg(format!("no checkpoint tensor for {gguf}")))?;
        let t = self.tensors.load(&name, device)?.to_dtype(DType::F32)?;
        match heads {
            Some(h) => interleaved(&t, h),
            None => QTensor::quantize(&t, GgmlDType::F32),
        }
    }

    pub(super) fn tensor_sizes(&self) -> Vec<TensorSize> {
        let tensors = self.tensors.tensors();
        tensors
            .iter()
            .map(|(_, v)| TensorSize {
                rank: v.shape().len(),
                elements: v.shape().iter().product::<usize>() as u64,
                bytes: v.data().len() as f64,
            })
            .collect()
    }

    /// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`.
    pub(super) fn chat_template(&self) -> Option<String> {
        if let Ok(t) = std::fs::read_to_string(self.dir.join("chat_template.jinja")) {
            return Some(t);
        }
        let tc = read_json(&self.dir.join("tokenizer_config.json")).ok()?;
        tc["chat_template"].as_str().map(String::from)
    }

    /// End-of-sequence ids from `generation_config.json` and `config.json` (`eos_token_id` may
    /// be one id or a list).
    pub(super) fn eos_ids(&self) -> Vec<u32> {
        let generation = read_json(&self.dir.join("generation_config.json")).unwrap_or(Value::Null);
        let mut ids = Vec::new();
        for v in [&generation["eos_token_id"], &self.config["eos_token_id"]] {
            let list = match v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            ids.extend(list.iter().filter_map(|x| x.as_u64()).map(|x| x as u32));
        }
        ids.dedup();
        ids
    }

    /// `bos_token` and `eos_token` of `tokenizer_config.json` (a string, or an object with
    /// `content`); empty where absent.
    pub(super) fn template_tokens(&self) -> (String, String) {
        let tc = read_json(&self.dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().or(v["content"].as_str()).unwrap_or_default().to_string();
        (text(&tc["bos_token"]), text(&tc["eos_token"]))
    }

    pub(super) fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn rotary_rows_interleave_per_head() {
        // 2 heads of 4 dims, one column: head h rows [a0 a1 b0 b1] -> [a0 b0 a1 b1].
        let w = Tensor::new(&[[0f32], [1.], [2.], [3.], [10.], [11.], [12.], [13.]], &Device::Cpu).unwrap();
        let out: Vec<f32> = interleave_rotary_rows(&w, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(out, [0., 2., 1., 3., 10., 12., 11., 13.]);
    }

    /// q/k biases are permuted with their matrix's rows: the projection through the loaded
    /// (interleaved) weight and bias is the checkpoint's projection, interleaved.
    #[test]
    fn biases_follow_their_rows() {
        let d = tempfile::tempdir().unwrap();
        let (gguf, folder) = (d.path().join("t.gguf"), d.path().join("qwen"));
        crate::testing::write_tiny_model(&gguf, 3).unwrap();
        crate::testing::write_hf_folder(&gguf, &folder, Some(0.5)).unwrap();
        let mut source = crate::source::ModelSource::open(&folder).unwrap();
        let raw = candle_core::safetensors::load(folder.join(SINGLE), &Device::Cpu).unwrap();
        let x = Tensor::arange(0f32, 64., &Device::Cpu)
            .unwrap()
            .reshape((64, 1))
            .unwrap();
        for (gguf_name, hf_name, heads) in [("attn_q", "q_proj", 4), ("attn_k", "k_proj", 2)] {
            let load = |s: &mut crate::source::ModelSource, n: &str| {
                let t = s.tensor(&format!("blk.1.{gguf_name}.{n}"), &Device::Cpu).unwrap();
                t.dequantize(&Device::Cpu).unwrap()
            };
            let (w, b) = (load(&mut source, "weight"), load(&mut source, "bias"));
            let ours = w
                .matmul(&x)
                .unwrap()
                .broadcast_add(&b.reshape(((), 1)).unwrap())
                .unwrap();
            let hf = |n: &str| raw[&format!("model.layers.1.self_attn.{hf_name}.{n}")].clone();
            let theirs = hf("weight")
                .matmul(&x)
                .unwrap()
                .broadcast_add(&hf("bias").reshape(((), 1)).unwrap());
            let theirs = interleave_rotary_rows(&theirs.unwrap(), heads).unwrap();
            let diff = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{gguf_name}: {diff}");
        }
    }

    /// Llama 3.2 1B's rotary frequencies: high ones kept, low ones divided by 32, a ramp between
    /// (values computed in Python from transformers' formula: f = 500000^-0.5, ramp 0.3037425).
    #[test]
    fn llama3_rope_scaling() {
        let c = serde_json::json!({"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32,
            "num_key_value_heads": 8, "num_hidden_layers": 16, "intermediate_size": 8192, "vocab_size": 128256,
            "max_position_embeddings": 131072, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}});
        let spec = spec_from_config(&c).unwrap();
        let scaled = spec.rope_inv_freq();
        let plain = ModelSpec {
            rope_scaling: None,
            rope_freq_factors: None,
            ..spec
        }
        .rope_inv_freq();
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[31] - plain[31] / 32.0).abs() < 1e-12);
        let ratio = scaled[16] / plain[16];
        assert!((ratio - 0.303_742_5).abs() < 1e-5, "{ratio}");
        assert!((plain[16] - 1.414_213_6e-3).abs() < 1e-8, "{}", plain[16]);
    }

    #[test]
    fn config_forms_of_transformers_4_and_5() {
        let base = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 300});
        let mut v4 = base.clone();
        v4["rope_theta"] = 100000.0.into();
        let mut v5 = base.clone();
        v5["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 100000.0});
        for c in [v4, v5] {
            let s = spec_from_config(&c).unwrap();
            assert_eq!((s.rope_base, s.head_dim, s.n_kv_head), (100000.0, 16, 2));
        }
        let mut scaled = base.clone();
        scaled["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 32.0});
        assert!(spec_from_config(&scaled)
            .unwrap_err()
            .contains("low_freq_factor is missing"));
        scaled["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        assert!(spec_from_config(&scaled)
            .unwrap_err()
            .contains("`yarn` is not supported"));
        let mut qwen = base.clone();
        qwen["model_type"] = "qwen2".into();
        assert_eq!(spec_from_config(&qwen).unwrap().arch, "qwen2");
        qwen["use_sliding_window"] = true.into();
        assert!(spec_from_config(&qwen).unwrap_err().contains("sliding-window"));
        let mut qwen3 = base.clone();
        qwen3["model_type"] = "qwen3".into();
        qwen3["head_dim"] = 128.into();
        let spec = spec_from_config(&qwen3).unwrap();
        assert_eq!(
            (spec.arch.as_str(), spec.head_dim),
            ("qwen3", 128),
            "heads wider than hidden / heads"
        );
        qwen3["head_dim"] = 7.into();
        assert!(spec_from_config(&qwen3)
            .unwrap_err()
            .contains("inconsistent attention shape"));
        let mut other = base;
        other["model_type"] = "mistral".into();
        let e = spec_from_config(&other).unwrap_err();
        assert!(
            e.contains("`mistral` is not supported: rftx runs llama, qwen2, qwen3"),
            "{e}"
        );
    }
}
