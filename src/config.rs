//! The experiment file: defaults < TOML file < `RFTX_…` environment < `--set key.path=value`.
//!
//! Every problem is reported with where the value came from (file, environment variable or
//! `--set` argument), the full key path and the fix. [`Resolved::hash_input`] is the canonical
//! form that the run directory's content hash is computed from.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::{Deserialize, Serialize};

pub use crate::engine::WeightFormat;
pub use crate::error::ConfigError;

/// Prefix of environment variables that override config keys; `__` separates key levels:
/// `RFTX_GENERATION__CHUNK_SIZE=5` sets `generation.chunk_size`.
pub const ENV_PREFIX: &str = "RFTX_";
/// Variables with [`ENV_PREFIX`] that configure rftx itself rather than the experiment.
pub const ENV_RESERVED: &[&str] = &["models_dir", "runs_dir", "test_kills", "test_oom", "test_fail_shards"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name: the prefix of the run directory. Letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Master seed: every sample's RNG stream derives from (seed, question index, sample index).
    pub seed: u64,
    /// Where the model computes: `auto` (the first GPU when rftx is built with CUDA and one is
    /// present, else the CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub prompt: PromptConfig,
    pub generation: GenerationConfig,
    pub rft: RftConfig,
    pub checkpoint: CheckpointConfig,
    pub memory: MemoryConfig,
    pub plan: PlanConfig,
    /// `rftx sweep` only: key path → list of values; the cartesian product of the lists is run,
    /// one ordinary run per point. `rftx run` ignores it, and it is not part of the run hash.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub sweep: toml::Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Heap budget for generation: bytes (`"2GiB"`) or a device preset (`"t4"`). Unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// What a chunk predicted over the budget does: stop the run, or run in smaller chunks.
    /// On a GPU, also what a real out-of-memory does (`shrink`: retry at half the chunk size).
    pub on_exceed: OnExceed,
    /// GPU only: the run sees only this much device memory (a size or a device preset such as
    /// `"t4"`); the rest is reserved up front, so a T4's out-of-memory happens on a bigger GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_limit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    Fail,
    Shrink,
}

/// A count that may be left to rftx: a number, or `"auto"` (chosen at run time from the
/// memory plan; see `run::batching`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(usize),
    Auto,
}

impl Count {
    /// The number, unless it is `auto`.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Count::N(n) => Some(n),
            Count::Auto => None,
        }
    }
}

impl std::str::FromStr for Count {
    type Err = String;

    /// `auto` or a whole number ≥ 1 (command-line lists).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Count::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Count::N(n)),
                _ => Err(format!("`{s}`: expected a whole number ≥ 1 or `auto`")),
            },
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::N(n) => s.serialize_u64(*n as u64),
            Count::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number ≥ 1 or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Count, E> {
                usize::try_from(n).map(Count::N).map_err(|_| E::custom("too large"))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n}: expected a whole number ≥ 1 or \"auto\"")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Count, E> {
                match s {
                    "auto" => Ok(Count::Auto),
                    other => Err(E::custom(format!("{other:?}: expected a whole number ≥ 1 or \"auto\""))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Settings of `rftx plan` only; they never change what `rftx run` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// `rftx`: how rftx generates; `hf`: the seed's "before" (prompts × samples at once, repeated).
    pub layout: crate::plan::Layout,
    /// Prompts generated together in the `hf` layout.
    pub prompts_per_batch: usize,
    /// Device to plan for (preset or size). Unset: `--device`, else this machine's memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A llama-architecture GGUF file, a Hugging Face model folder, or a hub repository id
    /// (`Org/Name[@revision]`) in the local hub cache. Unset: the default model, fetched into the
    /// model cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Weight format the matrices are converted to at load time.
    pub weights: WeightFormat,
    /// Architecture preset (`smollm2-1.7b`, …): for `rftx plan` when the model is not on disk,
    /// and the shape of a random-weight model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `file`: the weights of the model file. `random`: random weights of the `model.arch`
    /// preset's shape, drawn from `seed` on the device; the model file gives only the tokenizer
    /// and the chat template. Samples then run to `max_new_tokens` and mean nothing.
    pub init: ModelInit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelInit {
    File,
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `"builtin"` (the built-in unit-conversion set) or a JSON file: a list of `[question, answer]`.
    pub source: String,
    /// Use only the first `limit` questions. Unset: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// System message.
    pub system: String,
    /// Few-shot examples, rendered as earlier user/assistant turns.
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub question: String,
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Samples per question.
    pub oversample: usize,
    /// Samples of one question decoded together, or `"auto"` (the largest that `rftx plan`
    /// predicts fits, with a safety margin).
    pub chunk_size: Count,
    /// Questions decoded together, each with its own prompt cache, `chunk_size` samples of each
    /// at a time; or `"auto"`. Never changes the samples.
    pub prompts_per_batch: Count,
    /// Softmax temperature; 0 is greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1]; 1 disables it.
    pub top_p: f64,
    /// Generation budget per sample, the end-of-turn token included.
    pub max_new_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RftConfig {
    /// Relative tolerance for accepting a parsed answer: |parsed − answer| ≤ tolerance·|answer|.
    pub tolerance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Make completed work durable (fsync, dataset and metrics rewritten) every this many questions.
    pub every: usize,
}

pub const DEFAULT_SYSTEM: &str = "You are a careful assistant that converts units. \
Reason briefly, step by step, then give only the final number inside <answer></answer> tags.";

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "rftx".into(),
            seed: 0,
            device: "auto".into(),
            model: ModelConfig { path: None, weights: WeightFormat::Auto, arch: None, init: ModelInit::File },
            data: DataConfig { source: "builtin".into(), limit: None },
            prompt: PromptConfig {
                system: DEFAULT_SYSTEM.into(),
                examples: vec![
                    Example {
                        question: "How many meters are in 3 kilometers?".into(),
                        response: "1 kilometer is 1000 meters, so 3 kilometers is 3 * 1000 = 3000 meters. <answer>3000</answer>".into(),
                    },
                    Example {
                        question: "Convert 2 hours to minutes.".into(),
                        response: "1 hour is 60 minutes, so 2 hours is 2 * 60 = 120 minutes. <answer>120</answer>".into(),
                    },
                ],
            },
            generation: GenerationConfig {
                oversample: 15,
                chunk_size: Count::N(3),
                prompts_per_batch: Count::N(1),
                temperature: 0.7,
                top_p: 1.0,
                max_new_tokens: 80,
            },
            rft: RftConfig { tolerance: 0.05 },
            checkpoint: CheckpointConfig { every: 100 },
            memory: MemoryConfig { budget: None, on_exceed: OnExceed::Fail, device_limit: None },
            plan: PlanConfig { layout: crate::plan::Layout::Rftx, prompts_per_batch: 1, device: None },
            sweep: toml::Table::new(),
        }
    }
}

/// A `--set key.path=value` override. The value is parsed as TOML (`5`, `0.7`, `"text"`,
/// `[1, 2]`); a value that is not valid TOML is taken as a plain string.
#[derive(Debug, Clone)]
pub struct SetArg {
    raw: String,
    key: String,
    value: Value,
}

/// A value given on the command line: TOML (`5`, `0.7`, `"text"`, `[1, 2]`), or else the text
/// itself as a string (`q8_0`).
pub fn parse_value(text: &str) -> toml::Value {
    let text = text.trim();
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

impl SetArg {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let Some((key, value)) = raw.split_once('=') else {
            return Err(ConfigError::one(format!(
                "--set {raw}: expected KEY=VALUE, e.g. --set generation.chunk_size=5"
            )));
        };
        let key = key.trim();
        let valid_segment = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key.split('.').all(valid_segment) {
            return Err(ConfigError::one(format!(
                "--set {raw}: `{key}` is not a key path; use dotted names such as generation.chunk_size"
            )));
        }
        let value = Value::serialize(parse_value(value)).map_err(|e| ConfigError::one(format!("--set {raw}: {e}")))?;
        Ok(SetArg {
            raw: raw.to_string(),
            key: key.to_string(),
            value,
        })
    }

    /// The dotted key path it sets.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Provider for SetArg {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("--set {}", self.raw))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, self.value.clone());
        let dict = nested.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// A validated configuration with its paths resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    /// The experiment file it was read from.
    pub file: PathBuf,
    /// `model.path` made absolute (relative to the file that set it). `None`: the default model.
    pub model_path: Option<PathBuf>,
    /// `data.source` made absolute when it is a file.
    pub data_path: Option<PathBuf>,
}

impl Resolved {
    /// The resolved configuration as TOML, paths absolute. Reading it back gives the same run.
    pub fn to_toml(&self) -> String {
        let mut config = self.config.clone();
        config.model.path = self.model_path.clone();
        if let Some(p) = &self.data_path {
            config.data.source = p.display().to_string();
        }
        let body = toml::to_string(&config).expect("a Config always serialises to TOML");
        if self.model_path.is_none() {
            format!(
                "# model.path is unset: the default model {}\n{body}",
                crate::source::fetch::DEFAULT_MODEL_FILE
            )
        } else {
            body
        }
    }
}

/// Reads `file`, layers the environment and the `--set` arguments over it and validates the result.
pub fn load(file: &Path, sets: &[String]) -> Result<Resolved, ConfigError> {
    let sets = sets.iter().map(|s| SetArg::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::one(format!("{}: cannot read the config file: {e}", file.display())))?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let msg = e.to_string().trim_end().replace('\n', "\n    ");
        return Err(ConfigError::one(format!("{}: invalid TOML: {msg}", file.display())));
    }
    let mut figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file_exact(file))
        .merge(env_provider());
    for set in sets {
        figment = figment.merge(set);
    }
    let config: Config = figment.extract().map_err(|e| describe_figment_error(e, &figment))?;
    let mut problems = validate(&config);
    problems
        .iter_mut()
        .for_each(|p| *p = format!("{}: {p}", origin_of(&figment, key_of(p))));
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    // A hub repository id (`Org/Name[@rev]`) that names nothing on disk stays as written: it is
    // resolved in the hub cache when the run is prepared.
    let model_path = config.model.path.as_ref().map(|p| {
        let resolved = resolve_path(&figment, "model.path", p);
        let repo_id = p.to_str().is_some_and(crate::source::hub::looks_like_repo_id);
        if repo_id && !resolved.exists() {
            p.clone()
        } else {
            resolved
        }
    });
    let data_path = (config.data.source != "builtin")
        .then(|| resolve_path(&figment, "data.source", Path::new(&config.data.source)));
    Ok(Resolved {
        config,
        file: file.to_path_buf(),
        model_path,
        data_path,
    })
}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|k| !ENV_RESERVED.iter().any(|r| k.as_str().eq_ignore_ascii_case(r)))
        .split("__")
}

/// The key path at the start of a validation problem (`generation.top_p = 2: …`).
fn key_of(problem: &str) -> &str {
    problem.split([' ', ':']).next().unwrap_or("")
}

/// Where the value of `key` came from: a file path, an environment variable or a `--set`.
fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => describe_metadata(md, key),
        None => "config".into(),
    }
}

fn describe_metadata(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(Source::File(p)) => p.display().to_string(),
        _ if md.name.contains("environment") => {
            format!(
                "environment variable {ENV_PREFIX}{}",
                key.to_uppercase().replace('.', "__")
            )
        }
        _ => md.name.to_string(),
    }
}

/// Relative paths are relative to the config file that set them, else to the working directory.
fn resolve_path(figment: &Figment, key: &str, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = match figment.find_metadata(key).and_then(|m| m.source.as_ref()) {
        Some(Source::File(f)) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => PathBuf::new(),
    };
    crate::util::absolute(&base.join(path))
}

fn describe_figment_error(err: figment::Error, figment: &Figment) -> ConfigError {
    use figment::error::Kind;
    let problems = err
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let origin = match &e.metadata {
                Some(md) => describe_metadata(md, &path),
                None => origin_of(figment, &path),
            };
            let message = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    // figment's path already ends with the unknown field.
                    let full = if path.ends_with(field.as_str()) {
                        path.clone()
                    } else if path.is_empty() {
                        field.clone()
                    } else {
                        format!("{path}.{field}")
                    };
                    let hint = closest(field, expected)
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    format!(
                        "{full}: unknown key{hint}; the keys allowed here are: {}",
                        expected.join(", ")
                    )
                }
                Kind::InvalidType(actual, expected) => {
                    format!("{path}: wrong type: found {actual}, expected {expected}")
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("{path}: invalid value: found {actual}, expected {expected}")
                }
                Kind::UnknownVariant(actual, expected) => {
                    format!("{path} = \"{actual}\": not one of: {}", expected.join(", "))
                }
                other => format!("{path}: {other}"),
            };
            format!("{origin}: {message}")
        })
        .collect();
    ConfigError { problems }
}

/// The allowed key closest to a misspelt one, if any is close.
fn closest<'a>(field: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(field, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min()
        .map(|(_, a)| a)
}

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
    if !(c.rft.tolerance >= 0.0 && c.rft.tolerance.is_finite()) {
        p.push(format!(
            "rft.tolerance = {}: must be a finite number ≥ 0",
            c.rft.tolerance
        ));
    }
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
        if let Err(e) = crate::plan::device(b) {
            p.push(format!("memory.budget = {b:?}: {e}"));
        }
    }
    if let Err(e) = crate::engine::DeviceChoice::validate(&c.device) {
        p.push(format!("device = {:?}: {e}", c.device));
    }
    if let Some(l) = &c.memory.device_limit {
        if let Err(e) = crate::plan::device(l) {
            p.push(format!("memory.device_limit = {l:?}: {e}"));
        }
    }
    if c.model.init == ModelInit::Random && c.model.arch.is_none() {
        p.push(format!(
            "model.init = \"random\": needs model.arch, the shape to build; use one of: {}",
            crate::plan::ARCH_PRESETS.join(", ")
        ));
    }
    if let Some(d) = &c.plan.device {
        if let Err(e) = crate::plan::device(d) {
            p.push(format!("plan.device = {d:?}: {e}"));
        }
    }
    if c.plan.prompts_per_batch == 0 {
        p.push("plan.prompts_per_batch = 0: must be ≥ 1".into());
    }
    if let Some(a) = &c.model.arch {
        if crate::plan::arch_preset(a).is_none() {
            p.push(format!(
                "model.arch = {a:?}: not a known architecture; use one of: {}",
                crate::plan::ARCH_PRESETS.join(", ")
            ));
        }
    }
    for (i, e) in c.prompt.examples.iter().enumerate() {
        if e.question.trim().is_empty() || e.response.trim().is_empty() {
            p.push(format!(
                "prompt.examples[{i}]: question and response must both be non-empty"
            ));
        }
    }
    p
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
}

/// Version of the canonical form. Bump it when generation semantics change, so that old run
/// directories are never mistaken for new ones.
pub const HASH_FORMAT: &str = "rftx-run-v2";

impl Resolved {
    /// The canonical JSON object the run hash is computed from: every key that can change the
    /// samples or the measurements, plus the digests of the model file and the question set.
    /// `engine` is what the config resolved to on this machine: the weight format (`auto` made
    /// concrete), and on a GPU its model and compute capability (CPU and GPU samples differ, and
    /// so may two GPU models'); on the CPU the object is what it was before GPUs existed, so CPU
    /// run hashes did not change. Deliberately left out: `name` (it prefixes the directory),
    /// paths (the digests stand for the content), `checkpoint.every` (durability only: change
    /// it and resume), `[memory]` (a budget never changes the samples; raise it and resume) and
    /// `[plan]`, `model.arch` unless it shapes a random model (planning only).
    pub fn hash_input(
        &self,
        engine: &EngineKey,
        model_sha256: &str,
        questions_sha256: &str,
        questions: usize,
    ) -> serde_json::Value {
        let c = &self.config;
        let mut model = serde_json::json!({ "sha256": model_sha256, "weights": engine.weights.as_str() });
        if c.model.init == ModelInit::Random {
            model["init"] = "random".into();
            model["arch"] = c.model.arch.clone().unwrap_or_default().into();
        }
        let mut v = serde_json::json!({
            "format": HASH_FORMAT,
            "seed": c.seed,
            "model": model,
            "data": { "sha256": questions_sha256, "questions": questions },
            "prompt": c.prompt,
            "generation": c.generation,
            "rft": c.rft,
        });
        // One question at a time is how every run was made before batching existed: leaving the
        // key out keeps their hashes.
        if c.generation.prompts_per_batch == Count::N(1) {
            if let Some(g) = v["generation"].as_object_mut() {
                g.remove("prompts_per_batch");
            }
        }
        if let Some(gpu) = &engine.gpu {
            v["device"] = serde_json::json!({
                "kind": "cuda",
                "name": gpu.name,
                "compute_capability": gpu.compute_capability,
            });
        }
        v
    }
}

/// What a config resolved to on this machine, as far as the samples depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineKey {
    pub weights: WeightFormat,
    pub gpu: Option<crate::engine::device::GpuInfo>,
}

/// JSON with object keys sorted at every level and no whitespace: a canonical byte string.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, serde_json::Value> = m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // serde_json keeps insertion order when `preserve_order` is on somewhere in the build, so the
    // keys are written in sorted order explicitly rather than relying on the map type.
    let mut out = String::new();
    write_canonical(&sort(v), &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_are_the_seed_fix() {
        let c = Config::default();
        assert_eq!(c.generation.oversample, 15);
        assert_eq!(c.generation.chunk_size, Count::N(3));
        assert_eq!(c.generation.max_new_tokens, 80);
        assert_eq!(c.checkpoint.every, 100);
        assert!(validate(&c).is_empty());
    }

    #[test]
    fn file_then_set_layering() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "a.toml",
            "name = \"x\"\n[generation]\nchunk_size = 5\noversample = 6\n",
        );
        let r = load(&f, &["generation.chunk_size=2".into(), "seed=9".into()]).unwrap();
        assert_eq!(r.config.generation.chunk_size, Count::N(2));
        assert_eq!(r.config.generation.oversample, 6);
        assert_eq!(r.config.seed, 9);
        assert_eq!(r.config.name, "x");
        assert_eq!(r.config.generation.temperature, 0.7);
    }

    #[test]
    fn unknown_key_names_file_and_full_path() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\nchunk_szie = 5\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: generation.chunk_szie: unknown key"), "{e}");
        assert!(e.contains("did you mean `chunk_size`"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\ntemperature = \"hot\"\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: generation.temperature: wrong type"), "{e}");
    }

    #[test]
    fn out_of_range_values_say_the_range_and_origin() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\nchunk_size = 0\ntop_p = 1.5\n");
        let e = load(&f, &["generation.max_new_tokens=0".into()]).unwrap_err();
        let s = e.to_string();
        assert_eq!(e.problems.len(), 3, "{s}");
        assert!(s.contains("a.toml: generation.chunk_size = 0: must be ≥ 1"), "{s}");
        assert!(s.contains("a.toml: generation.top_p = 1.5: must be in (0, 1]"), "{s}");
        assert!(
            s.contains("--set generation.max_new_tokens=0: generation.max_new_tokens = 0: must be ≥ 1"),
            "{s}"
        );
    }

    #[test]
    fn set_errors() {
        assert!(SetArg::parse("generation.chunk_size")
            .unwrap_err()
            .to_string()
            .contains("expected KEY=VALUE"));
        assert!(SetArg::parse("a..b=1").is_err());
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "");
        let e = load(&f, &["generation.nope=1".into()]).unwrap_err().to_string();
        assert!(
            e.contains("--set generation.nope=1: generation.nope: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn set_values_are_toml_or_strings() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "");
        let r = load(&f, &["name=plain-name".into(), "generation.temperature=1".into()]).unwrap();
        assert_eq!(r.config.name, "plain-name");
        assert_eq!(r.config.generation.temperature, 1.0);
    }

    #[test]
    fn invalid_toml_is_reported_with_position() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: invalid TOML"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file_that_set_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let f = write(
            &d.path().join("sub"),
            "a.toml",
            "[model]\npath = \"m.gguf\"\n[data]\nsource = \"q.json\"\n",
        );
        let r = load(&f, &[]).unwrap();
        assert_eq!(
            r.model_path.unwrap(),
            crate::util::absolute(&d.path().join("sub/m.gguf"))
        );
        assert_eq!(
            r.data_path.unwrap(),
            crate::util::absolute(&d.path().join("sub/q.json"))
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 0.7}], "c": "x"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[1,{"y":0.7,"z":0}]},"b":1}"#);
    }

    #[test]
    fn resolved_toml_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "name = \"rt\"\n[generation]\ntop_p = 0.9\n");
        let r = load(&f, &[]).unwrap();
        let f2 = write(d.path(), "b.toml", &r.to_toml());
        let r2 = load(&f2, &[]).unwrap();
        assert_eq!(r.config, r2.config);
    }
}
