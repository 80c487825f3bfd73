//! Linear layers and the token embedding, in the weight format chosen at load.
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use serde::{Deserialize, Serialize};

use super::cpu::q8::Q8Linear;

/// Weight format of the linear layers after loading (`model.weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightFormat {
    /// Keep the file's own formats (Q4_1 for the default model).
    #[serde(rename = "native")]
    Native,
    /// Re-quantise to Q8_0: rftx's own int8 kernel is the fastest on x86 CPUs.
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "f32")]
    F32,
}

impl WeightFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Native => "native",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::F16 => "f16",
            WeightFormat::F32 => "f32",
        }
    }

    /// The GGML type the matrices are converted to; `None` keeps the file's.
    fn ggml(self) -> Option<GgmlDType> {
        match self {
            WeightFormat::Native => None,
            WeightFormat::Q8_0 => Some(GgmlDType::Q8_0),
            WeightFormat::Q4_0 => Some(GgmlDType::Q4_0),
            WeightFormat::F16 => Some(GgmlDType::F16),
            WeightFormat::F32 => Some(GgmlDType::F32),
        }
    }

    /// Bytes per weight of this format as candle stores it (`None` for `native`): from candle's
    /// own block sizes, not literals.
    pub fn ggml_bytes_per_weight(self) -> Option<f64> {
        self.ggml().map(|t| t.type_size() as f64 / t.block_size() as f64)
    }
}

/// Converts a tensor (read on the host) to `to`.
pub fn convert(qt: QTensor, to: WeightFormat) -> candle_core::Result<QTensor> {
    let Some(target) = to.ggml() else { return Ok(qt) };
    if qt.dtype() == target {
        return Ok(qt);
    }
    QTensor::quantize(&qt.dequantize(&super::device::host())?, target)
}

/// A linear layer whose rows are computed independently of each other.
///
/// Q8_0 weights on AVX2 CPUs go through [`Q8Linear`], which computes every output row with the
/// same operations whatever the number of rows; other quantised formats through candle's kernels,
/// which do too. Dense f32/f16 weights go through gemm, whose kernels (and so roundings) change
/// with the number of rows: those are applied one row at a time, so that a sequence's logits
/// never depend on the batch it was decoded in.
pub(super) enum Linear {
    Q8(Arc<Q8Linear>),
    Candle { inner: QMatMul, row_by_row: bool },
}

impl Linear {
    pub(super) fn new(qt: Arc<QTensor>) -> candle_core::Result<Self> {
        if qt.dtype() == GgmlDType::Q8_0 && Q8Linear::supported() {
            return Ok(Linear::Q8(Arc::new(Q8Linear::from_qtensor(&qt)?)));
        }
        let inner = QMatMul::from_arc(qt)?;
        let row_by_row = !matches!(inner, QMatMul::QTensor(_));
        Ok(Linear::Candle { inner, row_by_row })
    }

    /// Bytes the layer holds (`stored`: those of the tensor it was made from).
    pub(super) fn bytes(&self, stored: u64) -> u64 {
        match self {
            Linear::Q8(q) => q.storage_bytes() as u64,
            Linear::Candle { .. } => stored,
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Q8(q) => q.forward(x),
            Linear::Candle { inner, row_by_row } => {
                let rows = x.dim(0)?;
                if *row_by_row && rows > 1 {
                    let outs = (0..rows)
                        .map(|i| inner.forward(&x.narrow(0, i, 1)?))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    return Tensor::cat(&outs, 0);
                }
                inner.forward(x)
            }
        }
    }
}

/// The token embedding: candle's quantised lookup, or the rows of the tied [`Q8Linear`].
pub(super) enum Embedding {
    Quantized(Arc<QTensor>),
    Q8(Arc<Q8Linear>),
}

impl Embedding {
    /// The embedding and the output layer: one matrix serves both when they are tied
    /// (`output` is `None`).
    pub(super) fn with_output(embed: QTensor, output: Option<Linear>) -> candle_core::Result<(Self, Linear)> {
        let embed = Arc::new(embed);
        Ok(match output {
            Some(out) => (Embedding::Quantized(embed), out),
            None => match Linear::new(embed.clone())? {
                Linear::Q8(q) => (Embedding::Q8(q.clone()), Linear::Q8(q)),
                other => (Embedding::Quantized(embed), other),
            },
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        match self {
            Embedding::Q8(q) => q.storage_bytes() as u64,
            Embedding::Quantized(q) => q.storage_size_in_bytes() as u64,
        }
    }

    pub(super) fn lookup(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(tokens),
            Embedding::Q8(q) => {
                let (b, l) = tokens.dims2()?;
                let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
                let rows = q.rows(&ids);
                let d = rows.len() / (b * l).max(1);
                Tensor::from_vec(rows, (b, l, d), tokens.device())
            }
        }
    }
}
