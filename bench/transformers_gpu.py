"""The seed's engine on a GPU, measured the seed's way: Hugging Face transformers `generate` on a
random-weight SmolLM2-1.7B (its published config; nothing downloaded), several prompts per
generate() call (left-padded), `num_return_sequences` = chunk, sampling, every sample to
max_new_tokens. Optionally emulates a smaller card with torch's per-process memory fraction
(the caching allocator raises OutOfMemoryError past it, as the seed's T4 did).

Prints one JSON line: status ok|oom, tokens, seconds, tokens/s, peak allocated/reserved.

  python bench/transformers_gpu.py --lengths 167,168 --questions 5 --prompts-per-batch 1 --chunk 15
  python bench/transformers_gpu.py ... --device-gib 14.74        # the seed's T4
  python bench/transformers_gpu.py ... --tiny --device cpu       # smoke test without a GPU
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SMOLLM2_1_7B = dict(vocab_size=49152, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                    max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=130000,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
TINY = dict(SMOLLM2_1_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", required=True, help="prompt lengths, used cyclically")
    ap.add_argument("--questions", type=int, default=0, help="default: one per length")
    ap.add_argument("--prompts-per-batch", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=15)
    ap.add_argument("--oversample", type=int, default=15)
    ap.add_argument("--max-new", type=int, default=80)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--device-gib", type=float, default=0.0, help="emulate a card of this size")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    n_q = a.questions or len(lengths)
    lengths = [lengths[i % len(lengths)] for i in range(n_q)]
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and a.device_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, a.device_gib * 2**30 / total))
    torch.manual_seed(0)
    cfg = LlamaConfig(**(TINY if a.tiny else SMOLLM2_1_7B))
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(getattr(torch, a.dtype))
    model.eval()
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, cfg.vocab_size, (n,), generator=gen) for n in lengths]

    def batch(ps, n):
        width = max(len(p) for p in ps)
        ids = torch.full((len(ps), width), 2, dtype=torch.long)
        mask = torch.zeros((len(ps), width), dtype=torch.long)
        for i, p in enumerate(ps):
            ids[i, width - len(p):] = p
            mask[i, width - len(p):] = 1
        out = model.generate(ids.to(dev), attention_mask=mask.to(dev), do_sample=True,
                             temperature=a.temperature, top_p=1.0, top_k=0,
                             num_return_sequences=n, max_new_tokens=a.max_new,
                             min_new_tokens=a.max_new, pad_token_id=2)
        t = (out.shape[1] - width) * out.shape[0]
        del out
        return t

    def sync():
        if cuda:
            torch.cuda.synchronize()

    status, err, tokens = "ok", "", 0
    with torch.no_grad():
        batch([prompts[0][:16]], 1)  # warm-up: kernels, cuBLAS handles
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            for q in range(0, n_q, a.prompts_per_batch):
                ps = prompts[q:q + a.prompts_per_batch]
                for first in range(0, a.oversample, a.chunk):
                    tokens += batch(ps, min(a.chunk, a.oversample - first))
            sync()
        except torch.OutOfMemoryError as e:
            status, err = "oom", str(e).splitlines()[0][:300]
        seconds = time.perf_counter() - start
    r = dict(engine="transformers", label=a.label, status=status, error=err,
             questions=n_q, prompts_per_batch=a.prompts_per_batch, chunk=a.chunk,
             oversample=a.oversample, max_new=a.max_new, dtype=a.dtype, device_gib=a.device_gib,
             tokens=tokens, seconds=round(seconds, 3),
             tokens_per_s=round(tokens / seconds, 1) if seconds > 0 else 0.0,
             torch=torch.__version__)
    if cuda:
        r.update(max_memory_allocated=torch.cuda.max_memory_allocated(),
                 max_memory_reserved=torch.cuda.max_memory_reserved(),
                 gpu=torch.cuda.get_device_name(0))
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
