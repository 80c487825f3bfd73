#!/usr/bin/env python3
"""Loads a run directory's trainer files the way TRL's SFTTrainer does and checks their schema.

    python3 scripts/check_trainer_files.py RUN_DIR [EXPECTED_RECORDS]

TRL's SFTTrainer takes a `datasets.Dataset`; for local files that is
`datasets.load_dataset("json", data_files=...)` (and "parquet" for Parquet). The trainer then
decides the format from the first example: `messages` (conversational language modeling) or
`prompt` + `completion` (conversational prompt-completion), each a list of
`{"role": ..., "content": ...}` turns (TRL's `is_conversational`). This script loads the three
files with `datasets`, checks the features are exactly those types (not merely "it parsed"),
the roles of every example, and that the three files hold the same samples in the same order.
Exit 0 when all holds; an AssertionError names what did not.
"""
import sys

from datasets import Features, Value, load_dataset

try:  # datasets >= 4 names a list feature `List`; older versions `Sequence`.
    from datasets import List as ListFeature
except ImportError:  # pragma: no cover
    from datasets import Sequence as ListFeature


def turns():
    return ListFeature({"role": Value("string"), "content": Value("string")})


def feature_dict(features):
    """Features with dict keys sorted, comparable whatever order the loader produced."""
    return {k: repr(v) for k, v in sorted(features.items())}


def check(run_dir, expected=None):
    msgs = load_dataset("json", data_files=f"{run_dir}/sft_messages.jsonl", split="train")
    pc = load_dataset("json", data_files=f"{run_dir}/sft_prompt_completion.jsonl", split="train")
    table = load_dataset("parquet", data_files=f"{run_dir}/dataset.parquet", split="train")

    def same(actual, wanted, name):
        a, w = feature_dict(actual), feature_dict(Features(wanted))
        assert a == w, f"{name}: features {a} are not {w}"

    same(msgs.features, {"messages": turns()}, "sft_messages.jsonl")
    same(pc.features, {"prompt": turns(), "completion": turns()}, "sft_prompt_completion.jsonl")
    text = Value("string")
    same(
        table.features,
        {"index": Value("int64"), "id": text, "question": text, "answer": text,
         "system": text, "user": text, "completion": text},
        "dataset.parquet",
    )
    n = len(msgs)
    assert len(pc) == n and len(table) == n, f"{n} messages, {len(pc)} prompt-completion, {len(table)} parquet rows"
    if expected is not None:
        assert n == expected, f"{n} records, expected {expected}"
    for i in range(n):
        m, p, row = msgs[i]["messages"], pc[i], table[i]
        assert [t["role"] for t in m] == ["system", "user", "assistant"], m
        assert [t["role"] for t in p["prompt"]] == ["system", "user"], p["prompt"]
        assert [t["role"] for t in p["completion"]] == ["assistant"], p["completion"]
        assert m[:2] == p["prompt"] and m[2:] == p["completion"], (m, p)
        assert (row["system"], row["user"], row["completion"]) == (m[0]["content"], m[1]["content"], m[2]["content"]), (row, m)
    print(f"ok: {n} records load as TRL conversational datasets and a flat Parquet table")


if __name__ == "__main__":
    check(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
