//! Graders (`rft.grader`): whether an extracted answer matches the question's reference.
//!
//! - `numeric`: the first number of the extracted text within `rft.tolerance` (relative) of the
//!   reference's number (after a `####` when the reference has one, as GSM8K's do);
//! - `exact`: equal after SQuAD's normalisation (lower case, ASCII punctuation and the words
//!   a/an/the removed, runs of white space made one space);
//! - `choice`: the same option letter — the first letter A–Z standing alone; a numeric reference
//!   is the option's index (0 is A), as MMLU stores it;
//! - `regex`: the reference is a regular expression that matches the whole extracted text;
//! - `math`: the same mathematical value (see [`super::math`]).
use std::sync::LazyLock;

use regex::Regex;

use super::extract::Extractor;
use super::math;
use crate::base::record::Answer;
use crate::core::config::{Grader as Kind, RftConfig};

/// What grading one completion found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The answer text `rft.extract` read, if any.
    pub extracted: Option<String>,
    /// What the grader compared: a number for `numeric`, else its normal form of the text.
    pub parsed: Option<Answer>,
    pub correct: bool,
}

/// A compiled `[rft]` grader.
#[derive(Debug, Clone)]
pub struct Grader {
    kind: Kind,
    extractor: Extractor,
    tolerance: f64,
}

impl Grader {
    pub fn new(rft: &RftConfig) -> Result<Self, String> {
        Ok(Grader {
            kind: rft.grader,
            extractor: Extractor::new(rft.extract, rft.pattern.as_deref())?,
            tolerance: rft.tolerance,
        })
    }

    /// Whether `answer` can be a reference for this grader; the reason when it cannot.
    pub fn check_reference(&self, answer: &Answer) -> Result<(), String> {
        let ok = match self.kind {
            Kind::Numeric => reference_number(answer).is_some(),
            Kind::Choice => reference_letter(answer).is_some(),
            Kind::Regex => {
                return full_match(&answer.text())
                    .map(|_| ())
                    .map_err(|e| format!("the answer {:?} is not a regular expression: {e}", answer.text()))
            }
            Kind::Exact | Kind::Math => !reference_text(answer).is_empty(),
        };
        if ok {
            return Ok(());
        }
        let what = match self.kind {
            Kind::Numeric => "has no number (rft.grader = \"numeric\"; use \"exact\" or \"math\" for other answers)",
            Kind::Choice => {
                "has no option letter A–Z standing alone and is not an index 0–25 (rft.grader = \"choice\")"
            }
            _ => "is empty",
        };
        Err(format!("the answer {:?} {what}", answer.text()))
    }

    /// Grades one completion against the reference.
    pub fn grade(&self, completion: &str, answer: &Answer) -> Verdict {
        let extracted = self.extractor.extract(completion);
        let (parsed, correct) = match extracted.as_deref() {
            None => (None, false),
            Some(x) => self.compare(x, answer),
        };
        Verdict {
            extracted,
            parsed,
            correct,
        }
    }

    fn compare(&self, x: &str, answer: &Answer) -> (Option<Answer>, bool) {
        match self.kind {
            Kind::Numeric => {
                let p = first_number(x);
                let ok = p
                    .zip(reference_number(answer))
                    .is_some_and(|(p, a)| within(p, a, self.tolerance));
                (p.map(Answer::Number), ok)
            }
            Kind::Exact => {
                let n = normalize_text(x);
                let ok = n == normalize_text(&reference_text(answer));
                (Some(Answer::Text(n)), ok)
            }
            Kind::Choice => {
                let l = letter(x);
                let ok = l.is_some() && l == reference_letter(answer);
                (l.map(|c| Answer::Text(c.to_string())), ok)
            }
            Kind::Regex => {
                let ok = full_match(&answer.text()).is_ok_and(|re| re.is_match(x));
                (Some(Answer::Text(x.to_string())), ok)
            }
            Kind::Math => {
                let ok = math::equivalent(x, &math::reference(&answer.text()));
                (Some(Answer::Text(x.to_string())), ok)
            }
        }
    }
}

/// Whether `parsed` is within relative `tolerance` of `expected` (absolute when it is 0).
pub fn within(parsed: f64, expected: f64, tolerance: f64) -> bool {
    let scale = if expected == 0.0 { 1.0 } else { expected.abs() };
    (parsed - expected).abs() <= tolerance * scale
}

/// A text reference as graders read it: what follows the last `####` (GSM8K's final answers),
/// else the whole text; trimmed.
pub fn reference_text(answer: &Answer) -> String {
    let t = answer.text();
    super::extract::after_hashes(&t).unwrap_or(&t).trim().to_string()
}

fn reference_number(answer: &Answer) -> Option<f64> {
    match answer {
        Answer::Number(x) => Some(*x),
        Answer::Text(_) => first_number(&reference_text(answer)),
    }
}

fn reference_letter(answer: &Answer) -> Option<char> {
    match answer {
        Answer::Number(i) if i.fract() == 0.0 && (0.0..26.0).contains(i) => Some((b'A' + *i as u8) as char),
        Answer::Number(_) => None,
        Answer::Text(t) => letter(t),
    }
}

/// `^(?:pattern)$`: the reference must match the whole extracted text.
fn full_match(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The first letter A–Z with no ASCII letter or digit on either side.
pub fn letter(s: &str) -> Option<char> {
    let b = s.as_bytes();
    let alnum = |i: Option<usize>| i.and_then(|i| b.get(i)).is_some_and(|c| c.is_ascii_alphanumeric());
    (0..b.len()).find_map(|i| {
        let standalone = b[i].is_ascii_uppercase() && !alnum(i.checked_sub(1)) && !alnum(Some(i + 1));
        standalone.then_some(b[i] as char)
    })
}

/// SQuAD v1.1's `normalize_answer`: lower case, no ASCII punctuation, no articles, single spaces.
pub fn normalize_text(s: &str) -> String {
    static ARTICLES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").expect("valid"));
    let lower: String = s.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = ARTICLES.replace_all(&lower, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first number in `s`: commas between digits dropped (`1,234.5`), a sign, decimals and an
/// exponent read; units and words around it ignored (`$-0.25`, `3000 meters`).
pub fn first_number(s: &str) -> Option<f64> {
    let chars: Vec<char> = s.chars().collect();
    let cleaned: String = chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            !(c == ','
                && i > 0
                && i + 1 < chars.len()
                && chars[i - 1].is_ascii_digit()
                && chars[i + 1].is_ascii_digit())
        })
        .map(|(_, &c)| c)
        .collect();
    let b = cleaned.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_digit());
    let start = (0..b.len()).find(|&i| {
        digit(i)
            || (matches!(b[i], b'-' | b'.') && digit(i + 1))
            || (b[i] == b'-' && b.get(i + 1) == Some(&b'.') && digit(i + 2))
    })?;
    let mut j = start + 1;
    let (mut seen_dot, mut seen_exp) = (b[start] == b'.', false);
    while j < b.len() {
        match b[j] {
            c if c.is_ascii_digit() => j += 1,
            b'.' if !seen_dot && !seen_exp && digit(j + 1) => {
                seen_dot = true;
                j += 1;
            }
            b'e' | b'E' if !seen_exp => {
                let k = if matches!(b.get(j + 1), Some(b'+' | b'-')) {
                    j + 2
                } else {
                    j + 1
                };
                if !digit(k) {
                    break;
                }
                seen_exp = true;
                j = k;
            }
            _ => break,
        }
    }
    cleaned[start..j].parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{Extract, RftConfig};

    fn grader(kind: Kind, extract: Extract) -> Grader {
        Grader::new(&RftConfig {
            grader: kind,
            extract,
            ..RftConfig::default()
        })
        .unwrap()
    }

    fn t(s: &str) -> Answer {
        Answer::Text(s.into())
    }

    #[test]
    fn numbers_are_read_as_before() {
        assert_eq!(first_number("1,234.5 meters"), Some(1234.5));
        assert_eq!(first_number("$-0.25"), Some(-0.25));
        assert_eq!(first_number("1.5e3"), Some(1500.0));
        assert_eq!(first_number(".5"), Some(0.5));
        assert_eq!(first_number("7e"), Some(7.0));
        assert_eq!(first_number("1,2"), Some(12.0));
        assert_eq!(first_number("3, 4"), Some(3.0));
        assert_eq!(first_number("none"), None);
        assert!(within(104.9, 100.0, 0.05) && !within(105.1, 100.0, 0.05) && within(0.01, 0.0, 0.05));
    }

    #[test]
    fn each_grader_on_its_own_kind_of_answer() {
        let numeric = grader(Kind::Numeric, Extract::AnswerTag);
        let v = numeric.grade("so <answer>3,000 m</answer>", &Answer::Number(3000.0));
        assert_eq!((v.parsed, v.correct), (Some(Answer::Number(3000.0)), true));
        assert!(
            numeric
                .grade("<answer>72</answer>", &t("She sold 48 + 24 = 72.\n#### 72"))
                .correct
        );
        assert!(!numeric.grade("no tag 72", &Answer::Number(72.0)).correct);

        let exact = grader(Kind::Exact, Extract::AnswerTag);
        assert!(
            exact
                .grade("<answer>The Eiffel Tower!</answer>", &t("eiffel tower"))
                .correct
        );
        assert!(!exact.grade("<answer>Tower</answer>", &t("eiffel tower")).correct);

        let choice = grader(Kind::Choice, Extract::AnswerTag);
        assert!(choice.grade("<answer>(C) 42</answer>", &t("C")).correct);
        assert!(choice.grade("<answer>Answer: B</answer>", &Answer::Number(1.0)).correct);
        assert!(!choice.grade("<answer>I think C</answer>", &t("C")).correct);

        let regex = grader(Kind::Regex, Extract::AnswerTag);
        assert!(
            regex
                .grade("<answer>Paris, France</answer>", &t("Paris(, France)?"))
                .correct
        );
        assert!(
            !regex
                .grade("<answer>Paris, Texas</answer>", &t("Paris(, France)?"))
                .correct
        );
    }

    #[test]
    fn references_a_grader_cannot_read_are_named() {
        let numeric = grader(Kind::Numeric, Extract::AnswerTag);
        assert!(numeric.check_reference(&t("#### 72")).is_ok());
        assert!(numeric
            .check_reference(&t("seventy"))
            .unwrap_err()
            .contains("has no number"));
        let choice = grader(Kind::Choice, Extract::AnswerTag);
        assert!(choice.check_reference(&Answer::Number(30.0)).is_err());
        assert!(grader(Kind::Regex, Extract::AnswerTag)
            .check_reference(&t("(unclosed"))
            .unwrap_err()
            .contains("not a regular expression"));
    }

    #[test]
    fn squad_normalisation() {
        assert_eq!(normalize_text("  The  Cat's hat, a RED one. "), "cats hat red one");
        assert_eq!(normalize_text("Théâtre"), "théâtre");
    }
}

/// The graders against `tests/data/grader_cases.jsonl`: verdicts of a Python reference
/// (`scripts/grader_reference.py`: SQuAD's normalisation, Python's `re`, math_verify 0.9.0).
#[cfg(test)]
mod reference_table {
    use super::*;
    use crate::core::config::RftConfig;

    /// Cases where rftx deliberately differs from the reference: (completion, the start of the
    /// reference answer, why). Each must still differ, so the list cannot go stale.
    const KNOWN: &[(&str, &str, &str)] = &[
        (
            "<answer>72</answer>",
            "Natalia",
            "numeric: a GSM8K solution's answer is after `####` (the reference takes its first number, 48)",
        ),
        (
            "<answer>48</answer>",
            "Natalia",
            "numeric: the same solution; 48 is not its answer",
        ),
        (
            "We compute directly. <answer> 1\\,234 </answer>",
            "",
            "math: `1\\,234` is 1234 with a thin space (math_verify reads 1 + 234)",
        ),
        (
            "Checking the arithmetic once more,\nTherefore the final answer is $\\boxed{18 dollars}$.",
            "",
            "math: words after the number are dropped (math_verify multiplies their letters)",
        ),
        (
            "Substituting and simplifying,\nFinal answer: \\text{\\$}18",
            "",
            "math: a dollar sign in \\text{} is a unit",
        ),
        (
            "Checking the arithmetic once more,\nThe answer is $\\boxed{\\frac{3}{4}.}$.",
            "",
            "math: a sentence's final period is not part of the value",
        ),
        (
            "Substituting and simplifying,\n<answer> 3/4. </answer>",
            "",
            "math: `3/4.` is 3/4 (math_verify reads 3)",
        ),
    ];

    #[test]
    fn graders_agree_with_the_reference_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/grader_cases.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let mut wrong = Vec::new();
        let mut count = std::collections::BTreeMap::<String, usize>::new();
        for (i, line) in text.lines().enumerate() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let rft: RftConfig = serde_json::from_value(serde_json::json!({
                "tolerance": case.get("tolerance").cloned().unwrap_or(serde_json::json!(0.05)),
                "grader": case["grader"], "extract": case["extract"], "pattern": case.get("pattern"),
            }))
            .unwrap();
            let grader = Grader::new(&rft).unwrap();
            let answer = Answer::from_json(&case["answer"]).unwrap();
            let v = grader.grade(case["completion"].as_str().unwrap(), &answer);
            *count.entry(case["grader"].as_str().unwrap().to_string()).or_default() += 1;
            let extracted_ok = v.extracted.as_deref() == case["extracted"].as_str();
            let reference = Answer::from_json(&case["answer"]).unwrap().text();
            let known = KNOWN
                .iter()
                .any(|(c, a, _)| *c == case["completion"].as_str().unwrap() && reference.starts_with(a));
            if (!extracted_ok || v.correct != case["correct"].as_bool().unwrap()) != known {
                wrong.push(format!(
                    "line {}: {line}\n  rftx: extracted {:?}, correct {}",
                    i + 1,
                    v.extracted,
                    v.correct
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} cases differ:\n{}",
            wrong.len(),
            text.lines().count(),
            wrong.join("\n")
        );
        assert!(count.values().all(|&n| n >= 200), "{count:?}");
    }
}
