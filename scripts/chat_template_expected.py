#!/usr/bin/env python3
"""Regenerate tests/data/chat_templates_expected.jsonl: how transformers renders each of
llama.cpp's real chat templates (models/templates/*.jinja in llama-cpp-python 0.3.36's sdist)
on a fixed set of conversations. tests/chat_templates.rs renders the same templates on the same
conversations with rftx's renderer and wants the same text, or a refusal where transformers
refuses.

    python3 -m venv /tmp/ct && /tmp/ct/bin/pip install transformers==5.25.0 jinja2==3.1.6
    /tmp/ct/bin/python scripts/chat_template_expected.py "$(scripts/fetch-llama-templates.sh)"

Rendering is transformers' own: `render_jinja_template`, the function that
`PreTrainedTokenizerBase.apply_chat_template(..., tokenize=False)` calls with the tokenizer's
special tokens as keyword arguments (here only `bos_token` and `eos_token`, the two rftx passes,
with fixed strings per template family, BOS_EOS below). Its Jinja environment is transformers'
(`_compile_jinja_template`: sandboxed, trim_blocks, lstrip_blocks, loop controls, the
`{% generation %}` tag, `raise_exception`, `tojson`, `strftime_now`, `dict`, `namespace`), with one
change: `strftime_now` formats DATE, the date rftx's `prompt.date` defaults to, instead of
today's, so that the file does not change with the day.

The first line records the versions, the date and the conversations; then one line per
(template, conversation, add_generation_prompt, template variables): the template's name and
sha256, bos and eos, the variables (`prompt.template_vars` in rftx; keyword arguments of
apply_chat_template here), and either `output` or `error` ({"class", "message"}).
"""
import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import jinja2
import transformers
from transformers.utils import chat_template_utils

TRANSFORMERS = "5.25.0"
JINJA2 = "3.1.6"
SDIST = "llama-cpp-python==0.3.36"
# rftx's default prompt.date (src/core/config): Llama 3's own fallback date, "26 Jul 2024".
DATE = dt.datetime(2024, 7, 26)

SYSTEM = "You are a careful assistant. Reason briefly, then give the final answer as <answer>NUMBER</answer>."
Q1 = "How many meters are in 3 kilometers?"
A1 = "1 kilometer is 1000 meters, so 3 kilometers is 3 * 1000 = 3000 meters. <answer>3000</answer>"
Q2 = "Convert 2 hours to minutes."
A2 = "1 hour is 60 minutes, so 2 hours is 2 * 60 = 120 minutes. <answer>120</answer>"
Q = 'A café sells 12 "croissants" a day for 3 days.\nHow many croissants is that?'


def turn(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user": [turn("system", SYSTEM), turn("user", Q)],
    "user": [turn("user", Q)],
    "few_shot": [turn("user", Q1), turn("assistant", A1), turn("user", Q)],
    "system_few_shot": [
        turn("system", SYSTEM),
        turn("user", Q1),
        turn("assistant", A1),
        turn("user", Q2),
        turn("assistant", A2),
        turn("user", Q),
    ],
}

# bos_token and eos_token by template family (first matching prefix); only the text a template
# prints matters, and rftx is given the same strings.
BOS_EOS = [
    (("meta-llama-", "fireworks-ai-llama-3", "NousResearch-", "meetkai-", "deepseek-ai-DeepSeek-R1-Distill-Llama"),
     ("<|begin_of_text|>", "<|eot_id|>")),
    (("deepseek-ai-", "llama-cpp-deepseek-r1"), ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")),
    (("Qwen", "HuggingFaceTB-", "MiMo"), ("", "<|im_end|>")),
    (("google-gemma",), ("<bos>", "<eos>")),
    (("CohereForAI-", "Cohere2"), ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>")),
    (("microsoft-Phi",), ("<s>", "<|endoftext|>")),
    (("LFM",), ("<|startoftext|>", "<|im_end|>")),
]
DEFAULT_BOS_EOS = ("<s>", "</s>")

TOOLS = [
    {
        "function": {
            "description": "Converts a quantity between units.",
            "name": "convert",
            "parameters": {
                "properties": {
                    "quantity": {"description": "The number to convert.", "type": "number"},
                    "unit": {"description": "The unit to convert to.", "type": "string"},
                },
                "required": ["quantity", "unit"],
                "type": "object",
            },
        },
        "type": "function",
    }
]

# Template variables (prompt.template_vars) tried on some templates, with add_generation_prompt,
# on every conversation. Keys in sorted order at every level, as a TOML table gives them to rftx.
VARS = {
    "Qwen-Qwen3-0.6B.jinja": [{"enable_thinking": False}],
    "Qwen-Qwen2.5-7B-Instruct.jinja": [{"tools": TOOLS}],
    "meta-llama-Llama-3.1-8B-Instruct.jinja": [{"date_string": "01 Jan 2026"}, {"tools": TOOLS}],
    "meta-llama-Llama-3.2-3B-Instruct.jinja": [{"date_string": "01 Jan 2026"}],
    "openai-gpt-oss-120b.jinja": [{"reasoning_effort": "low"}],
    "HuggingFaceTB-SmolLM3-3B.jinja": [{"enable_thinking": False}],
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": [{"tools": TOOLS}],
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": [{"tools": TOOLS}],
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": [{"tools": TOOLS}],
    "fireworks-ai-llama-3-firefunction-v2.jinja": [{"datetime": "2024-07-26", "functions": json.dumps(TOOLS)}],
    "Qwen3-Coder.jinja": [{"tools": TOOLS}],
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja": [{"enable_thinking": False}],
}


class FixedDate(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return DATE


def bos_eos(name):
    for prefixes, tokens in BOS_EOS:
        if name.startswith(prefixes):
            return tokens
    return DEFAULT_BOS_EOS


def render(source, messages, add_generation_prompt, bos, eos, variables):
    """transformers' apply_chat_template(tokenize=False) on a template string; the output or the
    error's class and message."""
    try:
        out, _ = chat_template_utils.render_jinja_template(
            conversations=[messages],
            chat_template=source,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            **variables,
        )
        return {"output": out[0]}
    except Exception as e:  # noqa: BLE001 - every refusal is recorded
        return {"error": {"class": type(e).__name__, "message": str(e)}}


def cases(name):
    for conv in CONVERSATIONS:
        for agp in (True, False):
            yield conv, agp, {}
    for variables in VARS.get(name, []):
        for conv in CONVERSATIONS:
            yield conv, True, variables


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("templates", type=Path, help="the directory scripts/fetch-llama-templates.sh prints")
    ap.add_argument("--out", type=Path, default=Path("tests/data/chat_templates_expected.jsonl"))
    args = ap.parse_args()
    if transformers.__version__ != TRANSFORMERS or jinja2.__version__ != JINJA2:
        sys.exit(f"want transformers=={TRANSFORMERS} and jinja2=={JINJA2}, "
                 f"have {transformers.__version__} and {jinja2.__version__}")
    chat_template_utils.datetime = FixedDate  # strftime_now's datetime.now()
    paths = sorted(args.templates.glob("*.jinja"))
    if not paths:
        sys.exit(f"no *.jinja in {args.templates}")
    header = {
        "transformers": TRANSFORMERS,
        "jinja2": JINJA2,
        "templates_from": SDIST,
        "date": DATE.strftime("%Y-%m-%d"),
        "conversations": CONVERSATIONS,
    }
    lines, errors = [json.dumps(header, ensure_ascii=False)], 0
    for path in paths:
        source = path.read_text(encoding="utf-8")
        bos, eos = bos_eos(path.name)
        for conv, agp, variables in cases(path.name):
            row = {
                "template": path.name,
                "sha256": hashlib.sha256(source.encode()).hexdigest(),
                "conversation": conv,
                "add_generation_prompt": agp,
                "bos_token": bos,
                "eos_token": eos,
                "vars": variables,
            }
            row.update(render(source, CONVERSATIONS[conv], agp, bos, eos, variables))
            errors += "error" in row
            lines.append(json.dumps(row, ensure_ascii=False))
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(paths)} templates, {len(lines) - 1} renders ({errors} refused) -> {args.out}")


if __name__ == "__main__":
    main()
