//! What an answer reads as ([`Node`]) and its value at a point (`eval`). Numbers keep what
//! sympy keeps of them: an integer, a fraction of integers or a decimal, and a percent sign.
//! Evaluation walks the tree with an explicit stack, so a long or deep answer cannot overflow.

/// A number literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num {
    pub value: f64,
    pub kind: NumKind,
    /// `50\%`: the value is `value / 100`, and it also equals `value` against an integer.
    pub percent: bool,
    /// Written as `\frac{a}{b}` of two integers (a mixed number's fractional part).
    pub is_fraction: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Integer,
    Rational,
    Float,
}

impl Num {
    pub fn parse(s: &str) -> Option<Num> {
        let kind = if s.contains('.') {
            NumKind::Float
        } else {
            NumKind::Integer
        };
        let value: f64 = s.replace(',', "").parse().ok()?;
        value.is_finite().then_some(Num {
            value,
            kind,
            percent: false,
            is_fraction: false,
        })
    }

    pub fn rational(value: f64) -> Num {
        let kind = if value.fract() == 0.0 {
            NumKind::Integer
        } else {
            NumKind::Rational
        };
        Num {
            value,
            kind,
            percent: false,
            is_fraction: false,
        }
    }

    pub fn is_integer(&self) -> bool {
        self.kind == NumKind::Integer && !self.percent
    }

    /// The value with the percent sign applied.
    pub fn scaled(&self) -> f64 {
        if self.percent {
            self.value / 100.0
        } else {
            self.value
        }
    }
}

/// A relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Approx,
    In,
}

impl Rel {
    /// The relation with its sides swapped (`a < b` is `b > a`).
    pub fn flipped(self) -> Rel {
        match self {
            Rel::Lt => Rel::Gt,
            Rel::Gt => Rel::Lt,
            Rel::Le => Rel::Ge,
            Rel::Ge => Rel::Le,
            r => r,
        }
    }
}

/// A function of one or more arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log,
    LogBase,
    Exp,
    Sqrt,
    Abs,
    Floor,
    Ceil,
    Factorial,
    Binom,
    Max,
    Min,
    Gcd,
    Lcm,
}

impl Func {
    pub fn named(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "cot" => Func::Cot,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" => Func::Ln,
            "log" | "lg" => Func::Log,
            "exp" => Func::Exp,
            "max" => Func::Max,
            "min" => Func::Min,
            "gcd" => Func::Gcd,
            "lcm" => Func::Lcm,
            _ => return None,
        })
    }

    pub fn takes_many(self) -> bool {
        matches!(self, Func::Max | Func::Min | Func::Gcd | Func::Lcm)
    }

    fn apply(self, a: &[f64]) -> f64 {
        let x = a.first().copied().unwrap_or(f64::NAN);
        match self {
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Sec => 1.0 / x.cos(),
            Func::Csc => 1.0 / x.sin(),
            Func::Cot => 1.0 / x.tan(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Tanh => x.tanh(),
            Func::Ln => x.ln(),
            Func::Log => x.log10(),
            Func::LogBase => x.ln() / a.get(1).copied().unwrap_or(f64::NAN).ln(),
            Func::Exp => x.exp(),
            Func::Sqrt => x.sqrt(),
            Func::Abs => x.abs(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            Func::Factorial => factorial(x),
            Func::Binom => binom(x, a.get(1).copied().unwrap_or(f64::NAN)),
            Func::Max => a.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Func::Min => a.iter().copied().fold(f64::INFINITY, f64::min),
            Func::Gcd => a.iter().copied().fold(0.0, gcd),
            Func::Lcm => a.iter().copied().fold(1.0, |p, q| p * q / gcd(p, q)),
        }
    }
}

fn factorial(x: f64) -> f64 {
    if x < 0.0 || x.fract() != 0.0 || x > 170.0 {
        return f64::NAN;
    }
    (1..=x as u32).map(f64::from).product()
}

fn binom(n: f64, k: f64) -> f64 {
    if k < 0.0 || k.fract() != 0.0 || k > 1000.0 {
        return f64::NAN;
    }
    (0..k as u32).fold(1.0, |acc, i| acc * (n - f64::from(i)) / f64::from(i + 1))
}

fn gcd(a: f64, b: f64) -> f64 {
    let (mut a, mut b) = (a.abs(), b.abs());
    let mut steps = 0;
    while b > 0.5 && steps < 200 {
        (a, b) = (b, a % b);
        steps += 1;
    }
    a
}

/// An answer read.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(Num),
    Sym(String),
    /// A named constant: π, e, ∞.
    Const(&'static str, f64),
    Add(Vec<Node>),
    Mul(Vec<Node>),
    Pow(Box<Node>, Box<Node>),
    Func(Func, Vec<Node>),
    /// An undefined function applied: `f(x)`.
    Apply(String, Vec<Node>),
    Rel(Rel, Box<Node>, Box<Node>),
    /// A chain of relations: `0 < x < 1`.
    And(Vec<Node>),
    Tuple(Vec<Node>),
    Set(Vec<Node>),
    Interval {
        lo: Box<Node>,
        hi: Box<Node>,
        left_open: bool,
        right_open: bool,
    },
    Union(Vec<Node>),
    Matrix(Vec<Vec<Node>>),
    Empty,
    Reals,
}

/// `\pi`, `\infty`, Greek letters (symbols), `\emptyset`.
pub fn constant(name: &str) -> Option<Node> {
    const GREEK: [&str; 24] = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "varepsilon",
        "zeta",
        "eta",
        "theta",
        "vartheta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "rho",
        "sigma",
        "tau",
        "upsilon",
        "phi",
        "varphi",
        "chi",
        "psi",
    ];
    Some(match name {
        "pi" => Node::Const("pi", std::f64::consts::PI),
        "infty" | "infinity" => Node::Const("oo", f64::INFINITY),
        "emptyset" | "varnothing" => Node::Empty,
        "omega" => Node::Sym("omega".into()),
        g if GREEK.contains(&g) => Node::Sym(g.into()),
        _ => return None,
    })
}

impl Node {
    pub fn neg(e: Node) -> Node {
        match e {
            Node::Num(mut n) => {
                n.value = -n.value;
                Node::Num(n)
            }
            other => Node::Mul(vec![Node::Num(Num::rational(-1.0)), other]),
        }
    }

    /// A finite set: repeated elements kept once.
    pub fn set(items: Vec<Node>) -> Node {
        // Keyed by the element's printed form: linear in the number of elements.
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        Node::Set(items.into_iter().filter(|i| seen.insert(format!("{i:?}"))).collect())
    }

    pub fn recip(e: Node) -> Node {
        Node::Pow(Box::new(e), Box::new(Node::Num(Num::rational(-1.0))))
    }

    /// `\frac{a}{b}`: a fraction of two integers is a number (as sympy makes it), else a quotient.
    pub fn fraction(n: Node, d: Node) -> Node {
        match (&n, &d) {
            (Node::Num(a), Node::Num(b)) if a.is_integer() && b.is_integer() && b.value != 0.0 => {
                let mut r = Num::rational(a.value / b.value);
                r.is_fraction = true;
                Node::Num(r)
            }
            _ => Node::Mul(vec![n, Node::recip(d)]),
        }
    }

    /// A letter: `e` is Euler's number; others are symbols, lower-cased as latex2sympy2 does.
    pub fn letter(c: char) -> Node {
        match c {
            'e' => Node::Const("E", std::f64::consts::E),
            c => Node::Sym(c.to_lowercase().collect()),
        }
    }

    pub fn percent(self) -> Node {
        match self {
            Node::Num(mut n) => {
                n.percent = true;
                Node::Num(n)
            }
            other => Node::Mul(vec![other, Node::Num(Num::rational(0.01))]),
        }
    }

    /// `(a, b)` as latex2sympy2 reads it: an interval, unless it would be empty (then a tuple).
    pub fn interval(mut items: Vec<Node>, left_open: bool, right_open: bool) -> Node {
        let hi = items.pop().expect("two items");
        let lo = items.pop().expect("two items");
        let (a, b) = (lo.constant_value(), hi.constant_value());
        // Ends that are not numbers (`(p, q)`) make a tuple too.
        let empty = match (a, b) {
            (Some(a), Some(b)) => (left_open && right_open && b <= a) || (!left_open && !right_open && b < a),
            _ => left_open && right_open,
        };
        if empty {
            return Node::Tuple(vec![lo, hi]);
        }
        Node::Interval {
            lo: Box::new(lo),
            hi: Box::new(hi),
            left_open,
            right_open,
        }
    }

    pub fn matrix(rows: Vec<Vec<Node>>) -> Option<Node> {
        let rows: Vec<Vec<Node>> = rows.into_iter().filter(|r| !r.is_empty()).collect();
        let width = rows.first()?.len();
        rows.iter().all(|r| r.len() == width).then_some(Node::Matrix(rows))
    }

    pub fn symbol_name(&self) -> Option<&str> {
        match self {
            Node::Sym(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the expression is made of symbols only (`x`, `xy`, `f(x)`, `(p, q)`): the left
    /// side of an assignment.
    pub fn only_symbols(&self) -> bool {
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            match n {
                Node::Sym(_) => {}
                Node::Mul(v) | Node::Add(v) | Node::Tuple(v) | Node::Apply(_, v) | Node::Func(_, v)
                    if !v.is_empty() =>
                {
                    stack.extend(v)
                }
                Node::Pow(b, e) if **e == Node::Num(Num::rational(-1.0)) => stack.push(b),
                _ => return false,
            }
        }
        true
    }

    /// The value when the expression has no symbol in it.
    pub fn constant_value(&self) -> Option<f64> {
        let arithmetic = matches!(
            self,
            Node::Num(_) | Node::Const(..) | Node::Add(_) | Node::Mul(_) | Node::Pow(..) | Node::Func(..)
        );
        (arithmetic && self.symbols_free()).then(|| self.eval(&[0.0; 3]))
    }

    fn symbols_free(&self) -> bool {
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            match n {
                Node::Sym(_) | Node::Apply(..) => return false,
                _ => stack.extend(n.children()),
            }
        }
        true
    }

    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Add(v) | Node::Mul(v) | Node::Func(_, v) | Node::Apply(_, v) | Node::And(v) => v.iter().collect(),
            Node::Tuple(v) | Node::Set(v) | Node::Union(v) => v.iter().collect(),
            Node::Pow(a, b) | Node::Rel(_, a, b) => vec![a, b],
            Node::Interval { lo, hi, .. } => vec![lo, hi],
            Node::Matrix(rows) => rows.iter().flatten().collect(),
            _ => vec![],
        }
    }

    /// The value at `point` (each symbol gets its own mix of the point's three numbers); NaN
    /// where it has none (a set, a relation). An explicit stack: no recursion.
    pub fn eval(&self, point: &[f64; 3]) -> f64 {
        enum Step<'a> {
            Visit(&'a Node),
            Reduce(&'a Node, usize),
        }
        let mut work = vec![Step::Visit(self)];
        let mut values: Vec<f64> = Vec::new();
        while let Some(step) = work.pop() {
            match step {
                Step::Visit(n) => {
                    let kids = n.arith_children();
                    match kids {
                        Some(k) => {
                            work.push(Step::Reduce(n, k.len()));
                            work.extend(k.into_iter().rev().map(Step::Visit));
                        }
                        None => values.push(n.leaf_value(point)),
                    }
                }
                Step::Reduce(n, count) => {
                    let args = values.split_off(values.len() - count);
                    values.push(n.combine(&args));
                }
            }
        }
        values.pop().unwrap_or(f64::NAN)
    }

    /// The operands of an arithmetic node; `None` for a leaf or a non-arithmetic node.
    fn arith_children(&self) -> Option<Vec<&Node>> {
        match self {
            Node::Add(v) | Node::Mul(v) | Node::Func(_, v) | Node::Apply(_, v) => Some(v.iter().collect()),
            Node::Pow(a, b) => Some(vec![a, b]),
            _ => None,
        }
    }

    fn leaf_value(&self, point: &[f64; 3]) -> f64 {
        match self {
            Node::Num(n) => n.scaled(),
            Node::Const(_, v) => *v,
            Node::Sym(s) => symbol_value(s, point),
            _ => f64::NAN,
        }
    }

    fn combine(&self, args: &[f64]) -> f64 {
        match self {
            Node::Add(_) => args.iter().sum(),
            Node::Mul(_) => args.iter().product(),
            Node::Pow(..) => args[0].powf(args[1]),
            Node::Func(f, _) => f.apply(args),
            // An undefined function: its own value, moved by each argument differently.
            Node::Apply(name, _) => args
                .iter()
                .enumerate()
                .fold(symbol_value(name, &[0.3, 0.7, 1.1]), |acc, (i, a)| {
                    acc + a * (0.731 + i as f64) + (a * 0.37).sin()
                }),
            _ => f64::NAN,
        }
    }
}

/// A symbol's value at a point: a fixed mix of the point's numbers, different for each name.
fn symbol_value(name: &str, point: &[f64; 3]) -> f64 {
    let h = name.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    let k = (h % 997) as f64 / 997.0 + 0.5;
    point[0] * k + point[1] * k * k / 3.0 + point[2] / (1.0 + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_without_recursion() {
        let mut e = Node::Num(Num::rational(1.0));
        for _ in 0..200_000 {
            e = Node::Add(vec![e, Node::Num(Num::rational(1.0))]);
        }
        assert_eq!(e.eval(&[0.0; 3]), 200_001.0);
        // Dropping a deep tree recursively would overflow: take it apart in a loop.
        let mut stack = vec![e];
        while let Some(n) = stack.pop() {
            if let Node::Add(v) = n {
                stack.extend(v);
            }
        }
    }

    #[test]
    fn functions_and_numbers() {
        assert_eq!(Func::Factorial.apply(&[5.0]), 120.0);
        assert_eq!(Func::Binom.apply(&[5.0, 2.0]), 10.0);
        assert_eq!(Func::Gcd.apply(&[12.0, 18.0]), 6.0);
        let p = Num::parse("50").unwrap();
        assert!(p.is_integer() && p.kind == NumKind::Integer);
        assert_eq!(Num::parse("1.5").unwrap().kind, NumKind::Float);
    }
}
