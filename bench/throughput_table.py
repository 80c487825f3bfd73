"""Tables of bench/throughput.sh's results: every setting of each engine, then the best of each
and their ratios. Usage: python3 throughput_table.py OUT_DIR"""
import glob
import json
import os
import subprocess
import sys

out = sys.argv[1]
MiB = 2 ** 20

# This machine's limits (rftx plan measures them) and the model's weight bytes and multiply-adds
# per token: the roofline of a batch of R rows is R / max(weights / read rate, R × MACs / int8 rate).
plan = json.loads(subprocess.check_output(["target/release/rftx", "plan", "configs/w15.toml", "--format", "json"]))
machine = plan["throughput"]["machine"]
weight_bytes = plan["breakdown"]["weights"]
macs = plan["arch"]["matrix_params"] + plan["arch"]["embed_params"]


def ceiling(rows):
    return rows / max(weight_bytes / machine["read_bytes_per_s"], rows * macs / machine["int8_macs_per_s"])


print(f"this machine: weights read at {machine['read_bytes_per_s'] / 1e9:.1f} GB/s "
      f"({machine['read_bytes_per_s'] / weight_bytes:.0f} steps/s for {weight_bytes / MiB:.0f} MiB of weights), "
      f"int8 kernel {machine['int8_macs_per_s'] / 1e9:.1f} GMAC/s ({machine['int8_macs_per_s'] / macs:.0f} tokens/s "
      f"at {macs / 1e6:.0f} M multiply-adds per token)\n")
for w in ("w15", "w60"):
    path = f"{out}/{w}-rftx.json"
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    rows = [("rftx " + x["setting"] + ("" if "auto" not in x["setting"] else f" = {x['prompts_per_batch']} × {x['chunk_size']}"),
             x["tokens_per_s"], x["rss_peak_bytes"], x["occupancy"],
             ceiling(x["occupancy"] * x["prompts_per_batch"] * min(x["chunk_size"], r["oversample"])))
            for x in r["rows"]]
    for f in sorted(glob.glob(f"{out}/{w}-llama-*.json")):
        d = json.load(open(f))
        rows.append((f"llama.cpp K={d['prompts_per_batch']}", d["tokens_per_s"], d["rss_peak_bytes"], None, None))
    print(f"{w.upper()}: {r['cpu']}, {r['threads']} threads; samples identical across rftx settings: "
          f"{'yes' if r['samples_identical'] else 'NO'}")
    print(f"{'engine, setting (ppb × chunk)':<36}{'tokens/s':>10}{'peak RSS':>12}{'full':>7}{'roofline':>10}")
    for name, tps, rss, occ, roof in rows:
        extra = "" if occ is None else f"{occ * 100:>6.0f}%{roof:>10.0f}"
        print(f"{name:<36}{tps:>10.1f}{rss / MiB:>8.0f} MiB{extra}")
    ours = max((x for x in rows if x[0].startswith("rftx")), key=lambda x: x[1])
    theirs = max((x for x in rows if x[0].startswith("llama")), key=lambda x: x[1])
    lean = [x for x in rows if x[0].startswith("rftx") and x[2] <= 1.25 * theirs[2]]
    print(f"best: {ours[0]} {ours[1]:.1f} tokens/s vs {theirs[0]} {theirs[1]:.1f}: "
          f"{ours[1] / theirs[1]:.2f}× the tokens/s at {ours[2] / theirs[2]:.2f}× the peak RSS")
    if lean:
        b = max(lean, key=lambda x: x[1])
        print(f"best within 1.25× llama.cpp's peak RSS: {b[0]} {b[1]:.1f} tokens/s, "
              f"{b[1] / theirs[1]:.2f}× at {b[2] / theirs[2]:.2f}× RSS")
    print()
