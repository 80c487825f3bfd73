//! Graders (`rft.grader`): whether an extracted answer matches the question's reference.
//!
//! - `numeric`: the first number of the extracted text within `rft.tolerance` (relative) of the
//!   reference's number (after a `####` when the reference has one, as GSM8K's do);
//! - `exact`: equal after SQuAD's normalisation (lower case, ASCII punctuation and the words
//!   a/an/the removed, runs of white space made one space);
//! - `choice`: the same option letter — the first letter A–Z standing alone; a numeric reference
//!   is the option's index (0 is A), as MMLU stores it;
//! - `regex`: the reference is a regular expression that matches the whole extracted text;
//! - `math`: the same mathematical value (see [`super::math`]);
//! - `command`: the user's verifier says so (`rft.command`, see [`super::command`]); it gets the
//!   whole completion, and its verdicts come from [`Grader::grade_all`] only.
use std::sync::{Arc, LazyLock};

use regex::Regex;

use super::command::{Request, Verifier};
use super::extract::Extractor;
use super::math;
use crate::base::error::Error;
use crate::base::record::Answer;
use crate::core::config::{DataConfig, Grader as Kind, RftConfig, DEFAULT_TOLERANCE};

/// What grading one completion found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The answer text `rft.extract` read, if any.
    pub extracted: Option<String>,
    /// What the grader compared: a number for `numeric`, else its normal form of the text.
    pub parsed: Option<Answer>,
    pub correct: bool,
    /// `math`: the rule that found the answer (`boxed`, `answer tag`, `final answer … is`, …).
    pub rule: Option<&'static str>,
    /// Why an answer was not graded right where the grader can say: `math` when it found no
    /// answer or could not read it; `command` when the verifier gave one.
    pub reason: Option<String>,
}

/// A compiled `[rft]` grader.
#[derive(Debug, Clone)]
pub struct Grader {
    kind: Kind,
    extractor: Extractor,
    /// `rft.tolerance`; `None`: exact for whole-number references, [`DEFAULT_TOLERANCE`] for others.
    tolerance: Option<f64>,
    /// `command`: the verifier, shared by clones (one process).
    verifier: Option<Arc<Verifier>>,
}

/// One completion to grade with [`Grader::grade_all`]: its reference and its question's row
/// (what the `command` grader's verifier is told besides; the other graders ignore it).
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub completion: &'a str,
    pub answer: &'a Answer,
    pub row: &'a serde_json::Value,
}

impl Grader {
    pub fn new(rft: &RftConfig) -> Result<Self, String> {
        Ok(Grader {
            kind: rft.grader,
            extractor: Extractor::new(rft.extract.resolve(rft.grader), rft.pattern.as_deref())?,
            tolerance: rft.tolerance,
            verifier: match (rft.grader, &rft.command) {
                (Kind::Command, Some(argv)) if !argv.is_empty() => {
                    Some(Arc::new(Verifier::new(argv.clone(), rft.command_timeout_s)))
                }
                (Kind::Command, _) => {
                    return Err(
                        "rft.grader = \"command\" needs rft.command, the verifier's program and its arguments".into(),
                    )
                }
                _ => None,
            },
        })
    }

    /// The grader for the questions of `data`: on the built-in set an unset `rft.tolerance` is
    /// [`DEFAULT_TOLERANCE`] for every reference, whole numbers included (its answers are
    /// conversions, which completions round), as it always was.
    pub fn for_data(mut self, data: &DataConfig) -> Self {
        if data.is_builtin() {
            self.tolerance.get_or_insert(DEFAULT_TOLERANCE);
        }
        self
    }

    /// Starts the `command` grader's verifier now (the other graders have nothing to start), so
    /// that a command that cannot run is reported before anything is written.
    pub fn start(&self) -> Result<(), String> {
        self.verifier.as_ref().map_or(Ok(()), |v| v.start())
    }

    /// Grades every item: the built-in graders one by one, the `command` grader in one batch
    /// of requests to its verifier (its reasons in the verdicts). A verifier that fails is an
    /// [`Error::Run`] naming it.
    pub fn grade_all(&self, items: &[Item]) -> Result<Vec<Verdict>, Error> {
        let Some(verifier) = &self.verifier else {
            return Ok(items.iter().map(|i| self.grade(i.completion, i.answer)).collect());
        };
        let references: Vec<String> = items.iter().map(|i| i.answer.text()).collect();
        let requests: Vec<Request> = items
            .iter()
            .zip(&references)
            .map(|(i, reference)| Request {
                completion: i.completion,
                reference,
                row: i.row,
            })
            .collect();
        let responses = verifier.ask(&requests)?;
        Ok(items
            .iter()
            .zip(responses)
            .map(|(i, r)| {
                // Nothing extracted: the verifier read the whole completion. The other fields
                // are an unanswered completion's.
                Verdict {
                    extracted: None,
                    parsed: r.parsed,
                    correct: r.correct,
                    reason: r.reason,
                    ..self.grade("", i.answer)
                }
            })
            .collect())
    }

    /// The relative tolerance for the reference number `a`.
    fn tolerance_for(&self, a: f64) -> f64 {
        self.tolerance
            .unwrap_or(if a.fract() == 0.0 { 0.0 } else { DEFAULT_TOLERANCE })
    }

    /// Whether `answer` can be a reference for this grader; the reason when it cannot.
    pub fn check_reference(&self, answer: &Answer) -> Result<(), String> {
        let ok = match self.kind {
            // The verifier reads references as it likes.
            Kind::Command => return Ok(()),
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
        if self.kind == Kind::Math {
            return self.math(extracted, answer);
        }
        let (parsed, correct) = match extracted.as_deref() {
            None => (None, false),
            Some(x) => self.compare(x, answer),
        };
        Verdict {
            extracted,
            parsed,
            correct,
            rule: None,
            reason: None,
        }
    }

    /// The math grader reads the extracted text (with `rft.extract` unset, the whole completion)
    /// where math_verify looks for an answer.
    fn math(&self, extracted: Option<String>, answer: &Answer) -> Verdict {
        let whole = self.extractor.is_whole();
        let Some(x) = extracted else {
            return Verdict {
                extracted: None,
                parsed: None,
                correct: false,
                rule: None,
                reason: Some("rft.extract found no answer".into()),
            };
        };
        let o = if whole {
            math::grade(&x, &answer.text())
        } else {
            math::grade_extracted(&x, &answer.text())
        };
        Verdict {
            extracted: Some(x),
            parsed: o.parsed.map(Answer::Text),
            correct: o.correct,
            rule: o.rule,
            reason: o.reason,
        }
    }

    fn compare(&self, x: &str, answer: &Answer) -> (Option<Answer>, bool) {
        match self.kind {
            Kind::Numeric => {
                let p = first_number(x);
                let ok = p
                    .zip(reference_number(answer))
                    .is_some_and(|(p, a)| within(p, a, self.tolerance_for(a)));
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
            Kind::Math => unreachable!("graded by Grader::math"),
            // Its verifier grades in `grade_all`; nothing is compared here.
            Kind::Command => (None, false),
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

/// `^(?:pattern)$`: the reference must match the whole extracted text. The pattern is checked
/// alone first: `a)|(z` is no expression, though `^(?:a)|(z)$` would compile.
fn full_match(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern)?;
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
    use crate::core::config::{DataConfig, Extract, RftConfig};

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
    fn whole_numbers_are_exact_unless_a_tolerance_is_set() {
        let numeric = grader(Kind::Numeric, Extract::AnswerTag);
        let gsm8k = t("48 + 24 = 72\n#### 72");
        assert!(!numeric.grade("<answer>73</answer>", &gsm8k).correct);
        assert!(numeric.grade("<answer>72.0</answer>", &gsm8k).correct);
        assert!(!numeric.grade("<answer>1040</answer>", &Answer::Number(1000.0)).correct);
        // A reference that is not a whole number keeps the relative 5 %.
        assert!(numeric.grade("<answer>2.6</answer>", &Answer::Number(2.54)).correct);
        // The built-in set keeps 5 % for every reference, as it always had.
        let builtin = numeric.clone().for_data(&DataConfig::default());
        assert!(builtin.grade("<answer>1040</answer>", &Answer::Number(1000.0)).correct);
        let set = Grader::new(&RftConfig {
            tolerance: Some(0.05),
            ..RftConfig::default()
        })
        .unwrap();
        assert!(set.grade("<answer>73</answer>", &gsm8k).correct);
        let exact = Grader::new(&RftConfig {
            tolerance: Some(0.0),
            ..RftConfig::default()
        })
        .unwrap()
        .for_data(&DataConfig::default());
        assert!(!exact.grade("<answer>1040</answer>", &Answer::Number(1000.0)).correct);
    }

    #[test]
    fn a_regex_reference_is_checked_before_it_is_anchored() {
        let regex = grader(Kind::Regex, Extract::AnswerTag);
        // `^(?:a)|(z)$` compiles, and would match any text starting with `a`.
        let e = regex.check_reference(&t("a)|(z")).unwrap_err();
        assert!(e.contains("the answer \"a)|(z\" is not a regular expression"), "{e}");
        assert!(!regex.grade("<answer>abc</answer>", &t("a)|(z")).correct);
        assert!(regex.check_reference(&t("a|z")).is_ok());
        assert!(!regex.grade("<answer>abc</answer>", &t("a|z")).correct);
    }

    #[test]
    fn the_command_grader_asks_its_verifier_in_one_batch() {
        let script = r#"n=0; while read -r l; do n=$((n+1)); case "$l" in *'"completion":"yes'*) echo "{\"correct\": true, \"parsed\": \"$n\"}";; *) echo '{"correct": false, "reason": "no"}';; esac; done"#;
        let rft = RftConfig {
            grader: Kind::Command,
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            ..RftConfig::default()
        };
        let g = Grader::new(&rft).unwrap();
        assert!(g.check_reference(&t("")).is_ok());
        let row = serde_json::json!({"index": 0, "id": null, "question": "q"});
        let answer = t("#### 5");
        let items: Vec<Item> = ["yes 5", "no", "yes"]
            .iter()
            .map(|c| Item {
                completion: c,
                answer: &answer,
                row: &row,
            })
            .collect();
        let v = g.grade_all(&items).unwrap();
        assert_eq!(v.iter().map(|v| v.correct).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(v[2].parsed, Some(t("3")));
        assert_eq!(v[1].reason.as_deref(), Some("no"));
        // A clone shares the process: the count goes on.
        assert_eq!(g.clone().grade_all(&items[..1]).unwrap()[0].parsed, Some(t("4")));
        let none = RftConfig { command: None, ..rft };
        assert!(Grader::new(&none).unwrap_err().contains("needs rft.command"));
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
            "<answer>7</answer>",
            "The answer is \\boxed{5}, not",
            "math: a reference's boxes close together are one answer, {5, 7}, as math_verify reads them (the table's script takes the last box alone)",
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
