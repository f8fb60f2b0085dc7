// conv3x3, scalar reference: the obviously-correct loop nest every SIMD version is tested against.
#include <algorithm>

#include "kernels/kernels.h"

namespace unet_rt::kernels {

// x_i: [nblk_i, H, W, cb_i]  w: [OC/ocg][i][blk][kh][kw][cb_i][ocg]  -> y: [OC/16, OH, OW, 16], row oy of group g
void conv3x3_ref(const ConvArgs& a, int g, int oy) {
  const float* wg = a.w + g * conv_group_weights(a);
  float acc[32];
  for (int ox = 0; ox < a.ow; ++ox) {
    for (int o = 0; o < a.ocg; ++o) acc[o] = a.bias[g * a.ocg + o];
    const float* w = wg;
    for (int i = 0; i < a.nin; ++i) {
      const View& v = a.in[i];
      for (int blk = 0; blk < v.nblk; ++blk)
        for (int ky = 0; ky < a.kh; ++ky)
          for (int kx = 0; kx < a.kw; ++kx) {
            const float* ip = v.p + blk * v.bs + (int64_t)(oy + ky) * v.rs + (int64_t)(ox + kx) * v.cb;
            for (int c = 0; c < v.cb; ++c, w += a.ocg)
              for (int o = 0; o < a.ocg; ++o) acc[o] += ip[c] * w[o];
          }
    }
    for (int o = 0; o < a.ocg; ++o) {
      const int oc = g * a.ocg + o;
      float r = a.relu ? std::max(acc[o], 0.0f) : acc[o];
      a.y.p[(oc / 16) * a.y.bs + (int64_t)oy * a.y.rs + (int64_t)ox * 16 + oc % 16] = r;
    }
  }
}

}  // namespace unet_rt::kernels
