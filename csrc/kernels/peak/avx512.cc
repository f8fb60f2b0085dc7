// FMA-throughput probe, avx512: 12 independent accumulator chains (enough to cover FMA latency x
// throughput on current x86 cores). Returns the flops executed.
// GCC 12 flags the "__Y = __Y" idiom of _mm512_undefined_* inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

namespace unet_rt::kernels {

double fma_probe_avx512(int64_t iters, float* sink) {
  __m512 acc[12];
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(1.0f + j);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, c);
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  *sink = _mm512_reduce_add_ps(s);
  return 2.0 * 16 * 12 * (double)iters;
}

}  // namespace unet_rt::kernels
