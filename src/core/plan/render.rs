//! The plan as the aligned text `rftx plan` prints.
use super::{Layout, Plan, SAFETY_MARGIN};

/// The plan as aligned text.
pub fn render(p: &Plan) -> String {
    use crate::base::util::human_bytes as hb;
    let s = &p.arch.spec;
    let w = &p.workload;
    let b = &p.breakdown;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28}{v}\n"));
    line(
        "model",
        format!(
            "{}: {} layers, {} dims, {} heads / {} KV heads, vocab {}, {} weights",
            p.arch.name, s.n_layer, s.n_embd, s.n_head, s.n_kv_head, s.vocab_size, b.weight_format
        ),
    );
    let layout = match w.layout {
        Layout::Rftx => format!(
            "rftx: {} prompt(s) at a time, each prompt's cache shared by its {} of {} samples at once ({} sequences)",
            w.prompts_per_batch.max(1),
            w.chunk_size.clamp(1, w.oversample.max(1)),
            w.oversample,
            w.sequences()
        ),
        Layout::Hf => format!(
            "hf: {} prompts × {} samples = {} sequences at once, prompts repeated",
            w.prompts_per_batch,
            w.oversample,
            w.sequences()
        ),
    };
    line("layout", layout);
    line(
        "sequence",
        format!(
            "prompt {} + {} new tokens = {} positions",
            w.prompt_tokens,
            w.max_new_tokens,
            w.prompt_tokens + w.max_new_tokens
        ),
    );
    line("device", format!("{} ({})", p.device.name, hb(p.capacity_bytes)));
    line("weights", hb(b.weights));
    line("KV cache per sequence", hb(b.kv_per_sequence));
    line("KV cache at the peak", hb(b.kv_cache));
    line("activations", hb(b.activations));
    line("logits", hb(b.logits));
    line("runtime overhead", hb(b.overhead));
    line(
        "predicted peak",
        format!("{} (during {})", hb(p.predicted_peak_bytes), b.phase),
    );
    let verdict = if p.fits {
        format!(
            "fits: headroom {} ({:.0} % of the device)",
            hb(p.headroom_bytes as u64),
            100.0 * p.headroom_bytes as f64 / p.capacity_bytes as f64
        )
    } else {
        format!(
            "OUT OF MEMORY: needs {} more than the device has",
            hb((-p.headroom_bytes) as u64)
        )
    };
    line("verdict", verdict);
    out.push_str(&render_limits(p));
    out
}

/// The largest settings that fit, as lines of [`render`].
fn render_limits(p: &Plan) -> String {
    let w = &p.workload;
    let line = |k: &str, v: String| format!("{k:<28}{v}\n");
    let what = match w.layout {
        Layout::Rftx => "largest chunk_size",
        Layout::Hf => "largest prompts_per_batch",
    };
    let mut out = if p.max_chunk_size == 0 {
        line(what, "none: even one sequence does not fit".into())
    } else {
        line(
            what,
            format!(
                "{} (max_new_tokens up to {} at that size)",
                p.max_chunk_size, p.max_new_tokens_at_max_chunk
            ),
        )
    };
    if w.layout == Layout::Rftx {
        out.push_str(&line(
            "safe prompts_per_batch",
            format!(
                "{} (at chunk_size {}, keeping {:.0} % of the device free; what \"auto\" picks on a GPU)",
                p.safe_prompts_per_batch,
                w.chunk_size.clamp(1, w.oversample.max(1)),
                SAFETY_MARGIN * 100.0
            ),
        ));
    }
    out
}
