//! Question sets: the built-in unit-conversion set (`builtin`), and the user's own files — a
//! JSON list of `[question, answer]` pairs (the homework's format) or of objects, JSON Lines,
//! CSV, Parquet, or a dataset in the local Hugging Face hub cache (`files`, its data files chosen
//! by `hub`) — with the question,
//! answer and id read from the fields `data.*_field` name (`fields`), and `prompt.template`
//! filled in from the row.
mod builtin;
mod fields;
mod files;
mod hub;

use std::path::Path;

pub use builtin::{builtin, format_number, BUILTIN_COUNT};
pub use fields::{field, fill_template};

use crate::base::error::{Error, Result};
use crate::base::record::Answer;
use crate::core::config::DataConfig;

/// One question with its reference answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub question: String,
    pub answer: Answer,
    /// `data.id_field` of its row.
    pub id: Option<String>,
    /// The user turn when `prompt.template` is set (else the question itself).
    pub user: Option<String>,
    /// The row it came from (files of objects), for the digest.
    pub row: Option<serde_json::Value>,
}

impl Question {
    pub fn new(question: String, answer: Answer) -> Self {
        Question {
            question,
            answer,
            id: None,
            user: None,
            row: None,
        }
    }

    /// The user turn of its prompt.
    pub fn user_text(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.question)
    }
}

/// The question set a run uses and its digest.
#[derive(Debug, Clone)]
pub struct QuestionSet {
    pub questions: Vec<Question>,
    /// sha256 of the homework's `[[question, answer], …]` JSON for the built-in set and pair
    /// files (the digest runs were always hashed with), else of every question's id, question,
    /// answer, user turn and row as JSON Lines.
    pub sha256: String,
    /// `builtin`, the file's path or the hub dataset.
    pub source: String,
}

impl QuestionSet {
    pub fn new(questions: Vec<Question>, source: String) -> Self {
        let sha256 = digest(&questions);
        QuestionSet {
            questions,
            sha256,
            source,
        }
    }

    /// Loads the configured set (`path`: `data.source` resolved, `None` for the built-in set),
    /// applies `data.limit` and fills `template` in. Errors name the file, row and field.
    pub fn from_config(path: Option<&Path>, data: &DataConfig, template: Option<&str>) -> Result<Self> {
        // `data.limit` applies while reading: rows after it are neither read nor checked. The
        // digest is of the questions kept, as it always was.
        let (mut questions, source) = match path {
            None => (
                builtin(data.limit.unwrap_or(BUILTIN_COUNT).min(BUILTIN_COUNT)),
                "builtin".to_string(),
            ),
            Some(p) => {
                let rows = files::load(p, data)?;
                let source = rows.source.clone();
                (fields::questions(rows, data)?, source)
            }
        };
        if let Some(t) = template {
            for (i, q) in questions.iter_mut().enumerate() {
                let user = fields::fill_template(t, q).map_err(|e| {
                    Error::input(
                        path.unwrap_or(Path::new("builtin")),
                        format!("question {i}: prompt.template: {e}"),
                    )
                })?;
                q.user = Some(user);
            }
        }
        Ok(QuestionSet::new(questions, source))
    }
}

fn digest(questions: &[Question]) -> String {
    let legacy = questions
        .iter()
        .all(|q| q.row.is_none() && q.id.is_none() && q.user.is_none());
    let text = if legacy {
        to_json(questions)
    } else {
        let mut s = String::new();
        for q in questions {
            let line = serde_json::json!({"id": q.id, "question": q.question, "answer": q.answer, "user": q.user, "row": q.row});
            s.push_str(&crate::core::config::canonical_json(&line));
            s.push('\n');
        }
        s
    };
    crate::base::util::sha256_hex(text.as_bytes())
}

/// The homework's format: `[[question, answer], …]`, one pair per line.
pub fn to_json(questions: &[Question]) -> String {
    crate::base::util::json_list(questions.iter().map(|q| serde_json::json!([q.question, q.answer])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_tracks_content_limit_and_template() {
        let data = |limit| DataConfig {
            limit: Some(limit),
            ..DataConfig::default()
        };
        let a = QuestionSet::from_config(None, &data(5), None).unwrap();
        let b = QuestionSet::from_config(None, &data(6), None).unwrap();
        assert_eq!(a.questions.len(), 5);
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a.sha256, QuestionSet::from_config(None, &data(5), None).unwrap().sha256);
        // The built-in set's digest is the one every run was hashed with.
        assert_eq!(a.sha256, crate::base::util::sha256_hex(to_json(&builtin(5)).as_bytes()));
        let t = QuestionSet::from_config(None, &data(5), Some("Q: {question}")).unwrap();
        assert_ne!(a.sha256, t.sha256);
        assert_eq!(t.questions[0].user_text(), format!("Q: {}", a.questions[0].question));
    }
}
