"""Tiny random checkpoints written by transformers itself, and what transformers computes with them.

For each architecture rftx reads from model folders (llama, qwen2), this builds a model of a few
thousand parameters with random weights (seeded), saves it with `save_pretrained` (config.json,
model.safetensors, generation_config.json: transformers' own writer, not rftx's) and records in
`expected.json` a prompt of token ids, the greedy continuation that `generate` produces, and the
f32 logits at every position from the last prompt token on. tests/hf_fixtures.rs loads each
folder with rftx and checks the logits (within a stated tolerance) and the greedy tokens.

    python3 scripts/make_hf_fixtures.py [OUT]   # default tests/fixtures/hf

Needs torch and transformers (any recent 4.x or 5.x); the committed fixtures record the versions
that wrote them. The output is deterministic for a given torch and transformers.
"""
import json
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf"
SHAPE = dict(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    # Large enough that logits differ clearly between tokens: greedy ties would make the test
    # depend on the last bit of the arithmetic.
    initializer_range=0.5,
    bos_token_id=1,
    eos_token_id=2,
)
PROMPT = [1, 5, 17, 33, 9, 41, 12]
NEW_TOKENS = 8

ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True)),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=False, use_sliding_window=False)),
}


def make(name, config_class, model_class, extra):
    torch.manual_seed(20261130)
    config = config_class(**SHAPE, **extra)
    model = model_class(config).to(torch.float32).eval()
    if name == "qwen2":
        # transformers initialises biases to zero; random ones check that rftx applies them.
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.5)
    folder = os.path.join(OUT, name)
    model.save_pretrained(folder, safe_serialization=True)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones_like(ids))
        full = out[0].tolist()
        greedy = full[len(PROMPT):]
        logits = model(torch.tensor([full[:-1]])).logits[0, len(PROMPT) - 1:]
    expected = {
        "written_by": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "architecture": name,
        "prompt": PROMPT,
        "greedy": greedy,
        # logits[i]: after the prompt and the first i greedy tokens (f32, rounded to 7 digits).
        "logits": [[round(float(x), 7) for x in row] for row in logits],
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")
    print(f"{folder}: greedy {greedy}")


for name, (config_class, model_class, extra) in ARCHS.items():
    make(name, config_class, model_class, extra)
