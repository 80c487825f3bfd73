//! Whether two answers are the same: math_verify's `verify` (sympy_expr_eq) carried over.
//! Assignments give their value (`x = 5` is 5 against a number; `x = 5+5+1 = 11` is 11), sets
//! and tuples compare element by element (sets in value order), intervals by ends and openness,
//! relations by `lhs − rhs` (or flipped), symbols by name, numbers as sympy does (a decimal on
//! either side: equal to 6 decimals; two integers: exactly; else exactly), expressions with
//! variables at three fixed points.
use super::value::{Node, NumKind, Rel};

/// Three points at which expressions with variables are compared.
const POINTS: [[f64; 3]; 3] = [[0.37, 1.21, 0.58], [1.73, -0.41, 0.93], [-1.13, 2.61, 1.29]];

pub fn same(gold: &Node, pred: &Node) -> bool {
    let (gold, pred) = unwrap_assignments(gold.clone(), pred.clone());
    let gold = match (&gold, is_set(&pred)) {
        (g, true) if is_relation(g) => as_set(g).unwrap_or(gold),
        _ => gold,
    };
    if gold
        .constant_value()
        .is_some_and(|v| v.is_nan() || (v.is_infinite() && !has_infinity(&gold)))
    {
        // sympy refuses to compare `zoo` or `nan` (`12:00` read as 12/0).
        return false;
    }
    if gold == pred {
        return true;
    }
    if is_relation(&gold) && is_relation(&pred) {
        relations(&gold, &pred)
    } else if is_set(&gold) || is_set(&pred) || matches!(gold, Node::Tuple(_)) || matches!(pred, Node::Tuple(_)) {
        sets(&gold, &pred)
    } else if matches!(gold, Node::Sym(_)) || matches!(pred, Node::Sym(_)) {
        symbols(&gold, &pred)
    } else {
        numeric(&gold, &pred) || symbolic(&gold, &pred)
    }
}

fn has_infinity(n: &Node) -> bool {
    let mut stack = vec![n];
    while let Some(x) = stack.pop() {
        if matches!(x, Node::Const("oo", _)) {
            return true;
        }
        stack.extend(x.children());
    }
    false
}

fn is_relation(n: &Node) -> bool {
    match n {
        Node::Rel(..) => true,
        Node::And(v) => !v.is_empty() && v.iter().all(|r| matches!(r, Node::Rel(..))),
        _ => false,
    }
}

fn is_equation(n: &Node) -> bool {
    match n {
        Node::Rel(Rel::Eq, ..) => true,
        Node::And(v) => !v.is_empty() && v.iter().all(|r| matches!(r, Node::Rel(Rel::Eq, ..))),
        _ => false,
    }
}

fn is_assignment(n: &Node) -> bool {
    match n {
        Node::Rel(Rel::Eq, lhs, _) => lhs.only_symbols(),
        Node::And(v) => is_equation(n) && matches!(&v[0], Node::Rel(_, lhs, _) if lhs.only_symbols()),
        _ => false,
    }
}

fn is_set(n: &Node) -> bool {
    matches!(
        n,
        Node::Set(_) | Node::Interval { .. } | Node::Union(_) | Node::Empty | Node::Reals
    )
}

fn sides(n: &Node) -> Option<(&Node, &Node)> {
    match n {
        Node::Rel(_, l, r) => Some((l, r)),
        Node::And(v) => sides(v.last()?).map(|(_, r)| (first_lhs(n), r)),
        _ => None,
    }
}

fn first_lhs(n: &Node) -> &Node {
    match n {
        Node::And(v) => v.first().map_or(n, first_lhs),
        Node::Rel(_, l, _) => l,
        _ => n,
    }
}

/// The last right side of an equation or chain.
fn last_rhs(n: &Node) -> Node {
    sides(n).map_or_else(|| n.clone(), |(_, r)| r.clone())
}

fn unwrap_assignments(gold: Node, pred: Node) -> (Node, Node) {
    let (ga, pa) = (is_assignment(&gold), is_assignment(&pred));
    let (ge, pe) = (is_equation(&gold), is_equation(&pred));
    let collapse = |n: Node| match sides(&n) {
        Some((l, r)) => Node::Rel(Rel::Eq, Box::new(l.clone()), Box::new(r.clone())),
        None => n,
    };
    let gold = if ga { collapse(gold) } else { gold };
    let pred = if pa { collapse(pred) } else { pred };
    if pe && !ge {
        let rhs = last_rhs(&pred);
        (gold, rhs)
    } else if ga && !pe {
        (last_rhs(&gold), pred)
    } else {
        (gold, pred)
    }
}

/// A relation on one variable as the set it describes (`0 < x < 1` is `(0, 1)`).
fn as_set(n: &Node) -> Option<Node> {
    let parts: Vec<&Node> = match n {
        Node::And(v) => v.iter().collect(),
        r => vec![r],
    };
    let inf = || Node::Const("oo", f64::INFINITY);
    let (mut lo, mut hi) = (Node::neg(inf()), inf());
    let (mut lo_open, mut hi_open) = (true, true);
    let mut var: Option<&Node> = None;
    for p in parts {
        let Node::Rel(op, l, r) = p else { return None };
        // `x op c` or `c op x`.
        let (op, x, c) = if l.constant_value().is_none() {
            (*op, l, r)
        } else {
            (op.flipped(), r, l)
        };
        c.constant_value()?;
        if var.is_some_and(|v| v != &**x) || !x.only_symbols() {
            return None;
        }
        var = Some(x);
        match op {
            Rel::Lt | Rel::Le => (hi, hi_open) = ((**c).clone(), op == Rel::Lt),
            Rel::Gt | Rel::Ge => (lo, lo_open) = ((**c).clone(), op == Rel::Gt),
            Rel::Eq => return Some(Node::Set(vec![(**c).clone()])),
            _ => return None,
        }
    }
    Some(Node::Interval {
        lo: Box::new(lo),
        hi: Box::new(hi),
        left_open: lo_open,
        right_open: hi_open,
    })
}

fn relations(gold: &Node, pred: &Node) -> bool {
    match (gold, pred) {
        (Node::And(g), Node::And(p)) => g.len() == p.len() && g.iter().zip(p).all(|(a, b)| relations(a, b)),
        (Node::Rel(go, gl, gr), Node::Rel(po, pl, pr)) => {
            let diff = |a: &Node, b: &Node| Node::Add(vec![a.clone(), Node::neg(b.clone())]);
            (go == po && same(&diff(gl, gr), &diff(pl, pr)))
                || (go.flipped() == *po && go != po && same(&diff(gl, gr), &diff(pr, pl)))
                || (go == po && *go == Rel::Eq && proportional(&diff(gl, gr), &diff(pl, pr)))
        }
        _ => false,
    }
}

/// Two equations `f = 0` and `g = 0` with `f = k·g` have the same solutions (what sympy's
/// `solve` finds for them).
fn proportional(f: &Node, g: &Node) -> bool {
    let ratios: Vec<f64> = POINTS.iter().map(|p| f.eval(p) / g.eval(p)).collect();
    ratios.iter().all(|r| r.is_finite() && r.abs() > 1e-12) && ratios.windows(2).all(|w| close(w[0], w[1], 1e-9))
}

fn sets(gold: &Node, pred: &Node) -> bool {
    let wrap = |n: &Node| match n {
        n if is_set(n) || matches!(n, Node::Tuple(_)) => n.clone(),
        n => Node::Set(vec![n.clone()]),
    };
    let (a, b) = (wrap(gold), wrap(pred));
    match (&a, &b) {
        (Node::Interval { .. }, Node::Interval { .. }) => intervals(&a, &b),
        _ if a == b => true,
        (Node::Set(x), Node::Set(y)) if same_values(x, y) => true,
        (Node::Set(x) | Node::Tuple(x), Node::Set(y) | Node::Tuple(y)) => x.len() == y.len() && elements(&a, x, y),
        (
            Node::Interval {
                lo,
                hi,
                left_open: true,
                right_open: true,
            },
            Node::Set(y) | Node::Tuple(y),
        ) if y.len() == 2 => same(lo, &y[0]) && same(hi, &y[1]),
        (
            Node::Set(x) | Node::Tuple(x),
            Node::Interval {
                lo,
                hi,
                left_open: true,
                right_open: true,
            },
        ) if x.len() == 2 => same(&x[0], lo) && same(&x[1], hi),
        (Node::Union(x), Node::Union(y)) => x.len() == y.len() && x.iter().zip(y).all(|(u, v)| sets(u, v)),
        _ => false,
    }
}

/// Element by element: a gold set in value order against the prediction in value order; a
/// gold tuple in order against the prediction as written.
fn elements(gold: &Node, x: &[Node], y: &[Node]) -> bool {
    let (xs, ys): (Vec<&Node>, Vec<&Node>) = match gold {
        Node::Set(_) => (ordered(x), ordered(y)),
        _ => (x.iter().collect(), y.iter().collect()),
    };
    xs.iter().zip(&ys).all(|(u, v)| same(u, v))
}

/// Two finite sets of numbers with the same values (sympy's symmetric difference is empty).
fn same_values(x: &[Node], y: &[Node]) -> bool {
    let values =
        |v: &[Node]| -> Option<Vec<f64>> { v.iter().map(|n| n.constant_value().filter(|x| x.is_finite())).collect() };
    match (values(x), values(y)) {
        (Some(mut a), Some(mut b)) => {
            // Sorted and with repeats dropped, equal sets are equal lists: n log n.
            for v in [&mut a, &mut b] {
                v.sort_by(f64::total_cmp);
                v.dedup_by(|x, y| close(*x, *y, 1e-12));
            }
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| close(*x, *y, 1e-12))
        }
        _ => false,
    }
}

/// Sorted as sympy's `default_sort_key` of the evaluated values: numbers by value, then the rest.
fn ordered(v: &[Node]) -> Vec<&Node> {
    let mut out: Vec<&Node> = v.iter().collect();
    // A tuple's key is its elements' values, compared in order.
    let key = |n: &Node| -> Option<Vec<f64>> {
        let value = |n: &Node| {
            let inner = if is_assignment(n) { last_rhs(n) } else { n.clone() };
            inner.constant_value().filter(|x| !x.is_nan())
        };
        match n {
            Node::Tuple(v) => v.iter().map(value).collect(),
            n => value(n).map(|x| vec![x]),
        }
    };
    out.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x
            .iter()
            .zip(&y)
            .map(|(p, q)| p.total_cmp(q))
            .find(|o| o.is_ne())
            .unwrap_or(x.len().cmp(&y.len())),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => format!("{a:?}").cmp(&format!("{b:?}")),
    });
    out
}

fn intervals(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (
            Node::Interval {
                lo: l1,
                hi: h1,
                left_open: a1,
                right_open: b1,
            },
            Node::Interval {
                lo: l2,
                hi: h2,
                left_open: a2,
                right_open: b2,
            },
        ) => a1 == a2 && b1 == b2 && same(l1, l2) && same(h1, h2),
        _ => false,
    }
}

fn symbols(gold: &Node, pred: &Node) -> bool {
    let e = |n: &Node| matches!(n, Node::Const("E", _));
    let name = |n: &Node| match n {
        Node::Sym(s) => Some(s.clone()),
        n if e(n) => Some("e".into()),
        _ => None,
    };
    let concat = |n: &Node| match n {
        Node::Mul(v) => v.iter().map(name).collect::<Option<String>>(),
        _ => None,
    };
    match (gold, pred) {
        (Node::Sym(g), p) if e(p) => g.eq_ignore_ascii_case("e"),
        (g, Node::Sym(p)) if e(g) => p.eq_ignore_ascii_case("e"),
        (Node::Sym(g), Node::Sym(p)) => g.to_lowercase() == p.to_lowercase(),
        (Node::Sym(g), p) => concat(p).is_some_and(|c| c.eq_ignore_ascii_case(g)),
        (g, Node::Sym(p)) => concat(g).is_some_and(|c| c.eq_ignore_ascii_case(p)),
        _ => false,
    }
}

/// sympy_numeric_eq: matrices element by element; a number literal on either side compared as
/// sympy compares it; otherwise the difference is zero to 15 digits.
fn numeric(a: &Node, b: &Node) -> bool {
    if let (Some(x), Some(y)) = (matrix(a), matrix(b)) {
        let shape = |m: &Vec<Vec<Node>>| (m.len(), m.first().map_or(0, Vec::len));
        return shape(&x) == shape(&y) && x.iter().flatten().zip(y.iter().flatten()).all(|(u, v)| same(u, v));
    }
    let (na, nb) = (literal(a), literal(b));
    let (Some(x), Some(y)) = (a.constant_value(), b.constant_value()) else {
        return false;
    };
    if !(x.is_finite() && y.is_finite()) {
        return false;
    }
    let float = [na, nb].iter().flatten().any(|n| n.kind == NumKind::Float);
    match (na, nb) {
        (Some(_), _) | (_, Some(_)) if float => round6(x) == round6(y),
        // Two integers (a percent sign aside: `50\%` is 50 against an integer).
        (Some(p), Some(q)) if p.kind == NumKind::Integer && q.kind == NumKind::Integer => p.value == q.value,
        _ => close(x, y, 1e-12),
    }
}

/// A matrix, or a sum or product of matrices (sympy's `doit`), as its rows of entries.
fn matrix(n: &Node) -> Option<Vec<Vec<Node>>> {
    match n {
        Node::Matrix(rows) => Some(rows.clone()),
        Node::Add(v) => {
            let ms: Vec<Vec<Vec<Node>>> = v.iter().map(matrix).collect::<Option<_>>()?;
            let first = ms.first()?;
            let shape = |m: &Vec<Vec<Node>>| (m.len(), m.first().map_or(0, Vec::len));
            ms.iter().all(|m| shape(m) == shape(first)).then(|| {
                (0..first.len())
                    .map(|i| {
                        (0..first[i].len())
                            .map(|j| Node::Add(ms.iter().map(|m| m[i][j].clone()).collect()))
                            .collect()
                    })
                    .collect()
            })
        }
        Node::Mul(v) if v.len() > 1 && v.iter().all(|f| matches!(f, Node::Matrix(_))) => {
            let mut acc = matrix(&v[0])?;
            for f in &v[1..] {
                acc = product(&acc, &matrix(f)?)?;
            }
            Some(acc)
        }
        _ => None,
    }
}

fn product(a: &[Vec<Node>], b: &[Vec<Node>]) -> Option<Vec<Vec<Node>>> {
    let width = b.first()?.len();
    if a.first()?.len() != b.len() {
        return None;
    }
    let entry = |row: &Vec<Node>, j: usize| {
        Node::Add(
            row.iter()
                .zip(b)
                .map(|(x, r)| Node::Mul(vec![x.clone(), r[j].clone()]))
                .collect(),
        )
    };
    Some(
        a.iter()
            .map(|row| (0..width).map(|j| entry(row, j)).collect())
            .collect(),
    )
}

fn literal(n: &Node) -> Option<super::value::Num> {
    match n {
        Node::Num(x) => Some(*x),
        _ => None,
    }
}

fn round6(x: f64) -> f64 {
    let r = (x * 1e6).round();
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// simplify(a − b) is zero: equal at every point (and with at least one variable).
fn symbolic(a: &Node, b: &Node) -> bool {
    POINTS.iter().all(|p| {
        let (x, y) = (a.eval(p), b.eval(p));
        x.is_finite() && y.is_finite() && close(x, y, 1e-9)
    })
}

fn close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn eq(g: &str, p: &str) -> bool {
        same(&parse(g).unwrap(), &parse(p).unwrap())
    }

    #[test]
    fn as_math_verify_compares() {
        for (g, p) in [
            ("72", "72"),
            (r"\frac{1}{3}", "0.333333"),
            (r"50\%", "0.5"),
            (r"50\%", "50"),
            ("x=5", "5"),
            ("x=11", "x=5+5+1=7=11"),
            (r"x \geq 5", r"5 \leq x"),
            ("x<1", "-x>-1"),
            ("(1,3)", r"\{1,3\}"),
            (r"\{1,3\}", r"\{3,1\}"),
            (r"\pm 2", r"\{-2,2\}"),
            ("0<x<1", "(0,1)"),
            (r"\tan^2(y)+1", r"\sec^2(y)"),
            ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{3}{4}"),
            (
                r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
                r"\begin{bmatrix}1&2\\3&4\end{bmatrix}",
            ),
            (r"\text{(C)}", r"\text{C}"),
            (r"2^{10}", "1024"),
        ] {
            assert!(eq(g, p), "{g} vs {p}");
        }
        for (g, p) in [
            ("73", "72"),
            (r"\frac{1}{3}", "0.33"),
            ("(3,1)", r"\{1,3\}"),
            ("[0,9)", "[0,1)"),
            ("(0,9)", "[0,9)"),
            ("x<1", "x>-1"),
            ("4", r"4\sqrt{2}"),
            (r"\pm 2", "2"),
            ("3.14", r"\pi"),
            ("12:00", "12:00"),
        ] {
            assert!(!eq(g, p), "{g} vs {p}");
        }
    }
}
