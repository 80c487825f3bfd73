// kernels.cu compiled for the host (host_shim.h), behind one C entry point, emu_launch: a launch
// plan of src/engine/cuda/plan.rs — the kernel's name, its grid, block and dynamic shared bytes,
// its arguments — run as a GPU would run it. What the tests call (src/engine/cuda/emulation.rs)
// to check the CUDA code itself — indexing, shared memory, barriers, reductions — and the plans
// that launch.rs launches — argument order, grids, shared sizes — against the reference without
// a GPU. Built by build.rs for test builds only (the `testing` feature), with -ffp-contract=off
// as the kernels are built with --fmad=false.
#include "host_shim.h"
#include "kernels.cu"

#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

extern "C" {
// One argument of a plan (plan.rs's Arg): kind 'P' an address, 'I' an int, 'F' a float.
struct EmuArg {
  int32_t kind;
  int32_t i;
  float f;
  uint64_t p;
};
}

// The results of emu_launch.
enum : int {
  EMU_OK = 0,
  EMU_UNKNOWN_KERNEL = 1,
  EMU_ARG_COUNT = 2,    // not as many arguments as the kernel's signature
  EMU_ARG_KIND = 3,     // an argument of another kind than the signature's
  EMU_BLOCK = 4,        // a block of other than BLOCK threads (every kernel assumes BLOCK)
  EMU_SHARED = 5,       // the kernel wrote past the dynamic shared memory the plan gave it
};

template <typename T>
constexpr char kind_of() {
  if constexpr (std::is_pointer_v<T>) return 'P';
  else if constexpr (std::is_same_v<T, int>) return 'I';
  else if constexpr (std::is_same_v<T, float>) return 'F';
  else static_assert(!sizeof(T), "a kernel argument of another type");
}

template <typename T>
T value(const EmuArg& a) {
  if constexpr (std::is_pointer_v<T>) return reinterpret_cast<T>(a.p);
  else if constexpr (std::is_same_v<T, int>) return a.i;
  else return a.f;
}

// Checks the arguments against `kernel`'s signature, then runs it on the plan's grid.
template <typename... A, size_t... I>
int run(void (*kernel)(A...), std::index_sequence<I...>, unsigned gx, unsigned gy, unsigned block, size_t shared,
        const EmuArg* args, int n) {
  constexpr char kinds[] = {kind_of<A>()..., 0};
  if (n != (int)sizeof...(A)) return EMU_ARG_COUNT;
  for (int i = 0; i < n; i++)
    if (args[i].kind != kinds[i]) return EMU_ARG_KIND;
  if (block != BLOCK) return EMU_BLOCK;
  std::tuple<A...> values{value<A>(args[I])...};
  return emulate(gx, gy, block, shared, [&] { std::apply(kernel, values); }) ? EMU_OK : EMU_SHARED;
}

template <typename... A>
int run(void (*kernel)(A...), unsigned gx, unsigned gy, unsigned block, size_t shared, const EmuArg* args, int n) {
  return run(kernel, std::index_sequence_for<A...>{}, gx, gy, block, shared, args, n);
}

#define KERNEL(NAME) \
  if (std::strcmp(name, #NAME) == 0) return run(NAME, gx, gy, block, shared, args, n);

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned block, size_t shared,
                          const EmuArg* args, int n) {
  KERNEL(add_rmsnorm_f32)
  KERNEL(add_rmsnorm_f16)
  KERNEL(silu_mul_f32)
  KERNEL(silu_mul_f16)
  KERNEL(rope_write_f32_f32)
  KERNEL(rope_write_f32_f16)
  KERNEL(rope_write_f16_f32)
  KERNEL(rope_write_f16_f16)
  KERNEL(attention_f32_f32)
  KERNEL(attention_f32_f16)
  KERNEL(attention_f16_f32)
  KERNEL(attention_f16_f16)
  KERNEL(sample_rows_f32)
  KERNEL(sample_rows_f16)
  return EMU_UNKNOWN_KERNEL;
}
