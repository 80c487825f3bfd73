#!/usr/bin/env bash
# rftx against llama.cpp on the reference workload W15 (5 questions × 15 samples × 80 new tokens,
# temperature 0.7, the default model, 2 threads), alternating runs in one invocation, then the
# median tokens/s of each and their ratio. Not part of CI.
#
# llama.cpp comes from llama-cpp-python 0.3.36, installed into a virtualenv outside the repo
# (RFTX_PEERS_VENV, default ~/.cache/rftx-peers-venv); pip compiles llama.cpp, about 9 minutes on
# 2 cores. Its batched path evaluates each prompt once for all 15 sequence ids and gives every
# sequence its own sampler (bench/llamacpp_w15.py).
#
# With TRANSFORMERS=1 (the default) each round also runs Hugging Face transformers `generate`
# the seed's way (bench/transformers_w15.py): num_return_sequences=15 per prompt, and the seed's
# fix, chunks of 3. torch comes from PyPI (about 3 GB with its CUDA libraries); TRANSFORMERS=0
# skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RFTX_PEERS_VENV:-$HOME/.cache/rftx-peers-venv}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
OUT=${OUT:-$(mktemp -d)}
TRANSFORMERS=${TRANSFORMERS:-1}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
bash bench/install-llamacpp.sh "$VENV"
if [ "$TRANSFORMERS" = 1 ] && ! "$VENV/bin/python" -c "import transformers, gguf, accelerate" 2>/dev/null; then
  echo "installing torch, transformers, gguf, accelerate (about 3 GB from PyPI)…" >&2
  "$VENV/bin/pip" install -q torch transformers gguf accelerate
fi
cargo build --release -q
RFTX=target/release/rftx
MODEL=${RFTX_MODELS_DIR:-models}/SmolLM2-135M-Instruct.Q4_1.gguf
$RFTX bench configs/w15.toml --write-prompts "$OUT/prompts.json"
tps() { python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(round(d['rows'][0]['tokens_per_s'] if 'rows' in d else d['tokens_per_s'],1))" "$1"; }

for i in $(seq "$ROUNDS"); do
  CANDLE_NUM_THREADS=$THREADS $RFTX bench configs/w15.toml --chunks 15 --out "$OUT/rftx-$i.json" >/dev/null
  "$VENV/bin/python" bench/llamacpp_w15.py "$MODEL" "$OUT/prompts.json" --threads "$THREADS" > "$OUT/llama-$i.json"
  line="round $i: rftx $(tps "$OUT/rftx-$i.json"), llama.cpp $(tps "$OUT/llama-$i.json")"
  if [ "$TRANSFORMERS" = 1 ]; then
    for c in 15 3; do
      "$VENV/bin/python" bench/transformers_w15.py "$MODEL" "$OUT/prompts.json" --threads "$THREADS" --chunk $c \
        > "$OUT/hf$c-$i.json" 2>/dev/null
    done
    line="$line, transformers $(tps "$OUT/hf15-$i.json") (chunks of 3: $(tps "$OUT/hf3-$i.json"))"
  fi
  echo "$line tokens/s" >&2
done

THREADS=$THREADS python3 - "$OUT" "$ROUNDS" "$TRANSFORMERS" <<'PY'
import json, os, statistics, sys
out, rounds, hf = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def load(prefix):
    rows = []
    for i in range(1, rounds + 1):
        d = json.load(open(f"{out}/{prefix}-{i}.json"))
        rows.append(d["rows"][0] if "rows" in d else d)
    return statistics.median(r["tokens_per_s"] for r in rows), max(r["rss_peak_bytes"] for r in rows)
engines = [("rftx", "rftx"), ("llama.cpp", "llama")]
if hf:
    engines += [("transformers", "hf15"), ("transformers/3", "hf3")]
res = {name: load(prefix) for name, prefix in engines}
threads = os.environ.get("THREADS", "2")
print(f"W15, median of {rounds} alternating rounds (peak RSS: the highest), {threads} threads")
print(f"{'engine':<16}{'tokens/s':>10}{'peak RSS':>14}{'rftx is':>22}")
rt, rr = res["rftx"]
for name, (t, r) in res.items():
    vs = "" if name == "rftx" else f"{rt / t:.2f}× faster, {rr / r:.2f}× RSS"
    print(f"{name:<16}{t:>10.1f}{r / 2**20:>10.1f} MiB  {vs}")
PY
