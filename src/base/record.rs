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
    /// With `generation.logprobs`: each generated token's log-probability under the
    /// distribution it was drawn from (`sampling::Sampler::draw`), one per `new_tokens`: the stop
    /// token's last.
    pub logprobs: Option<Vec<f32>>,
}

/// A question's reference answer, or what was read out of a completion: a number (the built-in
/// set, numeric JSON fields) or text (`#### 72`, `\frac{3}{4}`, `B`, a name). Written to JSON as
/// the number or the string it is, so the built-in set's files keep their bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Number(f64),
    Text(String),
}

impl Answer {
    /// The answer as text: a whole number without `.0`.
    pub fn text(&self) -> String {
        match self {
            Answer::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
            Answer::Number(x) => format!("{x}"),
            Answer::Text(s) => s.clone(),
        }
    }

    /// The answer from a JSON value of a data file: numbers stay numbers, strings text, and
    /// booleans their word; `None` for null, lists and objects.
    pub fn from_json(v: &serde_json::Value) -> Option<Answer> {
        match v {
            serde_json::Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(Answer::Number),
            serde_json::Value::String(s) => Some(Answer::Text(s.clone())),
            serde_json::Value::Bool(b) => Some(Answer::Text(b.to_string())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}
