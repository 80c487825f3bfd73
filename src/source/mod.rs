//! Where a model comes from. A [`ModelSource`] is a model file opened once per command: its
//! architecture ([`ModelSpec`]), its tensor directory and tensors, its tokenizer and its chat
//! template. The engine loads weights from it, the planner reads sizes from it, the run
//! renders and tokenizes prompts with it, and none of them parses the file again.
//!
//! Only GGUF files exist yet ([`gguf`]); the default model is fetched by [`fetch`]. Nothing here
//! knows of runs, configs or the engine.
pub mod fetch;
mod gguf;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::error::{Error, Result};
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
}

/// Size of one stored tensor, without reading its data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorSize {
    pub rank: usize,
    pub elements: u64,
    /// Bytes as stored in the file (quantised blocks included).
    pub bytes: f64,
}

/// A model file, opened and its header parsed once.
pub struct ModelSource {
    path: PathBuf,
    spec: ModelSpec,
    gguf: gguf::GgufFile,
}

impl ModelSource {
    /// Opens a llama-architecture GGUF file and reads its header; no tensor data is read.
    pub fn open(path: &Path) -> Result<Self> {
        let (gguf, spec) = gguf::open(path)?;
        Ok(ModelSource {
            path: path.to_path_buf(),
            spec,
            gguf,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The chat template the file carries, if any.
    pub fn chat_template(&self) -> Option<&str> {
        gguf::chat_template(&self.gguf.content.metadata)
    }

    /// The tokenizer, rebuilt from the file's metadata; its vocabulary must match the model's.
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let bad = |m: String| Error::input(&self.path, m);
        let tokenizer = GgufTokenizer::from_gguf_metadata(&self.gguf.content.metadata).map_err(bad)?;
        if tokenizer.vocab_size != self.spec.vocab_size {
            return Err(bad(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.vocab_size, self.spec.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.gguf.content.tensor_infos.contains_key(name)
    }

    /// Whether the token embedding also serves as the output layer (no `output.weight`).
    pub fn tied_embeddings(&self) -> bool {
        !self.has_tensor("output.weight")
    }

    /// Sizes of every stored tensor, from the directory alone.
    pub fn tensor_sizes(&self) -> impl Iterator<Item = TensorSize> + '_ {
        self.gguf.content.tensor_infos.values().map(|info| {
            let elements = info.shape.elem_count() as u64;
            let dtype = info.ggml_dtype;
            TensorSize {
                rank: info.shape.rank(),
                elements,
                bytes: elements as f64 * dtype.type_size() as f64 / dtype.block_size() as f64,
            }
        })
    }

    /// Reads one tensor (GGUF name, e.g. `blk.0.attn_q.weight`) onto `device`.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.gguf.tensor(name, device).map_err(|e| {
            Error::input(
                &self.path,
                format!(
                    "cannot read tensor {name}: {} (truncated file?)",
                    crate::error::candle_message(&e)
                ),
            )
        })
    }
}
