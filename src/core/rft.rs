//! Rejection sampling: parse each completion's final `<answer>…</answer>`, grade it, and keep
//! the right ones as `[question, answer, reasoning]` records.
use std::collections::HashSet;

/// The number inside the last complete `<answer>…</answer>` of `text`, if there is one.
/// Accepts thousands separators (`1,000`), a leading `$` or `+`, exponents, and trailing units
/// (`3000 meters`).
pub fn parse_answer(text: &str) -> Option<f64> {
    let start = text.rfind("<answer>")? + "<answer>".len();
    let end = start + text[start..].find("</answer>")?;
    first_number(&text[start..end])
}

fn first_number(s: &str) -> Option<f64> {
    let cleaned: String = {
        // Drop commas between digits: "1,234.5" → "1234.5".
        let b: Vec<char> = s.chars().collect();
        b.iter()
            .enumerate()
            .filter(|&(i, &c)| {
                !(c == ',' && i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
            })
            .map(|(_, &c)| c)
            .collect()
    };
    let bytes = cleaned.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = c.is_ascii_digit()
            || ((c == b'-' || c == b'.') && bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit()))
            || (c == b'-' && bytes.get(i + 1) == Some(&b'.') && bytes.get(i + 2).is_some_and(|n| n.is_ascii_digit()));
        if starts {
            let mut j = i + 1;
            let mut seen_dot = c == b'.';
            let mut seen_exp = false;
            while j < bytes.len() {
                let d = bytes[j];
                if d.is_ascii_digit() {
                    j += 1;
                } else if d == b'.' && !seen_dot && !seen_exp && bytes.get(j + 1).is_some_and(|n| n.is_ascii_digit()) {
                    seen_dot = true;
                    j += 1;
                } else if (d == b'e' || d == b'E') && !seen_exp {
                    let k = if matches!(bytes.get(j + 1), Some(b'+') | Some(b'-')) {
                        j + 2
                    } else {
                        j + 1
                    };
                    if bytes.get(k).is_some_and(|n| n.is_ascii_digit()) {
                        seen_exp = true;
                        j = k;
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            return cleaned[i..j].parse::<f64>().ok().filter(|x| x.is_finite());
        }
        i += 1;
    }
    None
}

/// Whether `parsed` is within relative `tolerance` of `expected` (absolute when it is 0).
pub fn is_correct(parsed: f64, expected: f64, tolerance: f64) -> bool {
    let scale = if expected == 0.0 { 1.0 } else { expected.abs() };
    (parsed - expected).abs() <= tolerance * scale
}

/// Collects accepted records in order, dropping exact duplicates.
#[derive(Debug, Default)]
pub struct Dataset {
    records: Vec<(String, f64, String)>,
    seen: HashSet<(String, String)>,
}

impl Dataset {
    /// Adds a correct sample; returns false if the same (question, reasoning) was already kept.
    pub fn add(&mut self, question: &str, answer: f64, reasoning: &str) -> bool {
        let reasoning = reasoning.trim();
        if !self.seen.insert((question.to_string(), reasoning.to_string())) {
            return false;
        }
        self.records.push((question.to_string(), answer, reasoning.to_string()));
        true
    }

    /// Adds a question's correct samples, in sample order.
    pub fn add_question(&mut self, q: &crate::core::store::QuestionRecord) {
        for s in q.samples.iter().filter(|s| s.correct) {
            self.add(&q.question, q.answer, &s.text);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The RFT file: a JSON list of `[question, answer, reasoning]`, one record per line.
    pub fn to_json(&self) -> String {
        crate::base::util::json_list(self.records.iter().map(|(q, a, r)| serde_json::json!([q, a, r])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_complete_tag() {
        assert_eq!(parse_answer("x <answer>3000</answer>"), Some(3000.0));
        assert_eq!(parse_answer("<answer>1</answer> then <answer>2.5</answer>"), Some(2.5));
        assert_eq!(parse_answer("<answer>1,234.5 meters</answer>"), Some(1234.5));
        assert_eq!(parse_answer("<answer>$-0.25</answer>"), Some(-0.25));
        assert_eq!(parse_answer("<answer>1.5e3</answer>"), Some(1500.0));
        assert_eq!(parse_answer("<answer>.5</answer>"), Some(0.5));
        assert_eq!(parse_answer("<answer>about 12 km</answer>"), Some(12.0));
        assert_eq!(parse_answer("<answer>7e</answer>"), Some(7.0));
        assert_eq!(parse_answer("<answer>none</answer>"), None);
        assert_eq!(parse_answer("<answer>12"), None);
        assert_eq!(parse_answer("no tag 12"), None);
        assert_eq!(parse_answer("<answer>1,2</answer>"), Some(12.0));
        assert_eq!(parse_answer("<answer>3, 4</answer>"), Some(3.0));
    }

    #[test]
    fn tolerance_is_relative() {
        assert!(is_correct(104.9, 100.0, 0.05));
        assert!(!is_correct(105.1, 100.0, 0.05));
        assert!(is_correct(-98.0, -100.0, 0.05));
        assert!(is_correct(0.01, 0.0, 0.05));
        assert!(!is_correct(1.0, 0.0, 0.05));
        assert!(is_correct(3000.0, 3000.0, 0.0));
    }

    #[test]
    fn dataset_dedups_and_serialises() {
        let mut d = Dataset::default();
        assert!(d.add("q", 1.0, "r <answer>1</answer>"));
        assert!(!d.add("q", 1.0, "r <answer>1</answer>\n"));
        assert!(d.add("q", 1.0, "other <answer>1</answer>"));
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                ["q", 1.0, "r <answer>1</answer>"],
                ["q", 1.0, "other <answer>1</answer>"]
            ])
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&Dataset::default().to_json()).unwrap(),
            serde_json::json!([])
        );
    }
}
