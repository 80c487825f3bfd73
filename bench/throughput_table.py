"""Tables of bench/throughput.sh's results: every setting of each engine, then the best of each
and their ratios. Usage: python3 throughput_table.py OUT_DIR [--set model.path=...]"""
import glob
import json
import os
import subprocess
import sys

out = sys.argv[1]
MiB = 2 ** 20

# This machine's limits (rftx plan measures them) and the model's weight bytes and multiply-adds
# per token: the roofline of a batch of R rows is R / max(weights / read rate, R × MACs / int8 rate).
plan = json.loads(subprocess.check_output(["target/release/rftx", "plan", "configs/w15.toml", *sys.argv[2:], "--format", "json"]))
machine = plan["throughput"]["machine"]
weight_bytes = plan["breakdown"]["weights"]
macs = plan["arch"]["matrix_params"] + plan["arch"]["embed_params"]


def ceiling(rows):
    return rows / max(weight_bytes / machine["read_bytes_per_s"], rows * macs / machine["int8_macs_per_s"])


print(f"this machine: weights read at {machine['read_bytes_per_s'] / 1e9:.1f} GB/s "
      f"({machine['read_bytes_per_s'] / weight_bytes:.0f} steps/s for {weight_bytes / MiB:.0f} MiB of weights), "
      f"int8 kernel {machine['int8_macs_per_s'] / 1e9:.1f} GMAC/s ({machine['int8_macs_per_s'] / macs:.0f} tokens/s "
      f"at {macs / 1e6:.0f} M multiply-adds per token)\n")
def label(x, lean):
    name = "rftx " + ("lean " if lean else "") + x["setting"]
    return name + ("" if "auto" not in x["setting"] else f" = {x['prompts_per_batch']} × {x['chunk_size']}")


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


for w in ("w15", "w60"):
    # name → per round (tokens/s, peak RSS), and the occupancy and roofline of rftx's rows.
    runs, extra, report = {}, {}, None
    for f in sorted(glob.glob(f"{out}/round*/{w}-rftx*.json")):
        r = report = json.load(open(f))
        for x in r["rows"]:
            name = label(x, f.endswith("-lean.json"))
            runs.setdefault(name, []).append((x["tokens_per_s"], x["rss_peak_bytes"], r["samples_identical"]))
            rows_held = x["occupancy"] * x["prompts_per_batch"] * min(x["chunk_size"], r["oversample"])
            extra.setdefault(name, (x["occupancy"], ceiling(rows_held)))
    for f in sorted(glob.glob(f"{out}/round*/{w}-llama-*.json")):
        d = json.load(open(f))
        runs.setdefault(f"llama.cpp K={d['prompts_per_batch']}", []).append((d["tokens_per_s"], d["rss_peak_bytes"], True))
    if report is None:
        continue
    rounds = max(len(v) for v in runs.values())
    identical = all(i for v in runs.values() for _, _, i in v)
    print(f"{w.upper()}: {report['cpu']}, {report['threads']} threads, {rounds} round(s), medians; "
          f"samples identical across rftx settings: {'yes' if identical else 'NO'}")
    print(f"{'engine, setting (ppb × chunk)':<34}{'tokens/s':>10}{'peak RSS':>12}{'full':>6}{'roofline':>9}  rounds")
    rows = []
    for name, v in runs.items():
        tps, rss = median([t for t, _, _ in v]), median([m for _, m, _ in v])
        rows.append((name, tps, rss))
        occ = f"{extra[name][0] * 100:>5.0f}%{extra[name][1]:>9.0f}" if name in extra else " " * 15
        each = " / ".join(f"{t:.1f}" for t, _, _ in v)
        print(f"{name:<34}{tps:>10.1f}{rss / MiB:>8.0f} MiB{occ}  {each}")
    theirs = max((x for x in rows if x[0].startswith("llama")), key=lambda x: x[1])
    for lean in (False, True):
        mine = [x for x in rows if x[0].startswith("rftx lean" if lean else "rftx") and (lean or "lean" not in x[0])]
        if not mine:
            continue
        what = f"rftx lean ({os.environ.get('LEAN_DESC', 'q4_1')}, f16 KV)" if lean else "rftx (q8_0, f32 KV)"
        ours = max(mine, key=lambda x: x[1])
        print(f"{what}: best {ours[0]} {ours[1]:.1f} tokens/s vs {theirs[0]} {theirs[1]:.1f}: "
              f"{ours[1] / theirs[1]:.2f}× the tokens/s at {ours[2] / theirs[2]:.2f}× the peak RSS")
        fit = [x for x in mine if x[2] <= 1.25 * theirs[2]]
        if fit:
            b = max(fit, key=lambda x: x[1])
            print(f"  within 1.25× llama.cpp's peak RSS: {b[0]} {b[1]:.1f} tokens/s, "
                  f"{b[1] / theirs[1]:.2f}× at {b[2] / theirs[2]:.2f}× RSS")
    print()
