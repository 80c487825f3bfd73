#!/usr/bin/env bash
# Throughput of rftx against llama.cpp at its best, side by side in one sitting, on W15 (5
# questions × 15 samples × 80 new tokens) and W60 (the first 20 built-in questions × 15 × 80):
# rftx at several chunk sizes and questions per batch (and "auto") in one process, llama.cpp's
# batched API (bench/llamacpp_batched.py: unified KV cache, every prompt evaluated once for its
# 15 sequences, continuous batching of K prompts, samplers in C) at several K, both on the same
# GGUF, the same prompts and THREADS threads. Prints one table per workload, then the best of
# each engine and their ratios (tokens/s, peak RSS). Not part of CI; about 20 minutes a round on 2 cores (ROUNDS, default 3).
#
# MODEL=FILE.gguf runs another GGUF than the default model (rftx gets it as model.path, and its
# chat template makes the prompts both engines get); WORKLOADS (default "w15 w60") picks the
# workloads. rftx's lean setting is the default model's own Q4_1 weights with an f16 KV cache;
# for another file, LEAN_WEIGHTS (default "native": the file's own tensor types through candle's
# kernels, Q4_K/Q6_K/Q5_0 for a llama.cpp Q4_K_M file) with an f16 KV cache.
#   MODEL=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf WORKLOADS=w15 W15_PPB=5,auto W15_CHUNKS=15 W15_K="2 5" bash bench/throughput.sh
#
# llama.cpp comes from llama-cpp-python 0.3.36 in a virtualenv outside the repo (RFTX_PEERS_VENV,
# default ~/.cache/rftx-peers-venv; pip compiles llama.cpp, about 9 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RFTX_PEERS_VENV:-$HOME/.cache/rftx-peers-venv}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/out/throughput}
mkdir -p "$OUT"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
bash bench/install-llamacpp.sh "$VENV"
cargo build --release -q
RFTX=target/release/rftx
SET=()
if [ -n "${MODEL:-}" ]; then
  MODEL=$(realpath "$MODEL")
  SET=(--set "model.path=\"$MODEL\"")
  LEAN=(--set "model.weights=\"${LEAN_WEIGHTS:-native}\"" --set 'model.kv_cache="f16"')
  export LEAN_DESC=${LEAN_WEIGHTS:-native}
else
  MODEL=${RFTX_MODELS_DIR:-models}/SmolLM2-135M-Instruct.Q4_1.gguf
  # rftx runs twice per round: as configured (q8_0 weights, f32 KV cache) and lean (LEAN: the
  # file's Q4_1 weights and an f16 KV cache, as llama.cpp runs the same file).
  LEAN=(--set 'model.weights="q4_1"' --set 'model.kv_cache="f16"')
fi
run() { # workload, rftx chunks, rftx prompts-per-batch, llama.cpp Ks, output folder
  local w=$1 dir=$5
  mkdir -p "$dir"
  $RFTX bench "configs/$w.toml" "${SET[@]}" --write-prompts "$OUT/$w-prompts.json"
  CANDLE_NUM_THREADS=$THREADS $RFTX bench "configs/$w.toml" "${SET[@]}" --chunks "$2" --prompts-per-batch "$3" \
    --out "$dir/$w-rftx.json" >&2
  CANDLE_NUM_THREADS=$THREADS $RFTX bench "configs/$w.toml" "${SET[@]}" --chunks "$2" --prompts-per-batch "$3" \
    "${LEAN[@]}" --out "$dir/$w-rftx-lean.json" >&2
  for k in $4; do
    "$VENV/bin/python" bench/llamacpp_batched.py "$MODEL" "$OUT/$w-prompts.json" --threads "$THREADS" \
      --prompts-per-batch "$k" > "$dir/$w-llama-$k.json"
    echo "llama.cpp K=$k: $(python3 -c "import json,sys;print(round(json.load(open(sys.argv[1]))['tokens_per_s'],1))" "$dir/$w-llama-$k.json") tokens/s" >&2
  done
}
# ROUNDS rounds, each engine and setting once per round, alternating; the table takes medians.
for i in $(seq 1 "${ROUNDS:-3}"); do
  case " ${WORKLOADS:-w15 w60} " in *" w15 "*) run w15 "${W15_CHUNKS:-1,3,15}" "${W15_PPB:-1,3,5,auto}" "${W15_K:-1 2 5}" "$OUT/round$i" ;; esac
  case " ${WORKLOADS:-w15 w60} " in *" w60 "*) run w60 "${W60_CHUNKS:-15}" "${W60_PPB:-1,4,8,auto}" "${W60_K:-1 4 8}" "$OUT/round$i" ;; esac
done
python3 bench/throughput_table.py "$OUT" "${SET[@]}"
