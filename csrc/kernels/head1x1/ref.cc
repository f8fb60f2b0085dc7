// head1x1 (1x1 conv to K classes, optional softmax over classes), scalar reference.
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace unet_rt::kernels {

void softmax_inplace(float* v, int k, int64_t stride) {
  float m = v[0];
  for (int i = 1; i < k; ++i) m = std::max(m, v[i * stride]);
  float s = 0.0f;
  for (int i = 0; i < k; ++i) s += (v[i * stride] = std::exp(v[i * stride] - m));
  const float inv = 1.0f / s;
  for (int i = 0; i < k; ++i) v[i * stride] *= inv;
}

// x: [C/16, H, W, 16]  w: [K, C/16*16]  -> out[k*cs + oy*rs + x], row oy
void head1x1_ref(const HeadArgs& a, int oy) {
  const int c16 = a.in.nblk * 16;
  float* orow = a.out + (int64_t)oy * a.out_rs;
  for (int ox = 0; ox < a.ow; ++ox) {
    for (int k = 0; k < a.k; ++k) {
      float s = a.bias[k];
      for (int blk = 0; blk < a.in.nblk; ++blk) {
        const float* ip = a.in.p + blk * a.in.bs + (int64_t)oy * a.in.rs + (int64_t)ox * 16;
        for (int c = 0; c < 16; ++c) s += ip[c] * a.w[k * c16 + blk * 16 + c];
      }
      orow[k * a.out_cs + ox] = s;
    }
    if (a.softmax) softmax_inplace(orow + ox, a.k, a.out_cs);
  }
}

}  // namespace unet_rt::kernels
