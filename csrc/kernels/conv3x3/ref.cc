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
  static inline void store_bf16(uint16_t* p, reg v) { *p = f32_to_bf16(v); }
  static inline void store_bf16_pairs(uint16_t* p, reg r0, reg r1) {
    p[0] = f32_to_bf16(r0);
    p[1] = f32_to_bf16(r1);
  }
};
}  // namespace simd

void conv3x3_wino_in_f32_ref(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Scalar>(a, v, nband, tile, n);
}
void conv3x3_wino_gemm_f32_ref(const WinoArgs& a, const void* v, int64_t nband, int q, int g, int64_t n0, int nt,
                               float* m) {
  if (a.ocg == 32) simd::wino_gemm<simd::Scalar, 32, 2>(a, v, nband, q, g, n0, nt, m);
  else simd::wino_gemm<simd::Scalar, 16, 2>(a, v, nband, q, g, n0, nt, m);
}
void conv3x3_wino_wt_f32_ref(const float* g, int ic, int ocg, int row, void* u) {
  simd::wino_wt<simd::Scalar>(g, ic, ocg, row, u);
}
void conv3x3_wino_out_f32_ref(const WinoArgs& a, const float* m, int64_t nband, int64_t t0, int ob, int64_t n0,
                              int nt) {
  simd::wino_out<simd::Scalar>(a, m, nband, t0, ob, n0, nt);
}

// bf16, scalar: V rounded to bf16 by the input transform, U packed in bf16 pairs; each pair's two
// products are exact in fp32 and added to the fp32 accumulator one at a time (odd element first,
// as Intel documents vdpbf16ps).
void conv3x3_wino_in_bf16_ref(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Scalar, true>(a, v, nband, tile, n);
}
void conv3x3_wino_wt_bf16_ref(const float* g, int ic, int ocg, int row, void* u) {
  simd::wino_wt<simd::Scalar, true>(g, ic, ocg, row, u);
}
void conv3x3_wino_gemm_bf16_ref(const WinoArgs& a, const void* vin, int64_t nband, int q, int g, int64_t n0, int nt,
                                float* m) {
  // V: [36][icb][nband][16] bf16  U: [OC/ocg][36][IC/2][ocg][2] bf16 -> M: [ocb][nband][36][16]
  const int64_t vt = (int64_t)a.icb * nband * 16, ic = (int64_t)a.icb * 16;
  const uint16_t* v = static_cast<const uint16_t*>(vin) + q * vt;
  const uint16_t* u = static_cast<const uint16_t*>(a.u) + wino_u_offset(a, g, q);
  for (int j = 0; j < nt; ++j)
    for (int o = 0; o < a.ocg; ++o) {
      float acc = 0.0f;
      for (int64_t c = 0; c < ic; c += 2) {
        const uint16_t* vp = v + (c / 16) * nband * 16 + (n0 + j) * 16 + c % 16;
        const uint16_t* up = u + ((c / 2) * a.ocg + o) * 2;
        acc += bf16_to_f32(vp[1]) * bf16_to_f32(up[1]);
        acc += bf16_to_f32(vp[0]) * bf16_to_f32(up[0]);
      }
      const int oc = g * a.ocg + o;
      m[((int64_t)(oc / 16) * nband + n0 + j) * kWinoT * 16 + q * 16 + oc % 16] = acc;
    }
}

}  // namespace unet_rt::kernels
