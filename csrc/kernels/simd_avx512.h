// AVX-512 vector traits for simd_impl.h (include only from */avx512.cc).
#pragma once
// GCC 12 reports its own intrinsics' "__Y = __Y" idiom as maybe-uninitialized: a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace unet_rt::kernels::simd {
struct Avx512 {
  using reg = __m512;
  static constexpr int L = 16;
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static inline reg bcast(const float* p) { return _mm512_broadcastss_ps(_mm_load_ss(p)); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static inline reg set1(float v) { return _mm512_set1_ps(v); }
  static inline reg fnma(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline float hsum(reg v) { return _mm512_reduce_add_ps(v); }
};
}  // namespace unet_rt::kernels::simd
