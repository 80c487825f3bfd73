//! Range checks of a config, each problem starting with its key path (`key = value: rule`).
use super::{Config, Count, GenerationConfig, Grader, ModelInit, PromptConfig, RftConfig};

/// Range checks. Each problem starts with its key path, as `key = value: rule`.
pub fn validate(c: &Config) -> Vec<String> {
    let mut p = Vec::new();
    if c.name.is_empty()
        || !c
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        || c.name.starts_with('.')
    {
        p.push(format!(
            "name = {:?}: must be non-empty, made of letters, digits, '.', '_' and '-', and not start with '.'",
            c.name
        ));
    }
    validate_generation(&c.generation, &mut p);
    if c.checkpoint.every == 0 {
        p.push("checkpoint.every = 0: must be ≥ 1 (questions between checkpoints)".into());
    }
    validate_rft(&c.rft, &mut p);
    if c.data.limit == Some(0) {
        p.push("data.limit = 0: must be ≥ 1 (leave it unset for all questions)".into());
    }
    if c.data.source.trim().is_empty() {
        p.push("data.source = \"\": must be \"builtin\" or the path of a JSON question file".into());
    }
    if c.model.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        p.push("model.path = \"\": must be the path of a GGUF file (leave it unset for the default model)".into());
    }
    if let Some(b) = &c.memory.budget {
        if let Err(e) = crate::core::plan::device(b) {
            p.push(format!("memory.budget = {b:?}: {e}"));
        }
    }
    if let Err(e) = crate::engine::DeviceChoice::validate(&c.device) {
        p.push(format!("device = {:?}: {e}", c.device));
    }
    if let Some(l) = &c.memory.device_limit {
        if let Err(e) = crate::core::plan::device(l) {
            p.push(format!("memory.device_limit = {l:?}: {e}"));
        }
    }
    if c.model.init == ModelInit::Random && c.model.arch.is_none() {
        p.push(format!(
            "model.init = \"random\": needs model.arch, the shape to build; use one of: {}",
            crate::core::plan::ARCH_PRESETS.join(", ")
        ));
    }
    if let Some(d) = &c.plan.device {
        if let Err(e) = crate::core::plan::device(d) {
            p.push(format!("plan.device = {d:?}: {e}"));
        }
    }
    if c.plan.prompts_per_batch == 0 {
        p.push("plan.prompts_per_batch = 0: must be ≥ 1".into());
    }
    if let Some(a) = &c.model.arch {
        if crate::core::plan::arch_preset(a).is_none() {
            p.push(format!(
                "model.arch = {a:?}: not a known architecture; use one of: {}",
                crate::core::plan::ARCH_PRESETS.join(", ")
            ));
        }
    }
    validate_prompt(&c.prompt, &mut p);
    p
}

/// Checks of `[prompt]`.
fn validate_prompt(c: &PromptConfig, p: &mut Vec<String>) {
    for (i, e) in c.examples.iter().enumerate() {
        if e.question.trim().is_empty() || e.response.trim().is_empty() {
            p.push(format!(
                "prompt.examples[{i}]: question and response must both be non-empty"
            ));
        }
    }
    if let Some(d) = &c.date {
        if let Err(e) = crate::core::prompt::Date::parse(d) {
            p.push(format!("prompt.date = {d:?}: {e}"));
        }
    }
    for key in crate::core::prompt::RESERVED_VARS {
        if c.template_vars.contains_key(*key) {
            p.push(format!(
                "prompt.template_vars.{key}: rftx sets `{key}` itself; leave it out of prompt.template_vars"
            ));
        }
    }
}

/// Range checks of `[generation]`.
fn validate_generation(g: &GenerationConfig, p: &mut Vec<String>) {
    if g.oversample == 0 {
        p.push("generation.oversample = 0: must be ≥ 1".into());
    }
    if g.chunk_size == Count::N(0) {
        p.push("generation.chunk_size = 0: must be ≥ 1 (or \"auto\")".into());
    }
    if g.prompts_per_batch == Count::N(0) {
        p.push("generation.prompts_per_batch = 0: must be ≥ 1 (or \"auto\")".into());
    }
    if !(g.temperature >= 0.0 && g.temperature.is_finite()) {
        p.push(format!(
            "generation.temperature = {}: must be ≥ 0 (0 is greedy)",
            g.temperature
        ));
    }
    if !(g.top_p > 0.0 && g.top_p <= 1.0) {
        p.push(format!(
            "generation.top_p = {}: must be in (0, 1] (1 disables nucleus sampling)",
            g.top_p
        ));
    }
    if g.max_new_tokens == 0 {
        p.push("generation.max_new_tokens = 0: must be ≥ 1".into());
    }
    if g.stop_after_correct == Some(0) {
        p.push("generation.stop_after_correct = 0: must be ≥ 1 (leave it unset to keep every sample)".into());
    }
}

/// Range checks of `[rft]`.
fn validate_rft(r: &RftConfig, p: &mut Vec<String>) {
    if let Some(t) = r.tolerance.filter(|t| !(*t >= 0.0 && t.is_finite())) {
        p.push(format!(
            "rft.tolerance = {t}: must be a finite number ≥ 0 (leave it unset for the default)"
        ));
    }
    if !(r.command_timeout_s > 0.0 && r.command_timeout_s.is_finite()) {
        p.push(format!(
            "rft.command_timeout_s = {}: must be a number of seconds > 0",
            r.command_timeout_s
        ));
    }
    if r.max_pairs_per_question == Some(0) {
        p.push("rft.max_pairs_per_question = 0: must be ≥ 1 (leave it unset for one pair per right sample)".into());
    }
    if let Some([lo, hi]) = r.keep_pass_rate {
        let shown = format!("rft.keep_pass_rate = [{lo}, {hi}]");
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) {
            p.push(format!(
                "{shown}: both bounds must be pass rates in [0, 1] (the share of a question's samples that are right)"
            ));
        } else if lo > hi {
            p.push(format!("{shown}: lo must be ≤ hi"));
        }
    }
    let program = r.command.as_ref().and_then(|c| c.first()).filter(|p| !p.is_empty());
    if r.grader == Grader::Command && program.is_none() {
        p.push(
            "rft.grader = \"command\": needs rft.command, the verifier's program and its arguments (rft.command = [\"python3\", \"verifier.py\"])".into(),
        );
    }
}
