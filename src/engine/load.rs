//! Loading: the weights of a model file (or random ones of a preset's shape) read, converted to
//! the configured format and put on the device as a [`Model`].
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use super::cuda::gemm::Gemm;
use super::device::{self, allocation};
use super::linear::{convert, Embedding, Group, Linear, WeightFormat};
use super::{rope_tables, GpuKernels, GpuOptions, Kernels, Layer, Model, MAX_ROPE_POSITIONS};
use crate::base::error::{Error, Result, Site};
use crate::source::{ModelSource, ModelSpec};

/// Where the weights come from.
pub enum Weights<'a> {
    /// A model file.
    File(&'a mut ModelSource),
    /// Random weights of `spec`'s shape, drawn from `seed` (normal, standard deviation 0.02, as
    /// transformers initialises; norms 1), the token embedding tied to the output layer. On a
    /// GPU they are drawn on the device itself (curand) unless `host`; on the CPU (and with
    /// `host`) from rftx's own RNG, so that a GPU and the CPU get the same weights.
    Random { spec: ModelSpec, seed: u64, host: bool },
}

impl Weights<'_> {
    fn spec(&self) -> ModelSpec {
        match self {
            Weights::File(source) => source.spec().clone(),
            Weights::Random { spec, .. } => spec.clone(),
        }
    }

    fn tied(&self) -> bool {
        match self {
            Weights::File(source) => source.tied_embeddings(),
            Weights::Random { .. } => true,
        }
    }
}

/// Standard deviation of random weights.
const RANDOM_STD: f64 = 0.02;

/// Reads (or draws) tensors, converts the matrices and keeps count of formats and bytes.
struct Loader<'a, 'b> {
    weights: &'a mut Weights<'b>,
    format: WeightFormat,
    spec: ModelSpec,
    device: Device,
    /// Dense weights on the device (GPU) instead of candle's quantised CPU layers.
    dense: Option<DType>,
    /// The fused path's GEMM: dense layers become [`Linear::Fused`].
    gemm: Option<Arc<Gemm>>,
    rng: crate::base::sampling::Rng,
    formats: HashMap<String, usize>,
    weight_bytes: u64,
}

impl Loader<'_, '_> {
    /// GGUF tensor name → shape (rows, columns) of a matrix, or (n,) of a norm.
    fn shape(&self, name: &str) -> Vec<usize> {
        let s = &self.spec;
        let (d, q, kv) = (s.n_embd, s.n_head * s.head_dim, s.n_kv_head * s.head_dim);
        let what = name.trim_end_matches(".weight").rsplit('.').next().unwrap_or("");
        match what {
            "token_embd" | "output" => vec![s.vocab_size, d],
            "attn_q" => vec![q, d],
            "attn_k" | "attn_v" => vec![kv, d],
            "attn_output" => vec![d, q],
            "attn_q_norm" | "attn_k_norm" => vec![s.head_dim],
            "ffn_gate" | "ffn_up" => vec![s.n_ff, d],
            "ffn_down" => vec![d, s.n_ff],
            _ => vec![d],
        }
    }

    /// A tensor as f32 on the host (file or random), for the CPU path and for conversion.
    fn read(&mut self, name: &str) -> Result<QTensor> {
        let shape = self.shape(name);
        match &mut *self.weights {
            Weights::File(source) => source.tensor(name, &device::host()),
            Weights::Random { .. } => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = if shape.len() == 1 {
                    vec![1.0; n]
                } else {
                    (0..n).map(|_| (self.rng.next_gaussian() * RANDOM_STD) as f32).collect()
                };
                let t = Tensor::from_vec(values, shape, &device::host())?;
                Ok(QTensor::quantize(&t, candle_core::quantized::GgmlDType::F32)?)
            }
        }
    }

    /// A dense tensor on the device in `dtype`: random weights are drawn there directly.
    fn dense(&mut self, name: &str, dtype: DType) -> Result<Tensor> {
        let shape = self.shape(name);
        let t = match &self.weights {
            Weights::Random { host: false, .. } if !self.device.is_cpu() => {
                if shape.len() == 1 {
                    Tensor::ones(shape, DType::F32, &self.device)?
                } else {
                    Tensor::randn(0f32, RANDOM_STD as f32, shape, &self.device)?
                }
            }
            _ => self.read(name)?.dequantize(&device::host())?.to_device(&self.device)?,
        };
        Ok(t.to_dtype(dtype)?)
    }

    fn converted(&mut self, name: &str, format: WeightFormat) -> Result<QTensor> {
        let qt = self.read(name)?;
        self.convert_named(name, qt, format)
    }

    /// `qt`, the tensor `name`, converted to `format`; an error names both.
    fn convert_named(&self, name: &str, qt: QTensor, format: WeightFormat) -> Result<QTensor> {
        convert(qt, format).map_err(|e| {
            let message = format!(
                "cannot convert {name} to {}: {}",
                format.as_str(),
                crate::base::error::candle_message(&e)
            );
            match &*self.weights {
                Weights::File(source) => Error::input(source.path(), message),
                Weights::Random { .. } => Error::Run(message),
            }
        })
    }

    /// A matrix of a layer, converted to the configured format, as a linear layer.
    fn linear(&mut self, name: &str) -> Result<Linear> {
        self.linear_as(name, self.format)
    }

    /// A matrix converted to `format` (the dense path ignores it), as a linear layer.
    fn linear_as(&mut self, name: &str, format: WeightFormat) -> Result<Linear> {
        if let Some(dtype) = self.dense {
            let w = self.dense(name, dtype)?;
            *self.formats.entry(self.format.as_str().to_string()).or_default() += 1;
            self.weight_bytes += (w.elem_count() * dtype.size_in_bytes()) as u64;
            return Ok(self.dense_linear(w));
        }
        let qt = self.converted(name, format)?;
        let (dtype, stored) = (qt.dtype(), qt.storage_size_in_bytes() as u64);
        let linear = Linear::new(Arc::new(qt), format)?;
        *self.formats.entry(format!("{dtype:?}").to_lowercase()).or_default() += 1;
        self.weight_bytes += linear.bytes(stored);
        Ok(linear)
    }

    fn dense_linear(&self, w: Tensor) -> Linear {
        match &self.gemm {
            Some(gemm) => Linear::Fused { w, gemm: gemm.clone() },
            None => Linear::dense(w),
        }
    }

    /// The token embedding and the output layer (the same matrix when they are tied).
    fn embedding(&mut self, tied: bool) -> Result<(Embedding, Linear)> {
        if let Some(dtype) = self.dense {
            let embed = self.dense("token_embd.weight", dtype)?;
            let output = if tied {
                self.dense_linear(embed.clone())
            } else {
                self.linear("output.weight")?
            };
            self.weight_bytes += (embed.elem_count() * dtype.size_in_bytes()) as u64;
            return Ok((Embedding::Dense(embed), output));
        }
        let (name, format) = ("token_embd.weight", self.format.embedding());
        let table = self.read(name)?;
        let (embed, lm_head) = if tied {
            Embedding::tied(self.convert_named(name, table, format)?, format)?
        } else {
            let embed = match Embedding::requantized(table, format) {
                Ok(embed) => embed,
                Err(table) => Embedding::Quantized(Arc::new(self.convert_named(name, table, format)?)),
            };
            (embed, self.linear_as("output.weight", format)?)
        };
        self.weight_bytes += embed.bytes();
        Ok((embed, lm_head))
    }

    /// A 1-D weight (a norm), in the model's dtype on the device.
    fn vector(&mut self, name: &str, dtype: DType) -> Result<Tensor> {
        if self.dense.is_some() {
            return self.dense(name, dtype);
        }
        Ok(self.read(name)?.dequantize(&self.device)?.to_dtype(dtype)?)
    }

    /// The q, k, v biases of layer `i`, if the model has them.
    fn biases(&mut self, i: usize, dtype: DType) -> Result<Option<[Tensor; 3]>> {
        let b = |what: &str| format!("blk.{i}.{what}.bias");
        let present = match &*self.weights {
            Weights::File(source) => source.has_tensor(&b("attn_q")),
            Weights::Random { .. } => false,
        };
        if !present {
            return Ok(None);
        }
        Ok(Some([
            self.vector(&b("attn_q"), dtype)?,
            self.vector(&b("attn_k"), dtype)?,
            self.vector(&b("attn_v"), dtype)?,
        ]))
    }

    /// The per-head RMSNorm weights of q and k of layer `i` (qwen3), if the model has them.
    fn qk_norm(&mut self, i: usize, dtype: DType) -> Result<Option<[Tensor; 2]>> {
        let n = |what: &str| format!("blk.{i}.{what}.weight");
        let present = match &*self.weights {
            Weights::File(source) => source.has_tensor(&n("attn_q_norm")),
            Weights::Random { spec, .. } => spec.arch == "qwen3",
        };
        if !present {
            return Ok(None);
        }
        Ok(Some([
            self.vector(&n("attn_q_norm"), dtype)?,
            self.vector(&n("attn_k_norm"), dtype)?,
        ]))
    }

    fn layer(&mut self, i: usize, dtype: DType) -> Result<Layer> {
        let n = |what: &str| format!("blk.{i}.{what}.weight");
        let bias = self.biases(i, dtype)?;
        let qkv_bias = match (&bias, &self.gemm) {
            (Some(b), Some(_)) => Some(Tensor::cat(b, 0)?),
            _ => None,
        };
        Ok(Layer {
            attn_norm: self.vector(&n("attn_norm"), dtype)?,
            qkv: Group::new(vec![
                self.linear(&n("attn_q"))?,
                self.linear(&n("attn_k"))?,
                self.linear(&n("attn_v"))?,
            ])?,
            bias,
            qk_norm: self.qk_norm(i, dtype)?,
            wo: self.linear(&n("attn_output"))?,
            ffn_norm: self.vector(&n("ffn_norm"), dtype)?,
            gate_up: Group::new(vec![self.linear(&n("ffn_gate"))?, self.linear(&n("ffn_up"))?])?,
            w_down: self.linear(&n("ffn_down"))?,
            qkv_bias,
        })
    }
}

/// The dense weights' dtype (`None`: the CPU's quantised layers), the activations' dtype and
/// the kernels, for `format` on the CPU (`gpu` is `None`) or with the GPU's kernels.
fn kernels_for(format: WeightFormat, gpu: Option<GpuOptions>) -> Result<(Option<DType>, DType, Kernels)> {
    let Some(gpu) = gpu else {
        return Ok((None, DType::F32, Kernels::Cpu));
    };
    let dense = format.dense_dtype().ok_or_else(|| {
        Error::Run(format!(
            "model.weights = {}: GPU weights are f16, bf16 or f32",
            format.as_str()
        ))
    })?;
    let kernels = match gpu.kernels {
        GpuKernels::Fused => Kernels::Fused,
        GpuKernels::Candle => Kernels::Device,
    };
    Ok((Some(dense), dense, kernels))
}

impl Model {
    /// Loads the model of `source` onto `device`, its matrices converted to `format`.
    pub fn load(
        source: &mut ModelSource,
        format: WeightFormat,
        device: &Device,
        gpu: Option<GpuOptions>,
    ) -> Result<Model> {
        Self::build(&mut Weights::File(source), format, device, gpu)
    }

    /// Builds the model from `weights` on `device`. On the CPU, matrices are converted to
    /// `format` (quantised or dense, through rftx's and candle's CPU kernels); on a GPU they are
    /// dense tensors of the format's dtype (`f16`, `bf16` or `f32`), run by the kernels `gpu`
    /// names (its default when `None`). `gpu` on the CPU runs the GPU's kernels there (tests).
    /// Running out of device memory is [`Site::Weights`]'s out-of-memory.
    pub fn build(
        weights: &mut Weights,
        format: WeightFormat,
        device: &Device,
        gpu: Option<GpuOptions>,
    ) -> Result<Model> {
        allocation(Site::Weights, 1, || Self::build_on(weights, format, device, gpu))
    }

    fn build_on(
        weights: &mut Weights,
        format: WeightFormat,
        device: &Device,
        gpu: Option<GpuOptions>,
    ) -> Result<Model> {
        let format = format.resolve(!device.is_cpu());
        let gpu = match (device.is_cpu(), gpu) {
            (true, None) => None,
            (_, gpu) => Some(gpu.unwrap_or_default()),
        };
        let (dense, dtype, kernels) = kernels_for(format, gpu)?;
        let spec = weights.spec();
        let gemm = match (kernels, gpu) {
            (Kernels::Fused, Some(g)) => Some(Arc::new(Gemm::new(device, g.batch_invariant)?)),
            _ => None,
        };
        let tied = weights.tied();
        let seed = match weights {
            Weights::Random { seed, .. } => *seed,
            Weights::File(_) => 0,
        };
        if !device.is_cpu() {
            device.set_seed(seed)?;
        }
        let mut loader = Loader {
            weights,
            format,
            spec: spec.clone(),
            device: device.clone(),
            dense,
            gemm,
            rng: crate::base::sampling::Rng::from_seed(seed),
            formats: HashMap::new(),
            weight_bytes: 0,
        };
        let (embed, lm_head) = loader.embedding(tied)?;
        let norm = loader.vector("output_norm.weight", dtype)?;
        let layers = (0..spec.n_layer)
            .map(|i| loader.layer(i, dtype))
            .collect::<Result<Vec<_>>>()?;
        let weight_bytes = loader.weight_bytes;
        let mut formats: Vec<(String, usize)> = loader.formats.into_iter().collect();
        formats.sort();
        let (cos, sin) = rope_tables(&spec, MAX_ROPE_POSITIONS.min(spec.context_length), device)?;
        let rope_f32 = (kernels == Kernels::Fused).then(|| (cos.clone(), sin.clone()));
        if kernels == Kernels::Fused && layers.iter().any(|l| l.qk_norm.is_some()) {
            return Err(Error::Run(
                "model.gpu_kernels = \"fused\" does not run qwen3's per-head q/k norms yet: use gpu_kernels = \"candle\"".into(),
            ));
        }
        Ok(Model {
            spec,
            embed,
            layers,
            norm,
            lm_head,
            cos: cos.to_dtype(dtype)?,
            sin: sin.to_dtype(dtype)?,
            device: device.clone(),
            dtype,
            kv_dtype: dtype,
            kernels,
            rope_f32,
            weight_bytes,
            formats,
        })
    }
}
