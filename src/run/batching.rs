//! How many questions and samples decode together: `generation.prompts_per_batch` and
//! `generation.chunk_size` as configured, `"auto"` resolved from the memory plan, and a fixed
//! batch that `memory.budget` cannot hold made smaller (fewer questions join it).
use crate::base::error::{Error, Result};
use crate::base::util::human_bytes;
use crate::core::config::{Count, OnExceed};
use crate::core::plan::{self, Arch, Workload};
use crate::core::store::Batching;
use crate::engine::device::GpuInfo;

use super::budget::workload;
use super::Prepared;

/// On the CPU, `"auto"` stops at this many rows (prompts × chunk size): past about 64 rows the
/// int8 matmuls are compute-bound on these machines and tokens/s no longer grow, while every
/// question in the batch delays the first commit (README, "Throughput").
pub const CPU_AUTO_ROWS: usize = 64;

/// On a GPU, `"auto"` stops at the rows (prompts × chunk size) where a decode step stops being
/// bound by reading the weights: one step reads every weight once (2 bytes in f16) and does 2
/// FLOPs per weight and row, so past `FLOP/s ÷ (bytes/s)` rows the tensor cores, not the memory,
/// set the step time and tokens/s stop rising — while every question in the batch delays the
/// first commit. From each GPU's published dense f16 tensor rate and memory bandwidth (TFLOP/s,
/// GB/s); a GPU not listed gets [`GPU_AUTO_ROWS_DEFAULT`].
const GPUS: &[(&str, f64, f64)] = &[
    ("H200", 989.0, 4800.0),
    ("H100 PCIe", 756.0, 2000.0),
    ("H100", 989.0, 3350.0),
    ("A100", 312.0, 2039.0),
    ("L40S", 362.0, 864.0),
    ("L4", 121.0, 300.0),
    ("A10", 125.0, 600.0),
    ("T4", 65.0, 320.0),
];

pub const GPU_AUTO_ROWS_DEFAULT: usize = 256;

/// The rows `"auto"` stops at on the GPU called `name` (see [`GPUS`]).
pub fn gpu_auto_rows(name: &str) -> usize {
    GPUS.iter()
        .find(|(fragment, _, _)| name.contains(fragment))
        .map_or(GPU_AUTO_ROWS_DEFAULT, |(_, tflops, gbs)| {
            (tflops * 1e3 / gbs).round() as usize
        })
}

/// The batching of a run of `questions` questions whose longest prompt has `longest` tokens
/// (`shared` of them the shared prefix), on the GPU `gpu` if the session opened one. `say` gets
/// a line for every value chosen or changed.
pub(crate) fn resolve(
    p: &Prepared,
    arch: &Arch,
    gpu_info: Option<&GpuInfo>,
    longest: usize,
    shared: usize,
    questions: usize,
    say: &mut dyn FnMut(&str),
) -> Result<Batching> {
    let c = &p.resolved.config;
    let g = &c.generation;
    let gpu = p.device.is_gpu();
    let mut w = Workload {
        layout: plan::Layout::Rftx,
        ..workload(c, longest, shared)
    };
    let oversample = g.oversample.max(1);
    if g.chunk_size == Count::Auto || g.prompts_per_batch == Count::Auto {
        let (capacity, what) = capacity(p, gpu_info)?;
        let safe = plan::safe_capacity(capacity);
        let margin = format!(
            "largest predicted to fit in {} ({:.0} % of {what})",
            human_bytes(safe),
            100.0 * (1.0 - plan::SAFETY_MARGIN)
        );
        if g.chunk_size == Count::Auto {
            w.chunk_size = plan::largest(arch, &w, gpu, safe, oversample, |w, n| w.chunk_size = n).max(1);
            say(&format!(
                "generation.chunk_size = \"auto\": {} ({margin})",
                w.chunk_size
            ));
        }
        if g.prompts_per_batch == Count::Auto {
            let (rows, cap) = match (gpu, gpu_info) {
                (false, _) => (CPU_AUTO_ROWS, format!(", at most {CPU_AUTO_ROWS} rows on the CPU")),
                (true, info) => {
                    let rows = info.map_or(GPU_AUTO_ROWS_DEFAULT, |g| gpu_auto_rows(&g.name));
                    (
                        rows,
                        format!(", at most {rows} rows: past them a step on this GPU no longer gets faster per row"),
                    )
                }
            };
            let limit = questions
                .clamp(1, plan::MAX_PROMPTS)
                .min((rows / w.chunk_size.min(oversample)).max(1));
            w.prompts_per_batch = plan::largest(arch, &w, gpu, safe, limit, |w, n| w.prompts_per_batch = n).max(1);
            say(&format!(
                "generation.prompts_per_batch = \"auto\": {} ({margin}{cap})",
                w.prompts_per_batch
            ));
        }
    }
    if let Some(spec) = &c.memory.budget {
        fit_budget(p, spec, arch, &mut w, gpu, say)?;
    }
    Ok(Batching {
        prompts_per_batch: w.prompts_per_batch,
        chunk_size: w.chunk_size,
        auto_prompts_per_batch: g.prompts_per_batch == Count::Auto,
        auto_chunk_size: g.chunk_size == Count::Auto,
    })
}

/// What `"auto"` plans for: `memory.budget`, else the GPU (or its `memory.device_limit`), else
/// the memory available on this machine.
fn capacity(p: &Prepared, gpu: Option<&GpuInfo>) -> Result<(u64, String)> {
    let c = &p.resolved.config;
    let bad = |key: &str, e: String| Error::input(&p.resolved.file, format!("{key}: {e}"));
    if let Some(b) = &c.memory.budget {
        let d = plan::device(b).map_err(|e| bad("memory.budget", e))?;
        return Ok((d.capacity_bytes, format!("memory.budget = {b:?}")));
    }
    if let Some(gpu) = gpu {
        if let Some(l) = &c.memory.device_limit {
            let d = plan::device(l).map_err(|e| bad("memory.device_limit", e))?;
            return Ok((d.capacity_bytes, format!("memory.device_limit = {l:?}")));
        }
        return Ok((gpu.total_bytes, format!("the {}'s memory", gpu.name)));
    }
    let avail = crate::base::memory::mem_available()
        .ok_or_else(|| Error::Run("cannot read MemAvailable from /proc/meminfo; set memory.budget".into()))?;
    Ok((avail, "this machine's available memory".into()))
}

/// A batch of several questions that `memory.budget` cannot hold: fewer questions join it
/// (`on_exceed = "shrink"`), or the run stops before it starts (`"fail"`). One question's
/// chunks are checked question by question (`Budget::chunk_for`).
fn fit_budget(
    p: &Prepared,
    spec: &str,
    arch: &Arch,
    w: &mut Workload,
    gpu: bool,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let c = &p.resolved.config;
    let bytes = plan::device(spec)
        .map_err(|e| Error::input(&p.resolved.file, format!("memory.budget: {e}")))?
        .capacity_bytes;
    if w.prompts_per_batch <= 1 || plan::predict(arch, w, gpu).total <= bytes {
        return Ok(());
    }
    let fits = plan::largest(arch, w, gpu, bytes, w.prompts_per_batch, |w, n| w.prompts_per_batch = n).max(1);
    let need = human_bytes(plan::predict(arch, w, gpu).total);
    if c.memory.on_exceed == OnExceed::Fail {
        return Err(Error::input(
            &p.resolved.file,
            format!(
                "generation.prompts_per_batch = {}: a batch of {} questions × {} samples needs a predicted {need}, memory.budget = {spec:?} is {}; set generation.prompts_per_batch ≤ {fits} (or \"auto\"), raise memory.budget, or set memory.on_exceed = \"shrink\"",
                w.prompts_per_batch,
                w.prompts_per_batch,
                w.chunk_size,
                human_bytes(bytes)
            ),
        ));
    }
    say(&format!(
        "memory.budget: {fits} questions per batch instead of {} (predicted {need}, over {})",
        w.prompts_per_batch,
        human_bytes(bytes)
    ));
    w.prompts_per_batch = fits;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The knee of each GPU: its f16 FLOP rate over its memory rate, in rows.
    #[test]
    fn gpu_auto_rows_is_where_compute_overtakes_the_weight_read() {
        assert_eq!(gpu_auto_rows("NVIDIA H200"), 206);
        assert_eq!(gpu_auto_rows("NVIDIA H100 80GB HBM3"), 295);
        assert_eq!(gpu_auto_rows("NVIDIA H100 PCIe"), 378);
        assert_eq!(gpu_auto_rows("Tesla T4"), 203);
        assert_eq!(gpu_auto_rows("NVIDIA A100-SXM4-80GB"), 153);
        assert_eq!(gpu_auto_rows("Some Future GPU"), GPU_AUTO_ROWS_DEFAULT);
        // A 300-question run at chunk 15 on an H200: 13 questions a batch, not 300.
        assert_eq!(gpu_auto_rows("NVIDIA H200") / 15, 13);
    }
}
