//! Where the answer is in a text: math_verify 0.9.0's extraction order, its regular expressions
//! (`parse` with `LatexExtractionConfig()` and `ExprExtractionConfig()`) carried over.
//!
//! Patterns come in priority groups: a "final answer is … I hope" phrase (0), `\boxed{…}` and
//! "final answer … is" (50), "answer:" (100), "answer" (200), then any LaTeX environment (`$…$`,
//! `\(…\)`, `\[…\]`, `$$…$$`, a bare `\frac{a}{b}`) or plain number or expression (300). Within
//! the first group that matches anything, the matches are tried from the rightmost end; the
//! first that parses is the answer.
use std::sync::LazyLock;

use fancy_regex::{Captures, Regex};

/// What a pattern reads: LaTeX or a plain number or expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latex,
    Expr,
}

/// One extraction pattern.
pub struct Pattern {
    pub re: Regex,
    pub priority: u16,
    pub target: Target,
    /// The rule's name, as `rftx grade` and `show` report it.
    pub rule: &'static str,
}

/// One match, in the order it is tried.
pub struct Found<'t> {
    pub caps: Captures<'t>,
    pub pattern: &'static Pattern,
    pub target: Target,
    pub rule: &'static str,
}

/// The matches of each priority group, in order; groups without matches are left out.
pub fn groups(text: &str) -> Vec<Vec<Found<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < PATTERNS.len() {
        let priority = PATTERNS[at].priority;
        let end = (at..PATTERNS.len())
            .find(|&i| PATTERNS[i].priority != priority)
            .unwrap_or(PATTERNS.len());
        let mut found: Vec<(usize, usize, Found)> = Vec::new();
        for p in &PATTERNS[at..end] {
            // A backtracking limit hit is no match (fancy_regex's bound, never a hang).
            for caps in p.re.captures_iter(text).map_while(Result::ok) {
                let m = caps.get(0).expect("group 0 always takes part");
                let (start, stop) = (m.start(), m.end());
                found.push((
                    stop,
                    start,
                    Found {
                        caps,
                        pattern: p,
                        target: p.target,
                        rule: p.rule,
                    },
                ));
            }
        }
        // Rightmost end first, then leftmost start (a stable sort, as Python's).
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if !found.is_empty() {
            out.push(found.into_iter().map(|(_, _, f)| f).collect());
        }
        at = end;
    }
    out
}

/// Every pattern, sorted by priority (stable: LaTeX before expressions within a group).
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let mut all = latex_patterns();
    all.extend(expr_patterns());
    all.sort_by_key(|p| p.priority);
    all
});

fn pattern(re: &str, priority: u16, target: Target, rule: &'static str) -> Pattern {
    Pattern {
        re: Regex::new(re).unwrap_or_else(|e| panic!("extraction pattern {rule}: {e}")),
        priority,
        target,
        rule,
    }
}

/// math_verify's `make_latex_env_pattern`: the LaTeX environments, their groups named with
/// `prefix`, optionally followed by a percent sign.
fn latex_env(prefix: &str, boxed: bool) -> String {
    let contents = [
        r"(?:[^$]|\$(?!\$))",
        r"(?:[^\\]|\\(?!\]))",
        r"(?:\\[$]|[^\n$])",
        r"(?:[^\\\n]|\\(?!\)))",
        r"[^\n\]\[]",
    ];
    let c: Vec<String> = contents
        .iter()
        .map(|c| {
            if boxed {
                format!(r"{c}*?\\boxed{{{c}+?}}{c}*?")
            } else {
                format!("{c}+?")
            }
        })
        .collect();
    let mut envs = vec![
        format!(r"(?<!\\)\$\$(?P<{prefix}latexDisplayDollar>{})(?<!\\)\$\$", c[0]),
        format!(r"(?<!\\)\\\[(?P<{prefix}latexDisplayBracket>{})(?<!\\)\\\]", c[1]),
        format!(r"(?<!\\|\d)\$(?P<{prefix}latexInlineDollar>{})(?<!\\)\$", c[2]),
        format!(r"(?<!\\)\\\((?P<{prefix}latexInlineParenthesis>{})(?<!\\)\\\)", c[3]),
        format!(r"\s\[(?P<{prefix}latexInlineBracket>{})\]\s", c[4]),
    ];
    if !boxed {
        let n = r"-?\d+(?:[.,]\d+)?";
        envs.push(format!(r"(?P<{prefix}latexFraction>-?\\frac{{{n}}}{{{n}}})"));
    }
    let percent = format!(r"(?P<{prefix}percent>(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct))");
    format!(r"(?:(?:{})\s*{percent}?)", envs.join("|"))
}

fn latex_patterns() -> Vec<Pattern> {
    let next: String = (1..=5)
        .map(|i| format!(r"(?:\s*(?:,?and|,?or|,)\s*{})?", latex_env(&format!("next{i}_"), false)))
        .collect();
    let envs = format!("(?:{}{next})", latex_env("first_", false));
    let boxed_next: String = (1..=5)
        .map(|i| {
            format!(
                r"\s*(?:\s*(?:,?and|,?or|,)\s*{})?",
                latex_env(&format!("next{i}_"), true)
            )
        })
        .collect();
    let boxed = format!("{}{boxed_next}", latex_env("first_", true));
    let s = "(?s)";
    let l = Target::Latex;
    vec![
        pattern(
            &format!(r"{s}(?i:final answer is):?\s*{envs}\.?\s?I hope"),
            0,
            l,
            "final answer is … I hope",
        ),
        pattern(
            &format!(r"{s}(?i:final answer.{{0,100}}?)\s+is:?\s*{envs}"),
            50,
            l,
            "final answer … is",
        ),
        pattern(&format!(r"{s}(?i:answer):.{{0,50}}?{envs}"), 100, l, "answer:"),
        pattern(&format!(r"{s}(?i:answer).{{0,50}}?{envs}"), 200, l, "answer"),
        pattern(&format!("{s}{envs}"), 300, l, "latex"),
        pattern(&format!("{s}{boxed}"), 50, l, "boxed"),
        pattern(r"(?s)(?P<first_latexBoxed>\\boxed\x7B.+\x7D)", 50, l, "boxed"),
    ]
}

fn expr_patterns() -> Vec<Pattern> {
    let number = concat!(
        r"(?<!\d)(?:",
        r"(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|",
        r"(?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|",
        r"(?P<decimal3>\.\d+)|",
        r"(?P<integer3>-?\d+)",
        r")(?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?"
    );
    let ops = r"+\-*×/^()÷";
    let chars = format!(r"[\d.\s{ops}]");
    let expr = format!(r"(?P<expr>-?\(?-?\d{chars}*[{ops}]{chars}+\)?)");
    let currency = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₭₮₯₰₱₲₳₴₵₶₷₸₺₻₼₾₿";
    let prefix = r"(?:^|\s|=)(?:\*\*)?";
    let suffix = r"(?:\*\*)?(?:\.|,|:|\s|\)|\$|$)";
    let expr_anchored = format!("(?:{prefix}{expr}{suffix})");
    let number_anchored = format!("(?:{prefix}[{currency}]?{number})");
    let either = format!("(?:{expr_anchored}|{number_anchored})");
    let e = Target::Expr;
    vec![
        pattern(
            &format!(r"(?i:final answer is):?\s*{either}\.?\s?I hope"),
            0,
            e,
            "final answer is … I hope",
        ),
        pattern(
            &format!(r"(?i:final answer.{{0,100}}?)\s+is:?{either}"),
            50,
            e,
            "final answer … is",
        ),
        pattern(
            &format!(r"(?i:answer):(?:.{{0,100}}=\s*|.{{0,50}}?){either}(?!\s*=)"),
            100,
            e,
            "answer:",
        ),
        pattern(
            &format!(r"(?i:answer)(?:.{{0,100}}=\s*|.{{0,50}}?){either}(?!\s*=)"),
            200,
            e,
            "answer",
        ),
        pattern(&expr_anchored, 300, e, "expression"),
        pattern(&number_anchored, 300, e, "number"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> Option<(&'static str, String)> {
        let g = groups(text);
        let f = g.first()?.first()?;
        Some((f.rule, f.caps.get(0).unwrap().as_str().to_string()))
    }

    #[test]
    fn every_pattern_compiles_and_is_ordered() {
        assert_eq!(PATTERNS.len(), 13);
        assert!(PATTERNS.windows(2).all(|w| w[0].priority <= w[1].priority));
    }

    #[test]
    fn the_highest_priority_rightmost_match_comes_first() {
        assert_eq!(first("so $x$ and \\boxed{7}.").unwrap().0, "boxed");
        assert_eq!(first("we get 5, then 6").unwrap().1, " 6");
        assert_eq!(
            first("The final answer is $3$. I hope it is correct.").unwrap().0,
            "final answer is … I hope"
        );
        assert_eq!(first("no digits here"), None.map(|x: (&str, String)| x));
        // Numbers glued to letters are not answers.
        assert!(groups("XDY2K").is_empty());
    }
}
