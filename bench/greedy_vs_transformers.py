"""rftx against transformers, greedy: the same weights, the same prompts, token for token.

transformers (the reference) dequantises a GGUF file to f32. rftx runs either the model folder
transformers saves from it (the default: `model.weights = "f32"` on a Hugging Face folder) or, with
`--direct`, the GGUF file itself with `model.weights = "f32"` (its own dequantisation of every
tensor type in the file: Q4_K, Q6_K, Q5_0, Q8_0 for a llama.cpp Q4_K_M file). Temperature 0, one
sample per question. For each of the first N questions it compares the prompt token ids and the
generated text, and prints the token-for-token agreement (transformers' tokens, up to the first
difference) and where the first difference is.

    python3 bench/greedy_vs_transformers.py [N] [MAX_NEW_TOKENS]      # the default model, built-in set
    python3 bench/greedy_vs_transformers.py 8 256 --direct --gguf QWEN_Q4_K_M.gguf \
        --data GSM8K_TEST.jsonl --system 'Solve the math problem. ...'  # a real llama.cpp file

Needs torch, transformers, accelerate and gguf; writes under bench/out/.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int, nargs="?", default=20)
ap.add_argument("max_new", type=int, nargs="?", default=80)
ap.add_argument("--gguf", help="a GGUF file (default: the default model under RFTX_MODELS_DIR)")
ap.add_argument("--direct", action="store_true", help="rftx runs the GGUF file, not transformers' folder")
ap.add_argument("--data", help="a JSON Lines file with question and answer fields (default: the built-in set)")
ap.add_argument("--system", help="prompt.system (default: rftx's)")
args = ap.parse_args()
n, max_new = args.n, args.max_new
models = os.path.abspath(os.environ.get("RFTX_MODELS_DIR", "models"))
gguf_path = os.path.abspath(args.gguf) if args.gguf else os.path.join(models, "SmolLM2-135M-Instruct.Q4_1.gguf")
name = os.path.basename(gguf_path).removesuffix(".gguf")
out = os.path.abspath("bench/out/greedy")
folder = os.path.join(out, name + "-f32")
os.makedirs(out, exist_ok=True)
torch.set_num_threads(2)

gguf_dir, gguf_file = os.path.split(gguf_path)
if args.direct:
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
else:
    if not os.path.exists(os.path.join(folder, "config.json")):
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)

config = os.path.join(out, "greedy.toml")
with open(config, "w") as f:
    f.write(f'name = "greedy"\n[model]\npath = {json.dumps(gguf_path if args.direct else folder)}\nweights = "f32"\n')
    f.write(f"[data]\nlimit = {n}\n")
    if args.data:
        f.write(f'source = {json.dumps(os.path.abspath(args.data))}\nquestion_field = "question"\nanswer_field = "answer"\n')
    if args.system is not None:
        f.write(f"[prompt]\nsystem = {json.dumps(args.system)}\nexamples = []\n")
    f.write(f"[generation]\noversample = 1\nchunk_size = 1\ntemperature = 0.0\nmax_new_tokens = {max_new}\n")
env = dict(os.environ, RFTX_MODELS_DIR=models)
# BENCH_RFTX: an rftx binary to run instead of `cargo run --release`.
rftx = [os.environ["BENCH_RFTX"]] if os.environ.get("BENCH_RFTX") else ["cargo", "run", "--release", "-q", "--"]
run = subprocess.run(rftx + ["run", config, "--quiet", "--runs-dir", os.path.join(out, "runs")],
                     capture_output=True, text=True, env=env)
if run.returncode != 0:
    sys.exit(f"rftx run exited {run.returncode}: {run.stderr.strip()}")
run_dir = run.stdout.strip().splitlines()[-1]
ours = [json.loads(l) for l in open(os.path.join(run_dir, "samples.jsonl"))]
# BENCH_PROMPT_IDS: a built examples/prompt_ids to run instead of `cargo run --example`.
prompt_ids = [os.environ["BENCH_PROMPT_IDS"]] if os.environ.get("BENCH_PROMPT_IDS") else \
    ["cargo", "run", "--release", "-q", "--example", "prompt_ids", "--"]
prompts = json.loads(subprocess.run(prompt_ids + [config, str(n)],
                                    check=True, capture_output=True, text=True, env=env).stdout)

stops = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
strip = lambda s: s.replace("<|im_end|>", "").replace("<|endoftext|>", "")
same_prompt = same_text = agreeing = compared = 0
for i, (row, sample) in enumerate(zip(prompts, ours)):
    ids = tok.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"]) if hasattr(ids, "keys") else ids  # transformers 5: a BatchEncoding
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
