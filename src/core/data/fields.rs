//! Rows to questions: the fields `data.question_field`, `data.answer_field` and `data.id_field`
//! name (dotted paths into nested objects, numbers index lists: `choices.0`), and
//! `prompt.template` filled in with `{question}`, `{answer}` or any field of the row.
use super::files::{Item, Rows};
use super::Question;
use crate::base::error::{Error, Result};
use crate::base::record::Answer;
use crate::core::config::DataConfig;

/// The value at a dotted `path` of `row`.
pub fn field<'v>(row: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.').try_fold(row, |v, key| match v {
        serde_json::Value::Object(m) => m.get(key),
        serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The row's top-level field names, for error messages.
fn names(row: &serde_json::Value) -> String {
    match row.as_object() {
        Some(m) if !m.is_empty() => m.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// A field's value as text: strings as they are, numbers and booleans as JSON writes them.
fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// Every row's question; the first bad row is an error naming the file, the row and the field.
/// The rows are consumed: each is held once, in its question.
pub(super) fn questions(rows: Rows, data: &DataConfig) -> Result<Vec<Question>> {
    let mut out = Vec::with_capacity(rows.items.len());
    for (at, item) in rows.items {
        let bad = |why: String| Error::input(&rows.path, format!("{at}: {why}"));
        let q = match item {
            Item::Pair(q) => q,
            Item::Row(row) => {
                let get = |key: &str, path: &str| {
                    field(&row, path).ok_or_else(|| {
                        bad(format!(
                            "no field `{path}` (its fields: {}); set {key} to the field that holds it",
                            names(&row)
                        ))
                    })
                };
                let question = get("data.question_field", &data.question_field)?;
                let question = question.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    bad(format!(
                        "field `{}` = {question}: the question must be a non-empty string",
                        data.question_field
                    ))
                })?;
                let question = question.to_string();
                let answer = get("data.answer_field", &data.answer_field)?;
                let answer = Answer::from_json(answer).ok_or_else(|| {
                    bad(format!(
                        "field `{}` = {answer}: the answer must be a string or a number",
                        data.answer_field
                    ))
                })?;
                let id = match &data.id_field {
                    None => None,
                    Some(f) => Some(
                        text(get("data.id_field", f)?)
                            .ok_or_else(|| bad(format!("field `{f}`: the id must be a string or a number")))?,
                    ),
                };
                Question {
                    id,
                    row: Some(row),
                    ..Question::new(question, answer)
                }
            }
        };
        out.push(q);
    }
    Ok(out)
}

/// `template` with each `{name}` replaced: `question`, `answer`, else the row's field `name`
/// (dotted paths allowed); `{{` and `}}` are literal braces.
pub fn fill_template(template: &str, q: &Question) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len() + q.question.len());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("a lone `}` (write `}}` for a brace)".into());
        }
        let close = tail.find('}').ok_or("a `{` without its `}` (write `{{` for a brace)")?;
        let name = tail[1..close].trim();
        let value = match name {
            "question" => q.question.clone(),
            "answer" => q.answer.text(),
            _ => {
                let row = q
                    .row
                    .as_ref()
                    .ok_or_else(|| format!("`{{{name}}}`: this data set has only {{question}} and {{answer}}"))?;
                let v = field(row, name)
                    .ok_or_else(|| format!("`{{{name}}}`: no such field in the row (its fields: {})", names(row)))?;
                text(v).unwrap_or_else(|| v.to_string())
            }
        };
        out.push_str(&value);
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_fields_and_templates() {
        let row = serde_json::json!({"q": {"text": "2+2?"}, "choices": ["3", "4"], "n": 7});
        assert_eq!(field(&row, "q.text"), Some(&serde_json::json!("2+2?")));
        assert_eq!(field(&row, "choices.1"), Some(&serde_json::json!("4")));
        assert_eq!(field(&row, "choices.2"), None);
        let q = Question {
            row: Some(row),
            ..Question::new("2+2?".into(), Answer::Text("B".into()))
        };
        assert_eq!(
            fill_template("{question}\nA) {choices.0} B) {choices.1} {{n}}={n}", &q).unwrap(),
            "2+2?\nA) 3 B) 4 {n}=7"
        );
        assert!(fill_template("{nope}", &q)
            .unwrap_err()
            .contains("its fields: q, choices, n"));
        assert!(fill_template("{question", &q).is_err());
        assert!(fill_template("x}", &q).is_err());
        let builtin = Question::new("q".into(), Answer::Number(1.0));
        assert_eq!(fill_template("Q: {question} ({answer})", &builtin).unwrap(), "Q: q (1)");
        assert!(fill_template("{topic}", &builtin)
            .unwrap_err()
            .contains("only {question} and {answer}"));
    }
}
