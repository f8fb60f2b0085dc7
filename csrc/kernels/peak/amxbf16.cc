// bf16 tile throughput probe, AMX (tdpbf16ps): 4 independent C tiles (2 A x 2 B, full 16 x 64-byte
// tiles, K = 32 bf16 per row) so the tile multiplier never waits on one accumulator. Returns the flops
// executed (each instruction: 16 x 16 outputs x 32 products x 2 flops). The caller has AMX permission
// (amx_bf16_enable: peak_gflops asks only where the bf16 tier is AMX's). Linux only, like the GEMM.
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>

namespace unet_rt::kernels {

#if defined(__linux__)
double bf16_probe_amx(int64_t iters, float* sink) {
  struct alignas(64) {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
  } cfg;
  _tile_loadconfig(&cfg);
  alignas(64) uint16_t ab[2][16][32];
  for (int t = 0; t < 2; ++t)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 32; ++c) ab[t][r][c] = 0x3f80;  // bf16 1.0
  alignas(64) float c[16][16];
  _tile_zero(0);  // tiles are named by immediates: no loop over them
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab[0], 64);
  _tile_loadd(5, ab[1], 64);
  _tile_loadd(6, ab[0], 64);
  _tile_loadd(7, ab[1], 64);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  *sink = c[0][0];
  return 4.0 * 16 * 16 * 32 * 2 * (double)iters;
}
#else
double bf16_probe_amx(int64_t, float*) { std::abort(); }  // never chosen: AMX is asked for on Linux only
#endif

}  // namespace unet_rt::kernels
