//! Rejection sampling: read each completion's answer (`extract`), grade it (`grade`, `math`, or
//! the user's verifier: `command`), keep the right ones, and write them in the formats trainers
//! read (`outputs`); the right and wrong ones as preference pairs, labelled samples and RL
//! prompts by pass rate (`preference`); pass@k (`pass`) says how often a question is solved.
pub mod command;
pub mod extract;
pub mod grade;
pub mod math;
pub mod outputs;
pub mod pass;
pub mod preference;

use std::collections::HashSet;

pub use grade::{Grader, Item, Verdict};
pub use preference::Preferences;

use crate::base::record::Answer;
use crate::core::config::RftConfig;
use crate::core::store::QuestionRecord;

/// One kept sample: the question's turn and the completion that answered it right.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub index: usize,
    pub id: Option<String>,
    pub question: String,
    /// The user turn the model saw (the question, or `prompt.template` filled in).
    pub user: String,
    pub answer: Answer,
    pub completion: String,
}

/// The accepted samples in question and sample order, under `rft.dedup` (a question's text and a
/// completion kept once) and `rft.max_per_question`.
#[derive(Debug)]
pub struct Dataset {
    system: String,
    records: Vec<Kept>,
    seen: HashSet<(String, String)>,
    dedup: bool,
    cap: Option<usize>,
}

impl Dataset {
    /// `system`: the system message written into the conversational files.
    pub fn new(rft: &RftConfig, system: &str) -> Self {
        Dataset {
            system: system.to_string(),
            records: Vec::new(),
            seen: HashSet::new(),
            dedup: rft.dedup,
            cap: rft.max_per_question,
        }
    }

    /// Adds a question's correct samples, in sample order (`correct` overrides each sample's
    /// own verdict, as a regrade does).
    pub fn add_question(&mut self, q: &QuestionRecord, correct: Option<&[bool]>) {
        let mut kept = 0;
        for (i, s) in q.samples.iter().enumerate() {
            let right = correct.map_or(s.correct, |c| c.get(i).copied().unwrap_or(false));
            if !right || self.cap.is_some_and(|cap| kept >= cap) {
                continue;
            }
            let text = s.text.trim();
            if self.dedup && !self.seen.insert((q.question.clone(), text.to_string())) {
                continue;
            }
            kept += 1;
            self.records.push(Kept {
                index: q.index,
                id: q.id.clone(),
                question: q.question.clone(),
                user: q.user.clone().unwrap_or_else(|| q.question.clone()),
                answer: q.answer.clone(),
                completion: text.to_string(),
            });
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> &[Kept] {
        &self.records
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    /// The RFT file: a JSON list of `[question, answer, reasoning]`, one record per line.
    pub fn to_json(&self) -> String {
        crate::base::util::json_list(
            self.records
                .iter()
                .map(|k| serde_json::json!([k.question, k.answer, k.completion])),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::record::Finish;
    use crate::core::store::SampleRecord;

    /// Question `index` with samples of the given texts and verdicts, in sample order (also the
    /// preference files' tests' questions).
    pub(crate) fn question(index: usize, texts: &[(&str, bool)]) -> QuestionRecord {
        QuestionRecord {
            index,
            id: None,
            question: format!("q{index}"),
            user: None,
            answer: Answer::Number(1.0),
            samples: texts
                .iter()
                .enumerate()
                .map(|(i, (t, c))| SampleRecord {
                    sample: i,
                    text: t.to_string(),
                    new_tokens: 1,
                    finish: Finish::Eos,
                    parsed: None,
                    correct: *c,
                    reason: None,
                    logprobs: None,
                    logprob_sum: None,
                })
                .collect(),
        }
    }

    #[test]
    fn dataset_dedups_caps_and_serialises() {
        let q = question(
            0,
            &[
                ("r <answer>1</answer>", true),
                ("r <answer>1</answer>\n", true),
                ("x", false),
                ("other", true),
            ],
        );
        let mut d = Dataset::new(&RftConfig::default(), "s");
        d.add_question(&q, None);
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([["q0", 1.0, "r <answer>1</answer>"], ["q0", 1.0, "other"]])
        );

        let mut all = RftConfig {
            dedup: false,
            ..RftConfig::default()
        };
        let mut d = Dataset::new(&all, "s");
        d.add_question(&q, None);
        assert_eq!(d.len(), 3);
        all.max_per_question = Some(1);
        let mut d = Dataset::new(&all, "s");
        d.add_question(&q, Some(&[false, false, true, true]));
        assert_eq!(
            d.records().iter().map(|k| k.completion.as_str()).collect::<Vec<_>>(),
            ["x"]
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&Dataset::new(&all, "s").to_json()).unwrap(),
            serde_json::json!([])
        );
    }
}
