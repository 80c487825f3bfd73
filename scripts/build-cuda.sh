#!/usr/bin/env bash
# Builds rftx with the `cuda` feature on a Linux x86-64 machine with no GPU and no CUDA toolkit:
# nvcc, headers and libraries come from PyPI wheels (CUDA 13.0.x, the line torch 2.11 uses and
# the r580 drivers run), the host compiler is the system gcc/g++.
#
#   CUDA_COMPUTE_CAP=90 scripts/build-cuda.sh      # H100 / H200 (built as sm_90a)
#   CUDA_COMPUTE_CAP=75 scripts/build-cuda.sh      # T4
#   CHECK=1 scripts/build-cuda.sh                  # cargo check only (CI: keeps the cuda code compiling)
#   INSTALL_ONLY=1 scripts/build-cuda.sh           # only install the toolkit into $CUDA_TOOLS
#
# One binary serves one compute capability: candle-kernels compiles its GGUF kernels as SASS
# for exactly one architecture, and rftx refuses to start on another. The binary lands in
# target/cuda-sm$CAP/release/rftx. At run time it needs the driver's libcuda.so.1 and
# libcublas.so.13, libcublasLt.so.13, libcurand.so.10 (a torch cu130 environment has them in
# site-packages/nvidia/cu13/lib: put that directory on LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
CUDA_TOOLS=${CUDA_TOOLS:-$PWD/.cuda-tools}
TARGET_DIR=${TARGET_DIR:-target/cuda-sm$CAP}
PY=${PYTHON:-python3}

# 1. CUDA 13.0.x compiler, headers and libraries (the pins of torch 2.11.0's cu130 wheels; 13.1+
#    would emit PTX that a driver 580 cannot load).
if [ ! -f "$CUDA_TOOLS/.installed-13.0.2" ]; then
  "$PY" -m venv "$CUDA_TOOLS/venv"
  "$CUDA_TOOLS/venv/bin/pip" install -q "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart,cublas,curand,nvrtc]==13.0.2"
  touch "$CUDA_TOOLS/.installed-13.0.2"
fi
SP=$("$CUDA_TOOLS/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU=$SP/nvidia/cu13
[ -z "${INSTALL_ONLY:-}" ] || exit 0

# 2. Link directory: the wheels ship versioned sonames only and no libcuda.so. cudarc links
#    (not dlopens) the CUDA libraries, so the linker needs unversioned names and a libcuda stub;
#    the real driver's libcuda.so.1 is used at run time.
LINK=$CUDA_TOOLS/link
mkdir -p "$LINK/lib"
for l in cublas cublasLt nvrtc; do ln -sf "$CU/lib/lib$l.so.13" "$LINK/lib/lib$l.so"; done
ln -sf "$CU/lib/libcurand.so.10" "$LINK/lib/libcurand.so"
rm -f "$LINK/lib/libcudart.so"
ln -sf "$CU/lib/libcudart_static.a" "$LINK/lib/libcudart.a"   # cudart linked statically
cargo fetch -q
CUDARC=$(cargo metadata -q --format-version 1 --features cuda | "$PY" -c \
  'import json,sys,os; print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
# Every driver entry point cudarc declares, each returning CUDA_ERROR_STUB_LIBRARY (34).
grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$CUDARC/src/driver/sys/mod.rs" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
  | awk '{print "int "$1"(void){return 34;}"}' > "$LINK/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/lib/libcuda.so" "$LINK/libcuda_stub.c"

# 3. Build: cudarc reads the CUDA version from `nvcc --version` (PATH), candle-kernels finds nvcc
#    on PATH, CUDA_ROOT gives cudarc its -L, CUDA_COMPUTE_CAP the architecture (no GPU here to ask).
export PATH="$CU/bin:$PATH"
export CUDA_ROOT="$LINK"
export CUDA_COMPUTE_CAP=$CAP
export CUDARC_CUDA_VERSION=13000
# The baseline of .cargo/config.toml (RUSTFLAGS replaces it): x86-64-v3 (AVX2, FMA, F16C).
export RUSTFLAGS=${RUSTFLAGS:--C target-cpu=x86-64-v3}
if [ -n "${CHECK:-}" ]; then
  cargo check --release --features cuda --all-targets --target-dir "$TARGET_DIR" "$@"
else
  cargo build --release --features cuda --target-dir "$TARGET_DIR" "$@"
  echo "$TARGET_DIR/release/rftx"
fi
