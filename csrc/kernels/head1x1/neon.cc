// head1x1 (1x1 conv to K classes, optional softmax), AArch64 NEON.
#include "kernels/simd_neon.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [C/16, H, W, 16]  w: [K, C/16*16]  -> out[k*cs + oy*rs + x], row oy
void head1x1_neon(const HeadArgs& a, int oy) { simd::head_row<simd::Neon>(a, oy); }

}  // namespace unet_rt::kernels
