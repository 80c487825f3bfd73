"""The seed's way on a GPU: Hugging Face transformers `generate` on a random-weight SmolLM2-1.7B
built from its published config (`from_config`: nothing is downloaded), in f16, with
`num_return_sequences` = the chunk size (15: the naive way; 3: the seed's out-of-memory fix,
in chunks), sampling at the given temperature, every sample running to `max_new_tokens`
(`min_new_tokens` = `max_new_tokens`). Prompts are random token ids of the given lengths (the
lengths of rftx's prompts: speed and memory depend on lengths, not on which tokens).

Prints one JSON object: tokens, seconds, tokens/s, peak GPU memory (torch's allocator:
`max_memory_allocated`, and `max_memory_reserved`, and the device's memory in use at the end as
`cuMemGetInfo` sees it: the CUDA context and cuBLAS workspaces included).

Usage: python transformers_gpu.py --lengths 167,168,166,167,169 [--oversample 15] [--chunk 15]
                                  [--max-new 80] [--temperature 0.7] [--dtype float16]
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# HuggingFaceTB/SmolLM2-1.7B-Instruct's config.json (the fields that shape compute and memory).
SMOLLM2_1_7B = dict(
    vocab_size=49152,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=24,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=130000,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", required=True)
    ap.add_argument("--oversample", type=int, default=15)
    ap.add_argument("--chunk", type=int, default=15)
    ap.add_argument("--max-new", type=int, default=80)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes after one warm-up question")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_1_7B)).to(dtype)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 49152, (1, n), generator=gen).cuda() for n in lengths]

    def question(ids):
        tokens = 0
        for first in range(0, a.oversample, a.chunk):
            n = min(a.chunk, a.oversample - first)
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=a.temperature,
                top_p=1.0,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=a.max_new,
                min_new_tokens=a.max_new,
                pad_token_id=2,
            )
            tokens += (out.shape[1] - ids.shape[1]) * n
            del out
        return tokens

    with torch.no_grad():
        question(prompts[0][:, :16])  # warm-up: kernels, cuBLAS handles
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        tokens = 0
        start = time.perf_counter()
        for _ in range(a.repeat):
            for ids in prompts:
                tokens += question(ids)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    free, total = torch.cuda.mem_get_info()
    print(
        json.dumps(
            {
                "engine": "transformers",
                "chunk": a.chunk,
                "oversample": a.oversample,
                "dtype": a.dtype,
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "tokens_per_s": round(tokens / seconds, 1),
                "max_memory_allocated": torch.cuda.max_memory_allocated(),
                "max_memory_reserved": torch.cuda.max_memory_reserved(),
                "device_used_at_end": total - free,
                "gpu": torch.cuda.get_device_name(0),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
