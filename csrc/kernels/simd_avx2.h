// AVX2 + FMA vector traits for simd_impl.h (include only from */avx2.cc).
#pragma once
#include <immintrin.h>

namespace unet_rt::kernels::simd {
struct Avx2 {
  using reg = __m256;
  static constexpr int L = 8;
  static constexpr bool unroll_cb = true;  // simd_impl.h: 16 registers, the channel loop unrolled whole
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static inline reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static inline reg set1(float v) { return _mm256_set1_ps(v); }
  static inline reg fnma(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline float hsum(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
}  // namespace unet_rt::kernels::simd
