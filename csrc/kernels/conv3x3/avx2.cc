// conv3x3 + bias + ReLU, avx2: register tiles of output pixels x output channels (simd_impl.h).
#include "kernels/simd_avx2.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x_i: [nblk_i, H, W, cb_i]  w: [OC/ocg][i][blk][3][3][cb_i][ocg]  -> y: [OC/16, OH, OW, 16], row oy of group g
void conv3x3_avx2(const ConvArgs& a, int g, int oy) {
  if (a.ocg == 32) simd::conv_row_nv<simd::Avx2, 4, 3>(a, g, oy);
  else simd::conv_row_nv<simd::Avx2, 2, 6>(a, g, oy);
}

// Winograd F(4x4, 3x3): see kernels.h for the phases and layouts.
void conv3x3_wino_in_avx2(const WinoArgs& a, float* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Avx2>(a, v, nband, tile, n);
}
void conv3x3_wino_out_avx2(const WinoArgs& a, const float* v, int64_t nband, int64_t t0, int g, int64_t n0, int nt,
                           float* m) {
  if (a.ocg == 32) simd::wino_out<simd::Avx2, 4, 3>(a, v, nband, t0, g, n0, nt, m);
  else simd::wino_out<simd::Avx2, 2, 6>(a, v, nband, t0, g, n0, nt, m);
}

}  // namespace unet_rt::kernels
