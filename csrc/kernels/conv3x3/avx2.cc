// conv3x3 + bias + ReLU, avx2: register tiles of output pixels x output channels (simd_impl.h).
#include "kernels/simd_avx2.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x_i: [nblk_i, H, W, cb_i]  w: [OC/ocg][i][blk][3][3][cb_i][ocg]  -> y: [OC/16, OH, OW, 16], row oy of group g
void conv3x3_avx2(const ConvArgs& a, int g, int oy) {
  if (a.ocg == 32) simd::conv_row_nv<simd::Avx2, 4, 3>(a, g, oy);
  else simd::conv_row_nv<simd::Avx2, 2, 6>(a, g, oy);
}

}  // namespace unet_rt::kernels
