// head1x1 (1x1 conv to K classes, optional softmax), avx512.
#include "kernels/simd_avx512.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [C/16, H, W, 16]  w: [K, C/16*16]  -> out[k*cs + oy*rs + x], row oy
void head1x1_avx512(const HeadArgs& a, int oy) { simd::head_row<simd::Avx512>(a, oy); }

}  // namespace unet_rt::kernels
