//! Reading a normalised answer into a [`Node`]: LaTeX and plain expressions, as far as
//! latex2sympy2_extended reads them (numbers, `\frac`, `\sqrt`, powers, implicit products,
//! functions, relations and their chains, `\pm`, tuples, sets, intervals, unions, matrices,
//! percent). Nesting is limited to [`MAX_DEPTH`] and every list is read by a loop, so no input
//! can overflow the stack; what cannot be read is `None`.
use super::lex::{is_complex, starts_atom, tokenize, Tok, RELATIONS};
use super::value::{Func, Node, Num, Rel};

/// Deepest nesting of brackets and commands read; deeper answers are not read.
pub const MAX_DEPTH: usize = 48;

/// Reads a whole answer; `None` when any of it is not understood.
pub fn parse(s: &str) -> Option<Node> {
    // `1,234` is one number only when it is the whole answer (latex2sympy2's
    // `comma_number_regex`); `(12,102)` is an interval.
    let grouped = s.trim().strip_prefix('-').unwrap_or(s.trim());
    let whole_number = grouped.split('.').next().is_some_and(|int| {
        let groups: Vec<&str> = int.split(',').collect();
        groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups
                .iter()
                .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
    }) && grouped
        .split('.')
        .nth(1)
        .is_none_or(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        && grouped.matches('.').count() <= 1;
    let s = if whole_number {
        s.replace(',', "")
    } else {
        s.to_string()
    };
    let tokens = tokenize(&s)?;
    let mut p = Parser {
        t: &tokens,
        i: 0,
        depth: 0,
        complex: is_complex(&s),
    };
    let node = p.top()?;
    (p.i == tokens.len()).then_some(node)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    depth: usize,
    /// `i` is the imaginary unit ([`is_complex`]).
    complex: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.t.get(self.i + k)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(&Tok::Sym(c));
        self.i += usize::from(hit);
        hit
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        let hit = matches!(self.peek(), Some(Tok::Cmd(c)) if c == name);
        self.i += usize::from(hit);
        hit
    }

    /// Enters one level of nesting; `None` past [`MAX_DEPTH`].
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Elements separated by `,` or `;`: one element is itself, several a set; `\pm` gives
    /// both signs.
    fn top(&mut self) -> Option<Node> {
        let mut groups = vec![vec![]];
        loop {
            groups.last_mut()?.extend(self.element()?);
            if self.eat(';') {
                groups.push(vec![]);
            } else if !self.eat(',') {
                break;
            }
        }
        // latex2sympy2's `convert_elements_to_set_or_tuple`: `a; b` a set, `a, b; c, d` a set
        // of tuples.
        if groups.len() == 1 {
            let mut items = groups.pop()?;
            return Some(if items.len() == 1 {
                items.pop()?
            } else {
                Node::set(items)
            });
        }
        if groups.iter().all(|g| g.len() == 1) {
            return Some(Node::set(groups.into_iter().flatten().collect()));
        }
        Some(Node::set(groups.into_iter().map(Node::Tuple).collect()))
    }

    /// One element: a relation, or `a \pm b` (two values).
    fn element(&mut self) -> Option<Vec<Node>> {
        if self.eat_cmd("pm") || self.eat_cmd("mp") {
            let e = self.set_expr()?;
            return Some(vec![Node::neg(e.clone()), e]);
        }
        let first = self.set_expr()?;
        if self.eat_cmd("pm") || self.eat_cmd("mp") {
            let second = self.set_expr()?;
            return Some(vec![
                Node::Add(vec![first.clone(), second.clone()]),
                Node::Add(vec![first, Node::neg(second)]),
            ]);
        }
        self.relation(first).map(|r| vec![r])
    }

    /// `lhs op rhs op …`: one relation, or a chain of them (`0 < x < 1`).
    fn relation(&mut self, first: Node) -> Option<Node> {
        let mut chain: Vec<Node> = Vec::new();
        let mut lhs = first;
        while let Some(op) = self.relation_op() {
            let rhs = self.set_expr()?;
            match op {
                // `x \approx 3.5` is 3.5; `3.5 \approx x` is 3.5.
                Rel::Approx => {
                    if lhs.only_symbols() {
                        lhs = rhs;
                    }
                    continue;
                }
                Rel::In => {
                    chain.push(Node::Rel(Rel::Eq, Box::new(lhs), Box::new(rhs.clone())));
                }
                _ => chain.push(Node::Rel(op, Box::new(lhs), Box::new(rhs.clone()))),
            }
            lhs = rhs;
        }
        Some(match chain.len() {
            0 => lhs,
            1 => chain.pop()?,
            _ => Node::And(chain),
        })
    }

    fn relation_op(&mut self) -> Option<Rel> {
        let op = match self.peek()? {
            Tok::Sym('=') => Rel::Eq,
            Tok::Sym('<') => Rel::Lt,
            Tok::Sym('>') => Rel::Gt,
            Tok::Sym('!') if self.peek_at(1) == Some(&Tok::Sym('=')) => {
                self.i += 2;
                return Some(Rel::Ne);
            }
            Tok::Cmd(c) => RELATIONS.iter().find(|(n, _)| n == c)?.1,
            _ => return None,
        };
        self.i += 1;
        // `<=`, `>=`, `!=`-style pairs.
        let op = match (op, self.peek()) {
            (Rel::Lt, Some(Tok::Sym('='))) => Rel::Le,
            (Rel::Gt, Some(Tok::Sym('='))) => Rel::Ge,
            _ => return Some(op),
        };
        self.i += 1;
        Some(op)
    }

    /// Unions, intersections and differences of sets.
    fn set_expr(&mut self) -> Option<Node> {
        let first = self.sum()?;
        let mut parts = vec![first];
        while self.eat_cmd("cup") || self.eat_cmd("setminus") || self.eat_cmd("cap") {
            parts.push(self.sum()?);
        }
        Some(if parts.len() == 1 {
            parts.pop()?
        } else {
            Node::Union(parts)
        })
    }

    fn sum(&mut self) -> Option<Node> {
        let mut terms = vec![self.product()?];
        loop {
            if self.eat('+') {
                terms.push(self.product()?);
            } else if self.eat('-') {
                terms.push(Node::neg(self.product()?));
            } else {
                break;
            }
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Node::Add(terms)
        })
    }

    fn product(&mut self) -> Option<Node> {
        let mut factors = vec![self.unary()?];
        loop {
            let divide = if self.eat('*') || self.eat_cmd("cdot") || self.eat_cmd("times") {
                false
            } else if self.eat('/') || self.eat(':') || self.eat_cmd("div") {
                true
            } else {
                break;
            };
            let f = self.unary()?;
            factors.push(if divide { Node::recip(f) } else { f });
        }
        Some(if factors.len() == 1 {
            factors.pop()?
        } else {
            Node::Mul(factors)
        })
    }

    /// Signs read in a loop (`---5`), then an implicit product.
    fn unary(&mut self) -> Option<Node> {
        let mut negative = false;
        loop {
            if self.eat('-') {
                negative = !negative;
            } else if !self.eat('+') {
                break;
            }
        }
        let e = self.implicit()?;
        Some(if negative { Node::neg(e) } else { e })
    }

    /// `2x`, `3\sqrt{2}`, `\pi r^2`, `2\frac{1}{2}` (a mixed number).
    fn implicit(&mut self) -> Option<Node> {
        let mut factors = vec![self.postfix()?];
        while self.starts_factor() {
            let f = self.postfix()?;
            match (factors.last(), &f) {
                (Some(Node::Num(w)), Node::Num(fr)) if factors.len() == 1 && w.is_integer() && fr.is_fraction => {
                    let whole = w.value;
                    factors[0] = Node::Num(Num::rational(whole + fr.value.copysign(whole)));
                }
                _ => factors.push(f),
            }
        }
        Some(if factors.len() == 1 {
            factors.pop()?
        } else {
            Node::Mul(factors)
        })
    }

    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_)) => true,
            Some(Tok::Sym(c)) => matches!(c, '(' | '\u{7b}' | '['),
            Some(Tok::Cmd(c)) => starts_atom(c),
            None => false,
        }
    }

    /// An atom with its powers, subscripts, factorials and percent sign.
    fn postfix(&mut self) -> Option<Node> {
        let mut base = self.atom()?;
        loop {
            if self.eat('^') {
                if self.eat_cmd("circ") || (self.peek() == Some(&Tok::Sym('\u{7b}')) && self.skip_group_of("circ")) {
                    continue;
                }
                let exp = self.argument()?;
                base = Node::Pow(Box::new(base), Box::new(exp));
            } else if self.peek_at(1) != Some(&Tok::Sym('=')) && self.eat('!') {
                base = Node::Func(Func::Factorial, vec![base]);
            } else if self.eat('%') || self.eat_cmd("%") {
                base = base.percent();
            } else if self.eat('\'') {
                base = Node::Sym(format!("{}'", base.symbol_name()?));
            } else if self.peek() == Some(&Tok::Sym('_')) && matches!(base, Node::Sym(_)) {
                self.i += 1;
                let sub = self.subscript()?;
                base = Node::Sym(format!("{}_{sub}", base.symbol_name()?));
            } else if self.peek() == Some(&Tok::Sym('_')) && matches!(base, Node::Num(_)) {
                // A base written under a number (`52_8`) leaves the number, as latex2sympy2 reads it.
                self.i += 1;
                self.subscript()?;
            } else {
                return Some(base);
            }
        }
    }

    /// `{\circ}` skipped.
    fn skip_group_of(&mut self, name: &str) -> bool {
        let hit = self.peek_at(1) == Some(&Tok::Cmd(name.into())) && self.peek_at(2) == Some(&Tok::Sym('\u{7d}'));
        self.i += 3 * usize::from(hit);
        hit
    }

    /// A subscript's text: one token or a braced group of letters and digits.
    fn subscript(&mut self) -> Option<String> {
        let one = |t: &Tok| match t {
            Tok::Num(n) => Some(n.clone()),
            Tok::Letter(c) => Some(c.to_lowercase().to_string()),
            _ => None,
        };
        if self.eat('\u{7b}') {
            // Any text in braces names the symbol (`F_{n-k-1}`).
            let mut s = String::new();
            let mut depth = 0usize;
            loop {
                let t = self.peek()?.clone();
                self.i += 1;
                match t {
                    Tok::Sym('\u{7d}') if depth == 0 => return Some(s),
                    Tok::Sym('\u{7d}') => depth -= 1,
                    Tok::Sym('\u{7b}') => depth += 1,
                    _ => {}
                }
                s.push_str(&match t {
                    Tok::Num(n) => n,
                    Tok::Letter(c) => c.to_lowercase().to_string(),
                    Tok::Cmd(c) => c,
                    Tok::Sym(c) => c.to_string(),
                });
            }
        }
        let s = one(self.peek()?)?;
        self.i += 1;
        Some(s)
    }

    /// A braced group or one token (`\frac34`, `x^2`, `\sqrt2`).
    fn argument(&mut self) -> Option<Node> {
        if self.eat('\u{7b}') {
            return self.closed('\u{7d}');
        }
        match self.peek()?.clone() {
            Tok::Num(n) => {
                self.i += 1;
                // `x^23` is x^{2}·3 in LaTeX: one digit.
                let first = n.chars().next()?;
                if n.len() > 1 {
                    return None;
                }
                Num::parse(&first.to_string()).map(Node::Num)
            }
            Tok::Letter(c) => {
                self.i += 1;
                Some(Node::letter(c))
            }
            Tok::Cmd(_) => self.atom(),
            Tok::Sym('-') => {
                self.i += 1;
                Some(Node::neg(self.argument()?))
            }
            _ => None,
        }
    }

    fn closed(&mut self, close: char) -> Option<Node> {
        self.enter()?;
        let e = self.top();
        self.leave();
        let e = e?;
        self.eat(close).then_some(e)
    }

    fn atom(&mut self) -> Option<Node> {
        self.enter()?;
        let a = self.atom_inner();
        self.leave();
        a
    }

    fn atom_inner(&mut self) -> Option<Node> {
        let tok = self.peek()?.clone();
        self.i += 1;
        match tok {
            Tok::Num(n) => Num::parse(&n).map(Node::Num),
            Tok::Letter(c) => self.letter(c),
            Tok::Sym('(') => self.bracketed('('),
            Tok::Sym('[') => self.bracketed('['),
            Tok::Sym('\u{7b}') => self.closed('\u{7d}'),
            Tok::Sym('|') => {
                let e = self.sum()?;
                self.eat('|').then(|| Node::Func(Func::Abs, vec![e]))
            }
            Tok::Cmd(c) => self.command(&c),
            _ => None,
        }
    }

    /// A letter: `e` is Euler's number, `f(x)` a function applied, else a symbol.
    fn letter(&mut self, c: char) -> Option<Node> {
        if matches!(c, 'f' | 'g' | 'h') && self.peek() == Some(&Tok::Sym('(')) {
            self.i += 1;
            let arg = self.closed(')')?;
            return Some(Node::Apply(c.to_string(), vec![arg]));
        }
        if c == 'i' && self.complex {
            return Some(Node::Sym("ⅈ".into()));
        }
        Some(Node::letter(c))
    }

    /// `( … )` or `[ … ]`: a group, a tuple, or an interval `(a, b]`.
    fn bracketed(&mut self, open: char) -> Option<Node> {
        self.enter()?;
        let r = self.bracketed_inner(open);
        self.leave();
        r
    }

    fn bracketed_inner(&mut self, open: char) -> Option<Node> {
        let mut items = Vec::new();
        loop {
            items.extend(self.element()?);
            if !(self.eat(',') || self.eat(';')) {
                break;
            }
        }
        let close = match self.peek()? {
            Tok::Sym(c @ (')' | ']')) => *c,
            _ => return None,
        };
        self.i += 1;
        if items.len() == 1 {
            return (open == '(' && close == ')' || open == '[' && close == ']').then(|| items.pop())?;
        }
        if items.len() == 2 {
            return Some(Node::interval(items, open == '(', close == ')'));
        }
        (open == '(' && close == ')').then_some(Node::Tuple(items))
    }

    fn command(&mut self, c: &str) -> Option<Node> {
        if let Some(n) = super::value::constant(c) {
            return Some(n);
        }
        if let Some(f) = Func::named(c) {
            return self.function(f);
        }
        match c {
            "frac" => {
                let (n, d) = (self.argument()?, self.argument()?);
                Some(Node::fraction(n, d))
            }
            "sum" | "prod" => {
                // `\sum_{k=0}^{n-1} body`: the start value, the end and the body.
                let lo = match self.eat('_') {
                    true => match self.argument()? {
                        Node::Rel(_, _, start) => *start,
                        other => other,
                    },
                    false => Node::Sym(String::new()),
                };
                let hi = if self.eat('^') {
                    self.argument()?
                } else {
                    Node::Sym(String::new())
                };
                let body = self.implicit()?;
                Some(Node::Apply(c.to_string(), vec![lo, hi, body]))
            }
            "binom" => {
                let (n, k) = (self.argument()?, self.argument()?);
                Some(Node::Func(Func::Binom, vec![n, k]))
            }
            "sqrt" => {
                let root = if self.eat('[') { Some(self.closed(']')?) } else { None };
                let x = self.argument()?;
                Some(match root {
                    None => Node::Func(Func::Sqrt, vec![x]),
                    Some(n) => Node::Pow(Box::new(x), Box::new(Node::recip(n))),
                })
            }
            "text" | "mbox" | "operatorname" | "textbf" | "mathbf" | "boldsymbol" | "mathit" | "mathrm" => self.text(),
            "\u{7b}" => self.set_literal(),
            "lfloor" | "lceil" => {
                let e = self.sum()?;
                let close = if c == "lfloor" { "rfloor" } else { "rceil" };
                let f = if c == "lfloor" { Func::Floor } else { Func::Ceil };
                self.eat_cmd(close).then(|| Node::Func(f, vec![e]))
            }
            "begin" => self.matrix(),
            "mathbb" => self.number_set(),
            "vert" | "lvert" | "rvert" | "|" => {
                let e = self.sum()?;
                (self.eat_cmd("vert") || self.eat_cmd("rvert") || self.eat_cmd("|"))
                    .then(|| Node::Func(Func::Abs, vec![e]))
            }
            _ => None,
        }
    }

    /// `\sin x`, `\sin(x)`, `\sin^2 x`, `\log_2 8`, `\max(1, 2)`.
    fn function(&mut self, f: Func) -> Option<Node> {
        let mut base = None;
        if self.eat('_') {
            base = Some(self.argument()?);
        }
        let mut power = None;
        if self.eat('^') {
            power = Some(self.argument()?);
        }
        let args = if self.eat('(') {
            let inner = self.closed(')')?;
            match inner {
                Node::Set(items) if f.takes_many() => items,
                other => vec![other],
            }
        } else if self.peek() == Some(&Tok::Sym('\u{7b}')) {
            vec![self.argument()?]
        } else {
            vec![self.postfix()?]
        };
        let mut node = match (f, base) {
            (Func::Log, Some(b)) => Node::Func(Func::LogBase, vec![args.into_iter().next()?, b]),
            (_, None) => Node::Func(f, args),
            _ => return None,
        };
        if let Some(p) = power {
            node = Node::Pow(Box::new(node), Box::new(p));
        }
        Some(node)
    }

    /// `\text{…}`: a number, or a symbol named by its letters (`\text{(A)}` is `a`).
    fn text(&mut self) -> Option<Node> {
        if !self.eat('\u{7b}') {
            return None;
        }
        let start = self.i;
        let mut depth = 1;
        while depth > 0 {
            match self.peek()? {
                Tok::Sym('\u{7b}') => depth += 1,
                Tok::Sym('\u{7d}') => depth -= 1,
                _ => {}
            }
            self.i += 1;
        }
        // Always a symbol, as latex2sympy2 reads it: `\text{13}` is not 13.
        let inner = &self.t[start..self.i - 1];
        let mut name = String::new();
        for t in inner {
            match t {
                Tok::Letter(c) => name.extend(c.to_lowercase()),
                Tok::Num(n) => name.push_str(n),
                Tok::Sym('(' | ')') => {}
                Tok::Sym(c) => name.push(*c),
                Tok::Cmd(c) => name.push_str(c),
            }
        }
        (!name.is_empty()).then_some(Node::Sym(name))
    }

    /// `\{1, 2\}`: a finite set.
    fn set_literal(&mut self) -> Option<Node> {
        self.enter()?;
        let r = (|| {
            if self.eat_cmd("\u{7d}") {
                return Some(Node::Empty);
            }
            let mut items = Vec::new();
            loop {
                items.extend(self.element()?);
                if !(self.eat(',') || self.eat(';')) {
                    break;
                }
            }
            self.eat_cmd("\u{7d}").then_some(Node::set(items))
        })();
        self.leave();
        r
    }

    fn number_set(&mut self) -> Option<Node> {
        let name = match self.argument()? {
            Node::Sym(s) => s,
            _ => return None,
        };
        (name == "r").then_some(Node::Reals)
    }

    /// `\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}` (also `bmatrix`, `matrix`, `array`).
    fn matrix(&mut self) -> Option<Node> {
        let env = self.env_name()?;
        if !["matrix", "pmatrix", "bmatrix", "array", "vmatrix", "smallmatrix"].contains(&env.as_str()) {
            return None;
        }
        if env == "array" && self.eat('\u{7b}') {
            while !self.eat('\u{7d}') {
                self.peek()?;
                self.i += 1;
            }
        }
        let mut rows = vec![vec![]];
        loop {
            if self.eat_cmd("end") {
                return (self.env_name()? == env).then(|| Node::matrix(rows))?;
            }
            if self.eat_cmd("\\") {
                rows.push(vec![]);
                continue;
            }
            if self.eat('&') {
                continue;
            }
            let e = self.sum()?;
            rows.last_mut()?.push(e);
        }
    }

    fn env_name(&mut self) -> Option<String> {
        if !self.eat('\u{7b}') {
            return None;
        }
        let mut name = String::new();
        while let Some(Tok::Letter(c)) = self.peek() {
            name.push(*c);
            self.i += 1;
        }
        self.eat('\u{7d}').then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shows(s: &str) -> String {
        parse(s).map_or("none".into(), |n| format!("{n:?}"))
    }

    #[test]
    fn reads_the_common_forms() {
        for s in [
            r"\frac{3}{4}",
            "2x+1",
            r"\sqrt[3]{8}",
            "(1,2]",
            r"\{1,2\}",
            "x=5",
            r"0<x<1",
            r"\pm 3",
            r"\sin^2 x",
            r"\log_2 8",
            "5!",
            r"\binom{5}{2}",
            r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
            r"(0,1) \cup (2,3)",
            r"50\%",
            r"2\frac{1}{2}",
            r"\text{(A)}",
            "a_3=2",
            "f(x)=1",
            r"|x|",
        ] {
            assert_ne!(shows(s), "none", "{s}");
        }
        for s in [r"\frac{3}{4", "((1)", r"\unknown{x}", "1 +", "?"] {
            assert_eq!(shows(s), "none", "{s}");
        }
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).is_none());
        let ok = format!("{}1{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok).is_some());
        let long = vec!["1"; 300_000].join("+");
        assert!(parse(&long).is_some());
        assert!(parse(&format!("{}5", "-".repeat(300_000))).is_some());
        assert!(parse(&format!("{}5", r"\sqrt{".repeat(10_000))).is_none());
    }
}
