#!/usr/bin/env bash
# rftx against llama.cpp on the reference workload W15 (5 questions × 15 samples × 80 new tokens,
# temperature 0.7, the default model, 2 threads), alternating runs in one invocation, then the
# median tokens/s of each and their ratio. Not part of CI.
#
# llama.cpp comes from llama-cpp-python 0.3.36, installed into a virtualenv outside the repo
# (RFTX_PEERS_VENV, default ~/.cache/rftx-peers-venv); pip compiles llama.cpp, about 9 minutes on
# 2 cores. Its batched path evaluates each prompt once for all 15 sequence ids and gives every
# sequence its own sampler (bench/llamacpp_w15.py).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RFTX_PEERS_VENV:-$HOME/.cache/rftx-peers-venv}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
OUT=${OUT:-$(mktemp -d)}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "installing llama-cpp-python==0.3.36 (compiles llama.cpp)…" >&2
  "$VENV/bin/pip" install -q llama-cpp-python==0.3.36
fi
cargo build --release -q
RFTX=target/release/rftx
MODEL=${RFTX_MODELS_DIR:-models}/SmolLM2-135M-Instruct.Q4_1.gguf
$RFTX bench configs/w15.toml --write-prompts "$OUT/prompts.json"

for i in $(seq "$ROUNDS"); do
  CANDLE_NUM_THREADS=$THREADS $RFTX bench configs/w15.toml --chunks 15 --out "$OUT/rftx-$i.json" >/dev/null
  "$VENV/bin/python" bench/llamacpp_w15.py "$MODEL" "$OUT/prompts.json" --threads "$THREADS" > "$OUT/llama-$i.json"
  echo "round $i: rftx $(python3 -c "import json;print(round(json.load(open('$OUT/rftx-$i.json'))['rows'][0]['tokens_per_s'],1))") tokens/s, llama.cpp $(python3 -c "import json;print(round(json.load(open('$OUT/llama-$i.json'))['tokens_per_s'],1))") tokens/s" >&2
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
r = [json.load(open(f"{out}/rftx-{i}.json"))["rows"][0] for i in range(1, rounds + 1)]
l = [json.load(open(f"{out}/llama-{i}.json")) for i in range(1, rounds + 1)]
rt = statistics.median(x["tokens_per_s"] for x in r)
lt = statistics.median(x["tokens_per_s"] for x in l)
rr = max(x["rss_peak_bytes"] for x in r)
lr = max(x["rss_peak_bytes"] for x in l)
print(f"W15, median of {rounds} alternating rounds, {r[0]['chunk_size']} sequences at once")
print(f"{'engine':<12}{'tokens/s':>10}{'peak RSS':>14}")
print(f"{'rftx':<12}{rt:>10.1f}{rr / 2**20:>10.1f} MiB")
print(f"{'llama.cpp':<12}{lt:>10.1f}{lr / 2**20:>10.1f} MiB")
print(f"rftx / llama.cpp: {rt / lt:.2f}× tokens/s, {rr / lr:.2f}× peak RSS")
PY
