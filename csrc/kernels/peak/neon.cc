// FMA-throughput probe, AArch64 NEON: 16 independent accumulator chains (4 FMA pipes x 4 cycles of
// latency on Apple M-series and Neoverse V1 cores; more than enough for Neoverse N1's 2 pipes).
// Returns the flops executed.
#include <arm_neon.h>

#include <cstdint>

namespace unet_rt::kernels {

double fma_probe_neon(int64_t iters, float* sink) {
  float32x4_t acc[16];
  const float32x4_t m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
  for (int j = 0; j < 16; ++j) acc[j] = vdupq_n_f32(1.0f + j);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 16; ++j) acc[j] = vfmaq_f32(c, acc[j], m);
  float32x4_t s = acc[0];
  for (int j = 1; j < 16; ++j) s = vaddq_f32(s, acc[j]);
  *sink = vaddvq_f32(s);
  return 2.0 * 4 * 16 * (double)iters;
}

}  // namespace unet_rt::kernels
