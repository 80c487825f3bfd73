//! `rftx plan` for a configured run: the architecture from the model file's header (or a
//! preset), prompt lengths from its tokenizer, and `--check`, which generates on the real model
//! and compares measured heap peaks with the prediction.
use serde::Serialize;

use super::budget::workload;
use super::session::{chat_template, generation_params, prompt_text, Session};
use super::{Observer, Prepared};
use crate::base::error::{Error, Result};
use crate::core::generate::GenerationParams;
use crate::core::plan::{self, Arch, Workload};
use crate::core::prompt::{self, ChatTemplate};
use crate::engine::cpu::roofline::{self, Machine};
use crate::source::{fetch, ModelSource};

/// A plan for a prepared config.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigPlan {
    #[serde(flatten)]
    pub plan: plan::Plan,
    /// Whether the prompt length was estimated (no tokenizer at hand) rather than counted.
    pub prompt_tokens_estimated: bool,
    /// What `prompts_per_batch = "auto"` picks at the configured chunk size, and the tokens/s
    /// expected there (planning for this machine's CPU only: its limits are measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Expected>,
}

/// Tokens/s to expect from a batch on this machine's CPU.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    /// `prompts_per_batch = "auto"` at the configured chunk size: the largest that fits in the
    /// memory less the safety margin, at most `CPU_AUTO_ROWS` rows.
    pub prompts_per_batch: usize,
    pub chunk_size: usize,
    pub machine: Machine,
    /// The roofline: at most this many tokens/s with a full batch (weights read once per step,
    /// one int8 multiply-add per weight per row).
    pub ceiling_tokens_per_s: f64,
    /// The ceiling × [`MEASURED_SHARE`].
    pub expected_tokens_per_s: f64,
}

/// The share of the roofline ceiling that runs reached on this project's machines (`rftx bench`
/// on W15 and W60 beside `rftx plan`, README "Throughput"): attention, sampling, the small
/// serial ops and batches that are not full take the rest.
pub const MEASURED_SHARE: f64 = 0.5;

/// Plans the configured run. Architecture: `arch` (a preset) > `model.arch` > the configured
/// GGUF file > the default model's preset. Device: `device` > `plan.device` > this machine.
/// With an open `session` (for `--check`), its architecture and tokenizer serve and the model
/// file is not read again.
pub fn plan_config(
    p: &Prepared,
    arch: Option<&str>,
    device: Option<&str>,
    session: Option<&Session>,
) -> Result<ConfigPlan> {
    let c = &p.resolved.config;
    let bad = |e: String| Error::input(&p.resolved.file, e);
    let on_disk = match session {
        Some(_) => None,
        None => p.model_on_disk().map(ModelSource::open).transpose()?,
    };
    let arch = match arch.or(c.model.arch.as_deref()) {
        Some(name) => plan::arch_preset(name).ok_or_else(|| {
            bad(format!(
                "--arch {name}: not a known architecture; use one of: {}",
                plan::ARCH_PRESETS.join(", ")
            ))
        })?,
        None => match (session, &on_disk) {
            (Some(session), _) => session.arch.clone(),
            (None, Some(source)) => Arch::from_source(source),
            (None, None) => default_model_arch(),
        },
    };
    let device = plan::device(device.or(c.plan.device.as_deref()).unwrap_or("cpu")).map_err(bad)?;
    let (prompt_tokens, shared, estimated) = match session {
        Some(session) => (longest_prompt(p, session)?, session.shared_tokens(), false),
        None => {
            // The SmolLM2 family shares one tokenizer: the default model's serves presets too.
            let tokenizer_source = match on_disk {
                Some(source) => Some(source),
                None => {
                    let d = fetch::default_model_path();
                    d.is_file().then(|| ModelSource::open(&d)).transpose()?
                }
            };
            prompt_lengths(p, tokenizer_source.as_ref())?
        }
    };
    let cpu = !device.gpu && device.name == "cpu";
    let plan = plan::plan(arch, workload(c, prompt_tokens, shared), device);
    let throughput = if cpu {
        expected(p, &plan.arch, prompt_tokens, shared)?
    } else {
        None
    };
    Ok(ConfigPlan {
        plan,
        prompt_tokens_estimated: estimated,
        throughput,
    })
}

/// What `"auto"` picks on this machine's CPU at the configured chunk size, and the tokens/s
/// to expect there, from this machine's measured limits.
fn expected(p: &Prepared, arch: &Arch, prompt_tokens: usize, shared: usize) -> Result<Option<Expected>> {
    let Some(machine) = roofline::measure() else {
        return Ok(None);
    };
    let c = &p.resolved.config;
    let mut q = p.clone();
    q.resolved.config.generation.prompts_per_batch = crate::core::config::Count::Auto;
    q.resolved.config.memory.budget = None;
    let questions = p.questions.questions.len();
    let b = super::batching::resolve(&q, arch, None, prompt_tokens, shared, questions, &mut |_| {})?;
    let format = c.model.weights.resolve(false);
    let rows = b.prompts_per_batch * b.chunk_size.min(c.generation.oversample.max(1));
    let macs = arch.matrix_params + arch.embed_params;
    let ceiling = roofline::ceiling(&machine, arch.weight_bytes(format, true), macs, rows);
    Ok(Some(Expected {
        prompts_per_batch: b.prompts_per_batch,
        chunk_size: b.chunk_size,
        machine,
        ceiling_tokens_per_s: ceiling,
        expected_tokens_per_s: ceiling * MEASURED_SHARE,
    }))
}

/// The lines `rftx plan` prints for [`Expected`].
pub fn render_expected(e: &Expected) -> String {
    format!(
        "{:<28}{} (at chunk_size {}: {} rows; what \"auto\" picks here)\n{:<28}about {:.0} tokens/s (roofline {:.0}: weights read at {:.1} GB/s, int8 {:.1} GMAC/s ({}) on {} threads; runs reach about {:.0} % of it)\n",
        "auto prompts_per_batch",
        e.prompts_per_batch,
        e.chunk_size,
        e.prompts_per_batch * e.chunk_size,
        "expected throughput",
        e.expected_tokens_per_s,
        e.ceiling_tokens_per_s,
        e.machine.read_bytes_per_s / 1e9,
        e.machine.int8_macs_per_s / 1e9,
        e.machine.int8_kernel,
        e.machine.threads,
        MEASURED_SHARE * 100.0
    )
}

/// The default model's architecture without the file: the SmolLM2-135M preset with the
/// default GGUF's Q4_1 matrices.
fn default_model_arch() -> Arch {
    let mut a = plan::arch_preset("smollm2-135m").expect("preset");
    a.native_bytes_per_weight = fetch::default_model_bytes_per_weight();
    a.name = fetch::DEFAULT_MODEL_FILE.into();
    a
}

/// The longest prompt of the question set, in tokens, with an open session's tokenizer.
fn longest_prompt(p: &Prepared, session: &Session) -> Result<usize> {
    Ok(session.prompts(p)?.iter().map(Vec::len).max().unwrap_or(0))
}

/// The longest prompt of the question set and the shared prefix, in tokens, with the tokenizer
/// of `source` (exact), or estimated at 3.5 characters per token when no model file is at hand.
fn prompt_lengths(p: &Prepared, source: Option<&ModelSource>) -> Result<(usize, usize, bool)> {
    let c = &p.resolved.config;
    let texts = |t: &ChatTemplate| -> Result<Vec<String>> {
        let render = |q: &crate::core::data::Question| prompt_text(c, t, q.user_text()).map_err(Error::Run);
        p.questions.questions.iter().map(render).collect()
    };
    if let Some(source) = source {
        if let Ok(template) = chat_template(source, &c.prompt) {
            let tok = source.tokenizer()?;
            let mut longest = 0;
            for text in texts(&template)? {
                longest = longest.max(tok.encode(&text).map_err(Error::Run)?.len());
            }
            let prefix = prompt::shared_prefix(&template, &c.prompt).map_err(Error::Run)?;
            let shared = tok.encode(&prefix).map_err(Error::Run)?.len();
            return Ok((longest, shared, false));
        }
    }
    let estimate = |chars: usize| (chars as f64 / 3.5).ceil() as usize;
    let chatml = ChatTemplate::chatml();
    let longest = texts(&chatml)?.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    let shared = prompt::shared_prefix(&chatml, &c.prompt)
        .map_err(Error::Run)?
        .chars()
        .count();
    Ok((estimate(longest), estimate(shared), true))
}

/// One row of a plan check: predicted and measured heap peak of one chunk size.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub chunk_size: usize,
    pub prompt_tokens: usize,
    pub predicted_peak_bytes: u64,
    pub measured_peak_bytes: u64,
    /// (predicted − measured) / measured.
    pub relative_error: f64,
}

/// Runs the first question of the config at each chunk size on the real model and compares the
/// measured heap peak (counting allocator) with the prediction. Needs the counting allocator.
pub fn check_plan(
    p: &Prepared,
    session: &Session,
    chunk_sizes: &[usize],
    observer: &mut dyn Observer,
) -> Result<Vec<CheckRow>> {
    if !crate::base::memory::heap_tracking() && !p.device.is_gpu() {
        return Err(Error::Run(
            "the counting allocator is not installed in this program".into(),
        ));
    }
    let c = &p.resolved.config;
    let ids = session
        .prompts(p)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::input(&p.resolved.file, "no questions"))?;
    let mut rows = Vec::new();
    for &chunk in chunk_sizes {
        let params = GenerationParams {
            oversample: c.generation.oversample.max(chunk),
            ..generation_params(c, chunk)
        };
        let (_, reports) = session.generate(0, &ids, params, &mut |n| observer.tokens(n))?;
        // On a GPU the device's memory is what a plan is about; on the CPU the heap.
        let measured = reports
            .iter()
            .map(|r| r.gpu_peak_bytes.unwrap_or(r.peaks.heap_bytes))
            .max()
            .unwrap_or(0);
        let w = Workload {
            layout: plan::Layout::Rftx,
            oversample: params.oversample,
            chunk_size: chunk,
            prompts_per_batch: 1,
            ..workload(c, ids.len(), session.shared_tokens())
        };
        let predicted = plan::predict(&session.arch, &w, p.device.is_gpu()).total;
        let relative_error = (predicted as f64 - measured as f64) / measured.max(1) as f64;
        observer.log(&format!(
            "chunk {chunk}: predicted {predicted}, measured {measured} ({:+.1} %)",
            100.0 * relative_error
        ));
        rows.push(CheckRow {
            chunk_size: chunk,
            prompt_tokens: ids.len(),
            predicted_peak_bytes: predicted,
            measured_peak_bytes: measured,
            relative_error,
        });
    }
    Ok(rows)
}
