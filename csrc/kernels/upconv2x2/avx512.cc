// upconv2x2 (ConvTranspose2d k=2 s=2) + bias, avx512: four 1x1 register-tiled GEMMs per input row.
#include "kernels/simd_avx512.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [IC/16, H, W, 16]  w: [OC/ocg][2][2][IC][ocg]  -> y: [OC/16, 2H, 2W, 16], rows 2iy, 2iy+1 of group g
void upconv2x2_avx512(const UpArgs& a, int g, int iy) {
  if (a.ocg == 32) simd::up_row_nv<simd::Avx512, 2, 12>(a, g, iy);
  else simd::up_row_nv<simd::Avx512, 1, 24>(a, g, iy);
}

}  // namespace unet_rt::kernels
