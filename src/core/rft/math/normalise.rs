//! LaTeX cleaned before it is read: latex2sympy2_extended's `normalize_latex` with
//! math_verify's settings (basic LaTeX, units, malformed operators, nits; `\boxed` contents
//! taken out). Every step is one pass of a regular expression or a scan: linear in the text.
use std::sync::LazyLock;

use fancy_regex::Regex as Fancy;
use regex::Regex;

/// Which `\boxed{…}` contents are kept: all of them joined by commas, or the last group of
/// boxes separated by "and", "or", `,` or `;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boxed {
    All,
    Last,
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("normalisation pattern {s}: {e}"))
}

fn fancy(s: &str) -> Fancy {
    Fancy::new(s).unwrap_or_else(|e| panic!("normalisation pattern {s}: {e}"))
}

/// `Fancy::replace_all`, where a backtracking limit leaves the text as it was.
fn replace(r: &Fancy, text: &str, with: &str) -> String {
    r.try_replacen(text, 0, with)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| text.to_string())
}

/// The text as math_verify hands it to its LaTeX reader.
pub fn latex(text: &str, boxed: Boxed) -> String {
    let text = boxed_content(text, boxed);
    let text = basic(&text);
    let text = units(&text);
    let text = nits(text);
    malformed(&text)
}

fn basic(text: &str) -> String {
    static LEFT: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\\m?left(\\\x7B|\x7B|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|\\lfloor|\\langle|\\llcorner|\\ulcorner)",
        )
    });
    static RIGHT: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\\m?right(\\\x7D|\x7D|\\\||\||\]|\)|\\rbrack|\\rgroup|\\rbrace|\\vert|\\rvert|\\rceil|\\rfloor|\\rangle|\\lrcorner|\\urcorner)",
        )
    });
    static PERMUTATION: LazyLock<Regex> =
        LazyLock::new(|| re(r"\(([a-zA-Z0-9+\-*/\\ ]+?)\)_\x7B([a-zA-Z0-9+\-*/\\ ]+?)\x7D"));
    static REMOVE: LazyLock<Fancy> =
        LazyLock::new(|| fancy(r#"\\mathrm\x7Bth\x7D|\\!\s*|\\text\s*\x7B\s*\x7D|\\\$|\$|(?<!\\)["']|\\displaystyle"#));
    static SLASHES: LazyLock<Regex> = LazyLock::new(|| re(r"\\\\([a-zA-Z])"));
    let mut t = text
        .replace(r"\mathrm{T}", "T")
        .replace(r"\mathrm{d}", "d")
        .replace(r"{\rm d}", "d")
        .replace(r"\left[\begin{matrix}", r"\begin{bmatrix}")
        .replace(r"\end{matrix}\right]", r"\end{bmatrix}");
    t = LEFT.replace_all(&t, "$1").into_owned();
    t = RIGHT.replace_all(&t, "$1").into_owned();
    t = PERMUTATION.replace_all(&t, r"\frac{($1)!}{(($1)-($2))!}").into_owned();
    t = replace(&REMOVE, &t, "");
    t = replace_words(&t);
    t = t.replace(['\n', '\t'], " ");
    if !t.contains("matrix") {
        t = SLASHES.replace_all(&t, r"\$1").into_owned();
    }
    t
}

/// latex2sympy2_extended's `to_replace_patterns`, one alternation replaced in one pass.
fn replace_words(text: &str) -> String {
    const PATTERNS: [(&str, &str); 20] = [
        (r"\\math(?:rm|it|bf)", r"\text"),
        (r"\\text(?:normal|bf|it|rm)", r"\text"),
        (r"\\(?:d|t|c)frac", r"\frac"),
        (r"\s\.", " 0."),
        // A brace and a dot gain a zero: the brace written as \x7B.
        (r"\x7B\.", "\u{7b}0."),
        (r"\~\=", r"\approx"),
        (r"\s*\x7B\s*,\s*\x7D", ","),
        (r"(?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z])", ","),
        (r"(,?\s*\\text\x7B\s*(?:and|or)\s*\x7D)", ","),
        (r"(?<!\\)\\\s", " "),
        (r"infinity", r"\infty"),
        (r",?(\\ldots)", " "),
        (r"\s*\bpercentage\b", r"\%"),
        (r"\\text\x7Bpercentage\x7D", "%"),
        (r"\s*\bpercent\b", r"\%"),
        (r"\\text\x7Bpercent\x7D", "%"),
        (r"\s*\bpct\b", r"\%"),
        (r"\\text\x7Bpct\x7D", "%"),
        (r"((?<!\\)inf(?!inity))", r"\infty"),
        (r" sqrt", r"\sqrt"),
    ];
    static ALL: LazyLock<Fancy> = LazyLock::new(|| {
        let alts: Vec<String> = PATTERNS.iter().map(|(p, _)| format!("({p})")).collect();
        fancy(&alts.join("|"))
    });
    // Which alternative matched: the first outer group that took part.
    let outer: Vec<usize> = {
        let mut idx = Vec::new();
        let mut group = 1;
        for (p, _) in PATTERNS {
            idx.push(group);
            group += 1 + inner_groups(p);
        }
        idx
    };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in ALL.captures_iter(text).map_while(Result::ok) {
        let m = caps.get(0).expect("group 0");
        let Some(k) = outer.iter().position(|&g| caps.get(g).is_some()) else {
            continue;
        };
        out.push_str(&text[last..m.start()]);
        out.push_str(PATTERNS[k].1);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Capturing groups inside a pattern (an unescaped `(` not followed by `?`).
fn inner_groups(p: &str) -> usize {
    let b = p.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'(' && (i == 0 || b[i - 1] != b'\\') && b.get(i + 1) != Some(&b'?'))
        .count()
}

/// latex2sympy2_extended's unit words, dropped at the end of an answer (`5 cm`, `12 apples`).
const UNITS: &[&str] = &[
    "integerpoint",
    "feet",
    "sue",
    "digit",
    "pound",
    "meal",
    "edge",
    "student",
    "children ticket",
    "multiple",
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m square",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "cent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

fn units(text: &str) -> String {
    static SUPERSCRIPT: LazyLock<Regex> = LazyLock::new(|| re(r"(\\(?:text|mbox)\x7B.*?\x7D)(\^\d|\x7B\^\d\x7D)?$"));
    static UNIT: LazyLock<Regex> = LazyLock::new(|| {
        // Not escaped, as latex2sympy2_extended writes them (`q .`: the dot is any character).
        re(&format!(r"(\d|\x7D|\s)\s*(?:(?:{})(?:s|es)?)\s*$", UNITS.join("|")))
    });
    let mut t = text.to_string();
    let dropped = SUPERSCRIPT.replace_all(&t, "").trim().to_string();
    if !dropped.is_empty() && dropped != t {
        t = dropped;
    }
    for _ in 0..2 {
        // The unit at the very end: anchored, so only the last one is looked at.
        let next = unit_at_end(&UNIT, &t);
        if !next.is_empty() && next != t {
            t = next;
        }
    }
    t
}

/// `UNIT.replace(t, "$1")` on the tail where it can match (Python's `re.sub` finds the leftmost
/// start, which for a pattern anchored at `$` is the first position from which it reaches the end).
fn unit_at_end(unit: &Regex, t: &str) -> String {
    match unit.captures(t) {
        Some(c) => {
            let m = c.get(0).expect("group 0");
            format!("{}{}{}", &t[..m.start()], &c[1], &t[m.end()..])
        }
        None => t.to_string(),
    }
}

fn nits(mut t: String) -> String {
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    if t == "0.5" {
        t = r"\frac{1}{2}".to_string();
    }
    t
}

fn malformed(text: &str) -> String {
    static FIXES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
        vec![
            (re(r"\^\s?\((.*?)\)"), r"^{$1}"),
            (re(r"sqrt\s?\((.*?)\)"), r"\sqrt{$1}"),
            (re(r"\\frac\s?(\d)\s?(\d+)"), r"\frac{$1}{$2}"),
            (re(r"\\log_\s?(\d)\s?(\d+)"), r"\log_{$1}{$2}"),
            (re(r"\\frac\s?\x7B(.*?)\x7D\s?(\d)"), r"\frac{$1}{$2}"),
            (re(r"\\frac\s?(\d)\s?\x7B(.*?)\x7D"), r"\frac{$1}{$2}"),
            (re(r"\\sqrt\s?(\d)"), r"\sqrt{$1}"),
        ]
    });
    let mut t = text.to_string();
    for (r, with) in FIXES.iter() {
        t = r.replace_all(&t, *with).into_owned();
    }
    let t = t.replace(" sqrt", r"\sqrt");
    a_slash_b(&fix_fracs(&fix_sqrt(&t)))
}

/// `\sqrt3` → `\sqrt{3}` (MATH's `_fix_sqrt`).
fn fix_sqrt(text: &str) -> String {
    let mut parts = text.split(r"\sqrt");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let part = part.trim_start();
        out.push_str(r"\sqrt");
        match part.chars().next() {
            Some(c) if !matches!(c, '\u{7b}' | '[') => {
                out.push('\u{7b}');
                out.push(c);
                out.push('\u{7d}');
                out.push_str(&part[c.len_utf8()..]);
            }
            _ => out.push_str(part),
        }
    }
    out
}

/// `\frac12` → `\frac{1}{2}`, `\frac1{2}` → `\frac{1}{2}` (MATH's `_fix_fracs`).
fn fix_fracs(text: &str) -> String {
    let mut parts = text.split(r"\frac");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let part = part.trim_start();
        out.push_str(r"\frac");
        let mut cs = part.chars();
        match (cs.next(), cs.next()) {
            (Some('\u{7b}'), _) => out.push_str(part),
            (Some(a), Some(b)) => {
                let rest = cs.as_str();
                // `\frac1{2}` keeps its second group; `\frac12` gets both.
                out.push_str(&braced(a));
                if b == '\u{7b}' {
                    out.push(b);
                } else {
                    out.push_str(&braced(b));
                }
                out.push_str(rest);
            }
            _ => return text.to_string(),
        }
    }
    out
}

/// One character in braces.
fn braced(c: char) -> String {
    ['\u{7b}', c, '\u{7d}'].iter().collect()
}

/// `2/3` alone → `\frac{2}{3}`.
fn a_slash_b(text: &str) -> String {
    let parts: Vec<&str> = text.split('/').collect();
    if let [a, b] = parts[..] {
        if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
            if format!("{x}/{y}") == text {
                return format!(r"\frac{{{x}}}{{{y}}}");
            }
        }
    }
    text.to_string()
}

/// latex2sympy2_extended's `extract_boxed_content`: the contents of the `\boxed{…}` /
/// `\fbox{…}` from the right, joined by commas; the text itself when it has none.
pub fn boxed_content(text: &str, mode: Boxed) -> String {
    let b = text.as_bytes();
    let mut results: Vec<&str> = Vec::new();
    let (mut current, mut max_pos) = (text.len(), text.len());
    let mut last_start: Option<usize> = None;
    loop {
        let boxed = text[..current].rfind(r"\boxed");
        let fbox = text[..current].rfind(r"\fbox");
        let (start, len) = match (boxed, fbox) {
            (None, None) => break,
            (x, y) if x.map_or(-1, |v| v as isize) > y.map_or(-1, |v| v as isize) => (x.expect("some"), 6),
            (_, y) => (y.expect("some"), 5),
        };
        let mut open = start + len;
        while open < max_pos && b[open].is_ascii_whitespace() {
            open += 1;
        }
        if open >= max_pos {
            break;
        }
        if b[open] != b'\x7b' {
            if results.is_empty() {
                results.push(&text[open..]);
            }
            break;
        }
        let Some(close) = closing_brace(b, open, max_pos) else {
            if results.is_empty() {
                results.push(&text[open..]);
            }
            break;
        };
        let content = text[open + 1..close].trim();
        if let (Boxed::Last, Some(next)) = (mode, last_start) {
            let previous = results.last().copied().unwrap_or("");
            if !separated(&text[(close + 1).min(next)..next], content, previous) {
                break;
            }
        }
        if results.last() != Some(&content) {
            results.push(content);
        }
        last_start = Some(start);
        max_pos = start;
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

fn closing_brace(b: &[u8], open: usize, max_pos: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, &c) in b.iter().enumerate().take(max_pos).skip(open + 1) {
        match c {
            b'\x7b' => depth += 1,
            b'\x7d' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether two boxes are one answer: close together, or a little apart with "and", "or", `,`
/// or `;` between them and different contents.
fn separated(between: &str, content: &str, next: &str) -> bool {
    static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(and|or)\b|,|;"));
    let n = between.chars().count();
    n < 10 || (next != content && n < 70 && SEPARATOR.is_match(between))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_as_latex2sympy2_extended() {
        for (input, want) in [
            (r"\boxed{\dfrac{3}{4}}", r"\frac{3}{4}"),
            (r"\left( 1, 2 \right)", "( 1, 2 )"),
            (r"5 \text{ cm}", "5"),
            ("12 apples", "12"),
            (r"\frac12", r"\frac{1}{2}"),
            (r"\sqrt3", r"\sqrt{3}"),
            ("2/3", r"\frac{2}{3}"),
            ("0.5", r"\frac{1}{2}"),
            (r"\$18", "18"),
            ("1 and 2", "1, 2"),
            (r"\\frac{1}{2}", r"\frac{1}{2}"),
            (r"\boxed{1} and \boxed{2}", "1,2"),
            ("50 percent", r"50\%"),
        ] {
            assert_eq!(latex(input, Boxed::All), want, "{input}");
        }
    }

    #[test]
    fn the_last_boxes() {
        assert_eq!(boxed_content(r"\boxed{1} so \boxed{2}", Boxed::Last), "1,2");
        let far = format!(r"\boxed{{1}} {} \boxed{{2}}", "x".repeat(80));
        assert_eq!(boxed_content(&far, Boxed::Last), "2");
        assert_eq!(boxed_content(&far, Boxed::All), "1,2");
        assert_eq!(boxed_content(r"\boxed{\frac{1}{2}", Boxed::All), r"{\frac{1}{2}");
        assert_eq!(boxed_content("none", Boxed::All), "none");
    }
}
