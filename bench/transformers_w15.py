"""W15 through Hugging Face transformers `generate`, the seed's way.

The GGUF file is loaded by transformers itself (`gguf_file=`, dequantised to float32, its
tokenizer rebuilt from the GGUF metadata: nothing is downloaded). Each prompt is generated with
`num_return_sequences` = the chunk size (15: the naive way; 3: the seed's out-of-memory fix, in
chunks), sampling at the given temperature. Generated tokens are counted up to and including the
first end-of-turn token, as rftx and llama.cpp count them. Prints one JSON object: tokens, seconds,
tokens/s, peak RSS.

Usage: python transformers_w15.py MODEL.gguf PROMPTS.json [--oversample 15] [--chunk 15]
                                  [--max-new 80] [--threads 2]
"""
import argparse
import json
import os
import resource
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--oversample", type=int, default=15)
    ap.add_argument("--chunk", type=int, default=15)
    ap.add_argument("--max-new", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.7)
    a = ap.parse_args()
    prompts = json.load(open(a.prompts))
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    directory, name = os.path.split(os.path.abspath(a.model))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    stop = tok.convert_tokens_to_ids("<|im_end|>")

    tokens_total, gen_s = 0, 0.0
    with torch.inference_mode():
        for text in prompts:
            ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
            done = 0
            while done < a.oversample:
                n = min(a.chunk, a.oversample - done)
                t0 = time.perf_counter()
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    temperature=a.temperature,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=a.max_new,
                    num_return_sequences=n,
                    eos_token_id=stop,
                    pad_token_id=stop,
                )
                gen_s += time.perf_counter() - t0
                for row in out[:, ids.shape[1]:].tolist():
                    tokens_total += row.index(stop) + 1 if stop in row else len(row)
                done += n
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "engine": "transformers",
        "chunk": a.chunk,
        "tokens": tokens_total,
        "seconds": gen_s,
        "tokens_per_s": tokens_total / gen_s,
        "rss_peak_bytes": rss,
    }))


if __name__ == "__main__":
    main()
