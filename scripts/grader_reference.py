#!/usr/bin/env python3
r"""Reference implementation of the rftx answer graders, and generator of the
shared test table ``tests/data/grader_cases.jsonl``.

The Rust graders in rftx must agree with this file line for line. Running

    python3 scripts/grader_reference.py [OUTPUT]     (default tests/data/grader_cases.jsonl)

rewrites the table (byte-identical on every run: fixed seed, fixed order) and
prints the number of cases per grader and per verdict. The ``math`` grader
needs ``math-verify==0.9.0`` (``pip install math-verify==0.9.0``, which pulls
latex2sympy2_extended, sympy and the antlr4 runtime); the other graders use only
the Python standard library.

Table format
============
One JSON object per line (UTF-8), keys in this order:

    grader     "numeric" | "exact" | "choice" | "regex" | "math"
    extract    "answer_tag" | "boxed" | "last_number" | "whole" | "regex"
    completion the model output (string)
    answer     the reference answer (string, or a JSON number)
    tolerance  only for grader "numeric": relative tolerance (float)
    pattern    only for extract "regex": the extraction regex
    extracted  what the extraction step returns (string), or null for "nothing"
    correct    the verdict (bool)
    source     where the verdict comes from: "math_verify 0.9.0" for math,
               "reference: <python function>" for the other graders
    note       only on a few math lines: math_verify's verdict there is
               surprising (it is still recorded as the expected verdict)

All test strings are ASCII except about ten "exact" cases with accented Latin
letters. "strip" below means removing leading and trailing whitespace; the
table only ever contains ASCII whitespace (space, \t, \n, \r) at those places.

Step 1: extraction (applied to the completion)
==============================================
If extraction gives nothing, every grader says ``correct = false``. An empty
string is *not* nothing: it is handed to the grader.

answer_tag
    Find the LAST occurrence of ``<answer>`` (case-sensitive). The result is the
    text after it up to the first ``</answer>`` after it, stripped. Nothing if
    there is no ``<answer>``, or no ``</answer>`` after the last ``<answer>``
    (an earlier complete pair does NOT count then).
boxed
    Find the LAST ``\boxed{`` and the LAST ``\fbox{``; take whichever starts
    later. From just after its ``{``, count ``{`` as +1 and ``}`` as -1 (every
    brace counts, also ``\{`` and ``\}``), starting at depth 1; the content ends
    just before the ``}`` that brings the depth to 0. Nothing if neither marker
    occurs or the braces never balance (no fallback to an earlier box).
    Stripped. ``\boxed 5`` (no brace) is not a box.
last_number
    The last match (Python ``re.finditer``, leftmost-first, non-overlapping) of
    ``-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+`` with every comma
    removed. Nothing if no match. (Consequences recorded in the table:
    "pages 10-12" gives "-12"; "12,34" gives "34"; "1,2345" gives "5";
    "v2.0.1" gives ".1"; "1e5" gives "5".)
whole
    The whole completion, stripped.
regex
    The LAST match (``re.finditer``) of the case's ``pattern``. If the pattern
    has at least one capturing group the result is group 1, else the whole
    match; stripped. Nothing if there is no match, or if group 1 did not take
    part in the last match (e.g. ``answer: (\d+)|no answer`` matching
    "no answer"). Patterns only use syntax that Python ``re`` and Rust's
    ``regex`` crate read the same way (no lookaround, no backreferences, no
    ``$``/``\Z``, inline flags only at the very start) and never match the empty
    string.

Step 2: graders
===============
numeric (field ``tolerance``: 0.05 mostly, some 0 and 0.001)
    Take the FIRST number of the extracted text (``parse_first_number``):
      1. delete every ',' whose left and right neighbours (in the original
         text) are both ASCII digits ("1,234" -> "1234", but also "12,34" ->
         "1234"; "1, 2" is kept);
      2. find the first index where a number starts: an ASCII digit; or '-' or
         '.' followed by a digit; or '-' followed by '.' followed by a digit;
      3. read from there: the start character, then digits, at most one '.'
         that is followed by a digit (only before any exponent), and at most
         one exponent: 'e' or 'E', an optional '+' or '-', then at least one
         digit (if no digit follows, stop before the 'e');
      4. ``float()`` of that span; an infinite result (e.g. "1e999") means
         nothing. There is no retry with a later number.
    The reference answer: a JSON number as-is, or a string parsed the same way
    ("#### 72" -> 72, "$1,234" -> 1234, "50%" -> 50). If either side has no
    number the verdict is false. Otherwise
        correct  iff  abs(p - a) <= tolerance * (abs(a) if a != 0 else 1)
    evaluated in IEEE double precision exactly in this order (so p = 1.05,
    a = 1, tolerance = 0.05 is FALSE because 1.05 - 1 = 0.05000000000000004,
    and so is p = 0.95; p = 105, a = 100 is true).
    Percent signs, units and words are ignored: "50%" vs 0.5 is false.

exact
    SQuAD v1.1's official ``normalize_answer``: lowercase; remove every
    character of ``string.punctuation`` (ASCII punctuation only); replace the
    words a|an|the matched by ``\b(a|an|the)\b`` (Unicode word boundaries, as
    both Python ``re`` and Rust ``regex`` use by default) with a space;
    collapse whitespace with ``' '.join(s.split())``. Applied to the extracted
    text and to the reference answer; a JSON number is first written as text:
    integers (also integral floats like 72.0) without ".0", other floats with
    Python's shortest repr (2.5 -> "2.5"). correct iff both normalised strings
    are equal (so "" equals "The", and "3.14" equals "314").

choice
    The letter of a text is its FIRST "standalone" ASCII uppercase letter A-Z:
    one not preceded and not followed by an ASCII letter or digit. "Answer: B"
    -> B, "(C)" -> C, "B." -> B, "**D**" -> D, "BC" -> none, "b" -> none, and
    "I think C" -> I (the rule's documented limit; likewise "A good choice is
    B" -> A). The reference answer: a string gives its letter by the same rule
    (the string "2" gives none); a JSON integer 0..25 gives the letter at that
    index (0 -> A, as MMLU stores answers); any other integer gives none.
    correct iff both letters exist and are equal.

regex
    The reference answer is a Python regex; correct iff
    ``re.fullmatch(answer, extracted)`` is not None. (Rust: anchor as
    ``\A(?:answer)\z``; note that fullmatch backtracks into alternatives, so
    ``a|ab`` fully matches "ab".) An empty extracted string can match
    (``.*``).

math
    The verdict of math_verify 0.9.0. Gold pre-step on the reference answer
    (numbers are first written as text as for ``exact``): if it contains
    "####", the text after the LAST "####", stripped; else if it contains
    ``\boxed{``, the content of the last box by the ``boxed`` rule above
    (nothing if unbalanced -> false; no case of the table hits this); else the
    whole string, stripped. Then

        verdict = math_verify.verify(math_verify.parse("$" + gold + "$"),
                                     math_verify.parse("$" + pred + "$"))

    with parse's and verify's default options (verify(gold, target) order;
    float_rounding=6, numeric_precision=15, strict=True). Wrapping both sides
    in single dollars makes math_verify read the text as one inline LaTeX
    expression instead of searching it for "the final answer". Checked:
    "$72$" -> 72, "$18$" -> 18, "$1,234$" -> 1234, "$1,234,567$" -> 1234567,
    "$\frac{3}{4}$" -> 3/4, "$\$18$" -> 18, and a prediction that itself starts
    with a dollar ("$18" -> "$$18$") also reads as 18, so no other wrapping is
    needed for thousands separators. Only correctly grouped separators work:
    "$12,34$" is read as the set {12, 34}. math_verify's verdict is recorded
    even where it is surprising; such lines carry a short "note" (examples:
    "5\text{ cm}" equals "5\text{ m}" because units are dropped; "10\%" equals
    both "10" and "0.1"; "1e6" is read as 1*e*6; "\frac{3}{4}." with a trailing
    period does not parse; "1 234" is read as 235).
"""

import json
import math
import random
import re
import string
import sys
from collections import Counter

SEED = 20240611
DEFAULT_OUTPUT = "tests/data/grader_cases.jsonl"
MATH_SOURCE = "math_verify 0.9.0"

# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------


def extract_answer_tag(text):
    start = text.rfind("<answer>")
    if start < 0:
        return None
    start += len("<answer>")
    end = text.find("</answer>", start)
    if end < 0:
        return None
    return text[start:end].strip()


def boxed_content(text):
    """Content of the last \\boxed{ or \\fbox{ (whichever starts later), or None."""
    b = text.rfind("\\boxed{")
    f = text.rfind("\\fbox{")
    if b < 0 and f < 0:
        return None
    if b >= f:
        i = b + len("\\boxed{")
    else:
        i = f + len("\\fbox{")
    depth = 1
    j = i
    while j < len(text):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
        j += 1
    return None


def extract_boxed(text):
    content = boxed_content(text)
    return None if content is None else content.strip()


LAST_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def extract_last_number(text):
    last = None
    for m in LAST_NUMBER_RE.finditer(text):
        last = m.group(0)
    if last is None:
        return None
    return last.replace(",", "")


def extract_whole(text):
    return text.strip()


def extract_regex(text, pattern):
    rx = re.compile(pattern)
    last = None
    for m in rx.finditer(text):
        last = m
    if last is None:
        return None
    if rx.groups >= 1:
        g = last.group(1)
        if g is None:
            return None
        return g.strip()
    return last.group(0).strip()


def extract(kind, text, pattern=None):
    if kind == "answer_tag":
        return extract_answer_tag(text)
    if kind == "boxed":
        return extract_boxed(text)
    if kind == "last_number":
        return extract_last_number(text)
    if kind == "whole":
        return extract_whole(text)
    if kind == "regex":
        return extract_regex(text, pattern)
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# Graders
# ---------------------------------------------------------------------------


def _is_digit(c):
    return "0" <= c <= "9"


def parse_first_number(text):
    # (1) drop commas between two ASCII digits (neighbours in the original text)
    kept = []
    for i, c in enumerate(text):
        if c == "," and 0 < i < len(text) - 1 and _is_digit(text[i - 1]) and _is_digit(text[i + 1]):
            continue
        kept.append(c)
    s = "".join(kept)
    n = len(s)

    def at(k):
        return s[k] if k < n else ""

    # (2) first index where a number starts
    start = None
    for i in range(n):
        c = s[i]
        if _is_digit(c):
            start = i
        elif c in "-." and _is_digit(at(i + 1)):
            start = i
        elif c == "-" and at(i + 1) == "." and _is_digit(at(i + 2)):
            start = i
        if start is not None:
            break
    if start is None:
        return None
    # (3) read the span
    seen_dot = s[start] == "."
    seen_exp = False
    j = start + 1
    while j < n:
        c = s[j]
        if _is_digit(c):
            j += 1
        elif c == "." and not seen_dot and not seen_exp and _is_digit(at(j + 1)):
            seen_dot = True
            j += 1
        elif c in "eE" and not seen_exp:
            k = j + 1
            if at(k) in ("+", "-") and at(k) != "":
                k += 1
            if _is_digit(at(k)):
                seen_exp = True
                j = k
            else:
                break
        else:
            break
    # (4)
    value = float(s[start:j])
    if not math.isfinite(value):
        return None
    return value


def reference_number(answer):
    if isinstance(answer, bool):
        raise TypeError("booleans are not answers")
    if isinstance(answer, (int, float)):
        return float(answer)
    return parse_first_number(answer)


def grade_numeric(extracted, answer, tolerance):
    if extracted is None:
        return False
    p = parse_first_number(extracted)
    a = reference_number(answer)
    if p is None or a is None:
        return False
    return abs(p - a) <= tolerance * (abs(a) if a != 0 else 1)


def normalize_answer(s):
    """SQuAD v1.1 official normalisation."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def answer_to_str(answer):
    if isinstance(answer, bool):
        raise TypeError("booleans are not answers")
    if isinstance(answer, int):
        return str(answer)
    if isinstance(answer, float):
        if answer.is_integer():
            return str(int(answer))
        return repr(answer)
    return answer


def grade_exact(extracted, answer):
    if extracted is None:
        return False
    return normalize_answer(extracted) == normalize_answer(answer_to_str(answer))


def _is_ascii_alnum(c):
    return c != "" and (("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z"))


def choice_letter(text):
    for i, c in enumerate(text):
        if "A" <= c <= "Z":
            prev = text[i - 1] if i > 0 else ""
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if not _is_ascii_alnum(prev) and not _is_ascii_alnum(nxt):
                return c
    return None


def reference_letter(answer):
    if isinstance(answer, bool):
        raise TypeError("booleans are not answers")
    if isinstance(answer, int):
        return chr(ord("A") + answer) if 0 <= answer <= 25 else None
    return choice_letter(answer)


def grade_choice(extracted, answer):
    if extracted is None:
        return False
    p = choice_letter(extracted)
    a = reference_letter(answer)
    return p is not None and a is not None and p == a


def grade_regex(extracted, answer):
    if extracted is None:
        return False
    return re.fullmatch(answer, extracted) is not None


def math_gold(answer):
    text = answer_to_str(answer)
    if "####" in text:
        return text[text.rfind("####") + 4:].strip()
    if "\\boxed{" in text:
        content = boxed_content(text)
        return None if content is None else content.strip()
    return text.strip()


def math_wrap(text):
    return "$" + text + "$"


_MV = None


def grade_math(extracted, answer):
    global _MV
    if _MV is None:
        import math_verify

        _MV = math_verify
    if extracted is None:
        return False
    gold = math_gold(answer)
    if gold is None:
        return False
    return bool(_MV.verify(_MV.parse(math_wrap(gold)), _MV.parse(math_wrap(extracted))))


GRADERS = {
    "numeric": ("reference: grade_numeric", lambda e, c: grade_numeric(e, c["answer"], c["tolerance"])),
    "exact": ("reference: grade_exact", lambda e, c: grade_exact(e, c["answer"])),
    "choice": ("reference: grade_choice", lambda e, c: grade_choice(e, c["answer"])),
    "regex": ("reference: grade_regex", lambda e, c: grade_regex(e, c["answer"])),
    "math": (MATH_SOURCE, lambda e, c: grade_math(e, c["answer"])),
}

# ---------------------------------------------------------------------------
# Case table
# ---------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows = []

    def add(self, grader, extract_kind, completion, answer, tolerance=None, pattern=None,
            expect=None, note=None, expect_extracted="<unchecked>"):
        """Add a case. For non-math graders ``expect`` (if given) is a self-check
        of this reference: a mismatch is a bug here and aborts. For math,
        ``expect`` is what a sensible grader would say; when math_verify
        disagrees the line gets ``note`` (or a generic one)."""
        assert grader in GRADERS
        assert (tolerance is not None) == (grader == "numeric")
        assert (pattern is not None) == (extract_kind == "regex")
        if pattern is not None:
            assert re.compile(pattern).search("") is None, pattern
        case = {"grader": grader, "extract": extract_kind, "completion": completion, "answer": answer}
        if tolerance is not None:
            case["tolerance"] = float(tolerance)
        if pattern is not None:
            case["pattern"] = pattern
        extracted = extract(extract_kind, completion, pattern)
        if expect_extracted != "<unchecked>" and extracted != expect_extracted:
            raise AssertionError(f"extraction self-check failed: {case!r} gave {extracted!r}")
        source, fn = GRADERS[grader]
        correct = bool(fn(extracted, case))
        case["extracted"] = extracted
        case["correct"] = correct
        case["source"] = source
        if grader == "math":
            if expect is not None and expect != correct:
                case["note"] = note or f"math_verify says {str(correct).lower()}; a careful grader would say {str(expect).lower()}"
        else:
            assert note is None
            if expect is not None and expect != correct:
                raise AssertionError(f"self-check failed: {case!r}")
        for key, value in case.items():
            if isinstance(value, str) and grader != "exact":
                assert value.isascii(), (key, value)
        self.rows.append(case)


# --- shared helpers for programmatic cases ----------------------------------

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Mark", "Tina", "Ken", "Alexis",
         "Randy", "Joy", "Carla", "Marie", "Toula", "Janet", "Greta", "Brandon", "Kylar", "Tobias"]

REGEX_EXTRACTORS = [
    (r"Final answer:\s*(.+)", "Final answer: {x}"),
    (r"\*\*Answer:\*\*\s*([^\n*]+)", "**Answer:** {x}"),
    (r"ANSWER:\s*(\S+)", "ANSWER: {x}"),
    (r"\[\[(.+?)\]\]", "[[{x}]]"),
    (r"(?i)the answer is:?\s*([^\n]+)", "The answer is {x}"),
]


def fmt_int(v, style):
    if style == "plain":
        return str(v)
    if style == "comma":
        return f"{v:,}"
    if style == "dollar":
        return f"${v:,}" if v >= 0 else f"-${-v:,}"
    if style == "decimal":
        return f"{v}.00"
    raise ValueError(style)


def render(kind, reasoning, x, rng):
    """Build a completion that ends with answer text ``x`` for extraction kind."""
    if kind == "answer_tag":
        sep = rng.choice(["\n", "\n\n", " "])
        inner = rng.choice(["{x}", "{x}", " {x} ", "\n{x}\n"]).format(x=x)
        return f"{reasoning}{sep}<answer>{inner}</answer>", None
    if kind == "boxed":
        tail = rng.choice(["The answer is $\\boxed{{{x}}}$.", "$$\\boxed{{{x}}}$$", "Therefore the final answer is $\\boxed{{{x}}}$."])
        return f"{reasoning}\n{tail.format(x=x)}", None
    if kind == "last_number":
        tail = rng.choice(["So the answer is {x}.", "The answer is {x}", "Answer: {x}"])
        return f"{reasoning}\n{tail.format(x=x)}", None
    if kind == "whole":
        return rng.choice(["{x}", " {x}\n", "{x}\n"]).format(x=x), None
    if kind == "regex":
        pattern, tmpl = rng.choice(REGEX_EXTRACTORS)
        return f"{reasoning}\n{tmpl.format(x=x)}", pattern
    raise ValueError(kind)


def pick_kind(rng, weights):
    kinds = list(weights)
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]


# ---------------------------------------------------------------------------
# numeric
# ---------------------------------------------------------------------------


def numeric_cases(t):
    N = "numeric"
    # extraction edge cases (answer_tag)
    t.add(N, "answer_tag", "48 / 2 = 24 in May, 48 + 24 = 72 in total.\n<answer>72</answer>", 72, 0.05, expect=True, expect_extracted="72")
    t.add(N, "answer_tag", "<answer>5</answer>\nWait, I made a mistake.\n<answer>7</answer>", 7, 0.05, expect=True, expect_extracted="7")
    t.add(N, "answer_tag", "<answer>5</answer>\nWait, I made a mistake.\n<answer>7</answer>", 5, 0.05, expect=False, expect_extracted="7")
    t.add(N, "answer_tag", "<answer>7</answer> Hmm, recheck: <answer>7", 7, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "The total is 72.\n<answer>72", 72, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "The total is 72.\n72</answer>", 72, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "The total is 72.", 72, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "<ANSWER>72</ANSWER>", 72, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "<answer>72</answer >", 72, 0.05, expect=False, expect_extracted=None)
    t.add(N, "answer_tag", "<answer>\n  72\n</answer>", "72", 0.05, expect=True, expect_extracted="72")
    t.add(N, "answer_tag", "<answer><answer>9</answer>", 9, 0, expect=True, expect_extracted="9")
    t.add(N, "answer_tag", "<answer>3</answer></answer>", 3, 0, expect=True, expect_extracted="3")
    t.add(N, "answer_tag", "</answer><answer>4</answer>", 4, 0, expect=True, expect_extracted="4")
    t.add(N, "answer_tag", "<answer></answer>", 0, 0.05, expect=False, expect_extracted="")
    t.add(N, "answer_tag", "<answer>x<answer>12</answer>", 12, 0.05, expect=True, expect_extracted="12")
    t.add(N, "answer_tag", "I used <answer> tags wrong </answer> before. <answer>18</answer>", 18, 0.05, expect=True)
    # first-number parsing
    t.add(N, "answer_tag", "<answer>1,234</answer>", 1234, 0, expect=True)
    t.add(N, "answer_tag", "<answer>$1,234.50</answer>", "1234.5", 0, expect=True)
    t.add(N, "answer_tag", "<answer>1,234,567</answer>", "#### 1234567", 0, expect=True)
    t.add(N, "answer_tag", "<answer>12,34</answer>", 1234, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1, 234</answer>", 1234, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>1,2,3</answer>", 123, 0, expect=True)
    t.add(N, "answer_tag", "<answer>,5</answer>", 5, 0, expect=True)
    t.add(N, "answer_tag", "<answer>5,</answer>", 5, 0, expect=True)
    t.add(N, "answer_tag", "<answer>$18</answer>", "$18", 0, expect=True)
    t.add(N, "answer_tag", "<answer>18 dollars</answer>", "#### 18", 0, expect=True)
    t.add(N, "answer_tag", "<answer>50%</answer>", "50%", 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>50%</answer>", 0.5, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0.5</answer>", "50%", 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>-3</answer>", -3, 0, expect=True)
    t.add(N, "answer_tag", "<answer>-3</answer>", 3, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>--3</answer>", -3, 0, expect=True)
    t.add(N, "answer_tag", "<answer>- 3</answer>", -3, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>-.5</answer>", -0.5, 0, expect=True)
    t.add(N, "answer_tag", "<answer>.5</answer>", "0.5", 0, expect=True)
    t.add(N, "answer_tag", "<answer>-0</answer>", 0, 0, expect=True)
    t.add(N, "answer_tag", "<answer>3.</answer>", 3, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1.2.3</answer>", 1.2, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1.5e3</answer>", 1500, 0, expect=True)
    t.add(N, "answer_tag", "<answer>2E-2</answer>", 0.02, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1e+2</answer>", 100, 0, expect=True)
    t.add(N, "answer_tag", "<answer>7e</answer>", 7, 0, expect=True)
    t.add(N, "answer_tag", "<answer>7e+</answer>", 7, 0, expect=True)
    t.add(N, "answer_tag", "<answer>7 eggs</answer>", 7, 0, expect=True)
    t.add(N, "answer_tag", "<answer>2e3e4</answer>", 2000, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1.5e3.7</answer>", 1500, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1.e5</answer>", 1, 0, expect=True)
    t.add(N, "answer_tag", "<answer>1e999</answer>", 1e300, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>1e999 or 5</answer>", 5, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>x = 5</answer>", 5, 0, expect=True)
    t.add(N, "answer_tag", "<answer>v2.0</answer>", 2, 0, expect=True)
    t.add(N, "answer_tag", "<answer>3-4</answer>", 3, 0, expect=True)
    t.add(N, "answer_tag", "<answer>between 10 and 12</answer>", 12, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>It takes 3 weeks, i.e. 21 days</answer>", 21, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>\\frac{3}{4}</answer>", 0.75, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>3/4</answer>", 0.75, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>seventy-two</answer>", 72, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>72</answer>", "seventy-two", 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>-</answer>", 0, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>00072</answer>", 72, 0, expect=True)
    t.add(N, "answer_tag", "<answer>0.1</answer>", 0.1, 0, expect=True)
    t.add(N, "answer_tag", "<answer>0.30000000000000004</answer>", 0.3, 0, expect=False)
    t.add(N, "answer_tag", "<answer>0.30000000000000004</answer>", 0.3, 0.001, expect=True)
    # tolerance boundaries (IEEE double arithmetic, evaluated as documented)
    t.add(N, "answer_tag", "<answer>1.05</answer>", 1, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0.95</answer>", 1, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0.96</answer>", 1, 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>105</answer>", 100, 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>95</answer>", 100, 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>105.01</answer>", 100, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>94.99</answer>", 100, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0.05</answer>", 0, 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>-0.05</answer>", "0", 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>0.06</answer>", 0, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0.0005</answer>", 0, 0.001, expect=True)
    t.add(N, "answer_tag", "<answer>1001</answer>", 1000, 0.001, expect=True)
    t.add(N, "answer_tag", "<answer>1002</answer>", 1000, 0.001, expect=False)
    t.add(N, "answer_tag", "<answer>-104</answer>", -100, 0.05, expect=True)
    t.add(N, "answer_tag", "<answer>-106</answer>", -100, 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>0</answer>", 0, 0, expect=True)
    t.add(N, "answer_tag", "<answer>72.0</answer>", "72", 0, expect=True)
    t.add(N, "answer_tag", "<answer>72.01</answer>", "72", 0, expect=False)
    t.add(N, "answer_tag", "<answer>72</answer>", "The answer is 72", 0, expect=True)
    t.add(N, "answer_tag", "<answer>72</answer>", "none", 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>72</answer>", "", 0.05, expect=False)
    # boxed
    t.add(N, "boxed", "So she earns $\\boxed{18}$ dollars.", "#### 18", 0.05, expect=True, expect_extracted="18")
    t.add(N, "boxed", "\\boxed{3} is wrong; the answer is \\fbox{4}.", 4, 0, expect=True, expect_extracted="4")
    t.add(N, "boxed", "\\fbox{4} is wrong; the answer is \\boxed{3}.", 3, 0, expect=True, expect_extracted="3")
    t.add(N, "boxed", "First \\boxed{3}, then \\boxed{\\frac{1}{2}", 3, 0, expect=False, expect_extracted=None)
    t.add(N, "boxed", "The answer is \\boxed 5.", 5, 0, expect=False, expect_extracted=None)
    t.add(N, "boxed", "The answer is \\boxed{ 5 }.", 5, 0, expect=True, expect_extracted="5")
    t.add(N, "boxed", "\\boxed{\\boxed{5}}", 5, 0, expect=True, expect_extracted="5")
    t.add(N, "boxed", "\\boxed{{1}2}", 1, 0, expect=True, expect_extracted="{1}2")
    t.add(N, "boxed", "\\boxed{a}}", 0, 0.05, expect=False, expect_extracted="a")
    t.add(N, "boxed", "\\boxed{}", 0, 0.05, expect=False, expect_extracted="")
    # last_number edge cases
    t.add(N, "last_number", "Pages 10-12 were torn out.", -12, 0, expect=True, expect_extracted="-12")
    t.add(N, "last_number", "Pages 10-12 were torn out.", 12, 0.05, expect=False, expect_extracted="-12")
    t.add(N, "last_number", "The code is 12,34.", 34, 0, expect=True, expect_extracted="34")
    t.add(N, "last_number", "Total: 1,2345", 5, 0, expect=True, expect_extracted="5")
    t.add(N, "last_number", "Total: 1,234,567.89 dollars", 1234567.89, 0, expect=True, expect_extracted="1234567.89")
    t.add(N, "last_number", "Using version 2.0.1 of the tool.", 0.1, 0, expect=True, expect_extracted=".1")
    t.add(N, "last_number", "So it is 1e5.", 100000, 0.05, expect=False, expect_extracted="5")
    t.add(N, "last_number", "No digits here at all.", 0, 0.05, expect=False, expect_extracted=None)
    t.add(N, "last_number", "She pays $18.00 in total.", "$18", 0, expect=True, expect_extracted="18.00")
    t.add(N, "last_number", "About 50% of them.", "50%", 0, expect=True, expect_extracted="50")
    t.add(N, "last_number", "So 1,000 cookies, split into 20 bags.", 1000, 0.05, expect=False, expect_extracted="20")
    t.add(N, "last_number", "The area is x^2 = 49.", 49, 0, expect=True)
    t.add(N, "last_number", "It is -.75 now.", -0.75, 0, expect=True, expect_extracted="-.75")
    t.add(N, "last_number", "Answer: 72.\n\nLet me know if you need anything else!", 72, 0, expect=True)
    t.add(N, "last_number", "Answer: 72. (Checked on 2024-05-01.)", 72, 0.05, expect=False, expect_extracted="-01")
    # whole edge cases
    t.add(N, "whole", "  72\n", 72, 0, expect=True, expect_extracted="72")
    t.add(N, "whole", "In 2023 the farm sold 72 cows.", 72, 0.05, expect=False)
    t.add(N, "whole", "The answer is 72.", "#### 72", 0, expect=True)
    t.add(N, "whole", "", 0, 0.05, expect=False, expect_extracted="")
    # regex edge cases
    t.add(N, "regex", "answer: 12\nanswer: 15", 15, 0, pattern=r"answer: (\d+)", expect=True, expect_extracted="15")
    t.add(N, "regex", "answer: 12 ... no answer", 12, 0.05, pattern=r"answer: (\d+)|no answer", expect=False, expect_extracted=None)
    t.add(N, "regex", "It costs 3 or 4.5 dollars", 4.5, 0, pattern=r"-?\d+(?:\.\d+)?", expect=True, expect_extracted="4.5")
    t.add(N, "regex", "Final answer: none", 0, 0.05, pattern=r"Final answer:\s*(\d+)", expect=False, expect_extracted=None)

    # programmatic GSM8K-style
    rng = random.Random(SEED + 1)
    templates = [
        ("{n} buys {a} boxes of crayons with {b} crayons in each box. {a} * {b} = {r}, so {n} has {r} crayons.", lambda a, b: a * b),
        ("{n} earns ${a} per hour and works {b} hours. {a} * {b} = {r}, so {n} earns ${r}.", lambda a, b: a * b),
        ("The shop had {a} shirts and sold {b} of them. {a} - {b} = {r} shirts are left.", lambda a, b: a - b),
        ("The temperature was {a} degrees and fell by {b} degrees overnight: {a} - {b} = {r}.", lambda a, b: a - b),
        ("{n} reads {a} pages on Monday and {b} pages on Tuesday, {a} + {b} = {r} pages.", lambda a, b: a + b),
        ("A tank holds {a} liters; {b} liters leak out and half of that is refilled: {a} - {b} + {b}/2 = {r}.", lambda a, b: a - b + b / 2),
        ("{a} cookies are shared equally by {b} children, so each gets {a} / {b} = {r}.", lambda a, b: a / b),
        ("A jacket costs ${a} and is discounted by {b}%: {a} * (1 - {b}/100) = {r}.", lambda a, b: a * (1 - b / 100)),
    ]
    weights = {"answer_tag": 62, "boxed": 8, "last_number": 12, "whole": 8, "regex": 10}
    for i in range(150):
        tmpl, fn = templates[i % len(templates)]
        a = rng.choice([rng.randint(2, 40), rng.randint(10, 400), rng.randint(100, 9000)])
        b = rng.randint(2, 60)
        r = fn(a, b)
        if isinstance(r, float) and r.is_integer():
            r = int(r)
        if isinstance(r, float):
            r = round(r, 2)
        reasoning = tmpl.format(n=rng.choice(NAMES), a=a, b=b, r=r)
        tol = rng.choices([0.05, 0, 0.001], weights=[70, 15, 15])[0]
        mode = rng.choices(["exact", "near", "off", "far", "missing"], weights=[40, 20, 15, 15, 10])[0]
        if mode in ("exact", "missing"):
            pv = r
        elif mode == "near":
            pv = round(r * (1 + rng.choice([-1, 1]) * rng.uniform(0.0005, 0.04)), 2)
        elif mode == "off":
            pv = round(r * (1 + rng.choice([-1, 1]) * rng.uniform(0.06, 0.5)), 2)
        else:
            pv = r + rng.choice([-10, -1, 1, 2, 10, 100])
        if isinstance(pv, float) and pv.is_integer() and rng.random() < 0.7:
            pv = int(pv)
        if isinstance(pv, int):
            style = rng.choice(["plain", "plain", "comma", "dollar", "decimal"])
            x = fmt_int(pv, style)
        else:
            x = rng.choice([str(pv), f"{pv:,}", f"${pv:,.2f}" if pv >= 0 else f"-${-pv:,.2f}"])
        if rng.random() < 0.25:
            x = x + rng.choice([" crayons", " dollars", " in total", "."])
        if rng.random() < 0.08 and mode != "missing":
            x = "The answer is " + x
        kind = pick_kind(rng, weights)
        if mode == "missing":
            kind = "answer_tag"
            completion = f"{reasoning}\nSo the answer is {x}."
            pattern = None
        else:
            completion, pattern = render(kind, reasoning, x, rng)
        ans_form = rng.choice(["int", "str", "gsm8k", "comma", "dollar"])
        if ans_form == "int":
            answer = r
        elif ans_form == "str":
            answer = str(r)
        elif ans_form == "gsm8k":
            answer = f"#### {r}"
        elif ans_form == "comma":
            answer = f"{r:,}"
        else:
            answer = f"${r:,}" if r >= 0 else f"-${-r:,}"
        t.add(N, kind, completion, answer, tol, pattern=pattern)

    # GSM8K full-solution style references are NOT special for numeric: first number wins.
    t.add(N, "answer_tag", "<answer>72</answer>", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 0.05, expect=False)
    t.add(N, "answer_tag", "<answer>48</answer>", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 0.05, expect=True)


# ---------------------------------------------------------------------------
# exact
# ---------------------------------------------------------------------------

QA = [
    ("Which city is the capital of France?", "Paris"),
    ("Who wrote Hamlet?", "William Shakespeare"),
    ("Which band recorded Abbey Road?", "The Beatles"),
    ("What is the largest planet?", "Jupiter"),
    ("Which element has symbol O?", "oxygen"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("In which year did Apollo 11 land?", "1969"),
    ("What is the longest river in Africa?", "the Nile"),
    ("Which ocean is the largest?", "Pacific Ocean"),
    ("What gas do plants absorb?", "carbon dioxide"),
    ("Which country hosted the 2016 Olympics?", "Brazil"),
    ("What is the currency of Japan?", "yen"),
    ("Who developed general relativity?", "Albert Einstein"),
    ("Which organ pumps blood?", "the heart"),
    ("What is the hardest natural mineral?", "diamond"),
    ("What is the tallest mountain?", "Mount Everest"),
    ("Which language has the most native speakers?", "Mandarin Chinese"),
    ("Who was the first US president?", "George Washington"),
    ("What is the chemical formula of water?", "H2O"),
    ("Which instrument has 88 keys?", "a piano"),
    ("What is the smallest prime number?", "2"),
    ("Which planet is called the Red Planet?", "Mars"),
    ("What is the freezing point of water in Fahrenheit?", "32"),
    ("Who discovered penicillin?", "Alexander Fleming"),
    ("Which continent is Kenya in?", "Africa"),
    ("What is the square root of 144?", "12"),
    ("Which is the longest bone in the body?", "the femur"),
    ("What is the main ingredient of guacamole?", "avocado"),
    ("Which author created Sherlock Holmes?", "Arthur Conan Doyle"),
    ("What is the capital of Australia?", "Canberra"),
    ("What does DNA stand for?", "deoxyribonucleic acid"),
    ("Which sport uses a shuttlecock?", "badminton"),
    ("What is the boiling point of water in Celsius?", "100 degrees"),
    ("Who wrote Pride and Prejudice?", "Jane Austen"),
    ("What is the largest desert?", "the Sahara"),
    ("Which animal is the fastest on land?", "a cheetah"),
    ("What is the powerhouse of the cell?", "the mitochondria"),
    ("In which city is the Colosseum?", "Rome"),
    ("What year did World War II end?", "1945"),
    ("Which US state is the largest?", "Alaska"),
]


def exact_cases(t):
    E = "exact"
    # normalisation edge cases
    t.add(E, "answer_tag", "<answer>Paris</answer>", "Paris", expect=True)
    t.add(E, "answer_tag", "<answer>paris</answer>", "Paris", expect=True)
    t.add(E, "answer_tag", "<answer>PARIS!</answer>", "Paris", expect=True)
    t.add(E, "answer_tag", "<answer>Paris, France</answer>", "Paris", expect=False)
    t.add(E, "answer_tag", "<answer>The Eiffel Tower</answer>", "Eiffel Tower", expect=True)
    t.add(E, "answer_tag", "<answer>an apple</answer>", "Apple", expect=True)
    t.add(E, "answer_tag", "<answer>A  Tale of   Two Cities</answer>", "tale of two cities", expect=True)
    t.add(E, "answer_tag", "<answer>The The</answer>", "", expect=True)
    t.add(E, "answer_tag", "<answer></answer>", "The", expect=True, expect_extracted="")
    t.add(E, "answer_tag", "<answer></answer>", "none", expect=False)
    t.add(E, "answer_tag", "<answer>theater</answer>", "ater", expect=False)
    t.add(E, "answer_tag", "<answer>Anatomy</answer>", "atomy", expect=False)
    t.add(E, "answer_tag", "<answer>the-end</answer>", "end", expect=False)
    t.add(E, "answer_tag", "<answer>the end</answer>", "End", expect=True)
    t.add(E, "answer_tag", "<answer>U.S.A.</answer>", "USA", expect=True)
    t.add(E, "answer_tag", "<answer>rock-and-roll</answer>", "rockandroll", expect=True)
    t.add(E, "answer_tag", "<answer>rock-and-roll</answer>", "rock and roll", expect=False)
    t.add(E, "answer_tag", "<answer>new-york</answer>", "New York", expect=False)
    t.add(E, "answer_tag", "<answer>3.14</answer>", "314", expect=True)
    t.add(E, "answer_tag", "<answer>3.14</answer>", 3.14, expect=True)
    t.add(E, "answer_tag", "<answer>$18</answer>", 18, expect=True)
    t.add(E, "answer_tag", "<answer>18%</answer>", "18", expect=True)
    t.add(E, "answer_tag", "<answer>-5</answer>", 5, expect=True)
    t.add(E, "answer_tag", "<answer>1,000</answer>", 1000, expect=True)
    t.add(E, "answer_tag", "<answer>1 000</answer>", 1000, expect=False)
    t.add(E, "answer_tag", "<answer>72</answer>", 72.0, expect=True)
    t.add(E, "answer_tag", "<answer>72.0</answer>", 72, expect=False)
    t.add(E, "answer_tag", "<answer>2.5</answer>", 2.5, expect=True)
    t.add(E, "answer_tag", "<answer>25</answer>", 2.5, expect=True)
    t.add(E, "answer_tag", "<answer>three</answer>", 3, expect=False)
    t.add(E, "answer_tag", "<answer>1969</answer>", 1969, expect=True)
    t.add(E, "answer_tag", "<answer>In 1969</answer>", 1969, expect=False)
    t.add(E, "answer_tag", "<answer>H2O</answer>", "h2o", expect=True)
    t.add(E, "answer_tag", "<answer>H_2O</answer>", "H2O", expect=True)
    t.add(E, "answer_tag", "<answer>\"yes\"</answer>", "Yes", expect=True)
    t.add(E, "answer_tag", "<answer>yes</answer>", "no", expect=False)
    t.add(E, "answer_tag", "<answer>(a) yes</answer>", "yes", expect=True)
    t.add(E, "answer_tag", "<answer>[the] {answer}</answer>", "Answer", expect=True)
    t.add(E, "answer_tag", "<answer>tab\tseparated\nwords</answer>", "tab separated words", expect=True)
    t.add(E, "answer_tag", "<answer>O'Brien</answer>", "OBrien", expect=True)
    t.add(E, "answer_tag", "<answer>O'Brien</answer>", "O Brien", expect=False)
    t.add(E, "answer_tag", "<answer>a.m.</answer>", "am", expect=True)
    t.add(E, "answer_tag", "<answer>an</answer>", "a", expect=True)
    t.add(E, "answer_tag", "<answer>Athens</answer>", "the thens", expect=False)
    t.add(E, "answer_tag", "<answer>x = 5</answer>", "x5", expect=False)
    t.add(E, "answer_tag", "<answer>x=5</answer>", "x5", expect=True)
    t.add(E, "answer_tag", "<answer>Paris</answer>\n<answer>Lyon</answer>", "Paris", expect=False)
    t.add(E, "answer_tag", "<answer>Paris", "Paris", expect=False, expect_extracted=None)
    t.add(E, "answer_tag", "answer: Paris", "Paris", expect=False, expect_extracted=None)
    # accented Latin letters (non-ASCII; string.punctuation and lowercasing are the only changes)
    t.add(E, "answer_tag", "<answer>Zürich</answer>", "ZÜRICH", expect=True)
    t.add(E, "answer_tag", "<answer>Zurich</answer>", "Zürich", expect=False)
    t.add(E, "answer_tag", "<answer>São Paulo</answer>", "sao paulo", expect=False)
    t.add(E, "answer_tag", "<answer>São Paulo.</answer>", "são paulo", expect=True)
    t.add(E, "answer_tag", "<answer>the café</answer>", "Café", expect=True)
    t.add(E, "answer_tag", "<answer>Crème Brûlée</answer>", "crème brûlée", expect=True)
    t.add(E, "answer_tag", "<answer>anémone</answer>", "émone", expect=False)
    t.add(E, "answer_tag", "<answer>the théâtre</answer>", "Théâtre", expect=True)
    t.add(E, "whole", "Ångström", "ångström", expect=True)
    t.add(E, "answer_tag", "<answer>Gödel, Escher, Bach</answer>", "godel escher bach", expect=False)
    # other extractions
    t.add(E, "boxed", "The element is \\boxed{\\text{oxygen}}.", "oxygen", expect=False, expect_extracted="\\text{oxygen}")
    t.add(E, "boxed", "The element is \\boxed{oxygen}.", "Oxygen", expect=True)
    t.add(E, "boxed", "\\boxed{Paris} or maybe \\boxed{Lyon", "Paris", expect=False, expect_extracted=None)
    t.add(E, "last_number", "It landed in 1969, on July 20", 1969, expect=False, expect_extracted="20")
    t.add(E, "last_number", "The population was 1,234", "1,234", expect=True, expect_extracted="1234")
    t.add(E, "whole", "  Paris\n", "paris", expect=True, expect_extracted="Paris")
    t.add(E, "whole", "The answer is Paris.", "Paris", expect=False)
    t.add(E, "regex", "Answer: Paris\nAnswer: Rome", "rome", pattern=r"Answer: (\w+)", expect=True, expect_extracted="Rome")
    t.add(E, "regex", "Answer: New York", "New", pattern=r"Answer: \w+", expect=False, expect_extracted="Answer: New")
    t.add(E, "regex", "Answer: New York", "answer new", pattern=r"Answer: \w+", expect=True)

    rng = random.Random(SEED + 2)
    weights = {"answer_tag": 62, "whole": 14, "regex": 10, "boxed": 7, "last_number": 7}
    fillers = ["Let me recall.", "I remember this from history class.", "Thinking about it briefly:",
               "This is a well-known fact.", "Quick check of what I know:"]
    for i in range(170):
        q, gold = QA[i % len(QA)]
        kind = pick_kind(rng, weights)
        if kind == "last_number":
            q, gold = rng.choice([(qq, g) for qq, g in QA if re.fullmatch(r"\d+", g)])
        mode = rng.choices(["same", "case", "article", "punct", "sentence", "wrong", "partial", "missing"],
                           weights=[20, 12, 12, 12, 10, 18, 8, 8])[0]
        bare = re.sub(r"^(the|a|an) ", "", gold)
        if mode in ("same", "missing"):
            x = gold
        elif mode == "case":
            x = rng.choice([gold.upper(), gold.lower(), gold.title()])
        elif mode == "article":
            if bare != gold:
                x = rng.choice([bare, bare[0].upper() + bare[1:], "The " + bare, "an " + bare])
            else:
                x = rng.choice(["the ", "The "]) + gold
        elif mode == "punct":
            x = rng.choice(["{}.", "\"{}\"", "{}!", "({})", "*{}*", "{}?"]).format(gold)
        elif mode == "sentence":
            x = rng.choice(["It is {}.", "I believe {}", "{} is the answer", "Answer {}"]).format(bare)
        elif mode == "wrong":
            x = rng.choice([g for _, g in QA if g != gold])
        else:
            words = bare.split()
            x = words[0] if len(words) > 1 else bare[: max(1, len(bare) - 2)]
        if kind == "last_number" and mode != "missing":
            if mode in ("wrong", "partial", "sentence"):
                x = str(int(gold) + rng.choice([-10, -1, 1, 2]))
            else:
                x = rng.choice(["{}", "{}.", "{}!", "about {}"]).format(gold)
        reasoning = f"{q} {rng.choice(fillers)}"
        if mode == "missing":
            completion, pattern, kind = f"{reasoning} The answer is {x}.", None, "answer_tag"
        elif kind == "last_number":
            completion, pattern = f"{reasoning} The number is {x}", None
        else:
            completion, pattern = render(kind, reasoning, x, rng)
        answer = int(gold) if (re.fullmatch(r"\d+", gold) and rng.random() < 0.5) else gold
        t.add(E, kind, completion, answer, pattern=pattern)


# ---------------------------------------------------------------------------
# choice
# ---------------------------------------------------------------------------


def choice_cases(t):
    C = "choice"
    t.add(C, "answer_tag", "<answer>B</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>Answer: B</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>(C)</answer>", 2, expect=True)
    t.add(C, "answer_tag", "<answer>B.</answer>", "(B)", expect=True)
    t.add(C, "answer_tag", "<answer>I think C</answer>", "C", expect=False)
    t.add(C, "answer_tag", "<answer>I think C</answer>", 8, expect=True)
    t.add(C, "answer_tag", "<answer>A good choice is B</answer>", "B", expect=False)
    t.add(C, "answer_tag", "<answer>The answer is B</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>OPTION B</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>b</answer>", "b", expect=False)
    t.add(C, "answer_tag", "<answer>b</answer>", "B", expect=False)
    t.add(C, "answer_tag", "<answer>BC</answer>", "B", expect=False)
    t.add(C, "answer_tag", "<answer>B, C</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>B2</answer>", "B", expect=False)
    t.add(C, "answer_tag", "<answer>2B</answer>", "B", expect=False)
    t.add(C, "answer_tag", "<answer>_B_</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>**D**</answer>", 3, expect=True)
    t.add(C, "answer_tag", "<answer>[D]</answer>", "D", expect=True)
    t.add(C, "answer_tag", "<answer>D) 42</answer>", "D) 42", expect=True)
    t.add(C, "answer_tag", "<answer>option 2</answer>", 1, expect=False)
    t.add(C, "answer_tag", "<answer>B</answer>", "2", expect=False)
    t.add(C, "answer_tag", "<answer>B</answer>", 1, expect=True)
    t.add(C, "answer_tag", "<answer>A</answer>", 0, expect=True)
    t.add(C, "answer_tag", "<answer>Z</answer>", 25, expect=True)
    t.add(C, "answer_tag", "<answer>A</answer>", 26, expect=False)
    t.add(C, "answer_tag", "<answer>Z</answer>", -1, expect=False)
    t.add(C, "answer_tag", "<answer>A</answer>", "Answer: A", expect=True)
    t.add(C, "answer_tag", "<answer>C</answer>", "C) Paris", expect=True)
    t.add(C, "answer_tag", "<answer>C</answer>", "Paris", expect=False)
    t.add(C, "answer_tag", "<answer></answer>", "A", expect=False)
    t.add(C, "answer_tag", "<answer>A</answer>", "", expect=False)
    t.add(C, "answer_tag", "<answer>E</answer>", "E", expect=True)
    t.add(C, "answer_tag", "<answer>J</answer>", 9, expect=True)
    t.add(C, "answer_tag", "<answer>C-D</answer>", "C", expect=True)
    t.add(C, "answer_tag", "The options: (A) 1 (B) 2\n<answer>B</answer>", "B", expect=True)
    t.add(C, "answer_tag", "<answer>A</answer> no wait <answer>D</answer>", "D", expect=True)
    t.add(C, "answer_tag", "<answer>A</answer> no wait <answer>D", "A", expect=False, expect_extracted=None)
    t.add(C, "boxed", "The answer is \\boxed{B}.", "B", expect=True)
    t.add(C, "boxed", "The answer is \\boxed{\\text{(B)}}.", 1, expect=True)
    t.add(C, "boxed", "The answer is \\boxed{\\textbf{C}}.", "C", expect=True)
    t.add(C, "last_number", "Option 2 is right.", "B", expect=False, expect_extracted="2")
    t.add(C, "whole", "B", "B", expect=True)
    t.add(C, "whole", "The correct option is (A).", 0, expect=True)
    t.add(C, "whole", "I'd go with C.", "C", expect=False)
    t.add(C, "whole", "A", "Answer: B", expect=False)
    t.add(C, "regex", "The answer is (b).", "B", pattern=r"(?i)answer is \(?([a-d])\)?", expect=False, expect_extracted="b")
    t.add(C, "regex", "The answer is (B).", "B", pattern=r"(?i)answer is \(?([a-d])\)?", expect=True)
    t.add(C, "regex", "Between A and B, I pick C", "C", pattern=r"\b[A-D]\b", expect=True, expect_extracted="C")

    rng = random.Random(SEED + 3)
    weights = {"answer_tag": 62, "whole": 15, "regex": 15, "boxed": 6, "last_number": 2}
    subjects = ["photosynthesis", "the French Revolution", "Newton's second law", "supply and demand",
                "the structure of DNA", "prime factorisation", "the water cycle", "plate tectonics"]
    pred_forms = ["{L}", "{L}", "({L})", "{L}.", "Answer: {L}", "The answer is {L}", "**{L}**", "{L}) {txt}",
                  "Option {L}", "[{L}]"]
    bad_forms = ["{l}", "I think {L}", "{L}{M}", "option {i}", "A good answer is {L}"]
    regex_ex = [
        (r"(?i)answer is:?\s*\(?([a-j])\)?", "The answer is {x}"),
        (r"Final answer:\s*(.+)", "Final answer: {x}"),
        (r"\b[A-J]\b", "Therefore {x}"),
        (r"ANSWER:\s*(\S+)", "ANSWER: {x}"),
    ]
    for i in range(175):
        n_opts = rng.choice([4, 4, 4, 5, 10])
        gold_i = rng.randrange(n_opts)
        gold_l = chr(65 + gold_i)
        mode = rng.choices(["right", "wrong", "bad"], weights=[50, 35, 15])[0]
        if mode == "right":
            L = gold_l
        else:
            L = chr(65 + rng.choice([k for k in range(n_opts) if k != gold_i]))
        if mode == "bad":
            form = rng.choice(bad_forms)
        else:
            form = rng.choice(pred_forms)
        x = form.format(L=L, l=L.lower(), M=chr(65 + (ord(L) - 64) % 26), i=ord(L) - 64, txt=rng.choice(["42", "mitosis", "none of these"]))
        reasoning = f"This question is about {rng.choice(subjects)}. Eliminating the distractors leaves one option."
        kind = pick_kind(rng, weights)
        if kind == "regex":
            pattern, tmpl = rng.choice(regex_ex)
            completion = f"{reasoning}\n{tmpl.format(x=x)}"
        elif kind == "last_number":
            completion, pattern = f"{reasoning} Option {ord(L) - 64} is right.", None
        else:
            completion, pattern = render(kind, reasoning, x, rng)
        af = rng.random()
        if af < 0.25:
            answer = gold_i
        elif af < 0.7:
            answer = gold_l
        else:
            answer = rng.choice(["({})", "{}.", "Answer: {}", "{}) option text"]).format(gold_l)
        t.add(C, kind, completion, answer, pattern=pattern)


# ---------------------------------------------------------------------------
# regex grader
# ---------------------------------------------------------------------------


REGEX_ITEMS = [
    # (reference regex, matching predictions, non-matching predictions)
    (r"72|72\.0+", ["72", "72.0", "72.000"], ["720", "72.5", "seventy-two", "72 apples"]),
    (r"(?i)paris", ["Paris", "PARIS", "paris"], ["Paris, France", "Pariss", "Lyon"]),
    (r"-?\d+(\.\d+)?", ["-3", "3.25", "1000"], ["1,000", "3.", "+3", "-.5"]),
    (r"[A-D]", ["B", "D"], ["(B)", "E", "b", "AB"]),
    (r"\(?[A-D]\)?", ["(C)", "C", "C)"], ["C.", "(E)"]),
    (r"\$?1,?234(\.00)?", ["$1,234", "1234", "1,234.00"], ["1,2345", "$12,34", "1234.5"]),
    (r"a|ab", ["a", "ab"], ["abc", "b"]),
    (r"\d{4}-\d{2}-\d{2}", ["2024-05-01", "1969-07-20"], ["2024-5-1", "24-05-01", "2024/05/01"]),
    (r"(?i)(yes|true)", ["Yes", "TRUE", "yes"], ["yes.", "no", "Yes, true"]),
    (r"x\s*=\s*5", ["x = 5", "x=5", "x =5"], ["5", "y = 5", "x = 55"]),
    (r"\\frac\{3\}\{4\}|0\.75|3/4", ["\\frac{3}{4}", "0.75", "3/4"], ["\\dfrac{3}{4}", ".75", "6/8"]),
    (r"[0-9]+ (cm|centimeters)", ["12 cm", "7 centimeters"], ["12cm", "12 m", "cm"]),
    (r".*", ["anything at all", "72"], []),
    (r"\d*", ["123", "7"], ["12a", "x"]),
    (r"(?i)the (nile|amazon)( river)?", ["the Nile", "The Amazon River"], ["Nile", "the Danube"]),
    (r"[+-]?\d+%", ["50%", "-5%", "+12%"], ["50", "50 %", "0.5"]),
    (r"\(\s*1\s*,\s*2\s*\)", ["(1, 2)", "(1,2)"], ["(2, 1)", "1, 2", "[1, 2]"]),
    (r"\w+", ["oxygen", "H2O", "snake_case"], ["two words", "H-2"]),
    (r"[^0-9]+", ["no digits", "abc"], ["abc1", "42"]),
    (r"(ab)+", ["ab", "abab"], ["aba", "ba"]),
]


def regex_cases(t):
    R = "regex"
    t.add(R, "answer_tag", "<answer>ab</answer>", "a|ab", expect=True)
    t.add(R, "answer_tag", "<answer></answer>", ".*", expect=True, expect_extracted="")
    t.add(R, "answer_tag", "<answer></answer>", ".+", expect=False)
    t.add(R, "answer_tag", "<answer>  72  </answer>", "72", expect=True)
    t.add(R, "answer_tag", "<answer>72\n</answer>", "72", expect=True)
    t.add(R, "answer_tag", "<answer>72</answer>", "7", expect=False)
    t.add(R, "answer_tag", "<answer>72</answer>", "\\d", expect=False)
    t.add(R, "answer_tag", "<answer>line one\nline two</answer>", ".*", expect=False)
    t.add(R, "answer_tag", "<answer>line one\nline two</answer>", "line one\\sline two", expect=True)
    t.add(R, "answer_tag", "<answer>72", "72", expect=False, expect_extracted=None)
    t.add(R, "answer_tag", "no tag here", ".*", expect=False, expect_extracted=None)
    t.add(R, "boxed", "So \\boxed{\\frac{3}{4}}.", r"\\frac\{3\}\{4\}", expect=True)
    t.add(R, "boxed", "So \\boxed{\\frac{3}{4}.", r".*", expect=False, expect_extracted=None)
    t.add(R, "last_number", "It was 1,234 then.", r"1234", expect=True, expect_extracted="1234")
    t.add(R, "last_number", "It was 1,234 then.", r"1,234", expect=False)
    t.add(R, "whole", "\n\nParis\n", r"Paris", expect=True)
    t.add(R, "regex", "Final answer: 72 apples", r"\d+ apples", pattern=r"Final answer:\s*(.+)", expect=True)
    t.add(R, "regex", "Answer A, then Answer B", r"B", pattern=r"Answer ([A-D])", expect=True, expect_extracted="B")

    rng = random.Random(SEED + 4)
    weights = {"answer_tag": 63, "whole": 13, "regex": 12, "last_number": 4, "boxed": 8}
    for i in range(190):
        ref, good, bad = REGEX_ITEMS[i % len(REGEX_ITEMS)]
        if bad and rng.random() < 0.45:
            x = rng.choice(bad)
        else:
            x = rng.choice(good)
        kind = pick_kind(rng, weights)
        reasoning = rng.choice(["Working through the problem step by step.", "After checking the options carefully,",
                                "Let me verify once more.", "Short derivation done."])
        if kind == "last_number":
            nums = re.findall(r"\d+", x)
            if not nums:
                kind = "answer_tag"
        if kind == "last_number":
            completion, pattern = f"{reasoning} Result: {x}", None
        elif kind == "boxed" and ("{" in x or "}" in x):
            completion, pattern = render("answer_tag", reasoning, x, rng)
            kind = "answer_tag"
        else:
            completion, pattern = render(kind, reasoning, x, rng)
        if kind == "regex" and "\n" in x:
            kind = "answer_tag"
            completion, pattern = render(kind, reasoning, x, rng)
        t.add(R, kind, completion, ref, pattern=pattern)


# ---------------------------------------------------------------------------
# math
# ---------------------------------------------------------------------------

# (gold, prediction, sensible verdict, note when math_verify disagrees)
MATH_PAIRS = [
    # integers, separators, dollars, percents
    ("72", "72", True, None),
    ("72", "72.0", True, None),
    ("72", "72.00", True, None),
    ("72", "072", True, None),
    ("72", "73", False, None),
    ("72", "-72", False, None),
    ("1234", "1,234", True, None),
    ("1,234", "1234", True, None),
    ("1234567", "1,234,567", True, None),
    ("1234", "1{,}234", True, None),
    ("1234", "1\\,234", True, "a thin-space separator is read as 1 + 234"),
    ("1234", "1 234", True, "a space separator is read as 1 + 234"),
    ("1234", "12,34", False, None),
    ("1000", "1.000", False, None),
    ("1234.5", "1,234.5", True, None),
    ("-1234", "-1,234", True, None),
    ("18", "\\$18", True, None),
    ("18", "$18", True, None),
    ("18", "\\$18.00", True, None),
    ("18", "18\\text{ dollars}", True, None),
    ("18", "18 dollars", True, "plain words after the number are read as symbols (18*a*d*l*l*o*r*s)"),
    ("18", "\\text{\\$}18", True, "\\text{\\$} is not dropped as a unit"),
    ("50\\%", "50\\%", True, None),
    ("50\\%", "50%", True, None),
    ("50\\%", "50", True, None),
    ("50\\%", "0.5", True, None),
    ("10\\%", "10", True, None),
    ("10\\%", "0.1", True, None),
    ("10", "10\\%", True, None),
    ("10\\%", "20\\%", False, None),
    ("10\\%", "0.2", False, None),
    # fractions
    ("\\frac{3}{4}", "\\frac{3}{4}", True, None),
    ("\\frac{3}{4}", "\\frac34", True, None),
    ("\\frac{3}{4}", "\\dfrac{3}{4}", True, None),
    ("\\frac{3}{4}", "\\tfrac{3}{4}", True, None),
    ("\\frac{3}{4}", "3/4", True, None),
    ("\\frac{3}{4}", "0.75", True, None),
    ("0.75", "\\frac{3}{4}", True, None),
    ("\\frac{3}{4}", "\\frac{6}{8}", True, None),
    ("\\frac{3}{4}", "\\frac{4}{3}", False, None),
    ("\\frac{3}{4}", "0.7", False, None),
    ("\\frac{3}{4}", "3:4", False, "a ratio 3:4 is read as 3/4"),
    ("\\frac{3}{4}", "\\frac{3}{4}.", True, "a trailing period after \\frac does not parse"),
    ("\\frac{3}{4}", "3/4.", True, "3/4. is read as 3"),
    ("\\frac{1}{3}", "0.333", False, None),
    ("\\frac{1}{3}", "0.3333333", True, "accepted: float_rounding=6"),
    ("\\frac{1}{3}", "0.33", False, None),
    ("-\\frac{1}{2}", "-0.5", True, None),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True, None),
    ("-\\frac{1}{2}", "\\frac{1}{-2}", True, None),
    ("-\\frac{1}{2}", "-\\tfrac12", True, None),
    ("-\\frac{1}{2}", "\\frac{1}{2}", False, None),
    ("\\frac{7}{20}", "0.35", True, None),
    ("\\frac{1}{8}", "0.125", True, None),
    # roots, pi
    ("\\sqrt{2}", "\\sqrt2", True, None),
    ("\\sqrt{2}", "\\sqrt{2}", True, None),
    ("\\sqrt{2}", "2^{1/2}", True, None),
    ("\\sqrt{2}", "1.414", False, None),
    ("\\sqrt{2}", "1.41421356", True, "a decimal approximation is accepted (float_rounding=6)"),
    ("2\\sqrt{3}", "\\sqrt{12}", True, None),
    ("2\\sqrt{3}", "2*\\sqrt{3}", True, None),
    ("2\\sqrt{3}", "\\sqrt{3}\\cdot 2", True, None),
    ("2\\sqrt{3}", "3\\sqrt{2}", False, None),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", True, None),
    ("\\pi", "\\pi", True, None),
    ("\\pi", "3.14", False, None),
    ("\\pi", "\\frac{22}{7}", False, None),
    ("2\\pi", "\\pi*2", True, None),
    ("\\frac{\\pi}{2}", "\\pi/2", True, None),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", False, None),
    # units and degrees
    ("5\\text{ cm}", "5", True, None),
    ("5", "5\\text{ cm}", True, None),
    ("5\\text{ cm}", "5 cm", True, None),
    ("5\\text{ cm}", "5\\text{ m}", False, "units are dropped, so cm equals m"),
    ("5\\text{ cm}", "6\\text{ cm}", False, None),
    ("6\\text{ cm}^2", "6", True, None),
    ("90^\\circ", "90", True, None),
    ("90^\\circ", "90^{\\circ}", True, None),
    ("90^\\circ", "90 degrees", True, None),
    ("30^\\circ", "\\frac{\\pi}{6}", False, None),
    ("45^\\circ", "135^\\circ", False, None),
    # tuples and intervals
    ("\\left( 1, 2 \\right)", "(1,2)", True, None),
    ("(1, 2)", "(1,2)", True, None),
    ("(1, 2)", "(2, 1)", False, None),
    ("(3, -4)", "\\left(3,-4\\right)", True, None),
    ("(1, 2, 3)", "(1, 2, 3)", True, None),
    ("(1, 2, 3)", "(1, 3, 2)", False, None),
    ("(1, 2)", "[1, 2]", False, None),
    ("[0, 1)", "[0,1)", True, None),
    ("[0, 1)", "\\left[0, 1\\right)", True, None),
    ("[0, 1)", "[0, 1]", False, None),
    ("[0, 1)", "(0, 1]", False, None),
    ("(-\\infty, 2]", "(-\\infty,2]", True, None),
    ("(-\\infty, 2]", "(-\\infty, 2)", False, None),
    ("[0, 1)", "x \\in [0,1)", True, None),
    ("\\{1, 2\\}", "\\{2, 1\\}", True, None),
    ("1, 2", "2, 1", True, None),
    # expressions, equations
    ("2x+1", "1+2x", True, None),
    ("2x+1", "2x+2", False, None),
    ("2x+1", "2y+1", False, None),
    ("x^2+2x+1", "(x+1)^2", True, None),
    ("\\frac{x}{2}", "0.5x", True, None),
    ("a+b", "b+a", True, None),
    ("x=5", "5", True, None),
    ("5", "x=5", True, None),
    ("5", "x = 5", True, None),
    ("x = 5", "x=5", True, None),
    ("x=5", "y=5", False, None),
    ("5", "x = 6", False, None),
    ("5", "x=5, y=3", False, None),
    # misc
    ("1000", "10^3", True, None),
    ("1024", "2^{10}", True, None),
    ("1000000", "1e6", True, "1e6 is read as 1*e*6"),
    ("\\infty", "\\infty", True, None),
    ("0", "-0", True, None),
    ("0", "0.0", True, None),
    ("4", "four", False, None),
    ("72", "The answer is 72", True, None),
    ("72", "The total is 72 apples.", True, None),
    ("72", "", False, None),
    ("2", "\\sqrt{4}", True, None),
    ("72", "\\boxed{72}", True, None),
    ("\\text{(B)}", "B", True, None),
    ("\\text{Yes}", "yes", True, None),
]

GSM8K_SOLUTIONS = [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72", "72"),
    ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10", "10"),
    ("In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty still needs 100 - 50 - 30 - 15 - 15 = $<<100-50-30-15-15=5>>5 more.\n#### 5", "5"),
    ("Julie read 12 x 2 = <<12*2=24>>24 pages today.\nShe should read 84/2 = <<84/2=42>>42 pages.\n#### 42", "42"),
    ("He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\nThat means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624", "624"),
    ("The total cost is 1200 + 34 = <<1200+34=1234>>1234 dollars.\n#### 1,234", "1234"),
    ("The temperature changed by 3 - 11 = <<3-11=-8>>-8 degrees.\n#### -8", "-8"),
    ("Each share is 7/2 = <<7/2=3.5>>3.5 kg.\n#### 3.5", "3.5"),
]

MATH_SOLUTIONS = [
    # (MATH-style gold solution, a right prediction, a wrong prediction)
    ("We have $\\frac{6}{8} = \\frac{3}{4}$, so the answer is $\\boxed{\\frac{3}{4}}$.", "\\frac{6}{8}", "\\frac{4}{3}"),
    ("Completing the square gives $(x-1)^2 = 0$, hence $x = \\boxed{1}$.", "x = 1", "x = -1"),
    ("The diagonal has length $\\sqrt{2^2+2^2} = \\boxed{2\\sqrt{2}}$.", "\\sqrt{8}", "4"),
    ("The circumference is $2\\pi r = \\boxed{6\\pi}$ units.", "6\\pi", "3\\pi"),
    ("The solution set is $\\boxed{[0, 1)}$.", "[0,1)", "[0,1]"),
    ("The intersection point is $\\boxed{\\left( 1, 2 \\right)}$.", "(1, 2)", "(2, 1)"),
    ("The angle measures $\\boxed{60^\\circ}$.", "60", "120^\\circ"),
    ("Thus $\\frac{1}{2}\\cdot 18 = \\boxed{9\\text{ cm}}$.", "9\\text{ cm}", "18\\text{ cm}"),
    ("The probability is $\\frac{5}{20} = \\boxed{\\frac{1}{4}}$.", "0.25", "\\frac{1}{5}"),
    ("So $k = \\boxed{-\\frac{7}{2}}$.", "-3.5", "\\frac{7}{2}"),
]


def math_cases(t):
    M = "math"
    rng = random.Random(SEED + 5)
    # extraction edge cases
    t.add(M, "boxed", "So $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}", expect=True, expect_extracted="\\frac{3}{4}")
    t.add(M, "boxed", "Either \\boxed{2} or, finally, \\boxed{3}.", "3", expect=True, expect_extracted="3")
    t.add(M, "boxed", "Either \\boxed{2} or, finally, \\boxed{3}.", "2", expect=False)
    t.add(M, "boxed", "\\fbox{\\dfrac{1}{2}}", "0.5", expect=True, expect_extracted="\\dfrac{1}{2}")
    t.add(M, "boxed", "So \\boxed{\\frac{3}{4}", "\\frac{3}{4}", expect=False, expect_extracted=None)
    t.add(M, "boxed", "The set is \\boxed{\\{1, 2\\}}.", "\\{1, 2\\}", expect=True, expect_extracted="\\{1, 2\\}")
    t.add(M, "boxed", "No box: the answer is 7.", "7", expect=False, expect_extracted=None)
    t.add(M, "answer_tag", "<answer>$18</answer>", "#### 18", expect=True, expect_extracted="$18")
    t.add(M, "answer_tag", "<answer>\\$1,234</answer>", "#### 1234", expect=True)
    t.add(M, "answer_tag", "<answer>72</answer>", 72, expect=True)
    t.add(M, "answer_tag", "<answer>0.75</answer>", 0.75, expect=True)
    t.add(M, "answer_tag", "<answer>72</answer>", "#### 70 #### 72", expect=True)
    t.add(M, "answer_tag", "<answer>7</answer>", "The answer is \\boxed{5}, not \\boxed{7}", expect=True)
    t.add(M, "last_number", "Pages 10-12 were torn, so 3 pages.", "3", expect=True, expect_extracted="3")
    t.add(M, "last_number", "The total is 1,234 dollars.", "#### 1234", expect=True, expect_extracted="1234")
    t.add(M, "whole", "\\frac{3}{4}", "\\frac{3}{4}", expect=True)
    t.add(M, "whole", "The answer is $\\boxed{18}$ dollars.", "18", expect=True)
    t.add(M, "regex", "Final answer: x = 5", "5", pattern=r"Final answer:\s*(.+)", expect=True, expect_extracted="x = 5")

    # hand-written table, spread over extraction kinds
    kinds_cycle = ["boxed", "boxed", "answer_tag", "boxed", "answer_tag", "boxed", "whole", "boxed", "regex", "boxed",
                   "answer_tag", "boxed", "last_number"]
    for i, (gold, pred, sensible, note) in enumerate(MATH_PAIRS):
        kind = kinds_cycle[i % len(kinds_cycle)]
        if kind == "last_number" and not re.fullmatch(r"-?[\d,]+(\.\d+)?", pred):
            kind = "boxed"
        if kind == "boxed" and pred.count("{") != pred.count("}"):
            kind = "answer_tag"
        if kind == "regex" and "\n" in pred:
            kind = "answer_tag"
        reasoning = rng.choice(["Simplifying step by step.", "We compute directly.", "Substituting and simplifying,",
                                "By the formula above,", "Checking the arithmetic once more,"])
        if kind == "last_number":
            completion, pattern = f"{reasoning} so the result is {pred}.", None
        elif kind == "whole":
            completion, pattern = pred, None
        else:
            completion, pattern = render(kind, reasoning, pred, rng)
        gold_field = gold
        r = rng.random()
        if r < 0.15:
            gold_field = f"The final answer is $\\boxed{{{gold}}}$."
        t.add(M, kind, completion, gold_field, pattern=pattern, expect=sensible, note=note)

    # GSM8K gold solutions with "####"
    for sol, value in GSM8K_SOLUTIONS:
        v = float(value)
        for variant in range(4):
            if variant == 0:
                x, exp = value, True
            elif variant == 1:
                x = f"{int(v):,}" if v.is_integer() else value
                if rng.random() < 0.5:
                    x = "\\$" + x
                exp = True
            elif variant == 2:
                x = str(int(v) + rng.choice([-2, -1, 1, 3])) if v.is_integer() else str(v + 1)
                exp = False
            else:
                x = str(-v if not v.is_integer() else -int(v)) if v != 0 else "1"
                exp = False
            kind = ["answer_tag", "boxed", "answer_tag", "last_number"][variant]
            reasoning = "Let me work through the quantities one at a time."
            if kind == "last_number":
                completion, pattern = f"{reasoning} In total: {x}", None
            else:
                completion, pattern = render(kind, reasoning, x, rng)
            t.add(M, kind, completion, sol, pattern=pattern, expect=exp)

    # MATH-style gold solutions with \boxed{}
    for sol, right, wrong in MATH_SOLUTIONS:
        t.add(M, "boxed", f"Working it out, $\\boxed{{{right}}}$.", sol, expect=True)
        t.add(M, "answer_tag", f"Working it out.\n<answer>{wrong}</answer>", sol, expect=False)

    # programmatic fractions
    from fractions import Fraction
    for i in range(40):
        q = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 25])
        p = rng.randint(1, 3 * q)
        fr = Fraction(p, q)
        if fr.denominator == 1:
            fr = Fraction(p, q + 1)
        a, b = fr.numerator, fr.denominator
        neg = rng.random() < 0.2
        sign = "-" if neg else ""
        gold = f"{sign}\\frac{{{a}}}{{{b}}}"
        k = 2 if b * 2 < 100 else 1
        terminating = all(f in (2, 5) for f in _factors(b))
        choices = [
            (f"{sign}\\frac{{{a}}}{{{b}}}", True),
            (f"{sign}\\dfrac{{{a}}}{{{b}}}", True),
            (f"{sign}\\tfrac{{{a}}}{{{b}}}", True),
            (f"{sign}{a}/{b}", True),
            (f"{sign}\\frac{{{a * k}}}{{{b * k}}}", True),
            (f"{sign}\\frac{{{b}}}{{{a}}}", a == b),
            (f"{sign}\\frac{{{a + 1}}}{{{b}}}", False),
            (f"\\frac{{{a}}}{{{b}}}" if neg else f"-\\frac{{{a}}}{{{b}}}", False),
        ]
        if terminating:
            dec = str(float(Fraction(a, b)))
            choices.append((f"{sign}{dec}", True))
            choices.append((f"{sign}{dec}1", False))
        pred, exp = rng.choice(choices)
        kind = "boxed" if rng.random() < 0.75 else "answer_tag"
        completion, pattern = render(kind, rng.choice(["Reducing the fraction,", "Dividing numerator and denominator,"]), pred, rng)
        t.add(M, kind, completion, gold, pattern=pattern, expect=exp)

    # programmatic integers (GSM8K-style golds and predictions)
    for i in range(30):
        v = rng.choice([rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 99999), -rng.randint(1, 500)])
        gold = rng.choice([f"#### {v}", str(v), f"The answer is $\\boxed{{{v}}}$"])
        mode = rng.choice(["same", "comma", "dollar", "decimal", "off", "off"])
        if mode == "same":
            x, exp = str(v), True
        elif mode == "comma":
            x, exp = f"{v:,}", True
        elif mode == "dollar":
            x, exp = ("\\$" + str(v)) if v >= 0 else str(v), True
        elif mode == "decimal":
            x, exp = f"{v}.0", True
        else:
            x, exp = str(v + rng.choice([-10, -1, 1, 7])), False
        kind = rng.choice(["boxed", "boxed", "answer_tag", "last_number", "whole", "regex"])
        reasoning = "Adding up all the amounts,"
        if kind == "last_number":
            completion, pattern = f"{reasoning} we get {x}.", None
        else:
            completion, pattern = render(kind, reasoning, x, rng)
        t.add(M, kind, completion, gold, pattern=pattern, expect=exp)

    # programmatic roots and multiples of pi
    for i in range(16):
        a = rng.randint(2, 6)
        bb = rng.choice([2, 3, 5, 6, 7])
        if i % 2 == 0:
            gold = f"{a}\\sqrt{{{bb}}}"
            choices = [(f"\\sqrt{{{a * a * bb}}}", True), (f"{a}\\sqrt{bb}", True), (f"{a}\\sqrt{{{bb + 1}}}", False),
                       (f"{a + 1}\\sqrt{{{bb}}}", False)]
        else:
            gold = f"{a}\\pi"
            choices = [(f"{a}\\pi", True), (f"\\pi \\cdot {a}", True), (f"{a + 1}\\pi", False), (f"\\frac{{{a}\\pi}}{{2}}", False)]
        pred, exp = rng.choice(choices)
        kind = "boxed" if i % 4 else "answer_tag"
        completion, pattern = render(kind, "Simplifying the radical and collecting terms,", pred, rng)
        t.add(M, kind, completion, gold, pattern=pattern, expect=exp)


def _factors(n):
    out, d = [], 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    if n > 1:
        out.append(n)
    return out


# ---------------------------------------------------------------------------


def build():
    t = Table()
    numeric_cases(t)
    exact_cases(t)
    choice_cases(t)
    regex_cases(t)
    math_cases(t)
    return t.rows


def main(argv):
    out = argv[1] if len(argv) > 1 else DEFAULT_OUTPUT
    rows = build()
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_grader = Counter((r["grader"], r["correct"]) for r in rows)
    by_extract = Counter(r["extract"] for r in rows)
    print(f"wrote {len(rows)} cases to {out}")
    for g in GRADERS:
        tr, fa = by_grader[(g, True)], by_grader[(g, False)]
        print(f"  {g:8s} total {tr + fa:4d}  true {tr:4d}  false {fa:4d}  ({100 * tr / max(1, tr + fa):.0f}% true)")
    tr = sum(1 for r in rows if r["correct"])
    print(f"  {'all':8s} total {len(rows):4d}  true {tr:4d}  false {len(rows) - tr:4d}")
    print("  by extraction: " + ", ".join(f"{k} {by_extract[k]}" for k in ["answer_tag", "boxed", "last_number", "whole", "regex"]))
    notes = sum(1 for r in rows if "note" in r)
    print(f"  math lines with a note: {notes}")


if __name__ == "__main__":
    main(sys.argv)
