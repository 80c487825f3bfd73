//! Record types shared by the generator (`core::generate`, which produces them) and the run
//! directory (`core::store`, which writes them): neither depends on the other for them.

/// Why a sample stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// It produced an end-of-turn / end-of-text token.
    Eos,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated sample of a question.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub sample: usize,
    /// Generated tokens without the final stop token.
    pub tokens: Vec<u32>,
    /// Tokens generated, the stop token included.
    pub new_tokens: usize,
    pub finish: Finish,
}
