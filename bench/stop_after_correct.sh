#!/usr/bin/env bash
# What generation.stop_after_correct saves, exactly: CONFIG run in full and with each k, and the
# tokens each decoded compared at equal kept samples (the stopped run's samples are the first m of
# the full run's, checked here, so the full run decoded them too, plus everything past m).
#   bench/stop_after_correct.sh CONFIG [RUNS_DIR] [K...]   (default: runs-bench, k = 1 3)
# Extra keys: BENCH_SET="generation.chunk_size=3 data.limit=8" (each passed as --set).
set -euo pipefail
config=$1
runs=${2:-runs-bench}
shift $(( $# > 1 ? 2 : 1 ))
ks=${*:-1 3}
rftx=${RFTX:-target/release/rftx}
sets=()
for s in ${BENCH_SET:-}; do sets+=(--set "$s"); done
full=$("$rftx" run "$config" --runs-dir "$runs" --quiet "${sets[@]}" | tail -1)
dirs=()
for k in $ks; do
  dirs+=("$("$rftx" run "$config" --runs-dir "$runs" --quiet "${sets[@]}" --set "generation.stop_after_correct=$k" | tail -1)")
done
python3 - "$full" "${dirs[@]}" <<'PY'
import json, sys
def lines(d):
    return [json.loads(l) for l in open(f"{d}/samples.jsonl")]
def metrics(d):
    return json.load(open(f"{d}/metrics.json"))
full = sys.argv[1]
fq, fm = lines(full), metrics(full)
print(f"full run {full}: {fm['samples']} samples, {fm['new_tokens']} tokens, {fm['accepted']} right, {fm['generation_s']:.1f} s")
print("k  questions_stopped  samples_kept  right_kept  tokens_decoded  tokens_full_for_same_kept  saved  gen_s  gen_s_full")
for d in sys.argv[2:]:
    q, m = lines(d), metrics(d)
    s = m["stop_after_correct"]
    for a, b in zip(q, fq):
        n = len(a["samples"])
        assert a["samples"] == b["samples"][:n], f"{d}: question {a['index']} is not the full run's first {n} samples"
    right = sum(x["correct"] for a in q for x in a["samples"])
    saved = 1 - s["tokens_decoded"] / fm["new_tokens"]
    print(f"{s['k']}  {s['questions_stopped']}  {m['samples']}  {right}  {s['tokens_decoded']}  {fm['new_tokens']}  {100*saved:.1f} %  {m['generation_s']:.1f}  {fm['generation_s']:.1f}")
PY
