#!/usr/bin/env bash
# The cost of generation.logprobs: CONFIG run without and with it, alternately, ROUNDS times
# each (fresh run directories, --force), on the same machine back to back; prints each run's
# generation time and tokens/s, the median ratio, and samples.jsonl's size both ways.
#   bench/logprobs_cost.sh CONFIG [ROUNDS] [RUNS_DIR]      (defaults: 2, runs-bench-logprobs)
# Extra keys: BENCH_SET="data.limit=2" (each passed as --set).
set -euo pipefail
config=$1
rounds=${2:-2}
runs=${3:-runs-bench-logprobs}
rftx=${RFTX:-target/release/rftx}
sets=()
for s in ${BENCH_SET:-}; do sets+=(--set "$s"); done
: > "$runs.tsv" 2>/dev/null || { mkdir -p "$(dirname "$runs")"; : > "$runs.tsv"; }
for r in $(seq "$rounds"); do
  for lp in false true; do
    dir=$("$rftx" run "$config" --runs-dir "$runs" --quiet --force "${sets[@]}" --set "generation.logprobs=$lp" | tail -1)
    # --force redoes the same directory: keep this run's metrics and size before the next.
    cp "$dir/metrics.json" "$runs.$r.$lp.metrics.json"
    printf '%s\t%s\t%s\t%s\n' "$lp" "$runs.$r.$lp.metrics.json" "$r" "$(stat -c %s "$dir/samples.jsonl")" >> "$runs.tsv"
  done
done
python3 - "$runs.tsv" <<'PY'
import json, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
by = {"false": [], "true": []}
for lp, metrics, r, size in rows:
    m = json.load(open(metrics))
    size = int(size)
    by[lp].append((m["generation_s"], m["tokens_per_s"], size, m["new_tokens"]))
    print(f"round {r} logprobs={lp}: {m['new_tokens']} tokens, {m['generation_s']:.2f} s generation, {m['tokens_per_s']:.1f} tokens/s, samples.jsonl {size} bytes")
ratios = [b[0] / a[0] for a, b in zip(by["false"], by["true"])]
print(f"generation time with/without, per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
print(f"samples.jsonl with/without: {by['true'][0][2]} / {by['false'][0][2]} bytes = {by['true'][0][2] / by['false'][0][2]:.2f}x ({(by['true'][0][2] - by['false'][0][2]) / by['true'][0][3]:.1f} bytes per token)")
PY
