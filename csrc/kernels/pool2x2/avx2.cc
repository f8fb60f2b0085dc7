// pool2x2 (max, stride 2), avx2.
#include "kernels/simd_avx2.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16], row oy of block blk
void pool2x2_avx2(const PoolArgs& a, int blk, int oy) { simd::pool_row<simd::Avx2>(a, blk, oy); }

}  // namespace unet_rt::kernels
