// bf16 dot-product throughput probe, AVX512-BF16: 12 independent vdpbf16ps chains. Returns the
// flops executed (each instruction: 16 lanes x 2 products x 2 flops).
// GCC 12 flags the "__Y = __Y" idiom inside its own _mm512_reduce_add_ps.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

namespace unet_rt::kernels {

double bf16_probe_avx512bf16(int64_t iters, float* sink) {
  __m512 acc[12];
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x00010001);
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(1.0f + j);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  *sink = _mm512_reduce_add_ps(s);
  return 4.0 * 16 * 12 * (double)iters;
}

}  // namespace unet_rt::kernels
