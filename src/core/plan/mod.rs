//! Memory planning: the peak of a run, predicted before it runs, broken down, and checked
//! against a device's capacity.
//!
//! Two layouts are modelled:
//! - **rftx**: one prompt at a time, its KV cache prefilled once and kept, read by `chunk_size`
//!   sequences that each hold only their generated positions (what `rftx run` does);
//! - **hf**: the seed's "before" — `prompts_per_batch` prompts × `oversample` sequences generated at
//!   once as Hugging Face `generate(num_return_sequences=…)` does: every sequence holds its own
//!   copy of its prompt (no shared prefix), and prefill materialises float32 logits for every
//!   prompt position, as transformers did before `logits_to_keep`.
//!
//! On the CPU the element size of activations and KV cache is 4 bytes (f32, what rftx computes
//! in); on GPU devices it is 2 (f16). The CPU model of the rftx layout follows the allocations of
//! `model.rs` one by one; its two calibration constants were measured on this machine (README).
//!
//! Modules: this one (architectures, devices, workloads), `predict` (the peak and the largest
//! settings that fit), `render` (the text `rftx plan` prints).
mod predict;
mod render;

use serde::Serialize;

use crate::engine::cpu::{q4::Q4Linear, q8::Q8Linear};
use crate::engine::{KvCacheFormat, WeightFormat};
use crate::source::{ModelSource, ModelSpec};
pub use predict::{largest, plan, predict, safe_capacity, Breakdown, Plan, MAX_PROMPTS, SAFETY_MARGIN};
pub use render::render;

pub(crate) const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;

/// Weights of the attention and MLP matrices of every layer.
fn layer_params(spec: &ModelSpec) -> u64 {
    let d = spec.n_embd as u64;
    let (q, kv) = (
        (spec.n_head * spec.head_dim) as u64,
        (spec.n_kv_head * spec.head_dim) as u64,
    );
    spec.n_layer as u64 * (2 * d * q + 2 * d * kv + 3 * d * spec.n_ff as u64)
}

/// Architecture and weight sizes of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arch {
    pub name: String,
    pub spec: ModelSpec,
    /// Weights of the 2-D matrices that are converted at load (attention, MLP, untied output).
    pub matrix_params: u64,
    /// Weights of the token embedding (also the output layer when tied).
    pub embed_params: u64,
    /// 1-D weights (norms), kept in f32.
    pub vector_params: u64,
    /// Bytes per matrix weight as stored in the file (`model.weights = "native"`).
    pub native_bytes_per_weight: f64,
}

impl Arch {
    fn from_spec(name: &str, spec: ModelSpec, tied: bool, native_bytes_per_weight: f64) -> Self {
        let d = spec.n_embd as u64;
        let embed = spec.vocab_size as u64 * d;
        Arch {
            name: name.to_string(),
            matrix_params: layer_params(&spec) + if tied { 0 } else { embed },
            embed_params: embed,
            vector_params: (2 * spec.n_layer as u64 + 1) * d,
            native_bytes_per_weight,
            spec,
        }
    }

    /// The architecture of an opened model file, from its header (no tensor data is read).
    pub fn from_source(source: &ModelSource) -> Self {
        let (mut matrix_params, mut matrix_bytes) = (0u64, 0f64);
        for t in source.tensor_sizes().into_iter().filter(|t| t.rank == 2) {
            matrix_params += t.elements;
            matrix_bytes += t.bytes;
        }
        let bpw = if matrix_params > 0 {
            matrix_bytes / matrix_params as f64
        } else {
            4.0
        };
        let name = source
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Arch::from_spec(&name, source.spec().clone(), source.tied_embeddings(), bpw)
    }

    /// Weight bytes after conversion to `format`; `cpu`: as rftx holds them on this machine
    /// (Q8_0 with f32 scales for its AVX2 kernel, 36 bytes per 32 weights; Q4_1 with f32
    /// scales and minima, 24). The layers' matrices are in `format`, the embedding and output
    /// layer in [`WeightFormat::embedding`]'s.
    pub fn weight_bytes(&self, format: WeightFormat, cpu: bool) -> u64 {
        let own = cpu && Q8Linear::supported();
        let bpw = |f: WeightFormat| match f {
            WeightFormat::Native => self.native_bytes_per_weight,
            WeightFormat::Q8_0 if own => Q8Linear::BYTES_PER_WEIGHT,
            WeightFormat::Q4_1 if own => Q4Linear::BYTES_PER_WEIGHT,
            other => other
                .ggml_bytes_per_weight()
                .expect("every format but native is a GGML type"),
        };
        let layers = layer_params(&self.spec);
        let embedding = self.matrix_params + self.embed_params - layers;
        (layers as f64 * bpw(format) + embedding as f64 * bpw(format.embedding())) as u64 + self.vector_params * 4
    }

    /// KV bytes of one position of one sequence at `elem` bytes per value.
    pub fn kv_bytes_per_position(&self, elem: u64) -> u64 {
        (self.spec.n_layer * 2 * self.spec.n_kv_head * self.spec.head_dim) as u64 * elem
    }
}

/// One published configuration (Hugging Face `config.json`), for planning and random weights
/// without the model on disk.
struct Preset {
    name: &'static str,
    arch: &'static str,
    layers: usize,
    d: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ff: usize,
    vocab: usize,
    context: usize,
    rope_base: f32,
    rms_eps: f64,
    /// Llama 3.2's rotary scaling (factor 32, low 1, high 4, original 8192).
    llama3_rope: bool,
}

#[rustfmt::skip]
const PRESETS: &[Preset] = &[
    Preset { name: "smollm2-135m", arch: "llama", layers: 30, d: 576, heads: 9, kv_heads: 3, head_dim: 64, ff: 1536, vocab: 49_152, context: 8192, rope_base: 100_000.0, rms_eps: 1e-5, llama3_rope: false },
    Preset { name: "smollm2-360m", arch: "llama", layers: 32, d: 960, heads: 15, kv_heads: 5, head_dim: 64, ff: 2560, vocab: 49_152, context: 8192, rope_base: 100_000.0, rms_eps: 1e-5, llama3_rope: false },
    Preset { name: "smollm2-1.7b", arch: "llama", layers: 24, d: 2048, heads: 32, kv_heads: 32, head_dim: 64, ff: 8192, vocab: 49_152, context: 8192, rope_base: 130_000.0, rms_eps: 1e-5, llama3_rope: false },
    Preset { name: "qwen3-0.6b", arch: "qwen3", layers: 28, d: 1024, heads: 16, kv_heads: 8, head_dim: 128, ff: 3072, vocab: 151_936, context: 40_960, rope_base: 1_000_000.0, rms_eps: 1e-6, llama3_rope: false },
    Preset { name: "qwen3-1.7b", arch: "qwen3", layers: 28, d: 2048, heads: 16, kv_heads: 8, head_dim: 128, ff: 6144, vocab: 151_936, context: 40_960, rope_base: 1_000_000.0, rms_eps: 1e-6, llama3_rope: false },
    Preset { name: "qwen2.5-0.5b", arch: "qwen2", layers: 24, d: 896, heads: 14, kv_heads: 2, head_dim: 64, ff: 4864, vocab: 151_936, context: 32_768, rope_base: 1_000_000.0, rms_eps: 1e-6, llama3_rope: false },
    Preset { name: "qwen2.5-1.5b", arch: "qwen2", layers: 28, d: 1536, heads: 12, kv_heads: 2, head_dim: 128, ff: 8960, vocab: 151_936, context: 32_768, rope_base: 1_000_000.0, rms_eps: 1e-6, llama3_rope: false },
    Preset { name: "llama-3.2-1b", arch: "llama", layers: 16, d: 2048, heads: 32, kv_heads: 8, head_dim: 64, ff: 8192, vocab: 128_256, context: 131_072, rope_base: 500_000.0, rms_eps: 1e-5, llama3_rope: true },
    Preset { name: "llama-3.2-3b", arch: "llama", layers: 28, d: 3072, heads: 24, kv_heads: 8, head_dim: 128, ff: 8192, vocab: 128_256, context: 131_072, rope_base: 500_000.0, rms_eps: 1e-5, llama3_rope: true },
];

/// Published configurations of SmolLM2, Qwen3, Qwen2.5 and Llama 3.2 (Hugging Face
/// config.json; all tie their embeddings), for planning and `model.init = "random"` without the
/// model on disk. Native weights are bf16, as published.
pub fn arch_preset(name: &str) -> Option<Arch> {
    let p = PRESETS.iter().find(|p| p.name == name.to_ascii_lowercase())?;
    let spec = ModelSpec {
        arch: p.arch.into(),
        name: p.name.into(),
        n_layer: p.layers,
        n_embd: p.d,
        n_head: p.heads,
        n_kv_head: p.kv_heads,
        head_dim: p.head_dim,
        n_ff: p.ff,
        vocab_size: p.vocab,
        context_length: p.context,
        rope_base: p.rope_base,
        rms_eps: p.rms_eps,
        rope_scaling: p.llama3_rope.then_some(crate::source::RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192,
        }),
        rope_freq_factors: None,
    };
    Some(Arch::from_spec(p.name, spec, true, 2.0))
}

pub const ARCH_PRESETS: &[&str] = &[
    "smollm2-135m",
    "smollm2-360m",
    "smollm2-1.7b",
    "qwen3-0.6b",
    "qwen3-1.7b",
    "qwen2.5-0.5b",
    "qwen2.5-1.5b",
    "llama-3.2-1b",
    "llama-3.2-3b",
];

/// A device and the memory usable on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub name: String,
    pub capacity_bytes: u64,
    pub gpu: bool,
}

/// Usable capacities, as the CUDA runtime reports them (the T4's is the seed's error message).
pub const DEVICE_PRESETS: &[(&str, f64)] = &[
    ("t4", 14.74),
    ("l4", 22.03),
    ("a10g", 22.07),
    ("a100-40g", 39.39),
    ("a100-80g", 79.15),
    ("h100", 79.11),
];

/// `t4`, `h100`, …, `cpu` (this machine's available memory) or a size such as `16GiB`.
pub fn device(spec: &str) -> Result<Device, String> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        let avail = crate::base::memory::mem_available().ok_or("cannot read MemAvailable from /proc/meminfo")?;
        return Ok(Device {
            name: "cpu".into(),
            capacity_bytes: avail,
            gpu: false,
        });
    }
    if let Some((n, gib)) = DEVICE_PRESETS.iter().find(|(n, _)| *n == s) {
        return Ok(Device {
            name: n.to_string(),
            capacity_bytes: (gib * GIB) as u64,
            gpu: true,
        });
    }
    match parse_bytes(&s) {
        Some(b) => Ok(Device {
            name: spec.trim().to_string(),
            capacity_bytes: b,
            gpu: false,
        }),
        None => {
            let names: Vec<&str> = DEVICE_PRESETS.iter().map(|(n, _)| *n).collect();
            Err(format!(
                "`{spec}` is neither a device ({}, cpu) nor a size such as 16GiB or 512MB",
                names.join(", ")
            ))
        }
    }
}

/// `123`, `512MB`, `1.5GiB`, `14.74 GiB`: decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0f64.powi(2),
        "gib" => 1024.0f64.powi(3),
        "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    (n >= 0.0 && n.is_finite()).then_some((n * mult) as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Rftx,
    Hf,
}

/// What a run puts in memory at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub layout: Layout,
    /// Longest prompt of the question set, in tokens.
    pub prompt_tokens: usize,
    /// Tokens every prompt starts with (system, few-shot turns), cached once per run (rftx).
    #[serde(default)]
    pub shared_prefix_tokens: usize,
    pub max_new_tokens: usize,
    pub oversample: usize,
    pub chunk_size: usize,
    /// Prompts generated together: each with its own prompt cache and `chunk_size` sequences
    /// (rftx), or `oversample` sequences each with a copy of the prompt (hf).
    pub prompts_per_batch: usize,
    pub weights: WeightFormat,
    /// `model.kv_cache`.
    pub kv_cache: KvCacheFormat,
}

impl Workload {
    /// The weight format held: `auto` as on the device (`q8_0` on the CPU, `f16` on a GPU);
    /// transformers has no GGUF kernels, so the hf layout holds f32 weights (its default
    /// dtype) unless f16 or bf16 is asked for.
    pub fn effective_weights(&self, gpu: bool) -> WeightFormat {
        match (self.layout, self.weights) {
            (Layout::Hf, f @ (WeightFormat::F16 | WeightFormat::Bf16)) => f,
            (Layout::Hf, _) => WeightFormat::F32,
            (Layout::Rftx, f) => f.resolve(gpu),
        }
    }

    /// Bytes per KV cache value next to activations of `activations` bytes: `model.kv_cache`'s
    /// in the rftx layout; transformers keeps its cache in the activations' dtype.
    pub fn kv_bytes_per_value(&self, activations: u64) -> u64 {
        match (self.layout, self.kv_cache) {
            (Layout::Rftx, KvCacheFormat::F32) => 4,
            (Layout::Rftx, KvCacheFormat::F16) => 2,
            _ => activations,
        }
    }

    /// Sequences in memory at once.
    pub fn sequences(&self) -> usize {
        match self.layout {
            Layout::Rftx => self.prompts_per_batch.max(1) * self.chunk_size.clamp(1, self.oversample.max(1)),
            Layout::Hf => self.prompts_per_batch.max(1) * self.oversample,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(layout: Layout, chunk: usize, new: usize) -> Workload {
        Workload {
            layout,
            prompt_tokens: 200,
            shared_prefix_tokens: 0,
            max_new_tokens: new,
            oversample: 15,
            chunk_size: chunk,
            prompts_per_batch: if layout == Layout::Hf { 8 } else { 1 },
            weights: WeightFormat::F16,
            kv_cache: KvCacheFormat::Auto,
        }
    }

    #[test]
    fn several_prompts_hold_their_own_caches_and_auto_leaves_a_margin() {
        let a = arch_preset("smollm2-135m").unwrap();
        let w = |prompts| Workload {
            prompts_per_batch: prompts,
            ..workload(Layout::Rftx, 3, 80)
        };
        let b = predict(&a, &w(4), false);
        // Up to eight open prompt caches of 200 positions, 4 × 3 sequences of 80.
        assert_eq!(b.kv_cache, (8 * 200 + 12 * 80) * 46_080);
        assert_eq!(w(4).sequences(), 12);
        assert!(predict(&a, &w(2), false).total < b.total);
        // The largest count that fits is exact, and the safe one keeps the margin free.
        assert_eq!(
            largest(&a, &w(1), false, b.total, 100, |w, n| w.prompts_per_batch = n),
            4
        );
        assert_eq!(
            largest(&a, &w(1), false, b.total - 1, 100, |w, n| w.prompts_per_batch = n),
            3
        );
        assert_eq!(largest(&a, &w(1), false, 1, 100, |w, n| w.prompts_per_batch = n), 0);
        let cap = predict(&a, &w(16), false).total;
        let dev = Device {
            name: "x".into(),
            capacity_bytes: cap,
            gpu: false,
        };
        let p = plan(a.clone(), w(1), dev);
        let safe = p.safe_prompts_per_batch;
        assert!((1..16).contains(&safe), "{safe}");
        assert!(predict(&a, &w(safe), false).total <= safe_capacity(cap));
        assert!(predict(&a, &w(safe + 1), false).total > safe_capacity(cap));
        assert!(render(&p).contains("safe prompts_per_batch"));
    }

    #[test]
    fn presets_have_the_published_sizes() {
        // Parameter counts of the published models (tied embeddings).
        let count = |n| {
            let a = arch_preset(n).unwrap();
            a.matrix_params + a.embed_params + a.vector_params
        };
        // The model cards' totals (Qwen's: 0.60B, 1.7B with 1.4B non-embedding, 0.49B, 1.54B;
        // Llama 3.2: 1.24B, 3.21B).
        for (name, published) in [
            ("smollm2-135m", 134.5e6),
            ("smollm2-360m", 361.8e6),
            ("smollm2-1.7b", 1.711e9),
            ("qwen3-0.6b", 0.596e9),
            ("qwen3-1.7b", 1.72e9),
            ("qwen2.5-0.5b", 0.494e9),
            ("qwen2.5-1.5b", 1.54e9),
            ("llama-3.2-1b", 1.236e9),
            ("llama-3.2-3b", 3.213e9),
        ] {
            let n = count(name) as f64;
            assert!((n / published - 1.0).abs() < 0.01, "{name}: {n}");
        }
        assert_eq!(ARCH_PRESETS.len(), 9);
        // Qwen3-1.7B: 28 layers × 2 × 8 KV heads × 128 dims (heads wider than 2048 / 16) × 2 bytes.
        assert_eq!(arch_preset("qwen3-1.7b").unwrap().kv_bytes_per_position(2), 114_688);
        // 135M: 30 layers × 2 × 3 KV heads × 64 dims × 4 bytes.
        assert_eq!(arch_preset("smollm2-135m").unwrap().kv_bytes_per_position(4), 46_080);
    }

    #[test]
    fn sizes_and_devices_parse() {
        assert_eq!(parse_bytes("16GiB"), Some(16 << 30));
        assert_eq!(parse_bytes("512 MB"), Some(512_000_000));
        assert_eq!(parse_bytes("1234"), Some(1234));
        assert_eq!(parse_bytes("1.5kib"), Some(1536));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(device("T4").unwrap().capacity_bytes, (14.74 * GIB) as u64);
        assert!(device("cpu").unwrap().capacity_bytes > 1 << 28);
        assert!(device("tpu").unwrap_err().contains("t4, l4"));
    }

    #[test]
    fn the_seeds_story_before_oom_after_fits_on_a_t4() {
        let a = arch_preset("smollm2-1.7b").unwrap();
        let t4 = device("t4").unwrap();
        let before = plan(a.clone(), workload(Layout::Hf, 15, 120), t4.clone());
        assert!(!before.fits, "{}", render(&before));
        let after = plan(a, workload(Layout::Rftx, 3, 80), t4);
        assert!(after.fits, "{}", render(&after));
        assert_eq!(after.max_chunk_size, 15);
        assert!(after.max_new_tokens_at_max_chunk > 80);
        assert!(render(&before).contains("OUT OF MEMORY"));
    }

    #[test]
    fn peaks_grow_with_chunk_and_tokens_and_limits_are_tight() {
        let a = arch_preset("smollm2-135m").unwrap();
        let p = |c, n| predict(&a, &workload(Layout::Rftx, c, n), false).total;
        assert!(p(1, 80) < p(3, 80) && p(3, 80) < p(15, 80) && p(3, 80) < p(3, 200));
        // The KV cache of 3 sequences and the shared prompt is exactly 200 + 3 × 80 positions.
        let b = predict(&a, &workload(Layout::Rftx, 3, 80), false);
        assert_eq!(b.kv_cache, (200 + 3 * 80) * 46_080);
        assert_eq!(b.kv_per_sequence, 80 * 46_080);
        // A capacity just below the 5-chunk peak allows exactly 4.
        let dev = Device {
            name: "x".into(),
            capacity_bytes: p(5, 80) - 1,
            gpu: false,
        };
        let pl = plan(a.clone(), workload(Layout::Rftx, 15, 80), dev);
        assert_eq!(pl.max_chunk_size, 4);
        assert!(!pl.fits);
        let at = workload(Layout::Rftx, 4, pl.max_new_tokens_at_max_chunk);
        assert!(predict(&a, &at, false).total <= pl.capacity_bytes);
        let over = workload(Layout::Rftx, 4, pl.max_new_tokens_at_max_chunk + 1);
        assert!(predict(&a, &over, false).total > pl.capacity_bytes);
    }
}
