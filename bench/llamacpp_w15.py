"""W15 through llama.cpp's batched path (llama-cpp-python low-level API).

One prompt is evaluated once for all sequence ids, then `oversample` sequences decode together,
each with its own sampler (temperature, then a seeded draw), until end-of-generation or the token
budget. Prints one JSON object: tokens, seconds, tokens/s, peak RSS.

Usage: python llamacpp_w15.py MODEL.gguf PROMPTS.json [--oversample 15] [--max-new 80] [--threads 2]
PROMPTS.json: a list of chat-formatted prompt strings (rftx writes them: see peers.sh).
"""
import argparse
import ctypes
import json
import resource
import time

import llama_cpp as L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--oversample", type=int, default=15)
    ap.add_argument("--max-new", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.7)
    a = ap.parse_args()
    prompts = json.load(open(a.prompts))

    # Silence llama.cpp's log; keep a reference so the callback outlives the call.
    quiet = L.llama_log_callback(lambda level, text, user_data: None)
    L.llama_log_set(quiet, ctypes.c_void_p())
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    vocab = L.llama_model_get_vocab(model)
    n = a.oversample

    tokens_total, gen_s = 0, 0.0
    for qi, text in enumerate(prompts):
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 16))()
        n_prompt = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
        cp = L.llama_context_default_params()
        unified = hasattr(cp, "kv_unified")
        # A unified cache stores the shared prompt once; otherwise each sequence has its own stream.
        cp.n_ctx = (n_prompt + n * a.max_new if unified else n * (n_prompt + a.max_new)) + 16
        cp.n_batch = max(n_prompt, n)
        cp.n_seq_max = n
        cp.n_threads = a.threads
        cp.n_threads_batch = a.threads
        if unified:
            cp.kv_unified = True  # one prompt shared by all sequences
        ctx = L.llama_init_from_model(model, cp)
        batch = L.llama_batch_init(max(n_prompt, n), 0, n)
        samplers = []
        for s in range(n):
            ch = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            L.llama_sampler_chain_add(ch, L.llama_sampler_init_temp(a.temperature))
            L.llama_sampler_chain_add(ch, L.llama_sampler_init_dist(1000 * qi + s))
            samplers.append(ch)

        t0 = time.perf_counter()
        # The prompt, once, for every sequence id.
        batch.n_tokens = n_prompt
        for i in range(n_prompt):
            batch.token[i] = buf[i]
            batch.pos[i] = i
            batch.n_seq_id[i] = n
            for s in range(n):
                batch.seq_id[i][s] = s
            batch.logits[i] = i == n_prompt - 1
        assert L.llama_decode(ctx, batch) == 0
        last_idx = [n_prompt - 1] * n
        alive = list(range(n))
        pos = n_prompt
        new_tokens = 0
        for _ in range(a.max_new):
            batch.n_tokens = 0
            still = []
            for s in alive:
                tok = L.llama_sampler_sample(samplers[s], ctx, last_idx[s])
                new_tokens += 1
                if L.llama_vocab_is_eog(vocab, tok) or pos - n_prompt + 1 >= a.max_new:
                    continue
                j = batch.n_tokens
                batch.token[j] = tok
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = s
                batch.logits[j] = True
                last_idx[s] = j
                batch.n_tokens += 1
                still.append(s)
            alive = still
            if not alive:
                break
            assert L.llama_decode(ctx, batch) == 0
            pos += 1
        gen_s += time.perf_counter() - t0
        tokens_total += new_tokens
        for ch in samplers:
            L.llama_sampler_free(ch)
        L.llama_batch_free(batch)
        L.llama_free(ctx)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"engine": "llama.cpp", "version": L.__version__, "new_tokens": tokens_total,
                      "seconds": gen_s, "tokens_per_s": tokens_total / gen_s, "rss_peak_bytes": rss}))


if __name__ == "__main__":
    main()
