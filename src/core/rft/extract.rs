//! Where a completion's answer is read from (`rft.extract`): the last `<answer>…</answer>`, the
//! last `\boxed{…}`, the last number, the whole text, or the last match of a regular expression.
use std::sync::LazyLock;

use regex::Regex;

use crate::core::config::Extract;

/// A compiled `rft.extract` (with `rft.pattern` for `regex`).
#[derive(Debug, Clone)]
pub enum Extractor {
    /// The whole completion, for the math grader to find the answer in (`auto`).
    Find,
    AnswerTag,
    Boxed,
    LastNumber,
    Whole,
    Regex(Regex),
}

impl Extractor {
    /// `pattern` is required for [`Extract::Regex`] and ignored otherwise.
    pub fn new(kind: Extract, pattern: Option<&str>) -> Result<Self, String> {
        Ok(match kind {
            Extract::AnswerTag => Extractor::AnswerTag,
            Extract::Auto => Extractor::Find,
            Extract::Boxed => Extractor::Boxed,
            Extract::LastNumber => Extractor::LastNumber,
            Extract::Whole => Extractor::Whole,
            Extract::Regex => {
                let p = pattern.ok_or("rft.extract = \"regex\" needs rft.pattern, the expression whose last match (its first group, if it has one) is the answer")?;
                Extractor::Regex(Regex::new(p).map_err(|e| format!("rft.pattern = {p:?}: {e}"))?)
            }
        })
    }

    /// Whether the answer is the whole completion (the math grader then finds it itself).
    pub fn is_whole(&self) -> bool {
        matches!(self, Extractor::Find)
    }

    /// The answer text, trimmed; `None` when the completion has none.
    pub fn extract(&self, text: &str) -> Option<String> {
        let found = match self {
            Extractor::AnswerTag => answer_tag(text),
            Extractor::Boxed => last_boxed(text),
            // Thousands separators dropped: `1,234` is read as 1234.
            Extractor::LastNumber => return NUMBER.find_iter(text).last().map(|m| m.as_str().replace(',', "")),
            Extractor::Whole | Extractor::Find => Some(text),
            // The first group when the expression has one (none if it took no part), else the match.
            Extractor::Regex(re) => re
                .captures_iter(text)
                .last()
                .and_then(|c| if re.captures_len() > 1 { c.get(1) } else { c.get(0) })
                .map(|m| m.as_str()),
        };
        found.map(|f| f.trim().to_string())
    }
}

/// A number as the `last_number` extraction sees it: digits with optional thousands separators
/// and decimals, optionally negative.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+").expect("a valid expression"));

/// The text inside the last complete `<answer>…</answer>`.
pub fn answer_tag(text: &str) -> Option<&str> {
    let start = text.rfind("<answer>")? + "<answer>".len();
    let end = start + text[start..].find("</answer>")?;
    Some(&text[start..end])
}

/// What follows the last `####`: a GSM8K solution's final answer.
pub fn after_hashes(text: &str) -> Option<&str> {
    text.rfind("####").map(|at| &text[at + 4..])
}

/// The content of the last `\boxed{…}` or `\fbox{…}`, braces balanced.
pub fn last_boxed(text: &str) -> Option<&str> {
    let open = ["\\boxed{", "\\fbox{"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|at| at + m.len()))
        .max()?;
    let mut depth = 1usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(kind: Extract, text: &str) -> Option<String> {
        Extractor::new(kind, Some(r"[Aa]nswer: (\w+)")).unwrap().extract(text)
    }

    #[test]
    fn each_extraction_reads_the_last_answer() {
        assert_eq!(
            x(Extract::AnswerTag, "<answer>1</answer> <answer> 2 </answer>").as_deref(),
            Some("2")
        );
        assert_eq!(x(Extract::AnswerTag, "<answer>2"), None);
        assert_eq!(
            x(Extract::Boxed, r"\boxed{1} so \boxed{\frac{3}{4}}.").as_deref(),
            Some(r"\frac{3}{4}")
        );
        // The last opening counts, even unclosed.
        assert_eq!(x(Extract::Boxed, r"\fbox{7} then \boxed{\frac{3}{4}"), None);
        assert_eq!(
            x(Extract::LastNumber, "12 apples and 1,234.5 pears, -3 left").as_deref(),
            Some("-3")
        );
        assert_eq!(x(Extract::LastNumber, "total: 1,234.5").as_deref(), Some("1234.5"));
        assert_eq!(x(Extract::LastNumber, "no digits"), None);
        assert_eq!(x(Extract::Whole, "  B \n").as_deref(), Some("B"));
        assert_eq!(x(Extract::Regex, "Answer: A ... answer: C").as_deref(), Some("C"));
        assert!(Extractor::new(Extract::Regex, None)
            .unwrap_err()
            .contains("rft.pattern"));
        assert!(Extractor::new(Extract::Regex, Some("("))
            .unwrap_err()
            .contains("rft.pattern = \"(\""));
    }
}
