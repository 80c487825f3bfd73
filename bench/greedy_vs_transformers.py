"""rftx against transformers, greedy, on the default model as a Hugging Face folder.

transformers (the reference) dequantises the default GGUF (Q4_1) to f32 and saves it as a model
folder with `save_pretrained`; rftx runs that folder with `model.weights = "f32"`, temperature 0,
one sample per question; transformers generates greedily from the same folder. For each of the
first N built-in questions it compares the prompt token ids and the generated text, and prints
the token-for-token agreement (transformers' tokens, up to the first difference) and where the
first difference is.

    python3 bench/greedy_vs_transformers.py [N] [MAX_NEW_TOKENS]

Needs torch, transformers (4.x, for its GGUF reader), accelerate and gguf; writes under
bench/out/.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
max_new = int(sys.argv[2]) if len(sys.argv) > 2 else 80
models = os.path.abspath(os.environ.get("RFTX_MODELS_DIR", "models"))
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
out = os.path.abspath("bench/out/greedy")
folder = os.path.join(out, "smollm2-135m-f32")
os.makedirs(out, exist_ok=True)
torch.set_num_threads(2)

if not os.path.exists(os.path.join(folder, "config.json")):
    model = AutoModelForCausalLM.from_pretrained(models, gguf_file=gguf, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(models, gguf_file=gguf)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(folder)

config = os.path.join(out, "greedy.toml")
with open(config, "w") as f:
    f.write(f'name = "greedy"\n[model]\npath = "{folder}"\nweights = "f32"\n[data]\nlimit = {n}\n'
            f"[generation]\noversample = 1\nchunk_size = 1\ntemperature = 0.0\nmax_new_tokens = {max_new}\n")
env = dict(os.environ, RFTX_MODELS_DIR=models)
run = subprocess.run(["cargo", "run", "--release", "-q", "--", "run", config, "--quiet", "--runs-dir", os.path.join(out, "runs")],
                     check=True, capture_output=True, text=True, env=env)
run_dir = run.stdout.strip().splitlines()[-1]
ours = [json.loads(l) for l in open(os.path.join(run_dir, "samples.jsonl"))]
prompts = json.loads(subprocess.run(["cargo", "run", "--release", "-q", "--example", "prompt_ids", "--", config, str(n)],
                                    check=True, capture_output=True, text=True, env=env).stdout)

stops = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
strip = lambda s: s.replace("<|im_end|>", "").replace("<|endoftext|>", "")
same_prompt = same_text = agreeing = compared = 0
for i, (row, sample) in enumerate(zip(prompts, ours)):
    ids = tok.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=True)
    same_prompt += ids == row["ids"]
    with torch.no_grad():
        x = torch.tensor([ids])
        gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new, do_sample=False,
                             eos_token_id=stops, pad_token_id=stops[0])[0][len(ids):].tolist()
    theirs = strip(tok.decode(gen, skip_special_tokens=False))
    mine = strip(sample["samples"][0]["text"])
    same_text += theirs == mine
    # Token-for-token: transformers' tokens up to the first character where the texts differ.
    diff = next((c for c, (a, b) in enumerate(zip(theirs, mine)) if a != b), min(len(theirs), len(mine)))
    k = len(gen) if theirs == mine else 0
    while k < len(gen) and theirs != mine and len(strip(tok.decode(gen[: k + 1], skip_special_tokens=False))) <= diff:
        k += 1
    agreeing += k
    compared += len(gen)
    if theirs != mine:
        print(f"question {i}: first difference after {k} of {len(gen)} tokens (character {diff}): "
              f"transformers {theirs[diff:diff + 40]!r} rftx {mine[diff:diff + 40]!r}")
print(f"{len(ours)} questions, greedy, {max_new} new tokens at most: prompt ids identical {same_prompt}/{len(ours)}, "
      f"generated text identical {same_text}/{len(ours)}, token agreement {agreeing}/{compared} "
      f"({100 * agreeing / max(compared, 1):.1f} %)")
