// pool2x2 (max, stride 2), scalar reference.
#include <algorithm>

#include "kernels/kernels.h"

namespace unet_rt::kernels {

// x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16], row oy of block blk
void pool2x2_ref(const PoolArgs& a, int blk, int oy) {
  const float* r0 = a.in.p + blk * a.in.bs + (int64_t)(2 * oy) * a.in.rs;
  const float* r1 = r0 + a.in.rs;
  float* yo = a.y.p + blk * a.y.bs + (int64_t)oy * a.y.rs;
  for (int ox = 0; ox < a.ow; ++ox)
    for (int c = 0; c < 16; ++c) {
      const int i0 = 2 * ox * 16 + c, i1 = i0 + 16;
      yo[ox * 16 + c] = std::max(std::max(r0[i0], r0[i1]), std::max(r1[i0], r1[i1]));
    }
}

}  // namespace unet_rt::kernels
