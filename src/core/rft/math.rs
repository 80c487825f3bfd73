//! The `math` grader: GSM8K- and MATH-style answers compared by value.
//!
//! Both sides are cleaned the same way: `$`, `\(`…`\)`, spacing commands, `\left`/`\right`,
//! `\displaystyle`, degrees, percent signs, `\text{…}` units and a leading `x =` are dropped,
//! `\dfrac`/`\tfrac` read as `\frac`, thousands separators removed from a lone number. Then each
//! side is read as a list of expressions (`(1, 2)`, `[0, 1)`: same brackets, same length) of
//! numbers, `\frac`, `a/b`, `\sqrt`, `\pi`, `+ - * / ^`, `\cdot`, `\times`, implicit products
//! (`2\sqrt{3}`, `3x`) and one-letter variables. Expressions are equal when they agree, within
//! 1e-6 relative, at fixed values of their variables (`2x+1` = `1+2x`); text neither side can be
//! read as is compared with its spaces removed.
use std::sync::LazyLock;

use regex::Regex;

/// The reference's final answer: after the last `####` (GSM8K), else the last `\boxed{…}`
/// (MATH's solutions), else the whole text.
pub fn reference(answer: &str) -> String {
    let last = super::extract::after_hashes(answer).or_else(|| super::extract::last_boxed(answer));
    last.unwrap_or(answer).trim().to_string()
}

/// Whether the extracted `answer` has the value of the `reference`.
pub fn equivalent(answer: &str, reference: &str) -> bool {
    // A `\boxed{…}` inside the extracted text is the answer (`<answer>\boxed{72}</answer>`).
    let answer = super::extract::last_boxed(answer).unwrap_or(answer);
    let (a, r) = (clean(answer), clean(reference));
    if a.value.is_empty() || r.value.is_empty() || (a.name.is_some() && r.name.is_some() && a.name != r.name) {
        return false;
    }
    // `50\%` is 50 and 0.5.
    let percent = r.percent.then(|| format!("({})/100", r.value));
    same_list(&a.value, &r.value) || percent.is_some_and(|p| same_list(&a.value, &p))
}

fn same_list(a: &str, r: &str) -> bool {
    match (split_list(a), split_list(r)) {
        (Some(x), Some(y)) if x.open == y.open && x.close == y.close && x.items.len() == y.items.len() => {
            if x.ordered {
                x.items.iter().zip(&y.items).all(|(u, v)| same(u, v))
            } else {
                // Sets (`\{1, 2\}`, `1, 2`): each element matches a different one.
                let mut free = vec![true; y.items.len()];
                x.items.iter().all(|u| {
                    let hit = (0..y.items.len()).find(|&j| free[j] && same(u, &y.items[j]));
                    hit.map(|j| free[j] = false).is_some()
                })
            }
        }
        (None, None) => same(a, r),
        _ => false,
    }
}

fn same(a: &str, r: &str) -> bool {
    match (parse(a), parse(r)) {
        (Some(x), Some(y)) => POINTS.iter().all(|p| {
            let (u, v) = (x.eval(p), y.eval(p));
            u.is_finite() && v.is_finite() && (u - v).abs() <= 1e-6 * u.abs().max(v.abs()).max(1.0)
        }),
        _ => a.replace(' ', "").to_lowercase() == r.replace(' ', "").to_lowercase(),
    }
}

/// A side cleaned: its value, the variable it was given to (`x = 5`), whether it had `%`.
struct Clean {
    value: String,
    name: Option<String>,
    percent: bool,
}

/// The text with notation that does not change the value removed.
fn clean(s: &str) -> Clean {
    let mut t = s.trim().replace("{,}", ",");
    let percent = t.contains('%');
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\displaystyle", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", " "),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\{", "{{"),
        ("\\}", "}}"),
    ] {
        t = t.replace(from, to);
    }
    t = drop_words(&drop_text_groups(&t));
    let t = t.trim().trim_end_matches('.').trim();
    // `x = 5`, `y=\frac12`, `x \in [0, 1)`: the value.
    let (name, t) = match t.split_once('=').or_else(|| t.split_once("\\in")) {
        Some((lhs, rhs)) if !lhs.trim().is_empty() && lhs.trim().chars().all(|c| c.is_ascii_alphabetic()) => {
            (Some(lhs.trim().to_string()), rhs.trim())
        }
        _ => (None, t),
    };
    let value = if is_grouped_number(t) {
        t.replace(',', "")
    } else if let Some((x, y)) = t.split_once(':').filter(|(x, y)| is_int(x) && is_int(y)) {
        // A ratio `3:4`.
        format!("{x}/{y}")
    } else {
        t.to_string()
    };
    Clean { value, name, percent }
}

fn is_int(s: &str) -> bool {
    !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit())
}

/// Words around the value are dropped (`The answer is 72`, `90 degrees`, `5 cm`): in prose (a
/// word of three letters or more), every word of two letters or more; else unit words after a
/// number. LaTeX commands and one-letter variables stay.
fn drop_words(s: &str) -> String {
    const UNITS: [&str; 12] = ["cm", "mm", "km", "kg", "mg", "ml", "ft", "yd", "mi", "hr", "lb", "oz"];
    let words = words(s);
    let prose = words.iter().any(|&(i, j)| j - i >= 3 && !command(s, i));
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (i, j) in words {
        out.push_str(&s[last..i]);
        last = j;
        let word = &s[i..j];
        let after_number = out.ends_with(' ') && out.trim_end().ends_with(|c: char| c.is_ascii_digit());
        let unit = after_number && UNITS.contains(&word.to_ascii_lowercase().as_str());
        let drop = !command(s, i) && ((prose && word.len() >= 2) || unit);
        if !drop {
            out.push_str(word);
        }
    }
    out.push_str(&s[last..]);
    // Only words (`Monday`, `yes`): they are the answer.
    if out.chars().any(|c| c.is_ascii_alphanumeric()) {
        out
    } else {
        s.to_string()
    }
}

/// The byte ranges of runs of ASCII letters.
fn words(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() {
            let end = (i..b.len()).find(|&j| !b[j].is_ascii_alphabetic()).unwrap_or(b.len());
            out.push((i, end));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether the word at `i` is a LaTeX command's name (`\frac`).
fn command(s: &str, i: usize) -> bool {
    i > 0 && s.as_bytes()[i - 1] == b'\\'
}

/// `\text{…}`, `\mbox{…}`, `\mathrm{…}`, `\textbf{…}`: units (`5\text{ cm}`, with their power:
/// `6\text{ cm}^2`) are dropped; a group that is the whole answer (`\text{Monday}`) keeps its words.
fn drop_text_groups(s: &str) -> String {
    static GROUP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\\(?:text|mbox|mathrm|textbf)\{([^{}]*)\}(?:\^\{?[23]\}?)?").expect("a valid expression")
    });
    match GROUP.captures(s.trim()) {
        Some(c) if c[0].len() == s.trim().len() => c[1].to_string(),
        _ => GROUP.replace_all(s, "").into_owned(),
    }
}

/// `1,234` or `-12,345.5`: a number with thousands separators.
fn is_grouped_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let int = s.split('.').next().unwrap_or("");
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
        && s.split('.')
            .nth(1)
            .is_none_or(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        && s.matches('.').count() <= 1
}

/// A list answer: `(1, 2)` and `[0, 1)` are ordered (brackets compared), `\{1, 2\}` and `1, 2`
/// are sets.
struct List {
    open: char,
    close: char,
    ordered: bool,
    items: Vec<String>,
}

/// The elements of a list answer split at top-level commas; `None` for a single value.
fn split_list(s: &str) -> Option<List> {
    let (open, close) = (s.chars().next()?, s.chars().last()?);
    let set = s.starts_with("{{") && s.ends_with("}}") && s.len() >= 4;
    let bracketed = matches!(open, '(' | '[') && matches!(close, ')' | ']') && s.len() >= 2;
    let body = if set {
        &s[2..s.len() - 2]
    } else if bracketed {
        &s[1..s.len() - 1]
    } else {
        s
    };
    let mut parts = vec![String::new()];
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("one part at least").push(c);
    }
    if (parts.len() < 2 && !set) || depth != 0 {
        return None;
    }
    let items = parts.into_iter().map(|p| p.trim().to_string()).collect();
    Some(match (set, bracketed) {
        (true, _) => List {
            open: '{',
            close: '}',
            ordered: false,
            items,
        },
        (false, true) => List {
            open,
            close,
            ordered: true,
            items,
        },
        (false, false) => List {
            open: ' ',
            close: ' ',
            ordered: false,
            items,
        },
    })
}

/// Values given to the variables `a`–`z` (by letter) when two expressions are compared.
const POINTS: [[f64; 3]; 3] = [[0.5, 1.25, 2.0], [1.7, -0.3, 0.9], [-1.1, 2.6, 1.3]];

/// An expression over one-letter variables.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    Var(u8),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Sqrt(Box<Expr>),
}

impl Expr {
    fn eval(&self, point: &[f64; 3]) -> f64 {
        match self {
            Expr::Num(x) => *x,
            // Each letter its own value: a fixed mix of the point's three numbers.
            Expr::Var(v) => {
                let k = f64::from(v - b'a' + 1);
                point[0] + k * point[1] / 7.0 + (k * k) * point[2] / 53.0
            }
            Expr::Neg(e) => -e.eval(point),
            Expr::Sqrt(e) => e.eval(point).sqrt(),
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(point), b.eval(point));
                match op {
                    '+' => x + y,
                    '-' => x - y,
                    '*' => x * y,
                    '/' => x / y,
                    _ => x.powf(y),
                }
            }
        }
    }
}

/// Reads a whole expression; `None` when any of it is not understood.
fn parse(s: &str) -> Option<Expr> {
    let tokens = tokenize(s)?;
    let mut p = Parser { t: &tokens, i: 0 };
    let e = p.sum()?;
    (p.i == tokens.len()).then_some(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Var(u8),
    Cmd(String),
    Sym(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            out.push(Tok::Num(s[start..i].parse().ok()?));
        } else if c == b'\\' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let cmd = &s[start..i];
            // `\frac34`, `\sqrt2`: one digit per argument.
            let mut digits = match cmd {
                "frac" => 2,
                "sqrt" => 1,
                _ => 0,
            };
            out.push(Tok::Cmd(cmd.to_string()));
            while digits > 0 && b.get(i).is_some_and(u8::is_ascii_digit) {
                out.push(Tok::Num(f64::from(b[i] - b'0')));
                (i, digits) = (i + 1, digits - 1);
            }
        } else if c.is_ascii_lowercase() || c.is_ascii_uppercase() {
            out.push(Tok::Var(c.to_ascii_lowercase()));
            i += 1;
        } else if b"+-*/^(){}[]".contains(&c) {
            out.push(Tok::Sym(c as char));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(&Tok::Sym(c));
        self.i += usize::from(hit);
        hit
    }

    fn sum(&mut self) -> Option<Expr> {
        let mut e = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym(c @ ('+' | '-'))) => *c,
                _ => return Some(e),
            };
            self.i += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Option<Expr> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym(c @ ('*' | '/'))) => *c,
                Some(Tok::Cmd(c)) if c == "cdot" || c == "times" => '*',
                Some(Tok::Cmd(c)) if c == "div" => '/',
                // Implicit product: `2x`, `3\sqrt{2}`, `2(x+1)`, `2{x}` (`\u{7b}` is a brace).
                Some(Tok::Num(_) | Tok::Var(_) | Tok::Sym('(' | '\u{7b}')) => {
                    e = Expr::Bin('*', Box::new(e), Box::new(self.power()?));
                    continue;
                }
                Some(Tok::Cmd(c)) if matches!(c.as_str(), "frac" | "sqrt" | "pi") => {
                    e = Expr::Bin('*', Box::new(e), Box::new(self.power()?));
                    continue;
                }
                _ => return Some(e),
            };
            self.i += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.eat('-') {
            return Some(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat('+') {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if self.eat('^') {
            let exp = if self.eat('-') {
                Expr::Neg(Box::new(self.atom()?))
            } else {
                self.atom()?
            };
            return Some(Expr::Bin('^', Box::new(base), Box::new(exp)));
        }
        Some(base)
    }

    /// A number, variable, bracketed expression, `\frac`, `\sqrt` or `\pi`.
    fn atom(&mut self) -> Option<Expr> {
        let tok = self.peek()?.clone();
        self.i += 1;
        match tok {
            Tok::Num(x) => Some(Expr::Num(x)),
            Tok::Var(v) => Some(Expr::Var(v)),
            Tok::Sym('(') => self.closed(')'),
            Tok::Sym('{') => self.closed('}'),
            Tok::Cmd(c) if c == "pi" => Some(Expr::Num(std::f64::consts::PI)),
            Tok::Cmd(c) if c == "frac" => {
                let (n, d) = (self.argument()?, self.argument()?);
                Some(Expr::Bin('/', Box::new(n), Box::new(d)))
            }
            Tok::Cmd(c) if c == "sqrt" => {
                let root = if self.eat('[') { Some(self.closed(']')?) } else { None };
                let x = self.argument()?;
                Some(match root {
                    None => Expr::Sqrt(Box::new(x)),
                    Some(n) => Expr::Bin(
                        '^',
                        Box::new(x),
                        Box::new(Expr::Bin('/', Box::new(Expr::Num(1.0)), Box::new(n))),
                    ),
                })
            }
            _ => None,
        }
    }

    fn closed(&mut self, close: char) -> Option<Expr> {
        let e = self.sum()?;
        self.eat(close).then_some(e)
    }

    /// `{…}`, or one digit or letter (`\frac34`, `\sqrt2`).
    fn argument(&mut self) -> Option<Expr> {
        if self.eat('{') {
            return self.closed('}');
        }
        match self.peek()?.clone() {
            Tok::Num(x) => {
                self.i += 1;
                Some(Expr::Num(x))
            }
            Tok::Var(v) => {
                self.i += 1;
                Some(Expr::Var(v))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_in_other_notations() {
        for (a, r) in [
            ("72", "72"),
            ("1,234", "1234"),
            ("$18", "18"),
            ("\\$18.00", "18"),
            ("\\frac{3}{4}", "\\dfrac{3}{4}"),
            ("0.75", "\\frac34"),
            ("3/4", "\\tfrac{3}{4}"),
            ("-\\frac{1}{2}", "\\frac{-1}{2}"),
            ("2\\sqrt{3}", "\\sqrt{12}"),
            ("\\frac{\\pi}{2}", "\\frac12\\pi"),
            ("5\\text{ cm}", "5"),
            ("90^\\circ", "90"),
            ("x = 5", "5"),
            ("\\left( 1, 2 \\right)", "(1,2)"),
            ("[0, 1)", "[0,1)"),
            ("2x+1", "1+2x"),
            ("10\\%", "10"),
            ("\\text{Monday}", "Monday"),
        ] {
            assert!(equivalent(a, r), "{a} vs {r}");
        }
    }

    #[test]
    fn different_values_differ() {
        for (a, r) in [
            ("73", "72"),
            ("\\frac{3}{4}", "\\frac{4}{3}"),
            ("(1, 2)", "[1, 2]"),
            ("(1, 2)", "(1, 2, 3)"),
            ("2x+1", "2x-1"),
            ("0.33", "\\frac13"),
            ("", "1"),
            ("\\sqrt{2}", "1.41"),
        ] {
            assert!(!equivalent(a, r), "{a} vs {r}");
        }
    }

    #[test]
    fn the_reference_final_answer() {
        assert_eq!(reference("48/2 = 24\n#### 72"), "72");
        assert_eq!(reference("so the answer is $\\boxed{\\frac{3}{4}}$."), "\\frac{3}{4}");
        assert_eq!(reference(" 5 "), "5");
    }
}
