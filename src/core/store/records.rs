//! The lines of `samples.jsonl` (one question and its samples) and `chunks.jsonl` (one chunk's
//! measurements).
use serde::{Deserialize, Serialize};

use crate::base::record::{Answer, Finish};

/// One line of `samples.jsonl`: a question and all its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRecord {
    pub index: usize,
    /// `data.id_field` of the question's row, when the data set names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub question: String,
    /// The user turn the model saw, when `prompt.template` made it differ from `question`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub answer: Answer,
    pub samples: Vec<SampleRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub sample: usize,
    pub text: String,
    pub new_tokens: usize,
    pub finish: Finish,
    /// What the grader compared: the number (`numeric`) or its normal form of the answer text.
    pub parsed: Option<Answer>,
    pub correct: bool,
    /// Why the grader could not grade it right, where it says (`math`: no answer found or not
    /// read; `command`: the verifier's reason). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `generation.logprobs`: each generated token's natural log-probability under the
    /// distribution it was drawn from, the stop token's last (`new_tokens` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<f32>>,
    /// With `generation.logprobs`: their sum ([`logprob_sum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_sum: Option<f32>,
}

/// The sum of a sample's token log-probabilities: added in f64 in token order, rounded to f32
/// once (a sum of f32 values that the same values read back give exactly).
pub fn logprob_sum(logprobs: &[f32]) -> f32 {
    logprobs.iter().map(|&x| x as f64).sum::<f64>() as f32
}

/// One line of `chunks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub question: usize,
    pub chunk: usize,
    pub size: usize,
    pub new_tokens: usize,
    pub prefill_ms: f64,
    pub ms: f64,
    pub peak_bytes: u64,
    pub rss_peak_bytes: u64,
    /// Peak GPU memory in use during the chunk (GPU runs only; see `engine::device::GpuMemory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peak_bytes: Option<u64>,
    /// Set when `memory.budget` or an out-of-memory made this question run in smaller chunks:
    /// the configured size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrunk_from: Option<usize>,
    /// Out-of-memory retries of this question before it fitted (`memory.on_exceed = "shrink"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_retries: Option<usize>,
    /// The chunk's share of the batch's decoding steps (each step split among the chunks decoded
    /// in it by their rows; `ms` is split the same way).
    #[serde(default)]
    pub steps: f64,
    /// Rows the batch held when full: `prompts_per_batch` × chunk size.
    #[serde(default)]
    pub batch_rows: usize,
}

#[cfg(test)]
impl ChunkRecord {
    /// A chunk of one sample of one token (test fixture).
    pub(crate) fn example(question: usize) -> ChunkRecord {
        ChunkRecord {
            question,
            chunk: 0,
            size: 1,
            new_tokens: 1,
            prefill_ms: 1.0,
            ms: 1.0,
            peak_bytes: 1,
            rss_peak_bytes: 1,
            gpu_peak_bytes: None,
            shrunk_from: None,
            oom_retries: None,
            steps: 0.0,
            batch_rows: 1,
        }
    }
}
