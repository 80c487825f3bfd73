// Compiles kernels.cu as C++ for the host, to run its kernels in the tests without a GPU
// (src/engine/cuda/emulate.cpp): every block's BLOCK threads run as real threads, one block
// after another (one grid at a time in the process), with __syncthreads() a barrier; __shared__
// variables are static (one block at a time uses them); the dynamic shared memory is a buffer of
// the launch's size, followed by a guard that shows a write past it. Warp-level
// primitives are not emulated: the kernels use none.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emu_barrier = nullptr;
inline float* emu_dynamic_shared = nullptr;
// One grid at a time in the process: the shared variables, the barrier and the grid's shape are
// global (a mutex of namespace scope: a static one in `emulate` would be one per kernel).
inline std::mutex emu_one_grid;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(emu_dynamic_shared)
inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
using std::isfinite;
using std::min;

// f16 as the host's _Float16: the same IEEE binary16, converted with round to nearest even.
typedef _Float16 __half;
inline float __half2float(__half x) { return static_cast<float>(x); }
inline __half __float2half_rn(float x) { return static_cast<__half>(x); }

// Bytes past the dynamic shared memory that a launch is given, filled with CANARY: a kernel that
// writes there had less shared memory from its plan than it uses.
inline constexpr size_t EMU_GUARD = 1 << 16;
inline constexpr unsigned char EMU_CANARY = 0xA5;

// Runs `call` (a kernel call) on a grid of (gx, gy) blocks of `threads` threads, with `shared`
// bytes of dynamic shared memory. False when a block wrote past those bytes.
template <typename F>
bool emulate(unsigned gx, unsigned gy, unsigned threads, size_t shared, F call) {
  std::lock_guard<std::mutex> lock(emu_one_grid);
  gridDim = dim3{gx, gy, 1};
  blockDim = dim3{threads, 1, 1};
  std::vector<float> dynamic((shared + EMU_GUARD) / sizeof(float) + 1);
  unsigned char* guard = reinterpret_cast<unsigned char*>(dynamic.data()) + shared;
  std::memset(guard, EMU_CANARY, EMU_GUARD);
  emu_dynamic_shared = dynamic.data();
  for (unsigned by = 0; by < gy; by++) {
    for (unsigned bx = 0; bx < gx; bx++) {
      std::barrier<> barrier(threads);
      emu_barrier = &barrier;
      std::vector<std::thread> block;
      for (unsigned t = 0; t < threads; t++) {
        block.emplace_back([&, t] {
          threadIdx = dim3{t, 0, 0};
          blockIdx = dim3{bx, by, 0};
          call();
        });
      }
      for (auto& th : block) th.join();
    }
  }
  return std::all_of(guard, guard + EMU_GUARD, [](unsigned char b) { return b == EMU_CANARY; });
}
