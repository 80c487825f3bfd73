"""A config's workload through llama.cpp's batched API, several prompts at once.

Every prompt is evaluated once for all its `oversample` sequence ids (a unified KV cache stores
it once); its sequences then decode together with those of the other prompts in the batch, each
with its own sampler chain in C (temperature, then a seeded draw). When all sequences of a
prompt are done, its cells are freed and the next prompt joins the next decode call (its prompt
tokens in the same batch as the others' decode tokens): continuous batching, as llama.cpp's
server does. `--prompts-per-batch 1` is one prompt at a time (bench/llamacpp_w15.py's path).

Prints one JSON object: tokens, seconds, tokens/s, peak RSS, the setting.

Usage: python llamacpp_batched.py MODEL.gguf PROMPTS.json [--prompts-per-batch K]
       [--oversample 15] [--max-new 80] [--threads 2] [--temperature 0.7]
"""
import argparse
import ctypes
import json
import resource
import time

import llama_cpp as L


def tokenize(vocab, text):
    raw = text.encode()
    buf = (L.llama_token * (len(raw) + 16))()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
    return list(buf[:n])


class Slot:
    """A prompt in the batch: its sequence ids, position, samplers and live sequences."""

    def __init__(self, q, base, tokens, n, temperature):
        self.q, self.base, self.pos = q, base, len(tokens)
        self.alive = list(range(n))
        self.count = [0] * n
        self.last_idx = [0] * n
        self.samplers = []
        for s in range(n):
            ch = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            L.llama_sampler_chain_add(ch, L.llama_sampler_init_temp(temperature))
            L.llama_sampler_chain_add(ch, L.llama_sampler_init_dist(1000 * q + s))
            self.samplers.append(ch)

    def free(self):
        for ch in self.samplers:
            L.llama_sampler_free(ch)


def add(batch, token, pos, seqs, logits):
    j = batch.n_tokens
    batch.token[j] = token
    batch.pos[j] = pos
    batch.n_seq_id[j] = len(seqs)
    for i, s in enumerate(seqs):
        batch.seq_id[j][i] = s
    batch.logits[j] = logits
    batch.n_tokens += 1
    return j


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--prompts-per-batch", type=int, default=1)
    ap.add_argument("--oversample", type=int, default=15)
    ap.add_argument("--max-new", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.7)
    a = ap.parse_args()

    quiet = L.llama_log_callback(lambda level, text, user_data: None)
    L.llama_log_set(quiet, ctypes.c_void_p())
    L.llama_backend_init()
    model = L.llama_model_load_from_file(a.model.encode(), L.llama_model_default_params())
    vocab = L.llama_model_get_vocab(model)
    prompts = [tokenize(vocab, t) for t in json.load(open(a.prompts))]
    n, k = a.oversample, max(1, min(a.prompts_per_batch, len(prompts)))
    longest = max(len(p) for p in prompts)

    cp = L.llama_context_default_params()
    cp.n_ctx = k * (longest + n * a.max_new) + 64
    cp.n_batch = k * (longest + n) + 16
    cp.n_ubatch = min(cp.n_batch, 512)
    cp.n_seq_max = k * n
    cp.n_threads = cp.n_threads_batch = a.threads
    cp.kv_unified = True
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(cp.n_batch, 0, n)

    slots, free_bases = [], [i * n for i in range(k)]
    next_q, tokens_total = 0, 0
    t0 = time.perf_counter()
    while True:
        batch.n_tokens = 0
        # Sample every live sequence from the last decode; finished prompts leave.
        for slot in list(slots):
            still = []
            for s in slot.alive:
                tok = L.llama_sampler_sample(slot.samplers[s], ctx, slot.last_idx[s])
                tokens_total += 1
                slot.count[s] += 1
                if L.llama_vocab_is_eog(vocab, tok) or slot.count[s] >= a.max_new:
                    continue
                slot.last_idx[s] = add(batch, tok, slot.pos, [slot.base + s], True)
                still.append(s)
            slot.alive = still
            slot.pos += 1
            if not still:
                for s in range(n):
                    L.llama_memory_seq_rm(mem, slot.base + s, -1, -1)
                slot.free()
                slots.remove(slot)
                free_bases.append(slot.base)
        # New prompts join, each evaluated once for all its sequence ids.
        while free_bases and next_q < len(prompts):
            base = free_bases.pop(0)
            toks = prompts[next_q]
            slot = Slot(next_q, base, toks, n, a.temperature)
            seqs = [base + s for s in range(n)]
            for i, t in enumerate(toks):
                j = add(batch, t, i, seqs, i == len(toks) - 1)
            slot.last_idx = [j] * n
            slots.append(slot)
            next_q += 1
        if batch.n_tokens == 0:
            break
        assert L.llama_decode(ctx, batch) == 0
    secs = time.perf_counter() - t0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"engine": "llama.cpp", "version": L.__version__, "prompts_per_batch": k,
                      "new_tokens": tokens_total, "seconds": secs, "tokens_per_s": tokens_total / secs,
                      "rss_peak_bytes": rss}))


if __name__ == "__main__":
    main()
