// conv3x3 + bias + ReLU, avx512: register tiles of output pixels x output channels (simd_impl.h).
#include "kernels/simd_avx512.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x_i: [nblk_i, H, W, cb_i]  w: [OC/ocg][i][blk][3][3][cb_i][ocg]  -> y: [OC/16, OH, OW, 16], row oy of group g
void conv3x3_avx512(const ConvArgs& a, int g, int oy) {
  if (a.ocg == 32) simd::conv_row_nv<simd::Avx512, 2, 12>(a, g, oy);
  else simd::conv_row_nv<simd::Avx512, 1, 24>(a, g, oy);
}

// Winograd F(4x4, 3x3), fp32: see kernels.h for the phases and layouts.
void conv3x3_wino_in_f32_avx512(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Avx512>(a, v, nband, tile, n);
}
void conv3x3_wino_gemm_f32_avx512(const WinoArgs& a, const void* v, int64_t nband, int q, int g, int64_t n0, int nt,
                                  float* m) {
  if (a.ocg == 32) simd::wino_gemm<simd::Avx512, 2, 12>(a, v, nband, q, g, n0, nt, m);
  else simd::wino_gemm<simd::Avx512, 1, 24>(a, v, nband, q, g, n0, nt, m);
}
void conv3x3_wino_wt_f32_avx512(const float* g, int ic, int ocg, int row, void* u) {
  simd::wino_wt<simd::Avx512>(g, ic, ocg, row, u);
}
void conv3x3_wino_out_f32_avx512(const WinoArgs& a, const float* m, int64_t nband, int64_t t0, int ob, int64_t n0,
                                 int nt) {
  simd::wino_out<simd::Avx512>(a, m, nband, t0, ob, n0, nt);
}

}  // namespace unet_rt::kernels
