"""rftx's chat template rendering and tokenizer against transformers', on the default model.

transformers (4.x) reads the same GGUF file (its own GGUF tokenizer conversion, needs the
`gguf` package; torch is not needed for the tokenizer), renders each conversation with `apply_chat_template` and tokenizes the text;
rftx's side comes from `cargo run --release --example prompt_ids -- CONFIG N`. Prints the
agreement and the first difference, if any.

    python3 bench/tokenizer_vs_transformers.py [configs/quick.toml] [N]
"""
import json
import os
import subprocess
import sys

import transformers.modeling_gguf_pytorch_utils as gguf_utils
from transformers import AutoTokenizer

# transformers (4.x) refuses GGUF files without torch, though reading the tokenizer (no tensors)
# does not use it: let it through.
gguf_utils.is_torch_available = lambda: True

config = sys.argv[1] if len(sys.argv) > 1 else "configs/quick.toml"
n = sys.argv[2] if len(sys.argv) > 2 else "20"
models = os.environ.get("RFTX_MODELS_DIR", "models")
ours = json.loads(subprocess.run(
    ["cargo", "run", "--release", "-q", "--example", "prompt_ids", "--", config, n],
    check=True, capture_output=True, text=True).stdout)
tok = AutoTokenizer.from_pretrained(models, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
same_text = same_ids = 0
for i, row in enumerate(ours):
    text = tok.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    same_text += text == row["text"]
    same_ids += ids == row["ids"]
    if text != row["text"] or ids != row["ids"]:
        at = next((k for k, (a, b) in enumerate(zip(ids, row["ids"])) if a != b), min(len(ids), len(row["ids"])))
        print(f"question {i}: first difference at token {at}: transformers {ids[at:at+5]} rftx {row['ids'][at:at+5]}")
total = len(ours)
tokens = sum(len(r["ids"]) for r in ours)
print(f"{total} prompts ({tokens} tokens): rendered text identical {same_text}/{total}, token ids identical {same_ids}/{total}")
