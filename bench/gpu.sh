#!/usr/bin/env bash
# rftx's speed on a GPU, against transformers in the same script (issue 22), for a lent machine
# with an NVIDIA GPU, a driver >= 580 and a Python with torch (cu130) and transformers, but no
# Rust toolchain and no network. One call, within 6 minutes: every step has a time limit and is
# skipped once the script's budget cannot cover it; the steps that decide the next piece of work
# come first.
#
# Prepared here (a machine without a GPU): scripts/prepare-gpu.sh fills .gpu/ (the sm_90 binary
# stripped and xz-compressed, a tokenizer-only GGUF of the default model; under 60 MB). Run there,
# from the repository root: bash bench/gpu.sh  (results in bench/results/gpu/, or $OUT).
# Without a GPU: SMOKE=1 RFTX=target/release/rftx bash bench/gpu.sh runs every step on the CPU
# with tiny workloads (the script's plumbing, not its numbers).
#
# Steps (random-weight models of the published shapes, f16, model.gpu_kernels = "fused"):
#   1. kernels: rftx's CUDA kernels against their CPU reference (`rftx bench --kernels`, f32,
#      SmolLM2-135M's shape: grouped-query attention);
#   2. W15 on SmolLM2-1.7B (5 questions × 15 samples × 80 tokens): 1 × 3 (the seed's fix),
#      1 × 15, 5 × 3, 5 × 15, then the same with model.batch_invariant = false (`--invariance`:
#      what invariance costs); samples identical at every setting? Then the step at one row
#      (one question, 2 samples, chunk 1);
#   3. transformers generate at 1 × 15 and 5 × 15 on the same shape and prompt lengths;
#   4. W60 (20 questions) at 5, 10 and 20 questions × 15 and `auto`; then 300 questions with
#      `auto`: the seconds to the first committed question;
#   5. the seed on an emulated T4 (memory.device_limit = "t4", 32 questions): the fix (1 × 3, on
#      8 of them: tokens/s) and `auto`;
#   6. SmolLM2-135M's shape (the default model's; random weights run every sample to the end) on
#      W60 at 4, 20 questions × 15 and `auto`;
#   7. W15 on the `candle` kernels at 1 × 15 (the path measured before, for the ratio).
# Results (at most 8 files): summary.json (bench/gpu_summary.py: the issue's figures as numbers),
# kernels.json, transformers.jsonl, bench.tar.gz (every `rftx bench` JSON), log.txt.
set -u
OUT=${OUT:-bench/results/gpu}
BUDGET=${BUDGET:-330}
START=$(date +%s)
mkdir -p "$OUT"
: > "$OUT/log.txt"
RAW=$(mktemp -d)
log() { echo "== $(($(date +%s) - START))s $*" | tee -a "$OUT/log.txt" >&2; }
# step NAME LIMIT CMD...: CMD under `timeout`, at most LIMIT seconds and what is left of BUDGET;
# skipped when less than 20 seconds are left.
step() {
  local name=$1 limit=$2 left
  shift 2
  left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 20 ]; then
    log "$name: skipped, the budget is spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name (at most ${limit}s)"
  if [ "$(type -t "$1")" = function ]; then
    LIMIT=$limit "$@" 2>>"$OUT/log.txt" # a function of this script keeps to $LIMIT itself
  else
    timeout "$limit" "$@" 2>>"$OUT/log.txt"
  fi
  log "$name: exit $?"
}

if [ -n "${SMOKE:-}" ]; then
  RFTX=${RFTX:-target/release/rftx}
  DEV=(--set device='"cpu"' --set model.weights='"q8_0"' --set generation.max_new_tokens=4 --set generation.oversample=3)
  SHAPE=smollm2-135m
  TOK=()
  PEER=(--tiny --device cpu --dtype float32)
  T4_LIMIT=(--set device='"cpu"')
else
  SP=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  [ -f .gpu/rftx ] || xz -dk .gpu/rftx.xz
  chmod +x .gpu/rftx
  RFTX=$PWD/.gpu/rftx
  DEV=(--set model.gpu_kernels='"fused"')
  SHAPE=smollm2-1.7b
  TOK=(--set "model.path=\"$PWD/.gpu/tokenizer.gguf\"")
  PEER=()
  T4_LIMIT=(--set memory.device_limit='"t4"')
  export RFTX_MODELS_DIR=$RAW/models
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
export RUST_BACKTRACE=0
W15=(configs/gpu_w15.toml "${TOK[@]}" "${DEV[@]}" --set model.arch="\"$SHAPE\"")
bench() { # bench NAME LIMIT ARGS...: rftx bench ARGS into $RAW/NAME.json
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" "$RFTX" bench "$@" --format json --out "$RAW/$name.json" >/dev/null
}

step "1. kernels" 60 "$RFTX" bench configs/gpu_w15.toml "${TOK[@]}" "${DEV[@]}" --set model.arch='"smollm2-135m"' \
  --set model.weights='"f32"' --kernels --format json >"$OUT/kernels.json"
bench w15 100 "${W15[@]}" --chunks 3,15 --prompts-per-batch 1,5 --invariance
bench step1 30 "${W15[@]}" --set data.limit=1 --set generation.oversample=2 --chunks 1 --prompts-per-batch 1
LENGTHS=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt_tokens'])))" "$RAW/w15.json" 2>/dev/null || echo 167)
for ppb in 1 5; do
  step "3. transformers ${ppb} × 15" 60 python3 bench/transformers_gpu.py "${PEER[@]}" --lengths "$LENGTHS" --questions 5 \
    --prompts-per-batch $ppb --chunk 15 --label "p${ppb}c15" >>"$OUT/transformers.jsonl"
done
bench w60 60 configs/gpu_w60.toml "${TOK[@]}" "${DEV[@]}" --set model.arch="\"$SHAPE\"" --chunks 15 --prompts-per-batch 5,10,20,auto
# 300 questions with prompts_per_batch = "auto": seconds from the command's start (model load
# included) to the first committed question, polled in samples.jsonl.
first_commit() {
  local dir=$RAW/first t0 pid n
  t0=$(date +%s.%N)
  "$RFTX" run "${W15[@]}" --set data.limit=300 --set generation.prompts_per_batch='"auto"' --runs-dir "$dir" \
    --quiet >/dev/null 2>>"$OUT/log.txt" &
  pid=$!
  while kill -0 $pid 2>/dev/null && [ "$(python3 -c "import sys; print(int(float(sys.argv[1]) - float(sys.argv[2]) < float(sys.argv[3])))" "$(date +%s.%N)" "$t0" "$LIMIT")" = 1 ]; do
    n=$(cat "$dir"/*/samples.jsonl 2>/dev/null | wc -l)
    if [ "$n" -ge 1 ]; then
      python3 -c "import sys, json; print(json.dumps({'first_commit_s': round(float(sys.argv[2]) - float(sys.argv[1]), 2)}))" \
        "$t0" "$(date +%s.%N)" >"$RAW/first_commit.json"
      break
    fi
    sleep 0.2
  done
  kill $pid 2>/dev/null
  wait $pid 2>/dev/null
  grep -h "prompts_per_batch" "$dir"/*/run.log 2>/dev/null | head -2 >&2
  return 0
}
step "first commit of 300 questions (auto)" 30 first_commit
T4=(configs/t4_oversample15.toml "${TOK[@]}" --set device='"cuda"' "${DEV[@]}" --set model.init='"random"'
  --set model.arch="\"$SHAPE\"" "${T4_LIMIT[@]}")
bench t4_fix 40 "${T4[@]}" --set data.limit=8 --chunks 3 --prompts-per-batch 1
bench t4_auto 40 "${T4[@]}" --set data.limit=32 --chunks auto --prompts-per-batch auto
bench small 40 configs/gpu_w60.toml "${TOK[@]}" "${DEV[@]}" --set model.arch='"smollm2-135m"' --chunks 15 --prompts-per-batch 4,20,auto
bench w15_candle 40 "${W15[@]}" --set model.gpu_kernels='"candle"' --chunks 15 --prompts-per-batch 1
tar -czf "$OUT/bench.tar.gz" -C "$RAW" $(cd "$RAW" && ls ./*.json 2>/dev/null)
python3 bench/gpu_summary.py "$RAW" "$OUT" | tee -a "$OUT/log.txt"
log "done"
