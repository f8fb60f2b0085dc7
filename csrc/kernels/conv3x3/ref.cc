// conv3x3, scalar reference: the obviously-correct loop nest every SIMD version is tested against.
#include <algorithm>

#include "kernels/kernels.h"
#include "kernels/simd_impl.h"

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

// Winograd F(4x4, 3x3), scalar: the same algorithm as the SIMD versions on one-lane "vectors"
// (simd_impl.h with plain floats); checked against a float64 direct convolution in the tests.
namespace simd {
struct Scalar {
  using reg = float;
  static constexpr int L = 1;
  static inline reg load(const float* p) { return *p; }
  static inline void store(float* p, reg v) { *p = v; }
  static inline reg bcast(const float* p) { return *p; }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
  static inline reg fnma(reg a, reg b, reg c) { return c - a * b; }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg sub(reg a, reg b) { return a - b; }
  static inline reg set1(float v) { return v; }
  static inline reg max(reg a, reg b) { return a > b ? a : b; }
  static inline reg zero() { return 0.0f; }
  static inline float hsum(reg v) { return v; }
};
}  // namespace simd

void conv3x3_wino_in_ref(const WinoArgs& a, float* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Scalar>(a, v, nband, tile, n);
}
void conv3x3_wino_out_ref(const WinoArgs& a, const float* v, int64_t nband, int64_t t0, int g, int64_t n0, int nt,
                          float* m) {
  if (a.ocg == 32) simd::wino_out<simd::Scalar, 32, 2>(a, v, nband, t0, g, n0, nt, m);
  else simd::wino_out<simd::Scalar, 16, 2>(a, v, nband, t0, g, n0, nt, m);
}

}  // namespace unet_rt::kernels
