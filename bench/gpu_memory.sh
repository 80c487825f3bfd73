#!/usr/bin/env bash
# The GPU memory checks of rftx (peaks, plan --check, out of memory, the seed on a T4) in one run,
# for a machine with an NVIDIA GPU, a driver >= 580 and a
# Python with torch (cu130) and transformers, but no Rust toolchain and no network.
#
# Prepared here (a machine without a GPU), carried in .gpu/:
#   CUDA_COMPUTE_CAP=90 scripts/build-cuda.sh && strip -o .gpu/rftx target/cuda-sm90/release/rftx && xz -f .gpu/rftx
#   cargo run --release --example tokenizer_gguf -- models/SmolLM2-135M-Instruct.Q4_1.gguf .gpu/tokenizer.gguf
# Run there, from the repository root: OUT=results-dir bash bench/gpu_memory.sh (the speed
# checks are bench/gpu.sh)
#
# Checks, each writing into $OUT:
#   1. bench: W15 (5 questions × 15 samples × 80 tokens) on a random-weight SmolLM2-1.7B in f16
#      at chunk sizes 1, 3, 5, 15 in one process: tokens/s, GPU peaks, and whether the samples
#      are identical at every chunk size (bench.json, bench.txt);
#   1b. the same at chunk 3 and 15 on a random Qwen3-1.7B (grouped-query attention, 8 KV heads
#      of 128 dims against SmolLM2's 32 of 64; q/k norms), and plan --check against it
#      (bench_qwen3.json, plan_check_qwen3.json);
#   2. run: the same workload as an ordinary run (chunks.jsonl with gpu_peak_bytes, metrics.json);
#   3. plan --check: predicted vs measured GPU peak at chunk sizes 1, 3, 5, 15 (plan_check.json);
#   4. out of memory: a device limit between the chunk-3 and chunk-15 peaks; chunk 15 with
#      on_exceed = fail must exit 1 and keep its work, with shrink must finish with the samples of
#      the unconstrained run (oom.txt); the seed's "before" under a T4's limit with shrink, to the
#      end, with the bytes of the same without a limit; the seed's "after" under a T4's limit
#      (t4_after.json); summary.json: oom_fail_exit, oom_shrink_identical,
#      t4_before_shrink_identical;
#   5. transformers generate, the seed's way (num_return_sequences 15, and chunks of 3), on the
#      same model shape, dtype and prompt lengths (transformers.jsonl).
set -u
OUT=${OUT:-bench/results/gpu-memory}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/log.txt"; }
SP=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_BACKTRACE=0
[ -f .gpu/rftx ] || xz -dk .gpu/rftx.xz
chmod +x .gpu/rftx
RFTX=$PWD/.gpu/rftx
CONF=configs/gpu_w15.toml
TOK=(--set "model.path=\"$PWD/.gpu/tokenizer.gguf\"")
RUNS=$(mktemp -d)

nvidia-smi --query-gpu=name,compute_capability,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
log "1. bench"
timeout 240 "$RFTX" bench $CONF "${TOK[@]}" --chunks 1,3,5,15 --format json --out "$OUT/bench.json" 2>>"$OUT/log.txt"
echo "bench exit $?" | tee -a "$OUT/log.txt"
python3 - "$OUT/bench.json" <<'EOF' | tee "$OUT/bench.txt"
import json, sys
r = json.load(open(sys.argv[1]))
print(r["device"], r["weights"], "prompt tokens", r["prompt_tokens"])
for x in r["rows"]:
    print(f'chunk {x["chunk_size"]:>2}: {x["tokens_per_s"]:8.1f} tokens/s, GPU peak {x.get("gpu_peak_bytes", 0) / 2**20:8.1f} MiB, samples {x["samples_sha256"][:16]}')
print("samples identical across chunk sizes:", r["samples_identical"])
EOF

log "1b. bench and plan --check, random Qwen3-1.7B (8 KV heads of 128 dims, q/k norms)"
QWEN=(--set model.arch='"qwen3-1.7b"')
timeout 240 "$RFTX" bench $CONF "${TOK[@]}" "${QWEN[@]}" --chunks 3,15 --format json --out "$OUT/bench_qwen3.json" 2>>"$OUT/log.txt"
echo "bench qwen3 exit $?" | tee -a "$OUT/log.txt"
timeout 120 "$RFTX" plan $CONF "${TOK[@]}" "${QWEN[@]}" --check 3,15 --device h100 --format json > "$OUT/plan_check_qwen3.json" 2>>"$OUT/log.txt"
echo "plan qwen3 exit $?" | tee -a "$OUT/log.txt"

log "2. run (chunk 3)"
timeout 120 "$RFTX" run $CONF "${TOK[@]}" --set generation.chunk_size=3 --runs-dir "$RUNS" --quiet > "$OUT/run.txt" 2>>"$OUT/log.txt"
echo "run exit $?" | tee -a "$OUT/log.txt"
DIR=$(tail -1 "$OUT/run.txt")
cp "$DIR/chunks.jsonl" "$DIR/metrics.json" "$DIR/manifest.json" "$OUT/" 2>/dev/null

log "3. plan --check"
timeout 120 "$RFTX" plan $CONF "${TOK[@]}" --check 1,3,5,15 --device h100 --format json > "$OUT/plan_check.json" 2>>"$OUT/log.txt"
echo "plan exit $?" | tee -a "$OUT/log.txt"

log "4. out of memory"
LIMIT=$(python3 - "$OUT/bench.json" <<'EOF'
import json, sys
rows = {x["chunk_size"]: x.get("gpu_peak_bytes", 0) for x in json.load(open(sys.argv[1]))["rows"]}
print(int((rows.get(3, 0) + rows.get(15, 0)) / 2))
EOF
)
echo "device limit $LIMIT bytes (between the chunk-3 and chunk-15 peaks)" | tee "$OUT/oom.txt"
for mode in fail shrink; do
  timeout 120 "$RFTX" run $CONF "${TOK[@]}" --set memory.device_limit="\"$LIMIT\"" --set memory.on_exceed="\"$mode\"" \
    --runs-dir "$RUNS/$mode" --quiet > "$OUT/oom_$mode.out" 2> "$OUT/oom_$mode.err"
  code=$?
  eval "oom_${mode}_exit=$code"
  D=$(ls -d "$RUNS/$mode"/*/ 2>/dev/null | head -1)
  echo "on_exceed=$mode: exit $code; $(wc -l < "$D/samples.jsonl" 2>/dev/null) questions committed; $(grep -c oom_retries "$D/chunks.jsonl" 2>/dev/null) chunk lines with oom_retries" | tee -a "$OUT/oom.txt"
  tail -2 "$OUT/oom_$mode.err" | tee -a "$OUT/oom.txt"
  [ -n "$D" ] && cp "$D/chunks.jsonl" "$OUT/oom_${mode}_chunks.jsonl"
done
same() { cmp -s "$1/samples.jsonl" "$2/samples.jsonl" && echo true || echo false; }
oom_shrink_identical=$(same "$DIR" "$(ls -d "$RUNS/shrink"/*/ | head -1)")
echo "shrink samples.jsonl identical to the unconstrained chunk-3 run: $oom_shrink_identical" | tee -a "$OUT/oom.txt"
# The seed's "before" (32 questions × 15 samples × 120 tokens at once) under a T4's limit with
# shrink, to the end, against the same without a limit: the same bytes.
BEFORE=(configs/t4_before_fix.toml "${TOK[@]}" --set device='"cuda"' --set model.init='"random"'
  --set model.arch='"smollm2-1.7b"' --set data.limit=32 --quiet)
timeout 240 "$RFTX" run "${BEFORE[@]}" --set memory.device_limit='"t4"' --set memory.on_exceed='"shrink"' \
  --runs-dir "$RUNS/before_t4" > "$OUT/t4_before_shrink.out" 2>>"$OUT/log.txt"
echo "t4 before (shrink) exit $?" | tee -a "$OUT/log.txt"
timeout 240 "$RFTX" run "${BEFORE[@]}" --runs-dir "$RUNS/before" > "$OUT/t4_before_free.out" 2>>"$OUT/log.txt"
echo "before, no limit, exit $?" | tee -a "$OUT/log.txt"
t4_before_shrink_identical=$(same "$(tail -1 "$OUT/t4_before_shrink.out")" "$(tail -1 "$OUT/t4_before_free.out")")
grep -h "out of memory" "$(tail -1 "$OUT/t4_before_shrink.out")/run.log" 2>/dev/null | tail -3 | tee -a "$OUT/oom.txt"
echo "t4 before (shrink) samples identical to no limit: $t4_before_shrink_identical" | tee -a "$OUT/oom.txt"
python3 - "$OUT/summary.json" "${oom_fail_exit:-null}" "$oom_shrink_identical" "$t4_before_shrink_identical" <<'EOF'
import json, os, sys
path = sys.argv[1]
s = json.load(open(path)) if os.path.exists(path) else {}
s.update(oom_fail_exit=json.loads(sys.argv[2]), oom_shrink_identical=json.loads(sys.argv[3]),
         t4_before_shrink_identical=json.loads(sys.argv[4]))
json.dump(s, open(path, "w"), indent=1)
EOF
timeout 120 "$RFTX" run configs/t4_oversample15.toml "${TOK[@]}" --set device='"cuda"' --set model.init='"random"' \
  --set model.arch='"smollm2-1.7b"' --set data.limit=3 --set memory.device_limit='"t4"' --runs-dir "$RUNS/t4" --quiet \
  > "$OUT/t4_after.out" 2>>"$OUT/log.txt"
echo "t4 after exit $?" | tee -a "$OUT/log.txt"
cp "$(tail -1 "$OUT/t4_after.out")/metrics.json" "$OUT/t4_after.json" 2>/dev/null

log "5. transformers"
LENGTHS=$(python3 -c "import json; print(','.join(map(str, json.load(open('$OUT/bench.json'))['prompt_tokens'])))")
for chunk in 15 3; do
  timeout 200 python3 bench/transformers_gpu.py --lengths "$LENGTHS" --chunk $chunk >> "$OUT/transformers.jsonl" 2>>"$OUT/log.txt"
  echo "transformers chunk $chunk exit $?" | tee -a "$OUT/log.txt"
done
cat "$OUT/transformers.jsonl"
log "done"
