"""Tiny random checkpoints written by transformers itself, and what transformers computes with them.

For each architecture rftx reads (llama, qwen2, qwen3; and llama with Llama 3's rope scaling),
this builds a model of a few thousand
parameters with random weights (seeded), saves it with `save_pretrained` (config.json,
model.safetensors, generation_config.json: transformers' own writer, not rftx's), writes the same
weights as `model.gguf` with the `gguf` package's writer (tensor names, metadata and q/k layout as
llama.cpp's converter writes them: llama's q/k rows permuted to the interleaved rotary layout,
Qwen's kept as in the checkpoint), and records in `expected.json` a prompt of token ids, the
greedy continuation that `generate` produces, and the f32 logits at every position from the last
prompt token on. tests/hf_fixtures.rs loads each folder and each GGUF file with rftx and checks
the logits (within a stated tolerance) and the greedy tokens.

    python3 scripts/make_hf_fixtures.py [OUT]   # default tests/fixtures/hf

Needs torch, transformers (4.x or 5.x, with Qwen3) and gguf; the committed fixtures record the
versions that wrote them. The output is deterministic for a given torch and transformers.
"""
import json
import os
import sys

import gguf
import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

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
    # Heads wider than hidden_size / num_attention_heads, as Qwen3's are (head_dim 16, not 8).
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(tie_word_embeddings=True, head_dim=16)),
    # Llama 3.1/3.2's rope scaling, with an original context short enough for this tiny model
    # that every kind of frequency (kept, divided, blended) occurs.
    "llama3": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, rope_parameters=dict(
        rope_type="llama3", rope_theta=SHAPE["rope_theta"], factor=8.0, low_freq_factor=1.0,
        high_freq_factor=4.0, original_max_position_embeddings=16))),
}


def llama3_rope_factors(config, head_dim):
    """Llama 3's rotary scaling as llama.cpp's converter stores it in `rope_freqs.weight`: the
    divisor of each pair of dimensions' frequency."""
    r = config.rope_parameters
    old = r["original_max_position_embeddings"]
    low, high = old / r["low_freq_factor"], old / r["high_freq_factor"]
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * np.pi * SHAPE["rope_theta"] ** (i / head_dim)
        if wavelen < high:
            factors.append(1.0)
        elif wavelen > low:
            factors.append(r["factor"])
        else:
            smooth = (old / wavelen - r["low_freq_factor"]) / (r["high_freq_factor"] - r["low_freq_factor"])
            factors.append(1.0 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(factors, dtype=np.float32)

GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def permute(w, heads):
    """llama.cpp's converter: q/k rows from the half-split rotary layout to the interleaved one."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(name, model, config, path):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    arch = "llama" if name == "llama3" else name
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"rftx-fixture-{name}")
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(SHAPE["rope_theta"]))
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    for key, tensor in model.state_dict().items():
        a = tensor.detach().to(torch.float32).numpy().copy()
        if key == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif key == "model.norm.weight":
            out = "output_norm.weight"
        elif key == "lm_head.weight":
            if config.tie_word_embeddings:
                continue
            out = "output.weight"
        else:
            _, _, layer, rest = key.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out = f"blk.{layer}.{GGUF_NAMES[module]}.{kind}"
            if arch == "llama" and module == "self_attn.q_proj":
                a = permute(a, config.num_attention_heads)
            if arch == "llama" and module == "self_attn.k_proj":
                a = permute(a, config.num_key_value_heads)
        w.add_tensor(out, np.ascontiguousarray(a, dtype=np.float32))
    if name == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(config, head_dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make(name, config_class, model_class, extra):
    torch.manual_seed(20261130)
    shape = {k: v for k, v in SHAPE.items() if not (k == "rope_theta" and "rope_parameters" in extra)}
    config = config_class(**shape, **extra)
    model = model_class(config).to(torch.float32).eval()
    if name == "qwen2":
        # transformers initialises biases to zero; random ones check that rftx applies them.
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.5)
    folder = os.path.join(OUT, name)
    model.save_pretrained(folder, safe_serialization=True)
    write_gguf(name, model, config, os.path.join(folder, "model.gguf"))
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones_like(ids))
        full = out[0].tolist()
        greedy = full[len(PROMPT):]
        logits = model(torch.tensor([full[:-1]])).logits[0, len(PROMPT) - 1:]
    expected = {
        "written_by": f"transformers {transformers.__version__}, torch {torch.__version__}, gguf (model.gguf)",
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
