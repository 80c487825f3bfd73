//! The `math` grader: math_verify 0.9.0's verdicts (`verify(parse(gold), parse(pred))`) in Rust.
//!
//! - [`find`]: where the answer is — math_verify's patterns in its priority order ("final answer
//!   is … I hope", `\boxed{}`, "final answer … is", "answer:", "answer", any LaTeX, any number
//!   or expression), the rightmost match of the first group that reads;
//! - [`normalise`]: the LaTeX cleaned as latex2sympy2_extended cleans it (units, `\text`,
//!   `\left`, `\dfrac`, `\frac12`, percent words, `and`/`or` lists, boxes);
//! - [`parse`]: the text read into a [`value::Node`] (depth-limited, loops for lists);
//! - [`compare`]: whether two readings are the same (sympy_expr_eq's rules);
//! - a reading keeps the matched text too: two answers whose texts are equal are equal
//!   (`12:00`), as math_verify's string fallback.
//!
//! rftx reads two things math_verify does not (`agreement::DELIBERATE` lists them): a
//! completion's last `<answer>…</answer>` is its answer, and a reference's `####` line is its
//! answer. Texts longer than [`MAX_CHARS`] are read from their last [`MAX_CHARS`] characters.
pub mod compare;
pub mod find;
pub mod lex;
pub mod normalise;
pub mod parse;
pub mod value;

#[cfg(test)]
mod agreement;

use find::{Found, Target};
use value::{Node, Num};

/// Longest text read, in bytes: a longer one is read from its end (where answers are), which
/// bounds the time of a verdict whatever the completion.
pub const MAX_CHARS: usize = 16 * 1024;

/// What reading an answer found: its value, the text it was read from, and the rule that found it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub value: Option<Node>,
    /// The first matched text (math_verify's fallback string).
    pub text: Option<String>,
    pub rule: Option<&'static str>,
}

/// A verdict of the math grader.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub correct: bool,
    /// What was read from the completion, as text.
    pub parsed: Option<String>,
    pub rule: Option<&'static str>,
    /// Why a wrong verdict could not be otherwise: no answer found, or an answer that could not
    /// be read as mathematics (then only its text was compared).
    pub reason: Option<String>,
}

/// Grades a whole completion against a reference answer: its last `<answer>…</answer>` if it
/// has one, else the answer math_verify finds in it.
pub fn grade(completion: &str, reference: &str) -> Outcome {
    let pred = match super::extract::answer_tag(completion) {
        Some(inner) => Reading {
            rule: Some("answer tag"),
            ..read_bare(inner.trim())
        },
        None => read(completion),
    };
    outcome(&pred, &read_reference(reference))
}

/// Grades an answer already extracted (`rft.extract` set): read as the LaTeX it is (`$…$`).
pub fn grade_extracted(answer: &str, reference: &str) -> Outcome {
    let pred = read(&format!("${answer}$"));
    outcome(&pred, &read_reference(reference))
}

fn outcome(pred: &Reading, gold: &Reading) -> Outcome {
    let correct = same(gold, pred);
    let reason = match (&pred.value, &pred.text) {
        _ if correct => None,
        (None, None) => Some("no answer found".to_string()),
        (None, Some(_)) => Some("the answer could not be read as mathematics (compared as text)".to_string()),
        _ if gold.value.is_none() => Some("the reference could not be read as mathematics".to_string()),
        _ => None,
    };
    Outcome {
        correct,
        parsed: pred.text.clone(),
        rule: pred.rule,
        reason,
    }
}

/// A reference: the rest of the line after a GSM8K `####`; else the text as math_verify reads
/// it (a bare answer, without `$` or `\boxed`, as [`read_bare`] reads it).
pub fn read_reference(reference: &str) -> Reading {
    let line = super::extract::after_hashes(reference).and_then(|after| after.trim_start().lines().next());
    if let Some(l) = line.filter(|l| !l.trim().is_empty()) {
        return read_bare(l.trim());
    }
    if has_delimiters(reference) || reference.contains("\\boxed") || reference.contains("\\fbox") {
        return read(reference);
    }
    read_bare(reference.trim())
}

/// Text without math delimiters: a plain number as math_verify reads plain text (`1,22` is 1.22,
/// `1 000` is 1000), anything else as the LaTeX it is (`$…$`: `\sqrt{2}`, `(1, 2)`, `x = 5`).
fn read_bare(text: &str) -> Reading {
    let number = !text.contains(", ")
        && text
            .trim_end_matches('%')
            .chars()
            .all(|c| c.is_ascii_digit() || " ,.-+".contains(c));
    if has_delimiters(text) || number {
        read(text)
    } else {
        read(&format!("${text}$"))
    }
}

fn has_delimiters(text: &str) -> bool {
    text.contains('$') || text.contains("\\(") || text.contains("\\[")
}

/// math_verify's `parse`: the first reading that parses, in priority order, with the first
/// matched text.
pub fn read(text: &str) -> Reading {
    let text = tail(text, MAX_CHARS);
    let mut out = Reading::default();
    for group in find::groups(text) {
        for found in &group {
            let (value, matched) = match found.target {
                Target::Latex => latex(found),
                Target::Expr => expr(found),
            };
            if !matched.is_empty() && out.text.is_none() {
                out.text = Some(matched);
                out.rule = Some(found.rule);
            }
            if value.is_some() {
                out.value = value;
                out.rule = Some(found.rule);
                return out;
            }
        }
    }
    out
}

/// Whether two readings agree: their values, or their matched texts.
pub fn same(gold: &Reading, pred: &Reading) -> bool {
    if let (Some(g), Some(p)) = (&gold.value, &pred.value) {
        if compare::same(g, p) {
            return true;
        }
    }
    match (&gold.text, &pred.text) {
        (Some(g), Some(p)) => !g.trim().is_empty() && g.trim() == p.trim(),
        _ => false,
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The LaTeX groups of a match: each normalised and read; several that all read are one set.
fn latex(found: &Found) -> (Option<Node>, String) {
    let names: Vec<&str> = found.pattern.re.capture_names().flatten().collect();
    let group = |prefix: &str| {
        names.iter().filter(|n| n.starts_with(prefix)).find_map(|n| {
            found
                .caps
                .name(n)
                .filter(|m| !m.as_str().is_empty())
                .map(|m| (*n, m.as_str()))
        })
    };
    let mut parts: Vec<(Option<Node>, String)> = Vec::new();
    let prefixes = ["first_latex".to_string()]
        .into_iter()
        .chain((1..=5).map(|i| format!("next{i}_latex")));
    for prefix in prefixes {
        let Some((name, latex)) = group(&prefix) else { continue };
        let head = name.split('_').next().unwrap_or_default();
        let percent = found.caps.name(&format!("{head}_percent")).is_some();
        let boxed = if name.ends_with("latexBoxed") {
            normalise::Boxed::Last
        } else {
            normalise::Boxed::All
        };
        let text = normalise::latex(latex, boxed);
        let value = read_latex(&text).map(|v| if percent { v.percent() } else { v });
        parts.push((value, text));
    }
    if parts.len() > 1 && parts.iter().all(|(v, _)| v.is_some()) {
        let texts: Vec<&str> = parts.iter().map(|(_, t)| t.as_str()).collect();
        let joined = texts.join(" and ");
        let mut items = Vec::new();
        for (v, _) in parts {
            match v {
                Some(Node::Set(inner)) => items.extend(inner),
                Some(v) => items.push(v),
                None => {}
            }
        }
        return (Some(Node::set(items)), joined);
    }
    parts.into_iter().next().unwrap_or((None, String::new()))
}

/// latex2sympy2's reading, or failing that the last side of an equation chain (`a = b = 7`).
fn read_latex(text: &str) -> Option<Node> {
    parse::parse(text).or_else(|| {
        if text.contains(',') || text.contains(';') {
            return None;
        }
        let parts = split_equals(text);
        (parts.len() > 2).then(|| parse::parse(parts.last()?))?
    })
}

/// Splits at each `=` not after `\`, `<`, `!` or `>`.
fn split_equals(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut prev) = (0, ' ');
    for (i, c) in text.char_indices() {
        if c == '=' && !matches!(prev, '\\' | '<' | '!' | '>') {
            out.push(&text[start..i]);
            start = i + 1;
        }
        prev = c;
    }
    out.push(&text[start..]);
    out
}

/// A plain number (`1,234.5`, `1 000`, `1,22` with a decimal comma, `50%`) or expression (`3/4`).
fn expr(found: &Found) -> (Option<Node>, String) {
    let caps = &found.caps;
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| caps.name(n).map(|m| m.as_str()).filter(|s| !s.is_empty()))
    };
    let integer = first(&["integer1", "integer2", "integer3"]).unwrap_or("");
    let decimal = first(&["decimal1", "decimal2", "decimal3"]).unwrap_or("");
    if !integer.is_empty() || !decimal.is_empty() {
        let digits: String = integer.chars().filter(|c| *c != ',' && *c != ' ').collect();
        let digits = digits.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        let text = format!("{digits}{}", decimal.replace(',', "."));
        let percent = caps.name("percent").is_some_and(|m| !m.as_str().is_empty());
        let value = Num::parse(&text).map(|n| {
            let node = Node::Num(n);
            if percent {
                node.percent()
            } else {
                node
            }
        });
        return (value, text);
    }
    let e = caps.name("expr").map_or("", |m| m.as_str());
    (parse::parse(&python_floats(&e.replace('\n', " "))), e.to_string())
}

/// `3.` is a float in Python (`2/3.` is read by sympy's `parse_expr`): written `3.0`.
fn python_floats(e: &str) -> String {
    let mut out = String::with_capacity(e.len() + 4);
    let mut prev = ' ';
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '.' && prev.is_ascii_digit() && !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('0');
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(gold: &str, pred: &str) -> bool {
        same(&read(gold), &read(pred))
    }

    #[test]
    fn reads_answers_where_models_put_them() {
        assert!(ok("72", "The answer is \\boxed{72}."));
        assert!(ok("120", "Final Answer: The volume is 120. I hope it is correct."));
        assert!(ok("$12:00$", "$12:00$"));
        assert!(ok("1,22", "1.22"));
        assert!(ok("1000", "1 000"));
        assert!(!ok("2", "AZYUK2A"));
        assert!(ok("$(2,2),(6,2)$", "$\\boxed{(2,2)} \\text{and} \\boxed{(6,2)}$"));
        let g = grade("so <answer>72</answer>", "Natalia sold 48 clips.\n#### 72");
        assert!(g.correct);
        assert_eq!(g.rule, Some("answer tag"));
        assert_eq!(grade("The answer is \\boxed{72}.", "#### 72").rule, Some("boxed"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// Any text, and texts built from the characters answers are made of, grade without a
        /// panic or an overflow.
        #[test]
        fn never_panics(
            any in ".{0,300}",
            mathy in proptest::collection::vec(proptest::sample::select(vec![
                "(", ")", "{", "}", "[", "]", "\\frac", "\\boxed{", "\\sqrt", "$", "$$", "^", "_", "-", "+", "=",
                ",", ";", "1", "0", "x", "\\pm", "\\left(", "\\right)", "\\text{", "%", "!", "\\in", "<",
                "\\begin{pmatrix}", "&", "\\\\", "\\end{pmatrix}", " and ", "answer: ", "\\cup", ".", " ",
            ]), 0..200),
        ) {
            let mathy = mathy.concat();
            for text in [&any, &mathy] {
                let _ = grade(text, "5");
                let _ = grade("1", text);
                let _ = grade_extracted(text, text);
            }
        }
    }

    #[test]
    fn long_and_hostile_texts_are_read_quickly() {
        for text in [
            "(".repeat(11_000),
            format!("\\boxed{{{}", "(".repeat(20_000)),
            vec!["1"; 300_000].join("+"),
            format!("{}5", "-".repeat(300_000)),
            "word ".repeat(300_000),
            "$".repeat(100_000),
        ] {
            let t = std::time::Instant::now();
            let _ = grade(&text, "5");
            assert!(t.elapsed().as_secs_f64() < 5.0, "{}", &text[..20]);
        }
    }
}
