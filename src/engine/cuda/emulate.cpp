// kernels.cu compiled for the host (host_shim.h), each kernel behind a C function that runs
// its whole grid: what the tests call (src/engine/cuda/emulation.rs) to check the CUDA code
// itself — indexing, shared memory, barriers, reductions — against the reference without a GPU.
// Built by build.rs for test builds only (the `testing` feature), with -ffp-contract=off as the
// kernels are built with --fmad=false.
#include "host_shim.h"
#include "kernels.cu"

static unsigned blocks(size_t n) { return (unsigned)std::min<size_t>((n + BLOCK - 1) / BLOCK, 65535); }

extern "C" {
void emu_add_rmsnorm_f32(const float* h, const float* a, const float* w, float* out, int rows, int d, float eps) {
  emulate(rows, 1, BLOCK, 0, [&] { add_rmsnorm_f32(h, a, w, out, rows, d, eps); });
}
void emu_add_rmsnorm_f16(const __half* h, const __half* a, const __half* w, __half* out, int rows, int d, float eps) {
  emulate(rows, 1, BLOCK, 0, [&] { add_rmsnorm_f16(h, a, w, out, rows, d, eps); });
}
void emu_silu_mul_f32(const float* gu, float* out, int rows, int ff) {
  emulate(blocks((size_t)rows * ff), 1, BLOCK, 0, [&] { silu_mul_f32(gu, out, rows, ff); });
}
void emu_silu_mul_f16(const __half* gu, __half* out, int rows, int ff) {
  emulate(blocks((size_t)rows * ff), 1, BLOCK, 0, [&] { silu_mul_f16(gu, out, rows, ff); });
}
void emu_rope_write_f16_f16(const __half* qkv, const __half* bias, const float* cos, const float* sin,
                            const uint32_t* rows_meta, const uint64_t* caches, float* q_out, int rows, int n_head,
                            int n_kv, int hd) {
  emulate(rows, 1, BLOCK, 0,
          [&] { rope_write_f16_f16(qkv, bias, cos, sin, rows_meta, caches, q_out, n_head, n_kv, hd); });
}
void emu_sample_rows_f16(const __half* logits, const double* u, uint32_t* tokens, uint32_t* bad, int rows, int vocab,
                         float inv_t, int greedy) {
  emulate(rows, 1, BLOCK, 0, [&] { sample_rows_f16(logits, u, tokens, bad, vocab, inv_t, greedy); });
}
void emu_rope_write_f32_f32(const float* qkv, const float* bias, const float* cos, const float* sin,
                            const uint32_t* rows_meta, const uint64_t* caches, float* q_out, int rows, int n_head,
                            int n_kv, int hd) {
  emulate(rows, 1, BLOCK, 0,
          [&] { rope_write_f32_f32(qkv, bias, cos, sin, rows_meta, caches, q_out, n_head, n_kv, hd); });
}
#define EMU_ATTENTION(NAME, KERNEL, T)                                                                         \
  void NAME(const float* q, const uint32_t* rows_meta, const uint32_t* groups, int n_groups, const uint64_t* caches, \
            T* out, int n_head, int n_kv, int hd, float scale, int group_heads) {                                    \
    const size_t shared = (size_t)(group_heads * hd + group_heads * BLOCK + BLOCK) * 4;                             \
    emulate(n_groups, n_kv, BLOCK, shared,                                                                          \
            [&] { KERNEL(q, rows_meta, groups, caches, out, n_head, n_kv, hd, scale); });                           \
  }
EMU_ATTENTION(emu_attention_f32_f32, attention_f32_f32, float)
EMU_ATTENTION(emu_attention_f16_f32, attention_f16_f32, float)
EMU_ATTENTION(emu_attention_f16_f16, attention_f16_f16, __half)
void emu_sample_rows_f32(const float* logits, const double* u, uint32_t* tokens, uint32_t* bad, int rows, int vocab,
                         float inv_t, int greedy) {
  emulate(rows, 1, BLOCK, 0, [&] { sample_rows_f32(logits, u, tokens, bad, vocab, inv_t, greedy); });
}
}
