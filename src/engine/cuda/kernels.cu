// rftx's CUDA kernels for the decode step: compiled to PTX by build.rs (only with the `cuda`
// feature, for compute capabilities 7.5 and 9.0) and launched by src/engine/cuda/fused.rs.
//
// Batch invariance: every kernel computes one row's results from that row's inputs alone, in a
// fixed order (reductions over a fixed block size, positions in fixed chunks of BLOCK), so no
// result depends on how many rows run beside it or where they sit in the batch.
//
// Each kernel's arithmetic is written out in src/engine/cuda/reference.rs, operation for
// operation (built with --fmad=false: every fused multiply-add is an explicit fmaf, as the
// reference's mul_add; sqrtf and division are IEEE), so that the two differ only by expf's last
// bits. The reference is unit-tested against the CPU engine; the tests also run this very file
// on the host (emulate.cpp with host_shim.h: each block's threads as real threads) against it;
// `rftx bench --kernels` runs both on a GPU and reports the largest difference.
#ifndef DYNAMIC_SHARED  // (host_shim.h defines it when the tests compile this file for the host)
#include <cuda_fp16.h>
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif
#include <stdint.h>

#define BLOCK 128

__device__ __forceinline__ float load(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, size_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store(__half* p, size_t i, float x) { p[i] = __float2half_rn(x); }
// x rounded to T's precision, as a float.
template <typename T> __device__ __forceinline__ float round_to(float x);
template <> __device__ __forceinline__ float round_to<float>(float x) { return x; }
template <> __device__ __forceinline__ float round_to<__half>(float x) { return __half2float(__float2half_rn(x)); }

// Sum of one value per thread of the block: a fixed tree over BLOCK slots of `red`.
__device__ float block_sum(float* red, float x) {
  red[threadIdx.x] = x;
  __syncthreads();
  for (int s = BLOCK / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  float r = red[0];
  __syncthreads();
  return r;
}

__device__ float block_max(float* red, float x) {
  red[threadIdx.x] = x;
  __syncthreads();
  for (int s = BLOCK / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  float r = red[0];
  __syncthreads();
  return r;
}

// Residual add and RMSNorm, one block per row. h: (rows, d); a: (rows, d) or null (norm only);
// w: (d). out: (2, rows, d): out[0] = h + a rounded to T, out[1] = RMSNorm(out[0]) · w.
template <typename T>
__device__ void add_rmsnorm(const T* h, const T* a, const T* w, T* out, int rows, int d, float eps) {
  __shared__ float red[BLOCK];
  const size_t row = blockIdx.x;
  const T* hr = h + row * d;
  T* ho = out + row * d;
  T* xo = out + ((size_t)rows + row) * d;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += BLOCK) {
    float v = load(hr, i);
    if (a) v = round_to<T>(v + load(a + row * d, i));
    store(ho, i, v);
    ss = fmaf(v, v, ss);
  }
  ss = block_sum(red, ss);
  const float inv = 1.0f / sqrtf(ss / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += BLOCK) {
    float v = load(hr, i);
    if (a) v = round_to<T>(v + load(a + row * d, i));
    store(xo, i, v * inv * load(w, i));
  }
}

// SiLU(gate) · up. gu: (rows, 2·ff), gate then up; out: (rows, ff).
template <typename T>
__device__ void silu_mul(const T* gu, T* out, int rows, int ff) {
  const size_t n = (size_t)rows * ff;
  for (size_t i = (size_t)blockIdx.x * BLOCK + threadIdx.x; i < n; i += (size_t)gridDim.x * BLOCK) {
    const size_t r = i / ff, j = i % ff;
    const float g = load(gu, r * 2 * ff + j), u = load(gu, r * 2 * ff + ff + j);
    store(out, i, g / (1.0f + expf(-g)) * u);
  }
}

// The step's rows and caches. rows_meta: 4 words a row: cache index, row in that cache, the
// row's positions after this step (its new one included), unused. caches: 8 words a cache, for
// the current layer: K and V of the shared prompt (batch 1), K and V of the cache's own
// positions (batch, n_kv, allocated, hd), the positions the prompt holds (`start`), the prompt
// tensor's allocated positions, the own tensors' allocated positions, unused.
struct Where {
  uint64_t k, v;
};
__device__ __forceinline__ const uint64_t* cache_of(const uint64_t* caches, uint32_t c) { return caches + 8 * (size_t)c; }

// Element offset of position p of KV head h for row b of a cache.
__device__ __forceinline__ size_t kv_offset(const uint64_t* cm, uint32_t b, int h, int n_kv, int hd, uint32_t p, bool* shared) {
  const uint64_t start = cm[4];
  if (p < start) {
    *shared = true;
    return ((size_t)h * cm[5] + p) * hd;
  }
  *shared = false;
  return (((size_t)b * n_kv + h) * cm[6] + (p - start)) * hd;
}

// Bias add (qwen2), interleaved rotary embedding of q and k at the row's position, and the
// write of k and v into the row's own cache. qkv: (rows, (n_head + 2·n_kv)·hd) in T; bias: the
// same width in T, or null; cos, sin: (positions, hd/2) f32. q_out: (rows, n_head·hd) f32.
template <typename T, typename C>
__device__ void rope_write(const T* qkv, const T* bias, const float* cos, const float* sin, const uint32_t* rows_meta,
                           const uint64_t* caches, float* q_out, int n_head, int n_kv, int hd) {
  const size_t row = blockIdx.x;
  const uint32_t c = rows_meta[4 * row], b = rows_meta[4 * row + 1], pos = rows_meta[4 * row + 2] - 1;
  const uint64_t* cm = cache_of(caches, c);
  const int width = (n_head + 2 * n_kv) * hd, half = hd / 2;
  const T* x = qkv + row * width;
  const float* cr = cos + (size_t)pos * half;
  const float* sr = sin + (size_t)pos * half;
  bool shared;
  const size_t own = kv_offset(cm, b, 0, n_kv, hd, pos, &shared);
  C* k_own = (C*)cm[2];
  C* v_own = (C*)cm[3];
  const size_t head_stride = (size_t)cm[6] * hd;  // one KV head further in the own tensors
  for (int i = threadIdx.x; i < (n_head + n_kv) * half; i += BLOCK) {
    const int head = i / half, j = i % half, at = head * hd + 2 * j;
    float x0 = load(x, at), x1 = load(x, at + 1);
    if (bias) {
      x0 = round_to<T>(x0 + load(bias, at));
      x1 = round_to<T>(x1 + load(bias, at + 1));
    }
    const float y0 = x0 * cr[j] - x1 * sr[j];
    const float y1 = x0 * sr[j] + x1 * cr[j];
    if (head < n_head) {
      q_out[row * n_head * hd + at] = y0;
      q_out[row * n_head * hd + at + 1] = y1;
    } else {
      const size_t o = own + (size_t)(head - n_head) * head_stride + 2 * j;
      store(k_own, o, y0);
      store(k_own, o + 1, y1);
    }
  }
  for (int i = threadIdx.x; i < n_kv * hd; i += BLOCK) {
    const int at = (n_head + n_kv) * hd + i;
    float v = load(x, at);
    if (bias) v = round_to<T>(v + load(bias, at));
    store(v_own, own + (size_t)(i / hd) * head_stride + i % hd, v);
  }
}

// Decode attention: one block per (group of rows of one cache, KV head), for the n_rep query
// heads of each row that share the KV head, over the rows' positions (every row of a cache has
// as many) in chunks of BLOCK, one position per thread for the scores, with an online softmax
// whose running maximum and sum are updated once per chunk. A prompt position's key and value
// rows are read once for the whole group (the rows of a question share the prompt); each row's
// own positions are its own. Every (row, head) is computed exactly as alone — the same dot
// order, the same reductions over BLOCK slots, the same positions order — so the grouping never
// changes a result. groups: 4 words a group (cache, its first row in the cache, rows, its first
// row in the step). q: (rows, n_head·hd) f32; out: (rows, n_head·hd) in T. A group holds at most
// GROUP_HEADS (row, head) pairs and GROUP_HEADS·BLOCK values (reference.rs: group_rows).
#define GROUP_HEADS 16
template <typename C, typename T>
__device__ void attention(const float* q, const uint32_t* rows_meta, const uint32_t* groups, const uint64_t* caches,
                          T* out, int n_head, int n_kv, int hd, float scale) {
  DYNAMIC_SHARED(float, smem);
  const uint32_t* gm = groups + 4 * (size_t)blockIdx.x;
  const uint32_t b0 = gm[1], r0 = gm[3];
  const int n_rep = n_head / n_kv, heads = (int)gm[2] * n_rep, width = heads * hd;
  float* qs = smem;                 // heads·hd: row j's head r at (j·n_rep + r)·hd
  float* sc = qs + width;           // heads·BLOCK
  float* red = sc + heads * BLOCK;  // BLOCK
  const int h = blockIdx.y;
  const uint32_t len = rows_meta[4 * (size_t)r0 + 2];
  const uint64_t* cm = cache_of(caches, gm[0]);
  const C* ks = (const C*)cm[0];
  const C* vs = (const C*)cm[1];
  const C* ko = (const C*)cm[2];
  const C* vo = (const C*)cm[3];
  const size_t row_width = (size_t)n_head * hd, rep_width = (size_t)n_rep * hd;
  for (int i = threadIdx.x; i < width; i += BLOCK)
    qs[i] = q[(r0 + i / rep_width) * row_width + (size_t)h * rep_width + i % rep_width];
  __syncthreads();
  float m[GROUP_HEADS], l[GROUP_HEADS], alpha[GROUP_HEADS], acc[GROUP_HEADS];
  for (int x = 0; x < GROUP_HEADS; x++) m[x] = -INFINITY, l[x] = 0.0f, acc[x] = 0.0f;
  for (uint32_t c0 = 0; c0 < len; c0 += BLOCK) {
    const uint32_t p = c0 + threadIdx.x;
    const bool live = p < len;
    bool shared;
    if (live && p < cm[4]) {  // a prompt position: its key row once for every row of the group
      const C* key = ks + kv_offset(cm, 0, h, n_kv, hd, p, &shared);
      float s[GROUP_HEADS];
      for (int x = 0; x < heads; x++) s[x] = 0.0f;
      for (int d = 0; d < hd; d++) {
        const float k = load(key, d);
        for (int x = 0; x < heads; x++) s[x] = fmaf(qs[x * hd + d], k, s[x]);
      }
      for (int x = 0; x < heads; x++) sc[x * BLOCK + threadIdx.x] = s[x] * scale;
    } else if (live) {  // a row's own position
      for (int x = 0; x < heads; x++) {
        const C* key = ko + kv_offset(cm, b0 + x / n_rep, h, n_kv, hd, p, &shared);
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s = fmaf(qs[x * hd + d], load(key, d), s);
        sc[x * BLOCK + threadIdx.x] = s * scale;
      }
    }
    for (int x = 0; x < heads; x++) {
      const float s = live ? sc[x * BLOCK + threadIdx.x] : -INFINITY;
      const float mn = fmaxf(m[x], block_max(red, s));
      const float e = live ? expf(s - mn) : 0.0f;
      sc[x * BLOCK + threadIdx.x] = e;
      const float sum = block_sum(red, e);
      alpha[x] = expf(m[x] - mn);
      l[x] = fmaf(l[x], alpha[x], sum);
      m[x] = mn;
    }
    __syncthreads();
    const uint32_t n = min((uint32_t)BLOCK, len - c0);
    for (int k = 0; k < GROUP_HEADS; k++) {
      const int o = threadIdx.x + k * BLOCK;
      if (o >= width) break;
      const int x = o / hd, d = o % hd;
      const uint32_t b = b0 + x / n_rep;
      float a = acc[k] * alpha[x];
      for (uint32_t j = 0; j < n; j++) {
        const size_t at = kv_offset(cm, b, h, n_kv, hd, c0 + j, &shared);
        a = fmaf(sc[x * BLOCK + j], load((shared ? vs : vo) + at, d), a);
      }
      acc[k] = a;
    }
    __syncthreads();
  }
  for (int k = 0; k < GROUP_HEADS; k++) {
    const int o = threadIdx.x + k * BLOCK;
    if (o >= width) break;
    const int x = o / hd;
    store(out, (r0 + x / n_rep) * row_width + (size_t)h * rep_width + (size_t)(x % n_rep) * hd + o % hd,
          acc[k] / l[x]);
  }
}

// One token per row, drawn from softmax(logits / T) with the row's uniform draw u: the first
// token whose running weight passes u · total, as the CPU's sampler does with top_p = 1 (or the
// first largest logit when greedy). The vocabulary is cut into BLOCK contiguous segments, one a
// thread (its maximum, then its weights summed in f64, in order); thread 0 combines them in
// segment order and walks the chosen segment. bad[row] = 1 when a logit is not finite.
template <typename T>
__device__ void sample_rows(const T* logits, const double* u, uint32_t* tokens, uint32_t* bad, int vocab, float inv_t,
                            int greedy) {
  __shared__ float seg_max[BLOCK];
  __shared__ int seg_arg[BLOCK];
  __shared__ double seg_sum[BLOCK];
  __shared__ int seg_bad[BLOCK];
  __shared__ float row_max;
  __shared__ int row_bad;
  const size_t row = blockIdx.x;
  const T* l = logits + row * vocab;
  const int seg = (vocab + BLOCK - 1) / BLOCK;
  const int lo = threadIdx.x * seg, hi = min(vocab, lo + seg);
  float mx = -INFINITY;
  int arg = -1, nonfinite = 0;
  for (int i = lo; i < hi; i++) {
    const float x = load(l, i);
    if (!isfinite(x)) nonfinite = 1;
    if (x > mx) mx = x, arg = i;
  }
  seg_max[threadIdx.x] = mx;
  seg_arg[threadIdx.x] = arg;
  seg_bad[threadIdx.x] = nonfinite;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    int a = 0, b = 0;
    for (int s = 0; s < BLOCK; s++) {
      b |= seg_bad[s];
      if (seg_max[s] > m) m = seg_max[s], a = seg_arg[s];
    }
    row_max = m;
    row_bad = b;
    bad[row] = b;
    tokens[row] = a;  // the greedy token; replaced below when sampling
  }
  __syncthreads();
  if (row_bad || greedy) return;
  const float m = row_max;
  double sum = 0.0;
  for (int i = lo; i < hi; i++) sum += (double)expf((load(l, i) - m) * inv_t);
  seg_sum[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0.0;
  for (int s = 0; s < BLOCK; s++) total += seg_sum[s];
  double x = u[row] * total;
  int s = 0;
  for (; s < BLOCK && x - seg_sum[s] >= 0.0; s++) x -= seg_sum[s];
  int token = -1;
  for (int i = s * seg; i < vocab && token < 0; i++) {
    x -= (double)expf((load(l, i) - m) * inv_t);
    if (x < 0.0) token = i;
  }
  // Rounding left u · total past the last weight: the last token of positive weight.
  for (int i = vocab - 1; token < 0 && i >= 0; i--)
    if (expf((load(l, i) - m) * inv_t) > 0.0f) token = i;
  tokens[row] = token < 0 ? 0 : token;
}

#define ADD_RMSNORM(NAME, T)                                                                          \
  extern "C" __global__ void NAME(const T* h, const T* a, const T* w, T* out, int rows, int d, float eps) { \
    add_rmsnorm<T>(h, a, w, out, rows, d, eps);                                                        \
  }
ADD_RMSNORM(add_rmsnorm_f32, float)
ADD_RMSNORM(add_rmsnorm_f16, __half)

#define SILU_MUL(NAME, T) \
  extern "C" __global__ void NAME(const T* gu, T* out, int rows, int ff) { silu_mul<T>(gu, out, rows, ff); }
SILU_MUL(silu_mul_f32, float)
SILU_MUL(silu_mul_f16, __half)

#define ROPE_WRITE(NAME, T, C)                                                                                    \
  extern "C" __global__ void NAME(const T* qkv, const T* bias, const float* cos, const float* sin,                 \
                                  const uint32_t* rows_meta, const uint64_t* caches, float* q_out, int n_head,     \
                                  int n_kv, int hd) {                                                             \
    rope_write<T, C>(qkv, bias, cos, sin, rows_meta, caches, q_out, n_head, n_kv, hd);                            \
  }
ROPE_WRITE(rope_write_f32_f32, float, float)
ROPE_WRITE(rope_write_f32_f16, float, __half)
ROPE_WRITE(rope_write_f16_f32, __half, float)
ROPE_WRITE(rope_write_f16_f16, __half, __half)

#define ATTENTION(NAME, C, T)                                                                                    \
  extern "C" __global__ void NAME(const float* q, const uint32_t* rows_meta, const uint32_t* groups,               \
                                  const uint64_t* caches, T* out, int n_head, int n_kv, int hd, float scale) {     \
    attention<C, T>(q, rows_meta, groups, caches, out, n_head, n_kv, hd, scale);                                  \
  }
// Named by the cache's type, then the output's (the activations').
ATTENTION(attention_f32_f32, float, float)
ATTENTION(attention_f32_f16, float, __half)
ATTENTION(attention_f16_f32, __half, float)
ATTENTION(attention_f16_f16, __half, __half)

#define SAMPLE_ROWS(NAME, T)                                                                                 \
  extern "C" __global__ void NAME(const T* logits, const double* u, uint32_t* tokens, uint32_t* bad, int vocab, \
                                  float inv_t, int greedy) {                                                 \
    sample_rows<T>(logits, u, tokens, bad, vocab, inv_t, greedy);                                            \
  }
SAMPLE_ROWS(sample_rows_f32, float)
SAMPLE_ROWS(sample_rows_f16, __half)
