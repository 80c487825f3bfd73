"""summary.json of bench/gpu.sh: issue 22's figures as numbers, read from the `rftx bench` JSON
reports in RAW and from OUT/kernels.json and OUT/transformers.jsonl, with the GPU, the driver and
the commit they were measured on. A figure whose step did not run is null.

usage: python3 bench/gpu_summary.py RAW OUT
"""
import json
import os
import subprocess
import sys

# Memory bandwidth (bytes/s) by GPU name, for the decode step's weight-read time.
BANDWIDTH = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
             "A100": 2.0e12, "L4": 0.3e12, "T4": 0.32e12}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except (OSError, ValueError):
        return []


def row(report, setting):
    """The row of `setting` ("1 × 15", "auto × auto") in a bench report."""
    for x in (report or {}).get("rows", []):
        if x["setting"] == setting:
            return x
    return None


def tps(report, setting):
    x = row(report, setting)
    return x["tokens_per_s"] if x else None


def best(report):
    rows = (report or {}).get("rows", [])
    return max(rows, key=lambda x: x["tokens_per_s"]) if rows else None


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def summarise(raw, out):
    b = {n: load(os.path.join(raw, n + ".json")) for n in
         ("w15", "step1", "w60", "t4_fix", "t4_auto", "small", "w15_candle")}
    w15 = b["w15"] or {}
    peer = {x.get("label"): x for x in lines(os.path.join(out, "transformers.jsonl")) if x.get("status") == "ok"}
    kernels = load(os.path.join(out, "kernels.json"))
    gpu = (w15.get("device") or "").split(" ", 1)[-1]
    step_ms = weight_ms = None
    one = row(b["step1"], "1 × 1")
    if one and one["new_tokens"]:
        step_ms = 1000 * one["decode_s"] / one["new_tokens"]
        bw = next((v for k, v in BANDWIDTH.items() if k in gpu), None)
        weight_ms = 1000 * b["step1"]["weight_bytes"] / bw if bw else None
    over = {}
    for ppb in (1, 5):
        t = peer.get(f"p{ppb}c15")
        over[f"{ppb}x15"] = ratio(tps(w15, f"{ppb} × 15"), t and t["tokens_per_s"])
    w60_best, small_best, t4_best = best(b["w60"]), best(b["small"]), best(b["t4_auto"])
    identical = [r["samples_identical"] for r in b.values() if r and r.get("rows")]
    s = {
        "gpu": gpu or None,
        "driver": driver(),
        "commit": commit(),
        "w15_1x15_tokens_per_s": tps(w15, "1 × 15"),
        "w15_1x3_tokens_per_s": tps(w15, "1 × 3"),
        "w15_5x15_tokens_per_s": tps(w15, "5 × 15"),
        "w60_best_tokens_per_s": w60_best and w60_best["tokens_per_s"],
        "w60_best_setting": w60_best and f'{w60_best["prompts_per_batch"]} × {w60_best["chunk_size"]}',
        "step_1_row_ms": step_ms and round(step_ms, 3),
        "weight_read_ms": weight_ms and round(weight_ms, 3),
        "step_over_weight_read": ratio(step_ms, weight_ms),
        "t4_auto_over_fix": ratio(t4_best and t4_best["tokens_per_s"], tps(b["t4_fix"], "1 × 3")),
        "t4_auto_setting": t4_best and f'{t4_best["prompts_per_batch"]} × {t4_best["chunk_size"]}',
        "real_135m_best_tokens_per_s": small_best and small_best["tokens_per_s"],
        "real_135m_note": "random weights of SmolLM2-135M's shape (every sample to max_new_tokens)",
        "over_transformers": min((v for v in over.values() if v), default=None),
        "over_transformers_by_setting": over,
        "samples_identical": all(identical) if identical else None,
        "invariance_cost": (w15.get("invariance") or {}).get("cost"),
        "free_samples_identical": (w15.get("invariance") or {}).get("free_samples_identical"),
        "kernels_ok": all(c["ok"] for c in kernels) if kernels else None,
        "first_commit_s_of_300_auto": (load(os.path.join(raw, "first_commit.json")) or {}).get("first_commit_s"),
        "candle_1x15_tokens_per_s": tps(b["w15_candle"], "1 × 15"),
        "fused_over_candle_1x15": ratio(tps(w15, "1 × 15"), tps(b["w15_candle"], "1 × 15")),
    }
    targets = {
        "w15_1x15 >= 3000": (s["w15_1x15_tokens_per_s"] or 0) >= 3000,
        "w60_best >= 10000": (s["w60_best_tokens_per_s"] or 0) >= 10000,
        "step_1_row within 4x weight read": s["step_over_weight_read"] is not None and s["step_over_weight_read"] <= 4,
        "t4 auto >= 10x fix": (s["t4_auto_over_fix"] or 0) >= 10,
        "135m best >= 10000": (s["real_135m_best_tokens_per_s"] or 0) >= 10000,
        ">= 5x transformers": (s["over_transformers"] or 0) >= 5,
        "samples identical": bool(s["samples_identical"]),
        "first commit of 300 (auto) within 10 s": (s["first_commit_s_of_300_auto"] or 1e9) <= 10,
    }
    s["targets"] = targets
    return s


def driver():
    try:
        return subprocess.check_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       text=True, stderr=subprocess.DEVNULL).strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def commit():
    try:
        with open(".gpu/commit.txt") as f:
            return f.read().strip() or None
    except OSError:
        return None


def main():
    raw, out = sys.argv[1:3]
    s = summarise(raw, out)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(json.dumps(s, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
