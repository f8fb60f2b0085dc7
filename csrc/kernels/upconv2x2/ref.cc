// upconv2x2 (ConvTranspose2d, kernel 2, stride 2), scalar reference.
#include "kernels/kernels.h"

namespace unet_rt::kernels {

// x: [IC/16, H, W, 16]  w: [OC/ocg][a][b][IC][ocg]  -> y: [OC/16, 2H, 2W, 16], rows 2iy, 2iy+1 of group g
void upconv2x2_ref(const UpArgs& a, int g, int iy) {
  const int ic = a.in.nblk * 16;
  float acc[32];
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const float* wab = a.w + ((int64_t)(g * 2 + dy) * 2 + dx) * ic * a.ocg;
      for (int ix = 0; ix < a.iw; ++ix) {
        for (int o = 0; o < a.ocg; ++o) acc[o] = a.bias[g * a.ocg + o];
        const float* w = wab;
        for (int blk = 0; blk < a.in.nblk; ++blk) {
          const float* ip = a.in.p + blk * a.in.bs + (int64_t)iy * a.in.rs + (int64_t)ix * 16;
          for (int c = 0; c < 16; ++c, w += a.ocg)
            for (int o = 0; o < a.ocg; ++o) acc[o] += ip[c] * w[o];
        }
        for (int o = 0; o < a.ocg; ++o) {
          const int oc = g * a.ocg + o;
          a.y.p[(oc / 16) * a.y.bs + (int64_t)(2 * iy + dy) * a.y.rs + (int64_t)(2 * ix + dx) * 16 + oc % 16] = acc[o];
        }
      }
    }
}

// bf16: inputs rounded to bf16, weights in bf16 pairs; each pair's two products are exact in fp32 and
// added one at a time (odd element first, as the Winograd bf16 reference).
void upconv2x2_bf16_ref(const UpArgs& a, int g, int iy) {
  const int ic = a.in.nblk * 16;
  float acc[32];
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const uint16_t* wab = a.w16 + ((int64_t)(g * 2 + dy) * 2 + dx) * ic * a.ocg;
      for (int ix = 0; ix < a.iw; ++ix) {
        for (int o = 0; o < a.ocg; ++o) acc[o] = a.bias[g * a.ocg + o];
        for (int c = 0; c < ic; c += 2) {
          const float* ip = a.in.p + (c / 16) * a.in.bs + (int64_t)iy * a.in.rs + (int64_t)ix * 16 + c % 16;
          const float x0 = bf16_to_f32(f32_to_bf16(ip[0])), x1 = bf16_to_f32(f32_to_bf16(ip[1]));
          const uint16_t* w = wab + (int64_t)(c / 2) * a.ocg * 2;
          for (int o = 0; o < a.ocg; ++o) {
            acc[o] += x1 * bf16_to_f32(w[2 * o + 1]);
            acc[o] += x0 * bf16_to_f32(w[2 * o]);
          }
        }
        for (int o = 0; o < a.ocg; ++o) {
          const int oc = g * a.ocg + o;
          a.y.p[(oc / 16) * a.y.bs + (int64_t)(2 * iy + dy) * a.y.rs + (int64_t)(2 * ix + dx) * 16 + oc % 16] = acc[o];
        }
      }
    }
}

}  // namespace unet_rt::kernels
