//! The experiment file: defaults < TOML file < `RFTX_…` environment < `--set key.path=value`.
//!
//! Every problem is reported with where the value came from (file, environment variable or
//! `--set` argument), the full key path and the fix. [`Resolved::hash_input`] is the canonical
//! form that the run directory's content hash is computed from.
//!
//! Modules: `load` (the layers and their error messages), `validate` (range checks), `hash`
//! (the canonical form).
mod hash;
mod load;
mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use hash::{canonical_json, EngineKey, HASH_FORMAT};
pub use load::{load, overlay, parse_value, SetArg};
pub use validate::validate;

pub use crate::base::error::ConfigError;
pub use crate::engine::{GpuKernels, KvCacheFormat, WeightFormat};

/// Prefix of environment variables that override config keys; `__` separates key levels:
/// `RFTX_GENERATION__CHUNK_SIZE=5` sets `generation.chunk_size`.
pub const ENV_PREFIX: &str = "RFTX_";
/// Variables with [`ENV_PREFIX`] that configure rftx itself rather than the experiment.
pub const ENV_RESERVED: &[&str] = &[
    "models_dir",
    "runs_dir",
    "test_kills",
    "test_oom",
    "test_fail_shards",
    "require_all",
    "test_python",
    "vocab_dir",
    "templates_dir",
    "cpu_kernel",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name: the prefix of the run directory. Letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Master seed: every sample's RNG stream derives from (seed, question index, sample index).
    pub seed: u64,
    /// Where the model computes: `auto` (the first GPU in a build with CUDA, else the CPU; never
    /// probed), `cpu`, `cuda` or `cuda:N`.
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
    pub layout: crate::core::plan::Layout,
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
    /// Element type of the KV cache: `auto` (the activations': f32 on the CPU), `f32`, `f16`.
    #[serde(default, skip_serializing_if = "KvCacheFormat::is_auto")]
    pub kv_cache: KvCacheFormat,
    /// GPU only: the decode step's kernels, `candle` (tensor ops, fixed 16-row GEMMs) or `fused`
    /// (rftx's CUDA kernels, one GEMM per layer for all rows). Ignored on the CPU.
    #[serde(default, skip_serializing_if = "GpuKernels::is_default")]
    pub gpu_kernels: GpuKernels,
    /// GPU `fused` path only: `false` lets cuBLAS pick each GEMM's kernel by shape, so samples
    /// depend on the batch (what invariance costs, measured). Ignored on the CPU, whose kernels
    /// are batch-invariant by construction.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub batch_invariant: bool,
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
    /// `"builtin"` (the built-in unit-conversion set); a `.json` (a list of `[question, answer]`
    /// pairs or of objects), `.jsonl`, `.csv` or `.parquet` file; or a dataset in the local
    /// Hugging Face hub cache, `Org/Name[@revision]`.
    pub source: String,
    /// Use only the first `limit` questions. Unset: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The field holding the question (a dotted path into nested objects: `problem.text`).
    #[serde(default = "question_field", skip_serializing_if = "is_question_field")]
    pub question_field: String,
    /// The field holding the reference answer.
    #[serde(default = "answer_field", skip_serializing_if = "is_answer_field")]
    pub answer_field: String,
    /// The field holding a question's id, copied into samples and datasets. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Hub datasets: the split (`train`, `test`, …). Unset: `train`, or the only split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Hub datasets: the config (subset) where the dataset has several (GSM8K's `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl DataConfig {
    /// Whether the questions are the built-in set.
    pub fn is_builtin(&self) -> bool {
        self.source == "builtin"
    }
}

fn question_field() -> String {
    "question".into()
}

fn answer_field() -> String {
    "answer".into()
}

fn is_question_field(s: &str) -> bool {
    s == "question"
}

fn is_answer_field(s: &str) -> bool {
    s == "answer"
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: "builtin".into(),
            limit: None,
            question_field: question_field(),
            answer_field: answer_field(),
            id_field: None,
            split: None,
            config: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// System message.
    pub system: String,
    /// Few-shot examples, rendered as earlier user/assistant turns.
    pub examples: Vec<Example>,
    /// The user turn of each question: `{question}`, `{answer}` or any field of the question's
    /// row (`{choices.0}`), `{{`/`}}` for braces. Unset: the question as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The day a chat template's `strftime_now` formats, `YYYY-MM-DD` (a string or a TOML date).
    /// Unset: 2024-07-26 (`core::prompt::Date::DEFAULT`), and left out of the run hash.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "date_text")]
    pub date: Option<String>,
    /// Variables the chat template sees beside `messages` (`enable_thinking = false`,
    /// `date_string`, `tools`, …), as apply_chat_template's keyword arguments. In the run hash
    /// only when not empty.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub template_vars: toml::Table,
}

/// `prompt.date` as its text, whether written as a string or as a TOML date (`2026-01-01`).
fn date_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<toml::Value>::deserialize(d)? {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(toml::Value::Datetime(t)) => Ok(Some(t.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "found {other}, expected a date written YYYY-MM-DD (e.g. \"2026-01-01\")"
        ))),
    }
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
    /// Each sample's tokens' log-probabilities under the sampling distribution, and their sum,
    /// in `samples.jsonl` (`base::sampling::Sampler::draw`). In the run hash only when set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub logprobs: bool,
    /// A question ends once this many of its samples are right: its samples are the first m
    /// (in sample order) such that k of them are right; those decoded past m are dropped. Unset:
    /// every question gets `oversample` samples. In the run hash only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_correct: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RftConfig {
    /// Relative tolerance of the `numeric` grader: |parsed − answer| ≤ tolerance·|answer|.
    /// Unset: [`DEFAULT_TOLERANCE`] on the built-in set (its answers are rounded conversions),
    /// else exact for a whole-number reference (GSM8K's) and [`DEFAULT_TOLERANCE`] for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// How an extracted answer is compared with the reference (see `core::rft::grade`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub grader: Grader,
    /// Where a completion's answer is read from.
    #[serde(default, skip_serializing_if = "is_default")]
    pub extract: Extract,
    /// `extract = "regex"`: the expression whose last match (its first group, if any) is the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Keep a question's correct sample only once when its text repeats.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub dedup: bool,
    /// Keep at most this many correct samples per question (the first ones). Unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_question: Option<usize>,
    /// `dpo_pairs.jsonl`: at most this many (chosen, rejected) pairs per question, the first
    /// ones (see `core::rft::preference`). Unset: one per right sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pairs_per_question: Option<usize>,
    /// `rl_prompts.jsonl`: keep only the questions whose pass rate (correct samples over
    /// samples) lies in `[lo, hi]`, both included. Unset: every question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pass_rate: Option<[f64; 2]>,
    /// `grader = "command"`: the verifier's program and its arguments (`["python3", "v.py"]`),
    /// started once and asked in JSON Lines (see `core::rft::command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `grader = "command"`: the most seconds the verifier may take to answer one request.
    #[serde(default = "command_timeout_s", skip_serializing_if = "is_command_timeout_s")]
    pub command_timeout_s: f64,
}

/// The `numeric` grader's relative tolerance where `rft.tolerance` is unset and it is not exact
/// (the built-in set; references that are not whole numbers).
pub const DEFAULT_TOLERANCE: f64 = 0.05;

/// `rft.command_timeout_s`'s default.
pub const DEFAULT_COMMAND_TIMEOUT_S: f64 = 30.0;

fn command_timeout_s() -> f64 {
    DEFAULT_COMMAND_TIMEOUT_S
}

fn is_command_timeout_s(t: &f64) -> bool {
    *t == DEFAULT_COMMAND_TIMEOUT_S
}

impl Default for RftConfig {
    fn default() -> Self {
        RftConfig {
            tolerance: None,
            grader: Grader::Numeric,
            extract: Extract::Auto,
            pattern: None,
            dedup: true,
            max_per_question: None,
            max_pairs_per_question: None,
            keep_pass_rate: None,
            command: None,
            command_timeout_s: DEFAULT_COMMAND_TIMEOUT_S,
        }
    }
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `rft.grader`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grader {
    /// A number within `rft.tolerance`.
    #[default]
    Numeric,
    /// Equal text after SQuAD's normalisation.
    Exact,
    /// The same option letter (a numeric reference is the option's index, 0 = A).
    Choice,
    /// The reference is a regular expression matching the whole extracted answer.
    Regex,
    /// GSM8K- and MATH-style answers compared by value.
    Math,
    /// The user's verifier, `rft.command`, asked about each completion.
    Command,
}

/// `rft.extract`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extract {
    /// Unset: `answer_tag`, except for the `math` grader, which reads the whole completion where
    /// math_verify looks (an answer tag first, then `\boxed{}`, "final answer" phrases, …).
    #[default]
    Auto,
    /// The last complete `<answer>…</answer>`.
    AnswerTag,
    /// The last `\boxed{…}`.
    Boxed,
    /// The last number of the completion.
    LastNumber,
    /// The whole completion.
    Whole,
    /// The last match of `rft.pattern`.
    Regex,
}

impl Extract {
    /// What `auto` means for `grader`.
    pub fn resolve(self, grader: Grader) -> Extract {
        match (self, grader) {
            (Extract::Auto, Grader::Math) => Extract::Auto,
            (Extract::Auto, _) => Extract::AnswerTag,
            (e, _) => e,
        }
    }
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
            model: ModelConfig {
                path: None,
                weights: WeightFormat::Auto,
                kv_cache: KvCacheFormat::Auto,
                gpu_kernels: GpuKernels::Candle,
                batch_invariant: true,
                arch: None,
                init: ModelInit::File,
            },
            data: DataConfig::default(),
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
                template: None,
                date: None,
                template_vars: toml::Table::new(),
            },
            generation: GenerationConfig {
                oversample: 15,
                chunk_size: Count::N(3),
                prompts_per_batch: Count::N(1),
                temperature: 0.7,
                top_p: 1.0,
                max_new_tokens: 80,
                logprobs: false,
                stop_after_correct: None,
            },
            rft: RftConfig::default(),
            checkpoint: CheckpointConfig { every: 100 },
            memory: MemoryConfig { budget: None, on_exceed: OnExceed::Fail, device_limit: None },
            plan: PlanConfig { layout: crate::core::plan::Layout::Rftx, prompts_per_batch: 1, device: None },
            sweep: toml::Table::new(),
        }
    }
}

/// The `config.toml` a run directory holds (written by [`Resolved::to_toml`]).
pub fn read_run_config(path: &std::path::Path) -> crate::base::error::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::base::error::Error::io(format!("{}: cannot read", path.display()), e))?;
    toml::from_str(&text)
        .map_err(|e| crate::base::error::Error::input(path, format!("unreadable run config ({e}); rerun with --force")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_fix() {
        let c = Config::default();
        assert_eq!(c.generation.oversample, 15);
        assert_eq!(c.generation.chunk_size, Count::N(3));
        assert_eq!(c.generation.max_new_tokens, 80);
        assert_eq!(c.checkpoint.every, 100);
        assert!(validate(&c).is_empty());
    }
}
