#!/usr/bin/env bash
# Installs llama-cpp-python 0.3.36 (it compiles llama.cpp: about 9 minutes on 2 cores) into the
# virtualenv $1 unless it is there, for bench/peers.sh and bench/throughput.sh.
#
# llama.cpp's default build is native (-march=native). On a CPU with AMX (Sapphire Rapids and
# later) that compiles its AMX matmul, which segfaults (ggml_backend_amx_mul_mat) in a VM that
# does not hand AMX's tile state to guests, as here. There the build names the x86 features one
# by one, everything native would use but AMX; elsewhere it stays native. CMAKE_ARGS overrides.
set -euo pipefail
venv=$1
"$venv/bin/python" -c "import llama_cpp" 2>/dev/null && exit 0
if [ -z "${CMAKE_ARGS:-}" ] && grep -qw amx_tile /proc/cpuinfo; then
  flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
  for f in avx_vnni:AVX_VNNI avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    grep -qw "${f%%:*}" /proc/cpuinfo && flags+=("-DGGML_${f##*:}=ON")
  done
  export CMAKE_ARGS="${flags[*]}"
fi
echo "installing llama-cpp-python==0.3.36 (compiles llama.cpp${CMAKE_ARGS:+ with $CMAKE_ARGS})…" >&2
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} "$venv/bin/pip" install -q --no-cache-dir llama-cpp-python==0.3.36
