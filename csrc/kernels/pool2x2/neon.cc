// pool2x2 (max, stride 2), AArch64 NEON.
#include "kernels/simd_neon.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16], row oy of block blk
void pool2x2_neon(const PoolArgs& a, int blk, int oy) { simd::pool_row<simd::Neon>(a, blk, oy); }

}  // namespace unet_rt::kernels
