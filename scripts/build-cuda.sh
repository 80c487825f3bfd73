#!/usr/bin/env bash
# Builds rftx with the `cuda` feature on a Linux x86-64 machine with no GPU and no CUDA toolkit:
# nvcc, headers and libraries come from PyPI wheels, the host compiler is the system gcc/g++.
#
#   CUDA_COMPUTE_CAP=90 scripts/build-cuda.sh      # H100 / H200 (built as sm_90a)
#   CUDA_COMPUTE_CAP=75 scripts/build-cuda.sh      # T4
#   CUDA_LINE=12 scripts/build-cuda.sh             # for drivers 535-575 (CUDA 12.2-12.9), below
#   CHECK=1 scripts/build-cuda.sh                  # cargo check only (CI: keeps the cuda code compiling)
#   INSTALL_ONLY=1 scripts/build-cuda.sh           # only install the toolkit into $CUDA_TOOLS
#
# Two lines, chosen by CUDA_LINE (the PTX nvcc writes needs a driver of at least its version):
#   13 (default): CUDA 13.0.2 from PyPI (`cuda-toolkit`, the pins of torch 2.11's cu130 wheels),
#       for drivers >= 580. 13.1+ would emit PTX that a driver 580 cannot load.
#   12: the CUDA 12 libraries from PyPI (`cuda-toolkit==12.2.2`: cuBLAS, cuRAND, NVRTC, cudart)
#       and an nvcc 12.x of the machine's own (`$NVCC`, else `nvcc` on PATH: a cluster's
#       `module load cuda/12.x`; PyPI's cu12 wheels ship ptxas but no nvcc). The binary then runs
#       on drivers that support that nvcc's version and later (12.2: driver >= 535). With
#       CHECK=1 and no nvcc 12 here (CI), the 13 line's nvcc compiles the kernels: the Rust code
#       is still checked against CUDA 12's bindings, which is what the check is for.
#
# One binary serves one compute capability: candle-kernels compiles its GGUF kernels as SASS
# for exactly one architecture, and rftx refuses to start on another. It also records the CUDA
# version it was built with and refuses (exit 2) to start on a driver too old for it, naming the
# line to build. The binary lands in target/cuda-sm$CAP/release/rftx (line 13) or
# target/cuda12-sm$CAP/release/rftx (line 12). At run time it needs the driver's libcuda.so.1
# and, line 13: libcublas.so.13, libcublasLt.so.13, libcurand.so.10 (a torch cu130 environment
# has them in site-packages/nvidia/cu13/lib); line 12: libcublas.so.12, libcublasLt.so.12,
# libcurand.so.10, libcudart.so.12 (a torch cu12x environment has them under
# site-packages/nvidia/{cublas,curand,cuda_runtime}/lib). Put those directories on
# LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
LINE=${CUDA_LINE:-13}
CUDA_TOOLS=${CUDA_TOOLS:-$PWD/.cuda-tools}
PY=${PYTHON:-python3}
case "$LINE" in
  13) TOOLKIT=13.0.2 VENV=$CUDA_TOOLS/venv LINK=$CUDA_TOOLS/link CUDARC=13000 DIR=target/cuda-sm$CAP ;;
  12) TOOLKIT=12.2.2 VENV=$CUDA_TOOLS/venv12 LINK=$CUDA_TOOLS/link12 CUDARC=12020 DIR=target/cuda12-sm$CAP ;;
  *) echo "CUDA_LINE=$LINE: use 13 (drivers >= 580) or 12 (drivers 535-575)" >&2; exit 2 ;;
esac

# 1. The line's compiler (13), headers and libraries, from PyPI.
if [ ! -f "$CUDA_TOOLS/.installed-$TOOLKIT" ]; then
  "$PY" -m venv "$VENV"
  if [ "$LINE" = 13 ]; then
    "$VENV/bin/pip" install -q "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart,cublas,curand,nvrtc]==$TOOLKIT"
  else
    "$VENV/bin/pip" install -q "cuda-toolkit[cccl,cudart,cublas,curand,nvrtc]==$TOOLKIT"
  fi
  touch "$CUDA_TOOLS/.installed-$TOOLKIT"
fi
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -z "${INSTALL_ONLY:-}" ] || exit 0

# 2. Link directory: the wheels ship versioned sonames only and no libcuda.so. cudarc links
#    (not dlopens) the CUDA libraries, so the linker needs unversioned names and a libcuda stub;
#    the real driver's libcuda.so.1 is used at run time.
mkdir -p "$LINK/lib"
rm -f "$LINK/lib/libcudart.so" "$LINK/lib/libcudart.a"
if [ "$LINE" = 13 ]; then
  CU=$SP/nvidia/cu13
  for l in cublas cublasLt nvrtc; do ln -sf "$CU/lib/lib$l.so.13" "$LINK/lib/lib$l.so"; done
  ln -sf "$CU/lib/libcurand.so.10" "$LINK/lib/libcurand.so"
  ln -sf "$CU/lib/libcudart_static.a" "$LINK/lib/libcudart.a"   # cudart linked statically
  NVCC_BIN=$CU/bin/nvcc
else
  N=$SP/nvidia
  for l in cublas cublasLt; do ln -sf "$N/cublas/lib/lib$l.so.12" "$LINK/lib/lib$l.so"; done
  ln -sf "$N/cuda_nvrtc/lib/libnvrtc.so.12" "$LINK/lib/libnvrtc.so"
  ln -sf "$N/curand/lib/libcurand.so.10" "$LINK/lib/libcurand.so"
  ln -sf "$N/cuda_runtime/lib/libcudart.so.12" "$LINK/lib/libcudart.so"   # no static cudart in the wheels
  NVCC_BIN=${NVCC:-$(command -v nvcc || true)}
  if ! { [ -n "$NVCC_BIN" ] && "$NVCC_BIN" --version 2>/dev/null | grep -q 'release 12\.'; }; then
    if [ -z "${CHECK:-}" ]; then
      echo "CUDA_LINE=12 needs an nvcc 12.x (PyPI's CUDA 12 wheels have none): load the cluster's CUDA 12 toolkit (module load cuda/12.x) or set NVCC=/usr/local/cuda-12.x/bin/nvcc; the driver must support that version" >&2
      exit 2
    fi
    echo "CHECK=1 without an nvcc 12 here: the 13 line's nvcc compiles the kernels; the Rust code is checked against CUDA 12.2's bindings" >&2
    CUDA_LINE=13 INSTALL_ONLY=1 bash "$0"
    NVCC_BIN=$("$CUDA_TOOLS/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13/bin/nvcc
    # The 13 line's target directory: nvcc's outputs (candle's kernels, minutes) are the same
    # there; only cudarc and what depends on it are checked again.
    DIR=target/cuda-sm$CAP
  fi
fi
TARGET_DIR=${TARGET_DIR:-$DIR}
cargo fetch -q
CUDARC_DIR=$(cargo metadata -q --format-version 1 --features cuda | "$PY" -c \
  'import json,sys,os; print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
# Every driver entry point cudarc declares, each returning CUDA_ERROR_STUB_LIBRARY (34).
grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$CUDARC_DIR/src/driver/sys/mod.rs" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
  | awk '{print "int "$1"(void){return 34;}"}' > "$LINK/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/lib/libcuda.so" "$LINK/libcuda_stub.c"

# 3. Build: cudarc binds the line's CUDA version (CUDARC_CUDA_VERSION), candle-kernels and
#    build.rs find nvcc on PATH (build.rs records its version: the driver the binary needs),
#    CUDA_ROOT gives cudarc its -L, CUDA_COMPUTE_CAP the architecture (no GPU here to ask).
export PATH="$(dirname "$NVCC_BIN"):$PATH"
export NVCC="$NVCC_BIN"
export CUDA_ROOT="$LINK"
export CUDA_COMPUTE_CAP=$CAP
export CUDARC_CUDA_VERSION=$CUDARC
# The baseline of .cargo/config.toml (RUSTFLAGS replaces it): x86-64-v3 (AVX2, FMA, F16C).
export RUSTFLAGS=${RUSTFLAGS:--C target-cpu=x86-64-v3}
if [ -n "${CHECK:-}" ]; then
  cargo check --release --features cuda --all-targets --target-dir "$TARGET_DIR" "$@"
else
  cargo build --release --features cuda --target-dir "$TARGET_DIR" "$@"
  echo "$TARGET_DIR/release/rftx"
fi
