#!/usr/bin/env python3
"""Loads a run directory's preference and RL files as TRL's trainers do and checks their schema.

    python3 scripts/check_preference_files.py RUN_DIR [PAIRS DESIRABLE UNDESIRABLE RL_PROMPTS]

`dpo_pairs.jsonl` (DPOTrainer), `kto.jsonl` (KTOTrainer) and `rl_prompts.jsonl` (GRPOTrainer) are
loaded with `datasets.load_dataset("json", ...)`, as those trainers get them, and their features
checked exactly: every `prompt`, `chosen`, `rejected` and `completion` a list of
`{"role", "content"}` turns, `label` a boolean, the RL columns typed. With the counts given, the
files must hold that many pairs, desirable and undesirable completions, and RL prompts.

Where TRL is installed (`pip install --no-deps trl` with `transformers` and `jinja2`; no torch),
each file also goes through TRL's own preparation of a dataset: `is_conversational` and
`maybe_apply_chat_template` (what `DPOTrainer`, `KTOTrainer` and `GRPOTrainer` map over their
train set; it refuses keys that are not one of TRL's formats), with a tokenizer made here with a
small chat template, and `unpair_preference_dataset` of the DPO pairs gives exactly the features
of `kto.jsonl`. Exit 0 when all holds; an AssertionError names what did not.
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
    return {k: repr(v) for k, v in sorted(features.items())}


def same(actual, wanted, name):
    a, w = feature_dict(actual), feature_dict(Features(wanted))
    assert a == w, f"{name}: features {a} are not {w}"


def load(run_dir, name):
    return load_dataset("json", data_files=f"{run_dir}/{name}", split="train")


def check(run_dir, expected=None):
    dpo, kto, rl = (load(run_dir, n) for n in ("dpo_pairs.jsonl", "kto.jsonl", "rl_prompts.jsonl"))
    same(dpo.features, {"prompt": turns(), "chosen": turns(), "rejected": turns()}, "dpo_pairs.jsonl")
    same(kto.features, {"prompt": turns(), "completion": turns(), "label": Value("bool")}, "kto.jsonl")
    rl_features = {
        "prompt": turns(), "answer": Value("string"), "index": Value("int64"), "question": Value("string"),
        "pass_rate": Value("float64"), "correct": Value("int64"), "samples": Value("int64"),
    }
    if "id" in rl.features:
        rl_features["id"] = Value("string")
    same(rl.features, rl_features, "rl_prompts.jsonl")
    for row in dpo:
        assert [t["role"] for t in row["prompt"]] == ["system", "user"], row["prompt"]
        assert [t["role"] for t in row["chosen"] + row["rejected"]] == ["assistant", "assistant"], row
        assert row["chosen"] != row["rejected"], row
    for row in kto:
        assert [t["role"] for t in row["prompt"] + row["completion"]] == ["system", "user", "assistant"], row
    for row in rl:
        assert abs(row["pass_rate"] - row["correct"] / row["samples"]) < 1e-12, row
    desirable = sum(kto["label"])
    counts = (len(dpo), desirable, len(kto) - desirable, len(rl))
    if expected is not None:
        assert counts == tuple(expected), f"pairs, desirable, undesirable, rl prompts: {counts}, expected {tuple(expected)}"
    print(f"ok: {counts[0]} pairs, {counts[1]} desirable and {counts[2]} undesirable completions, "
          f"{counts[3]} RL prompts load as TRL's conversational formats")
    check_with_trl(dpo, kto, rl)


def check_with_trl(dpo, kto, rl):
    try:
        import tokenizers
        import trl
        from transformers import PreTrainedTokenizerFast
        from trl.data_utils import is_conversational, maybe_apply_chat_template, unpair_preference_dataset
    except ImportError as e:
        print(f"trl: not installed ({e}): TRL's own checks skipped")
        return
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    )
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    for name, ds, out in (
        ("dpo_pairs.jsonl", dpo, {"prompt", "chosen", "rejected"}),
        ("kto.jsonl", kto, {"prompt", "completion", "label"}),
        ("rl_prompts.jsonl", rl, {"prompt"}),
    ):
        for row in ds:
            assert is_conversational(row), f"{name}: TRL does not read {row} as conversational"
            applied = maybe_apply_chat_template(row, tok)
            assert out <= set(applied), f"{name}: {applied}"
            assert applied["prompt"].endswith("<|assistant|>"), applied
    unpaired = unpair_preference_dataset(dpo)
    assert feature_dict(unpaired.features) == feature_dict(kto.features), (unpaired.features, kto.features)
    assert len(unpaired) == 2 * len(dpo)
    print(f"trl {trl.__version__}: DPO, KTO and GRPO accept the three files (maybe_apply_chat_template), "
          f"and unpaired DPO pairs have kto.jsonl's features")


if __name__ == "__main__":
    check(sys.argv[1], [int(x) for x in sys.argv[2:6]] if len(sys.argv) > 2 else None)
