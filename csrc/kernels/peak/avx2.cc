// FMA-throughput probe, avx2: 12 independent accumulator chains (enough to cover FMA latency x
// throughput on current x86 cores). Returns the flops executed.
#include <immintrin.h>

#include <cstdint>

namespace unet_rt::kernels {

double fma_probe_avx2(int64_t iters, float* sink) {
  __m256 acc[12];
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(1.0f + j);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
  *sink = _mm256_cvtss_f32(s);
  return 2.0 * 8 * 12 * (double)iters;
}

}  // namespace unet_rt::kernels
