//! `rftx bench`: a config's questions (W15: 5 unit-conversion questions × 15 samples × 80 new
//! tokens, temperature 0.7, the default model; W60: the first 20) at several settings of chunk
//! size and questions per batch, measured side by side in one process, with a JSON report that
//! can be compared across commits.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::error::Result;
use crate::core::config::Count;
use crate::core::generate::Job;
use crate::run::{generation_params, Observer, Prepared, Session};

/// One setting to measure: chunk size and questions per batch, each a number or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub chunk_size: Count,
    pub prompts_per_batch: Count,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The setting as asked (`15`, `auto`).
    pub setting: String,
    pub chunk_size: usize,
    pub prompts_per_batch: usize,
    /// How full the batch was (see `metrics.json`).
    pub occupancy: f64,
    pub questions: usize,
    pub samples: usize,
    pub new_tokens: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// New tokens per second of generation (prefill + decode).
    pub tokens_per_s: f64,
    /// Decode tokens per second (prefill excluded).
    pub decode_tokens_per_s: f64,
    /// Highest heap over the chunks (counting allocator; 0 where it is not installed).
    pub peak_bytes: u64,
    pub rss_peak_bytes: u64,
    /// Highest GPU memory in use over the chunks (GPU runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_peak_bytes: Option<u64>,
    /// sha256 of every sample's tokens: equal across chunk sizes, or something is wrong.
    pub samples_sha256: String,
    /// tokens/s relative to the first row.
    pub speed_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub rftx_version: String,
    pub cpu: String,
    pub threads: usize,
    /// `cpu`, or the GPU (`cuda:0 NVIDIA H200 (9.0)`).
    pub device: String,
    pub model: String,
    pub weights: String,
    /// `model.kv_cache` (`auto`: the activations' dtype).
    pub kv_cache: String,
    /// Bytes the weights hold on the device (a decode step reads them once).
    pub weight_bytes: u64,
    /// `model.gpu_kernels` and `model.batch_invariant` (GPU runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_kernels: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_invariant: Option<bool>,
    pub oversample: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub load_s: f64,
    /// Tokens of each question's prompt.
    pub prompt_tokens: Vec<usize>,
    pub rows: Vec<BenchRow>,
    pub samples_identical: bool,
    /// The same settings with `model.batch_invariant = false` (`--invariance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariance: Option<Invariance>,
}

/// What batch invariance costs: the same settings measured with cuBLAS choosing each GEMM's
/// kernel by shape (`model.batch_invariant = false`), in the same process.
#[derive(Debug, Clone, Serialize)]
pub struct Invariance {
    /// tokens/s of each setting, in the report's order.
    pub free_tokens_per_s: Vec<f64>,
    /// Whether the free run's samples were still the same at every setting.
    pub free_samples_identical: bool,
    /// Best free tokens/s ÷ best invariant tokens/s: what invariance costs (1.0: nothing).
    pub cost: f64,
}

impl Invariance {
    pub fn new(invariant: &BenchReport, free: &BenchReport) -> Invariance {
        let best = |r: &BenchReport| r.rows.iter().map(|x| x.tokens_per_s).fold(0f64, f64::max);
        Invariance {
            free_tokens_per_s: free.rows.iter().map(|x| x.tokens_per_s).collect(),
            free_samples_identical: free.samples_identical,
            cost: best(free) / best(invariant).max(1e-9),
        }
    }
}

/// Runs the prepared config's questions at each setting.
pub fn run(p: &Prepared, settings: &[Setting], observer: &mut dyn Observer) -> Result<BenchReport> {
    let c = &p.resolved.config;
    let session = Session::open(p, &mut |s| observer.log(s))?;
    let prompts = session.prompts(p)?;
    let mut rows: Vec<BenchRow> = Vec::new();
    for &setting in settings {
        let b = crate::run::resolve_batching(p, &session, &prompts, setting.chunk_size, setting.prompts_per_batch)?;
        let mut row = measure(&session, c, &prompts, b.chunk_size, b.prompts_per_batch, observer)?;
        row.setting = format!("{} × {}", setting.prompts_per_batch, setting.chunk_size);
        row.speed_ratio = rows.first().map_or(1.0, |first| row.tokens_per_s / first.tokens_per_s);
        observer.log(&format!(
            "{} questions × chunk {} per batch: {} tokens, {:.1} tokens/s",
            b.prompts_per_batch, b.chunk_size, row.new_tokens, row.tokens_per_s
        ));
        rows.push(row);
    }
    let samples_identical = rows.windows(2).all(|w| w[0].samples_sha256 == w[1].samples_sha256);
    Ok(BenchReport {
        rftx_version: env!("CARGO_PKG_VERSION").into(),
        cpu: cpu_name(),
        threads: candle_core::utils::get_num_threads(),
        device: match &session.gpu_info {
            Some(g) => format!("{} {} ({})", p.device.as_str(), g.name, g.compute_capability),
            None => "cpu".into(),
        },
        model: session.model_path.display().to_string(),
        weights: p.weights.as_str().into(),
        kv_cache: c.model.kv_cache.as_str().into(),
        weight_bytes: session.model.weight_bytes,
        gpu_kernels: session.gpu_info.as_ref().map(|_| c.model.gpu_kernels.as_str().into()),
        batch_invariant: session.gpu_info.as_ref().map(|_| c.model.batch_invariant),
        oversample: c.generation.oversample,
        max_new_tokens: c.generation.max_new_tokens,
        temperature: c.generation.temperature,
        load_s: session.load_s,
        prompt_tokens: prompts.iter().map(Vec::len).collect(),
        rows,
        samples_identical,
        invariance: None,
    })
}

/// All `prompts` at chunk size `chunk`, `per_batch` questions at a time.
fn measure(
    session: &Session,
    c: &crate::core::config::Config,
    prompts: &[Vec<u32>],
    chunk: usize,
    per_batch: usize,
    observer: &mut dyn Observer,
) -> Result<BenchRow> {
    let params = generation_params(c, chunk);
    let mut finished = Vec::new();
    let mut jobs = prompts.iter().enumerate().map(|(i, ids)| Job {
        index: i as u64,
        prompt: ids,
        chunk_size: chunk,
    });
    session.generate_batch(
        &mut jobs,
        per_batch,
        (params, None),
        &mut |n| observer.tokens(n),
        &mut |f| {
            finished.push(f);
            Ok(())
        },
    )?;
    finished.sort_by_key(|f| f.index);
    let mut tally = crate::core::report::Tally::default();
    let mut digest = Sha256::new();
    let mut samples = 0;
    for f in &finished {
        for comp in &f.completions {
            digest.update((comp.tokens.len() as u64).to_le_bytes());
            comp.tokens.iter().for_each(|t| digest.update(t.to_le_bytes()));
        }
        samples += f.completions.len();
        for r in &f.reports {
            tally.add_chunk(&crate::run::chunk_record(f.index as usize, r, None, 0));
        }
    }
    let m = tally.metrics(prompts.len(), 0.0, 0);
    let tokens: usize = finished.iter().flat_map(|f| &f.reports).map(|r| r.new_tokens).sum();
    Ok(BenchRow {
        setting: String::new(),
        chunk_size: chunk,
        prompts_per_batch: per_batch,
        occupancy: m.occupancy,
        questions: prompts.len(),
        samples,
        new_tokens: tokens,
        prefill_s: m.prefill_s,
        decode_s: m.decode_s,
        tokens_per_s: tokens as f64 / m.generation_s.max(1e-9),
        decode_tokens_per_s: tokens as f64 / m.decode_s.max(1e-9),
        peak_bytes: m.peak_bytes,
        rss_peak_bytes: m.rss_peak_bytes,
        gpu_peak_bytes: m.gpu_peak_bytes,
        samples_sha256: hex::encode(digest.finalize()),
        speed_ratio: 1.0,
    })
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The report as a table.
pub fn render(r: &BenchReport) -> String {
    use crate::base::util::human_bytes;
    let gpu = r.rows.iter().any(|x| x.gpu_peak_bytes.is_some());
    let on = if gpu {
        r.device.clone()
    } else {
        format!("{} threads, {}", r.threads, r.cpu)
    };
    let weights = match r.kv_cache.as_str() {
        "auto" => format!("{} weights", r.weights),
        kv => format!("{} weights, {kv} KV cache", r.weights),
    };
    let mut s = format!(
        "{} questions × {} samples × {} new tokens, temperature {}, {weights}, {on}\n",
        r.rows.first().map_or(0, |x| x.questions),
        r.oversample,
        r.max_new_tokens,
        r.temperature,
    );
    s.push_str(&format!(
        "{:>12} {:>5} {:>6} {:>6} {:>8} {:>10} {:>10} {:>10} {:>9} {:>11} {:>11}{}\n",
        "setting",
        "ppb",
        "chunk",
        "full",
        "tokens",
        "prefill s",
        "decode s",
        "tokens/s",
        "× first",
        "peak heap",
        "peak RSS",
        if gpu {
            format!(" {:>11}", "GPU peak")
        } else {
            String::new()
        }
    ));
    for x in &r.rows {
        s.push_str(&format!(
            "{:>12} {:>5} {:>6} {:>5.0}% {:>8} {:>10.2} {:>10.2} {:>10.1} {:>9.2} {:>11} {:>11}{}\n",
            x.setting,
            x.prompts_per_batch,
            x.chunk_size,
            x.occupancy * 100.0,
            x.new_tokens,
            x.prefill_s,
            x.decode_s,
            x.tokens_per_s,
            x.speed_ratio,
            human_bytes(x.peak_bytes),
            human_bytes(x.rss_peak_bytes),
            x.gpu_peak_bytes
                .map(|g| format!(" {:>11}", human_bytes(g)))
                .unwrap_or_default()
        ));
    }
    s.push_str(if r.samples_identical {
        "samples identical across settings: yes\n"
    } else {
        "samples identical across settings: NO\n"
    });
    if let Some(i) = &r.invariance {
        let each: Vec<String> = i.free_tokens_per_s.iter().map(|t| format!("{t:.1}")).collect();
        s.push_str(&format!(
            "model.batch_invariant = false (cuBLAS's own choice): {} tokens/s; best {:.2}× the invariant best; samples identical across settings: {}\n",
            each.join(" / "),
            i.cost,
            if i.free_samples_identical { "yes" } else { "no" }
        ));
    }
    s
}

/// The kernel checks as a table; the last line says whether all passed.
pub fn render_kernels(checks: &[crate::engine::cuda::check::KernelCheck]) -> String {
    let mut rows = vec![vec![
        "check".to_string(),
        "max |diff|".into(),
        "max |ref|".into(),
        "values".into(),
        "ok".into(),
    ]];
    for c in checks {
        rows.push(vec![
            c.name.clone(),
            format!("{:.3e}", c.max_abs_diff),
            format!("{:.3e}", c.max_abs),
            c.values.to_string(),
            if c.ok { "yes" } else { "NO" }.into(),
        ]);
    }
    let mut s = crate::base::util::align_columns(&rows, 1);
    let failed = checks.iter().filter(|c| !c.ok).count();
    s.push_str(&format!(
        "{} of {} kernel checks passed\n",
        checks.len() - failed,
        checks.len()
    ));
    s
}
