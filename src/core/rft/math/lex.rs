//! Tokens of an answer: numbers, letters, commands (`\\frac`), symbols; spacing commands
//! (`\\left`, `\\quad`) dropped; `i` told apart as latex2sympy2 tells it.
use super::value::{Func, Rel};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Num(String),
    Letter(char),
    Cmd(String),
    Sym(char),
}

pub fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() || c == '~' {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (num, next) = number(&cs, i);
            out.push(Tok::Num(num));
            i = next;
        } else if c == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < cs.len() && cs[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                // A backslash and one character (a brace, `%`, `,`, a backslash).
                let ch = *cs.get(start)?;
                j = start + 1;
                match ch {
                    ',' | ';' | ':' | '!' | ' ' => {}
                    // `\(`…`\)` are brackets to latex2sympy2 (what `\\left(` becomes).
                    '(' | ')' => out.push(Tok::Sym(ch)),
                    _ => out.push(Tok::Cmd(ch.to_string())),
                }
            } else {
                let name: String = cs[start..j].iter().collect();
                push_command(&mut out, &name);
            }
            i = j;
        } else if c.is_alphabetic() {
            out.push(Tok::Letter(c));
            i += 1;
        } else {
            let mapped = match c {
                '×' | '·' => Tok::Cmd("times".into()),
                '÷' => Tok::Cmd("div".into()),
                '≤' => Tok::Cmd("le".into()),
                '≥' => Tok::Cmd("ge".into()),
                '≠' => Tok::Cmd("neq".into()),
                '∞' => Tok::Cmd("infty".into()),
                '±' => Tok::Cmd("pm".into()),
                '√' => Tok::Cmd("sqrt".into()),
                '−' => Tok::Sym('-'),
                _ if "+-*/^_()[]{},;|!=<>:'&%".contains(c) => Tok::Sym(c),
                _ => return None,
            };
            out.push(mapped);
            i += 1;
        }
    }
    Some(out)
}

/// `\left`, `\right`, `\big`…, `\quad` (also glued to a letter: `\quadx`) are spacing.
fn push_command(out: &mut Vec<Tok>, name: &str) {
    const SPACING: [&str; 12] = [
        "left",
        "right",
        "big",
        "Big",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "displaystyle",
        "quad",
        "qquad",
        "hfill",
    ];
    if SPACING.contains(&name) {
        return;
    }
    for q in ["qquad", "quad"] {
        if let Some(rest) = name.strip_prefix(q) {
            out.extend(rest.chars().map(Tok::Letter));
            return;
        }
    }
    out.push(Tok::Cmd(name.to_string()));
}

/// A number from `i`: digits and one decimal point.
fn number(cs: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    let mut s = String::new();
    while j < cs.len() && cs[j].is_ascii_digit() {
        s.push(cs[j]);
        j += 1;
    }
    if cs.get(j) == Some(&'.') && cs.get(j + 1).is_some_and(char::is_ascii_digit) {
        s.push('.');
        j += 1;
        while j < cs.len() && cs[j].is_ascii_digit() {
            s.push(cs[j]);
            j += 1;
        }
    }
    (s, j)
}

/// Whether a command begins an atom (and so an implicit product: `2\pi`, `3\sqrt{2}`).
pub fn starts_atom(c: &str) -> bool {
    const ATOMS: [&str; 18] = [
        "frac",
        "binom",
        "sqrt",
        "text",
        "mbox",
        "operatorname",
        "textbf",
        "mathbf",
        "boldsymbol",
        "mathit",
        "mathrm",
        "\u{7b}",
        "lfloor",
        "lceil",
        "begin",
        "mathbb",
        "lvert",
        "vert",
    ];
    if c == "sum" || c == "prod" {
        return true;
    }
    ATOMS.contains(&c) || super::value::constant(c).is_some() || Func::named(c).is_some()
}

/// math_verify's `should_treat_as_complex`: where the text names `i` standing alone (or `\\imath`,
/// `\\mathbb{C}`, …), `i` is the imaginary unit; elsewhere (`5i`) a real symbol — two different
/// things, as sympy keeps them.
pub fn is_complex(s: &str) -> bool {
    static COMPLEX: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"\\mathbb\x7BC\x7D|\\i\b|\bi\b|\\text\x7Bi\x7D|\\mathrm\x7Bi\x7D|\\imath\b|\\det|\\operatorname\x7Btr\x7D|\\operatorname\x7Brank\x7D|\\text\x7Brank\x7D|\\arg\x7B|\\Re\x7B|\\Im\x7B|\\operatorname\x7BRe\x7D|\\operatorname\x7BIm\x7D|\\text\x7BRe\x7D|\\text\x7BIm\x7D",
        )
        .expect("a valid expression")
    });
    COMPLEX.is_match(s)
}

/// The commands that are relations.
pub const RELATIONS: [(&str, Rel); 13] = [
    ("le", Rel::Le),
    ("leq", Rel::Le),
    ("leqslant", Rel::Le),
    ("ge", Rel::Ge),
    ("geq", Rel::Ge),
    ("geqslant", Rel::Ge),
    ("lt", Rel::Lt),
    ("gt", Rel::Gt),
    ("neq", Rel::Ne),
    ("ne", Rel::Ne),
    ("approx", Rel::Approx),
    ("in", Rel::In),
    ("equiv", Rel::Eq),
];
