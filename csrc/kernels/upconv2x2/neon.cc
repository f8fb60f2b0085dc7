// upconv2x2 (ConvTranspose2d k=2 s=2) + bias, AArch64 NEON: four 1x1 register-tiled GEMMs per input
// row, with conv3x3/neon.cc's register tiles (5 pixels x 16 or 3 x 32 output channels).
#include "kernels/simd_neon.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [IC/16, H, W, 16]  w: [OC/ocg][2][2][IC][ocg]  -> y: [OC/16, 2H, 2W, 16], rows 2iy, 2iy+1 of group g
void upconv2x2_neon(const UpArgs& a, int g, int iy) {
  if (a.ocg == 32) simd::up_row_nv<simd::Neon, 8, 3>(a, g, iy);
  else simd::up_row_nv<simd::Neon, 4, 5>(a, g, iy);
}

}  // namespace unet_rt::kernels
