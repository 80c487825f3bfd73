//! The predicted peak of a workload, by component, and the largest settings that fit a device.
use serde::Serialize;

use super::{Arch, Device, Layout, Workload, MIB};
use crate::engine::cpu::q8::Q8Linear;
use crate::engine::WeightFormat;

/// Heap that rftx holds besides weights, cache and activations: the process baseline plus the
/// tokenizer's tables per vocabulary entry. Calibrated with `rftx plan --check` on SmolLM2-135M
/// (49 152 tokens, 48 900 merges): about 7 MiB together.
const CPU_BASE_BYTES: u64 = 2 * MIB;
const TOKENIZER_BYTES_PER_TOKEN: u64 = 110;
/// What a CUDA process holds on the GPU before any model: the CUDA context, cuBLAS workspaces
/// and the first allocator blocks, less what torch reserved for tensors. Measured with
/// `bench/gpu_overhead.sh` on an H200 (torch 2.11, CUDA 13.0): 621 MiB context, 685 MiB after a
/// first f16 matmul. Smaller GPUs load smaller contexts, so on a T4 the plan errs on the safe side.
const GPU_RUNTIME_BYTES: u64 = 685 * MIB;

/// Predicted peak, by component (bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// Format the weights are held in (the hf layout holds f32 or f16).
    pub weight_format: &'static str,
    pub weights: u64,
    pub kv_per_sequence: u64,
    /// KV of all sequences at once, the shared prompt copy included (rftx layout).
    pub kv_cache: u64,
    /// Transient activations at the peak (prefill or decode, whichever is larger), logits excluded.
    pub activations: u64,
    pub logits: u64,
    /// Runtime, tokenizer, rotary tables, quantisation scratch.
    pub overhead: u64,
    pub total: u64,
    /// Which phase holds the peak: `prefill` or `decode`.
    pub phase: &'static str,
}

/// Predicts the peak of `w` for `arch`; `gpu` selects 2-byte activations and the GPU runtime.
pub fn predict(arch: &Arch, w: &Workload, gpu: bool) -> Breakdown {
    let s = &arch.spec;
    let format = w.effective_weights(gpu);
    let elem: u64 = if gpu && format != WeightFormat::F32 { 2 } else { 4 };
    let (d, ff, vocab) = (s.n_embd as u64, s.n_ff as u64, s.vocab_size as u64);
    let (heads, kv_dim) = (s.n_head as u64, (s.n_kv_head * s.head_dim) as u64);
    let l = w.prompt_tokens as u64;
    let cap = (w.prompt_tokens + w.max_new_tokens) as u64;
    let b = w.sequences() as u64;
    let weights = arch.weight_bytes(format, !gpu);
    let kv_pos = arch.kv_bytes_per_position(w.kv_bytes_per_value(elem));
    // What one more sequence adds: in the rftx layout its generated positions only (the prompt
    // is shared); in the hf layout the prompt too.
    let kv_seq = match w.layout {
        Layout::Rftx => kv_pos * w.max_new_tokens as u64,
        Layout::Hf => kv_pos * cap,
    };
    let overhead = overhead_bytes(arch, format, gpu, l.max(b) * ff.max(d));

    // One layer's transients at a time: the residual stream and its norm, q/k/v (and their
    // rotated copies), attention output, the three MLP intermediates; attention scores in three
    // copies (scores, scaled, softmax) plus the causal mask.
    let layer_act = |rows: u64, keys: u64, mask: bool| {
        rows * (4 * d + 3 * kv_dim + 2 * d + 3 * ff) * elem
            + 3 * rows * heads * keys * elem
            + if mask {
                rows * heads / (s.n_kv_head as u64).max(1) * keys * elem
            } else {
                0
            }
    };
    let (kv_cache, activations, logits, phase) = match w.layout {
        Layout::Rftx => {
            // The run's shared-prefix cache and every open prompt prefilled at batch 1 into a
            // cache of its own, which its sequences read; each sequence's cache holds only its
            // generated positions. With several prompts per batch, a question joins as soon as
            // a chunk's worth of rows is free, so up to twice as many prompts are open.
            let per_batch = w.prompts_per_batch.max(1) as u64;
            let open = if per_batch > 1 { 2 * per_batch } else { 1 };
            let prefix = kv_pos * (open * l + w.shared_prefix_tokens as u64);
            // Only the part of the prompt after the shared prefix is computed, while the rows
            // of the other questions (all but a chunk's worth) hold their caches.
            let rows = l.saturating_sub(w.shared_prefix_tokens as u64).max(1);
            let others = (per_batch - 1) * (b / per_batch) * kv_seq;
            let prefill = (prefix + others, layer_act(rows, l, true), 2 * vocab * 4);
            // On a GPU decode attention is tensor ops in f32 (engine/cuda.rs): its products of
            // queries and keys (or weights and values) hold every position of every head.
            let gpu_attention = if gpu {
                b * heads * cap * s.head_dim as u64 * 4
            } else {
                0
            };
            let decode = (
                prefix + b * kv_seq,
                layer_act(b, cap, false) + gpu_attention,
                2 * b * vocab * 4 + vocab * 8,
            );
            larger(prefill, decode)
        }
        Layout::Hf => {
            // Prompts repeated per sequence; float32 logits for every prompt position at prefill.
            let prefill = (b * kv_pos * l, layer_act(b * l, l, true), b * l * vocab * 4);
            let decode = (b * kv_seq, layer_act(b, cap, false), 2 * b * vocab * 4);
            larger(prefill, decode)
        }
    };
    Breakdown {
        weight_format: format.as_str(),
        weights,
        kv_per_sequence: kv_seq,
        kv_cache,
        activations,
        logits,
        overhead,
        total: weights + kv_cache + activations + logits + overhead,
        phase,
    }
}

/// What the process holds besides weights, KV cache and activations: the runtime (CPU
/// baseline and tokenizer, or the CUDA context), the rotary tables and, for quantised matmuls
/// through candle, the quantised copy of the largest matmul input (`largest_input` values).
fn overhead_bytes(arch: &Arch, format: WeightFormat, gpu: bool, largest_input: u64) -> u64 {
    let s = &arch.spec;
    let quantized = matches!(format, WeightFormat::Q8_0 | WeightFormat::Q4_0)
        || (format == WeightFormat::Native && arch.native_bytes_per_weight < 2.0);
    let runtime = if gpu {
        GPU_RUNTIME_BYTES
    } else {
        CPU_BASE_BYTES + s.vocab_size as u64 * TOKENIZER_BYTES_PER_TOKEN
    };
    let rope = (s.context_length.min(crate::engine::MAX_ROPE_POSITIONS) * s.head_dim) as u64 * 4;
    // candle keeps the quantised copy of the largest matmul input in a per-thread scratch buffer;
    // rftx's own Q8_0 kernel (AVX2) quantises into a transient buffer instead.
    let own_kernel = !gpu && format == WeightFormat::Q8_0 && Q8Linear::supported();
    let scratch = if quantized && !own_kernel {
        let q8_0 = WeightFormat::Q8_0.ggml_bytes_per_weight().expect("a GGML type");
        (largest_input as f64 * q8_0) as u64
    } else {
        0
    };
    runtime + rope + scratch
}

/// The phase with the larger total: (KV cache, activations, logits, phase name).
fn larger(prefill: (u64, u64, u64), decode: (u64, u64, u64)) -> (u64, u64, u64, &'static str) {
    if prefill.0 + prefill.1 + prefill.2 > decode.0 + decode.1 + decode.2 {
        (prefill.0, prefill.1, prefill.2, "prefill")
    } else {
        (decode.0, decode.1, decode.2, "decode")
    }
}

/// A prediction against a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub arch: Arch,
    pub workload: Workload,
    pub device: Device,
    pub breakdown: Breakdown,
    pub predicted_peak_bytes: u64,
    pub capacity_bytes: u64,
    pub fits: bool,
    /// capacity − predicted peak (negative: the shortfall).
    pub headroom_bytes: i64,
    /// Largest chunk size (rftx) or prompts per batch (hf) that fits; 0 if not even one does.
    pub max_chunk_size: usize,
    /// At `max_chunk_size`, the largest `max_new_tokens` that fits (bounded by the context).
    pub max_new_tokens_at_max_chunk: usize,
    /// rftx layout: the largest `prompts_per_batch` (at the configured chunk size, up to
    /// [`MAX_PROMPTS`]) whose peak stays within the capacity less [`SAFETY_MARGIN`]; what
    /// `prompts_per_batch = "auto"` picks on a GPU. 0 if not even one prompt does.
    pub safe_prompts_per_batch: usize,
}

/// Share of the capacity that `"auto"` settings leave free: the planner's predictions were
/// within a few per cent of measured heap peaks on the CPU (`rftx plan --check`) and of CUDA's
/// pool peaks; the rest covers allocator fragmentation and what the plan does not model.
pub const SAFETY_MARGIN: f64 = 0.2;

/// Most prompts per batch the planner considers.
pub const MAX_PROMPTS: usize = 4096;

/// The largest `n` in `1..=limit` for which `w` with `set(n)` has a peak within `capacity`;
/// 0 if not even 1 does. Peaks grow with `n`: binary search.
pub fn largest(
    arch: &Arch,
    w: &Workload,
    gpu: bool,
    capacity: u64,
    limit: usize,
    set: fn(&mut Workload, usize),
) -> usize {
    let fits = |n: usize| {
        let mut x = w.clone();
        set(&mut x, n);
        predict(arch, &x, gpu).total <= capacity
    };
    let (mut lo, mut hi) = (0usize, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// `capacity` less the [`SAFETY_MARGIN`].
pub fn safe_capacity(capacity: u64) -> u64 {
    (capacity as f64 * (1.0 - SAFETY_MARGIN)) as u64
}

pub fn plan(arch: Arch, workload: Workload, device: Device) -> Plan {
    let gpu = device.gpu;
    let breakdown = predict(&arch, &workload, gpu);
    let cap = device.capacity_bytes;
    let fits_with = |w: &Workload| predict(&arch, w, gpu).total <= cap;
    let with_chunk = |c: usize| {
        let mut w = workload.clone();
        match w.layout {
            Layout::Rftx => w.chunk_size = c,
            Layout::Hf => w.prompts_per_batch = c,
        }
        w
    };
    let limit = match workload.layout {
        Layout::Rftx => workload.oversample.max(1),
        Layout::Hf => workload.prompts_per_batch.max(1),
    };
    let max_chunk_size = (1..=limit).rev().find(|&c| fits_with(&with_chunk(c))).unwrap_or(0);
    let max_new_tokens_at_max_chunk = if max_chunk_size == 0 {
        0
    } else {
        let base = with_chunk(max_chunk_size);
        let most = arch.spec.context_length.saturating_sub(workload.prompt_tokens);
        // Peaks grow with max_new_tokens: binary search the largest that fits.
        let (mut lo, mut hi) = (0usize, most);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits_with(&Workload {
                max_new_tokens: mid,
                ..base.clone()
            }) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    };
    let safe_prompts_per_batch = match workload.layout {
        Layout::Rftx => largest(&arch, &workload, gpu, safe_capacity(cap), MAX_PROMPTS, |w, n| {
            w.prompts_per_batch = n
        }),
        Layout::Hf => 0,
    };
    Plan {
        safe_prompts_per_batch,
        predicted_peak_bytes: breakdown.total,
        capacity_bytes: cap,
        fits: breakdown.total <= cap,
        headroom_bytes: cap as i64 - breakdown.total as i64,
        max_chunk_size,
        max_new_tokens_at_max_chunk,
        arch,
        workload,
        device,
        breakdown,
    }
}
