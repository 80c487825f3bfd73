//! Where a model comes from. A [`ModelSource`] is a model file opened once per command: its
//! architecture ([`ModelSpec`]), its tensor directory and tensors, its tokenizer and its chat
//! template. The engine loads weights from it, the planner reads sizes from it, the run
//! renders and tokenizes prompts with it, and none of them parses the file again.
//!
//! A model is a GGUF file ([`gguf`]) or a Hugging Face model folder ([`hf`]), possibly named by a
//! repository id in the local hub cache ([`hub`]); the default model is fetched by [`fetch`]. Nothing here knows of runs, configs or the engine.
pub mod fetch;
mod gguf;
pub mod hf;
pub mod hub;
mod pre_tokenizer;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::base::error::{Error, Result};
pub use tokenizer::GgufTokenizer;

/// Architecture hyper-parameters of a llama-family decoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSpec {
    pub arch: String,
    pub name: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    /// Llama 3.1/3.2's rotary frequency scaling (`rope_scaling.rope_type = "llama3"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// The same scaling as a GGUF file stores it (`rope_freqs.weight`, llama.cpp's converter):
    /// one divisor per pair of dimensions of a head.
    #[serde(skip)]
    pub rope_freq_factors: Option<Vec<f32>>,
}

/// `rope_type = "llama3"`: low frequencies divided by `factor`, high ones kept, a smooth ramp
/// between (transformers' `_compute_llama3_parameters`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_context: usize,
}

impl ModelSpec {
    /// The head size of an attention shape, or why the shape is unusable.
    /// The dimensions of a head: `explicit` where the model states it (Qwen3's heads are wider
    /// than `n_embd / n_head`), else `n_embd / n_head`; an inconsistent shape is an error.
    pub fn head_dim(
        n_embd: usize,
        n_head: usize,
        n_kv_head: usize,
        explicit: Option<usize>,
    ) -> std::result::Result<usize, String> {
        let bad = n_head == 0 || n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head);
        match explicit {
            _ if bad => {}
            Some(d) if d > 0 && d.is_multiple_of(2) => return Ok(d),
            None if n_embd.is_multiple_of(n_head) && (n_embd / n_head).is_multiple_of(2) => return Ok(n_embd / n_head),
            _ => {}
        }
        Err(format!(
            "inconsistent attention shape: {n_embd} dims, {n_head} heads, {n_kv_head} KV heads{}",
            explicit.map(|d| format!(", head_dim {d}")).unwrap_or_default()
        ))
    }

    /// Whether the file stores q and k rows in the half-split rotary layout of the checkpoint
    /// (Qwen's GGUF files, which llama.cpp rotates NEOX-style) rather than the interleaved one of
    /// llama GGUF files; rftx permutes them to the interleaved layout as it reads them.
    pub fn half_split_rotary(&self) -> bool {
        matches!(self.arch.as_str(), "qwen2" | "qwen3")
    }

    /// The rotary inverse frequencies, one per pair of dimensions of a head.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        let base = (0..half).map(|i| 1.0 / self.rope_base.powf(2.0 * i as f32 / self.head_dim as f32));
        if let Some(factors) = &self.rope_freq_factors {
            return base.zip(factors).map(|(f, d)| f / d).collect();
        }
        let Some(r) = self.rope_scaling else {
            return base.collect();
        };
        let old = r.original_context as f32;
        let (low_wavelen, high_wavelen) = (old / r.low_freq_factor, old / r.high_freq_factor);
        base.map(|f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / r.factor
            } else {
                let smooth = (old / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
                (1.0 - smooth) * f / r.factor + smooth * f
            }
        })
        .collect()
    }
}

/// Size of one stored tensor, without reading its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorSize {
    pub rank: usize,
    pub elements: u64,
    /// Bytes as stored in the file (quantised blocks included).
    pub bytes: f64,
}

/// A model file or folder, opened and its header parsed once.
pub struct ModelSource {
    path: PathBuf,
    spec: ModelSpec,
    format: Format,
}

enum Format {
    Gguf(gguf::GgufFile),
    Hf(hf::HfFolder),
}

impl ModelSource {
    /// Opens a llama-architecture GGUF file or model folder and reads its header; no tensor data
    /// is read.
    pub fn open(path: &Path) -> Result<Self> {
        let (format, spec) = match hf::is_folder(path) {
            true => hf::open(path).map(|(f, s)| (Format::Hf(f), s))?,
            false => gguf::open(path).map(|(f, s)| (Format::Gguf(f), s))?,
        };
        Ok(ModelSource {
            path: path.to_path_buf(),
            spec,
            format,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The chat template the model carries, if any.
    pub fn chat_template(&self) -> Option<String> {
        match &self.format {
            Format::Gguf(g) => gguf::chat_template(&g.content.metadata).map(String::from),
            Format::Hf(h) => h.chat_template(),
        }
    }

    /// The tokenizer (rebuilt from a GGUF file's metadata, or a folder's `tokenizer.json`); it
    /// must fit the model's vocabulary (a checkpoint may pad its embedding beyond it).
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let bad = |m: String| Error::input(&self.path, m);
        let tokenizer = match &self.format {
            Format::Gguf(g) => GgufTokenizer::from_gguf_metadata(&g.content.metadata),
            Format::Hf(h) => GgufTokenizer::from_file(&h.tokenizer_path(), &h.eos_ids()),
        }
        .map_err(bad)?;
        let fits = match self.format {
            Format::Gguf(_) => tokenizer.vocab_size == self.spec.vocab_size,
            Format::Hf(_) => tokenizer.vocab_size <= self.spec.vocab_size,
        };
        if !fits {
            return Err(bad(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.vocab_size, self.spec.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    /// The texts of the beginning- and end-of-sequence tokens (`bos_token`, `eos_token` of chat
    /// templates); empty where the model names none.
    pub fn template_tokens(&self) -> (String, String) {
        match &self.format {
            Format::Gguf(g) => {
                let md = &g.content.metadata;
                let text = |key: &str| {
                    let id = md.get(key).and_then(|v| v.to_u32().ok())? as usize;
                    match md.get("tokenizer.ggml.tokens") {
                        Some(candle_core::quantized::gguf_file::Value::Array(a)) => {
                            a.get(id).and_then(|v| v.to_string().ok()).cloned()
                        }
                        _ => None,
                    }
                };
                let bos = text("tokenizer.ggml.bos_token_id").unwrap_or_default();
                (bos, text("tokenizer.ggml.eos_token_id").unwrap_or_default())
            }
            Format::Hf(h) => h.template_tokens(),
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        match &self.format {
            Format::Gguf(g) => g.content.tensor_infos.contains_key(name),
            Format::Hf(h) => h.has_tensor(name, &self.spec),
        }
    }

    /// Whether the token embedding also serves as the output layer (no `output.weight`).
    pub fn tied_embeddings(&self) -> bool {
        !self.has_tensor("output.weight")
    }

    /// Sizes of every stored tensor, from the directory alone.
    pub fn tensor_sizes(&self) -> Vec<TensorSize> {
        let g = match &self.format {
            Format::Gguf(g) => g,
            Format::Hf(h) => return h.tensor_sizes(),
        };
        let size = |info: &candle_core::quantized::gguf_file::TensorInfo| {
            let elements = info.shape.elem_count() as u64;
            let dtype = info.ggml_dtype;
            TensorSize {
                rank: info.shape.rank(),
                elements,
                bytes: elements as f64 * dtype.type_size() as f64 / dtype.block_size() as f64,
            }
        };
        g.content.tensor_infos.values().map(size).collect()
    }

    /// Reads one tensor (GGUF name, e.g. `blk.0.attn_q.weight`) onto `device`; a folder's
    /// tensors come as f32.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let read = match &mut self.format {
            Format::Gguf(g) => match hf::checkpoint_name(name, &self.spec) {
                Some((_, Some(heads))) if self.spec.half_split_rotary() => g
                    .tensor(name, device)
                    .and_then(|t| hf::interleaved(&t.dequantize(device)?, heads)),
                _ => g.tensor(name, device),
            },
            Format::Hf(h) => h.tensor(name, &self.spec, device),
        };
        read.map_err(|e| {
            Error::input(
                &self.path,
                format!(
                    "cannot read tensor {name}: {} (truncated file?)",
                    crate::base::error::candle_message(&e)
                ),
            )
        })
    }
}
