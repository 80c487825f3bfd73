//! `rftx bench`: the reference workload W15 (5 unit-conversion questions × 15 samples × 80 new
//! tokens, temperature 0.7, the default model) at several chunk sizes, measured side by side in
//! one process, with a JSON report that can be compared across commits.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::run::{generation_params, Observer, Prepared, Session};

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub chunk_size: usize,
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
    pub oversample: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub load_s: f64,
    /// Tokens of each question's prompt.
    pub prompt_tokens: Vec<usize>,
    pub rows: Vec<BenchRow>,
    pub samples_identical: bool,
}

/// Runs the prepared config's first questions at each chunk size.
pub fn run(p: &Prepared, chunk_sizes: &[usize], observer: &mut dyn Observer) -> Result<BenchReport> {
    let c = &p.resolved.config;
    let session = Session::open(p, &mut |s| observer.log(s))?;
    let prompts = session.prompts(p)?;
    let mut rows: Vec<BenchRow> = Vec::new();
    for &chunk in chunk_sizes {
        let params = generation_params(c, chunk);
        let (mut prefill_ms, mut decode_ms, mut tokens, mut samples, mut peak, mut rss) = (0.0, 0.0, 0, 0, 0, 0);
        let mut gpu_peak: Option<u64> = None;
        let mut digest = Sha256::new();
        for (i, ids) in prompts.iter().enumerate() {
            let (completions, reports) = session.generate(i, ids, params, &mut |n| observer.tokens(n))?;
            for comp in &completions {
                digest.update((comp.tokens.len() as u64).to_le_bytes());
                comp.tokens.iter().for_each(|t| digest.update(t.to_le_bytes()));
            }
            samples += completions.len();
            for r in &reports {
                prefill_ms += r.prefill_ms;
                decode_ms += r.ms;
                tokens += r.new_tokens;
                peak = peak.max(r.peaks.heap_bytes);
                rss = rss.max(r.peaks.rss_bytes);
                if let Some(g) = r.gpu_peak_bytes {
                    gpu_peak = Some(gpu_peak.unwrap_or(0).max(g));
                }
            }
        }
        let gen_s = (prefill_ms + decode_ms) / 1e3;
        let tokens_per_s = tokens as f64 / gen_s.max(1e-9);
        let speed_ratio = rows.first().map_or(1.0, |first| tokens_per_s / first.tokens_per_s);
        let row = BenchRow {
            chunk_size: chunk,
            questions: prompts.len(),
            samples,
            new_tokens: tokens,
            prefill_s: prefill_ms / 1e3,
            decode_s: decode_ms / 1e3,
            tokens_per_s,
            decode_tokens_per_s: tokens as f64 / (decode_ms / 1e3).max(1e-9),
            peak_bytes: peak,
            rss_peak_bytes: rss,
            gpu_peak_bytes: gpu_peak,
            samples_sha256: crate::util::hex(&digest.finalize()),
            speed_ratio,
        };
        observer.log(&format!("chunk {chunk}: {tokens} tokens, {tokens_per_s:.1} tokens/s"));
        rows.push(row);
    }
    let samples_identical = rows.windows(2).all(|w| w[0].samples_sha256 == w[1].samples_sha256);
    Ok(BenchReport {
        rftx_version: env!("CARGO_PKG_VERSION").into(),
        cpu: cpu_name(),
        threads: candle_core::utils::get_num_threads(),
        device: match &p.gpu {
            Some(g) => format!("{} {} ({})", p.device.as_str(), g.name, g.compute_capability),
            None => "cpu".into(),
        },
        model: session.model_path.display().to_string(),
        weights: p.weights.as_str().into(),
        oversample: c.generation.oversample,
        max_new_tokens: c.generation.max_new_tokens,
        temperature: c.generation.temperature,
        load_s: session.load_s,
        prompt_tokens: prompts.iter().map(Vec::len).collect(),
        rows,
        samples_identical,
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
    use crate::util::human_bytes;
    let gpu = r.rows.iter().any(|x| x.gpu_peak_bytes.is_some());
    let on = if gpu {
        r.device.clone()
    } else {
        format!("{} threads, {}", r.threads, r.cpu)
    };
    let mut s = format!(
        "W15: {} questions × {} samples × {} new tokens, temperature {}, {} weights, {on}\n",
        r.rows.first().map_or(0, |x| x.questions),
        r.oversample,
        r.max_new_tokens,
        r.temperature,
        r.weights,
    );
    s.push_str(&format!(
        "{:>6} {:>8} {:>10} {:>10} {:>10} {:>9} {:>11} {:>11}{}\n",
        "chunk",
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
            "{:>6} {:>8} {:>10.2} {:>10.2} {:>10.1} {:>9.2} {:>11} {:>11}{}\n",
            x.chunk_size,
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
        "samples identical across chunk sizes: yes\n"
    } else {
        "samples identical across chunk sizes: NO\n"
    });
    s
}
