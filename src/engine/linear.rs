//! Linear layers and the token embedding, in the weight format chosen at load.
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use serde::{Deserialize, Serialize};

use super::cpu::q4::Q4Linear;
use super::cpu::q8::Q8Linear;
pub use super::cuda::gemm::DENSE_ROWS;
use super::cuda::gemm::{dense_forward, Gemm};

/// Weight format of the linear layers after loading (`model.weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightFormat {
    /// `q8_0` on the CPU, `f16` on a GPU.
    #[serde(rename = "auto")]
    Auto,
    /// Keep the file's own formats (Q4_1 for the default model).
    #[serde(rename = "native")]
    Native,
    /// Re-quantise to Q8_0: rftx's own int8 kernel is the fastest on x86 CPUs.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// The layers' matrices in Q4_1 through rftx's own 4-bit kernel (a Q4_1 file's own weights,
    /// bit for bit: the default model's), the token embedding and output layer in Q8_0 (the
    /// default model's own), as llama.cpp runs that file: two thirds of `q8_0`'s memory.
    #[serde(rename = "q4_1")]
    Q4_1,
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "f16")]
    F16,
    /// GPUs of compute capability 8.0 and later (not a T4).
    #[serde(rename = "bf16")]
    Bf16,
    #[serde(rename = "f32")]
    F32,
}

impl WeightFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Auto => "auto",
            WeightFormat::Native => "native",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_1 => "q4_1",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::F16 => "f16",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::F32 => "f32",
        }
    }

    /// `auto` made concrete for a device.
    pub fn resolve(self, gpu: bool) -> WeightFormat {
        match (self, gpu) {
            (WeightFormat::Auto, false) => WeightFormat::Q8_0,
            (WeightFormat::Auto, true) => WeightFormat::F16,
            (other, _) => other,
        }
    }

    /// The dtype of dense weights in this format (the GPU path); `None` for quantised formats.
    pub fn dense_dtype(self) -> Option<DType> {
        match self {
            WeightFormat::F16 => Some(DType::F16),
            WeightFormat::Bf16 => Some(DType::BF16),
            WeightFormat::F32 => Some(DType::F32),
            _ => None,
        }
    }

    /// The GGML type the matrices are converted to; `None` keeps the file's.
    fn ggml(self) -> Option<GgmlDType> {
        match self {
            WeightFormat::Native | WeightFormat::Auto => None,
            WeightFormat::Q8_0 => Some(GgmlDType::Q8_0),
            WeightFormat::Q4_1 => Some(GgmlDType::Q4_1),
            WeightFormat::Q4_0 => Some(GgmlDType::Q4_0),
            WeightFormat::F16 => Some(GgmlDType::F16),
            WeightFormat::Bf16 => Some(GgmlDType::BF16),
            WeightFormat::F32 => Some(GgmlDType::F32),
        }
    }

    /// The format of the token embedding (and of a tied output layer) when the layers are in
    /// this one: Q8_0 under `q4_1`, the same otherwise.
    pub fn embedding(self) -> WeightFormat {
        match self {
            WeightFormat::Q4_1 => WeightFormat::Q8_0,
            other => other,
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
///
/// Dense weights on a device (the GPU path) go through cuBLAS, whose kernels also change with
/// the shape: their inputs are cut into groups of [`DENSE_ROWS`] rows, the last group padded
/// with zeros, so that every GEMM has one shape whatever the batch.
pub(super) enum Linear {
    Q8(Arc<Q8Linear>),
    Q4(Q4Linear),
    Candle {
        inner: QMatMul,
        row_by_row: bool,
    },
    /// `(n, k)` weights in the model's dtype, on the model's device.
    Dense(Tensor),
    /// `(n, k)` weights on the fused GPU path: one GEMM for all rows ([`Gemm`]).
    Fused {
        w: Tensor,
        gemm: Arc<Gemm>,
    },
}

impl Linear {
    /// The layer for `qt`; Q4_1 goes to [`Q4Linear`] only under `model.weights = "q4_1"`
    /// (`native` keeps candle's kernel, whose samples earlier runs hold).
    pub(super) fn new(qt: Arc<QTensor>, format: WeightFormat) -> candle_core::Result<Self> {
        if qt.dtype() == GgmlDType::Q8_0 && Q8Linear::supported() {
            return Ok(Linear::Q8(Arc::new(Q8Linear::from_qtensor(&qt)?)));
        }
        if qt.dtype() == GgmlDType::Q4_1 && format == WeightFormat::Q4_1 && Q8Linear::supported() {
            return Ok(Linear::Q4(Q4Linear::from_qtensor(&qt)?));
        }
        let inner = QMatMul::from_arc(qt)?;
        let row_by_row = !matches!(inner, QMatMul::QTensor(_));
        Ok(Linear::Candle { inner, row_by_row })
    }

    pub(super) fn dense(w: Tensor) -> Self {
        Linear::Dense(w)
    }

    /// Bytes the layer holds (`stored`: those of the tensor it was made from).
    pub(super) fn bytes(&self, stored: u64) -> u64 {
        match self {
            Linear::Q8(q) => q.storage_bytes() as u64,
            Linear::Q4(q) => q.storage_bytes() as u64,
            Linear::Candle { .. } | Linear::Dense(_) | Linear::Fused { .. } => stored,
        }
    }

    /// `x · Wᵀ` as f32 values, row-major: the int8 layer hands its own over (the logits of a
    /// large batch are tens of MiB, which a tensor and a copy of it would hold twice).
    pub(super) fn forward_values(&self, x: &Tensor) -> candle_core::Result<Vec<f32>> {
        match self {
            Linear::Q8(q) => Ok(q.values(x)?.0),
            _ => self.forward(x)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>(),
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Q8(q) => q.forward(x),
            Linear::Q4(q) => q.forward(x),
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
            Linear::Dense(w) => dense_forward(w, x),
            Linear::Fused { w, gemm } => gemm.forward(w, x),
        }
    }
}

/// Matrices applied to one input (q, k, v; gate, up). rftx's int8 and 4-bit layers compute every
/// output column alone, so their rows are stacked into one layer whose outputs are the parts',
/// bit for bit, for one quantisation of the input and one pass over the thread pool; the fused
/// GPU path's dense layers are stacked into one GEMM (its own bits, the same at every batch);
/// other layers are applied one by one.
pub(super) enum Group {
    Stacked { w: Linear, sizes: Vec<usize> },
    Parts(Vec<Linear>),
}

impl Group {
    pub(super) fn new(parts: Vec<Linear>) -> candle_core::Result<Self> {
        let q8: Option<Vec<&Q8Linear>> = parts
            .iter()
            .map(|p| if let Linear::Q8(q) = p { Some(&**q) } else { None })
            .collect();
        let q4: Option<Vec<&Q4Linear>> = parts
            .iter()
            .map(|p| if let Linear::Q4(q) = p { Some(q) } else { None })
            .collect();
        let fused: Option<Vec<(&Tensor, &Arc<Gemm>)>> = parts
            .iter()
            .map(|p| {
                if let Linear::Fused { w, gemm } = p {
                    Some((w, gemm))
                } else {
                    None
                }
            })
            .collect();
        if let Some(f) = fused.filter(|f| !f.is_empty()) {
            let sizes = f
                .iter()
                .map(|(w, _)| w.dim(0))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let w = Tensor::cat(&f.iter().map(|(w, _)| *w).collect::<Vec<_>>(), 0)?;
            let gemm = f[0].1.clone();
            return Ok(Group::Stacked {
                w: Linear::Fused { w, gemm },
                sizes,
            });
        }
        let (w, sizes) = match (q8, q4) {
            (Some(q), _) => (
                Linear::Q8(Arc::new(Q8Linear::stack(&q)?)),
                q.iter().map(|p| p.outputs()).collect(),
            ),
            (_, Some(q)) => (
                Linear::Q4(Q4Linear::stack(&q)?),
                q.iter().map(|p| p.outputs()).collect(),
            ),
            _ => return Ok(Group::Parts(parts)),
        };
        Ok(Group::Stacked { w, sizes })
    }

    /// Each of the `N` parts' `x · Wᵀ`, in order.
    pub(super) fn forward<const N: usize>(&self, x: &Tensor) -> candle_core::Result<[Tensor; N]> {
        let outs: Vec<Tensor> = match self {
            Group::Stacked { w, sizes } => {
                let y = w.forward(x)?;
                let mut at = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        at += n;
                        y.narrow(candle_core::D::Minus1, at - n, n)
                    })
                    .collect::<candle_core::Result<_>>()?
            }
            Group::Parts(parts) => parts.iter().map(|p| p.forward(x)).collect::<candle_core::Result<_>>()?,
        };
        outs.try_into()
            .map_err(|o: Vec<Tensor>| candle_core::Error::Msg(format!("{} matrices where {N} were expected", o.len())))
    }
}

impl Group {
    /// The parts' outputs side by side, (…, Σ outputs): the stacked layer's output as it is.
    pub(super) fn forward_whole(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Group::Stacked { w, .. } => w.forward(x),
            Group::Parts(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&outs, candle_core::D::Minus1)
            }
        }
    }
}

/// The token embedding: candle's quantised lookup, an untied table in its own format passed
/// through the configured one, or the rows of the tied [`Q8Linear`].
pub(super) enum Embedding {
    Quantized(Arc<QTensor>),
    /// An untied table kept in the file's own format, smaller than the configured one: the rows
    /// looked up are quantised to `to` and back, block by block, which gives the values of
    /// converting the whole table first (conversion is block by block too) in less memory —
    /// 49 MiB less for a Q5_0 table of 151 936 × 896 under `q8_0`.
    Requantized {
        table: Arc<QTensor>,
        to: GgmlDType,
    },
    Q8(Arc<Q8Linear>),
    /// `(vocab, d)` in the model's dtype on its device.
    Dense(Tensor),
}

impl Embedding {
    /// The embedding and the output layer when they are one matrix (tied).
    pub(super) fn tied(embed: QTensor, format: WeightFormat) -> candle_core::Result<(Self, Linear)> {
        let embed = Arc::new(embed);
        Ok(match Linear::new(embed.clone(), format)? {
            Linear::Q8(q) => (Embedding::Q8(q.clone()), Linear::Q8(q)),
            other => (Embedding::Quantized(embed), other),
        })
    }

    /// An untied `table` as [`Embedding::Requantized`] where `format` would store it in more
    /// bytes; the table back otherwise, to be converted.
    pub(super) fn requantized(table: QTensor, format: WeightFormat) -> Result<Self, QTensor> {
        let per_weight = |t: GgmlDType| t.type_size() as f64 / t.block_size() as f64;
        let width = table.shape().dims().last().copied().unwrap_or(0);
        match format.ggml() {
            Some(to)
                if table.dtype() != to
                    && per_weight(table.dtype()) < per_weight(to)
                    && width % to.block_size() == 0 =>
            {
                Ok(Embedding::Requantized {
                    table: Arc::new(table),
                    to,
                })
            }
            _ => Err(table),
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        match self {
            Embedding::Q8(q) => q.storage_bytes() as u64,
            Embedding::Quantized(q) | Embedding::Requantized { table: q, .. } => q.storage_size_in_bytes() as u64,
            Embedding::Dense(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
        }
    }

    pub(super) fn lookup(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(tokens),
            Embedding::Requantized { table, to } => {
                let rows = table.embedding(tokens)?;
                let dims = rows.dims().to_vec();
                let d = *dims.last().unwrap_or(&0);
                let flat = rows.reshape((rows.elem_count() / d.max(1), d))?;
                QTensor::quantize(&flat, *to)?.dequantize(flat.device())?.reshape(dims)
            }
            Embedding::Q8(q) => {
                let (b, l) = tokens.dims2()?;
                let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
                let rows = q.rows(&ids);
                let d = rows.len() / (b * l).max(1);
                Tensor::from_vec(rows, (b, l, d), tokens.device())
            }
            Embedding::Dense(t) => {
                let (b, l) = tokens.dims2()?;
                t.embedding(&tokens.flatten_all()?)?.reshape((b, l, t.dim(1)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use candle_core::quantized::gguf_file;
    use candle_core::Device;

    use super::*;

    /// tests/data/quants.gguf, open, and the names of its tensors (not their expected values),
    /// sorted.
    fn fixture() -> (std::fs::File, gguf_file::Content, Vec<String>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quants.gguf");
        let mut file = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
        names.retain(|n| !n.ends_with(".expected"));
        names.sort();
        (file, content, names)
    }

    /// Every tensor type real GGUF files hold, read and converted to f32 as `model.weights =
    /// "f32"` loads it, equals gguf-py's dequantisation bit for bit. tests/data/quants.gguf
    /// (scripts/make_quant_fixture.py) holds blocks written by the `gguf` package's quantiser,
    /// rows of a real Q4_K_M file written by llama.cpp's, and random bits for each k-quant.
    #[test]
    fn dequantises_every_tensor_type_as_gguf_py_does() {
        let (mut file, content, names) = fixture();
        let mut types = BTreeSet::new();
        for name in &names {
            let qt = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            types.insert(format!("{:?}", qt.dtype()));
            let values = |t: QTensor| {
                let d = t.dequantize(&Device::Cpu).unwrap();
                d.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            let expected = values(
                content
                    .tensor(&mut file, &format!("{name}.expected"), &Device::Cpu)
                    .unwrap(),
            );
            let got = values(convert(qt, WeightFormat::F32).unwrap());
            assert_eq!(got.len(), expected.len(), "{name}");
            let differ = got.iter().zip(&expected).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(
                differ.map(|i| (i, got[i], expected[i])),
                None,
                "{name}: first value that differs"
            );
        }
        for t in ["F32", "F16", "BF16", "Q4_0", "Q5_0", "Q8_0", "Q4K", "Q5K", "Q6K"] {
            assert!(types.contains(t), "the fixture lacks {t}: {types:?}");
        }
    }

    /// An untied table kept in its own format gives, row for row, the bits of the table
    /// converted to Q8_0 first — for every smaller type of the fixture's real blocks — and is
    /// stored smaller; Q8_0 and wider tables are converted as before.
    #[test]
    fn requantized_rows_equal_the_converted_table() {
        let (mut file, content, names) = fixture();
        let mut kept = BTreeSet::new();
        for name in &names {
            let table = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            let Ok((rows, _)) = table.shape().dims2() else { continue };
            let dtype = table.dtype();
            let converted = convert(
                content.tensor(&mut file, name, &Device::Cpu).unwrap(),
                WeightFormat::Q8_0,
            );
            let embed = match Embedding::requantized(table, WeightFormat::Q8_0) {
                Ok(embed) => embed,
                Err(table) => {
                    assert!(
                        dtype.type_size() * 32 >= GgmlDType::Q8_0.type_size() * dtype.block_size(),
                        "{name}"
                    );
                    assert_eq!(table.dtype(), dtype);
                    continue;
                }
            };
            kept.insert(format!("{dtype:?}"));
            let reference = Embedding::Quantized(Arc::new(converted.unwrap()));
            assert!(embed.bytes() < reference.bytes(), "{name}");
            let ids: Vec<u32> = (0..rows as u32).rev().chain([0, 0]).collect();
            let tokens = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
            let bits = |e: &Embedding| {
                let v = e
                    .lookup(&tokens)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&embed), bits(&reference), "{name}");
        }
        for t in ["Q4_0", "Q5_0", "Q4K", "Q5K", "Q6K"] {
            assert!(kept.contains(t), "no {t} table was kept in its own format: {kept:?}");
        }
    }
}
