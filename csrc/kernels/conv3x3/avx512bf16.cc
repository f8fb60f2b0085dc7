// Winograd F(4x4, 3x3) with bf16 GEMMs, AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids and later):
// vdpbf16ps multiplies 16 pairs of bf16 and adds both products to 16 fp32 accumulators, twice the
// multiplies of an fp32 FMA per instruction. Compiled with -mavx512bf16 (CMake, by file name).
//
// Register tile of the GEMM: NX band tiles x NV vectors of 16 output channels (NX*NV accumulators,
// 24 for ocg 32 / 12 tiles); per input-channel pair the NV weight vectors (16 oc x 2 ic) are loaded
// once and each tile's channel pair (one 32-bit word of V) is broadcast.
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/simd_avx512.h"
// GCC 12 flags the "__Y = __Y" idiom of _mm512_undefined_* inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

namespace simd {
struct Avx512Bf16 : Avx512 {
  static inline void store_bf16(uint16_t* p, reg v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
  }
  // p[2i] = bf16(r0[i]), p[2i+1] = bf16(r1[i]), i < 16.
  static inline void store_bf16_pairs(uint16_t* p, reg r0, reg r1) {
    const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);  // words 0-15: r0, 16-31: r1
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                         5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    _mm512_storeu_si512(p, _mm512_permutexvar_epi16(idx, x));
  }
};

template <int NX, int NV>
inline void gemm_bf16_tile(const uint16_t* v, int64_t vbs, int icb, const uint16_t* u, int ocg, float* mo, int64_t mbs,
                           int64_t mpx, const float* bias) {
  // v: tile 0's 16 channels of block 0 (tile stride 16, block stride vbs); u: [IC/2][ocg][2];
  // accumulators start at bias[16k..] (or 0 without bias)
  __m512 acc[NX][NV];
  for (int k = 0; k < NV; ++k) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + 16 * k) : _mm512_setzero_ps();
    for (int j = 0; j < NX; ++j) acc[j][k] = b;
  }
  for (int blk = 0; blk < icb; ++blk, v += vbs) {
    for (int c = 0; c < 16; c += 2, u += 2 * ocg) {
      __m512i w[NV];
      for (int k = 0; k < NV; ++k) w[k] = _mm512_loadu_si512(u + 32 * k);
      for (int j = 0; j < NX; ++j) {
        int32_t pair;
        std::memcpy(&pair, v + j * 16 + c, 4);
        const __m512i x = _mm512_set1_epi32(pair);
        for (int k = 0; k < NV; ++k) acc[j][k] = _mm512_dpbf16_ps(acc[j][k], (__m512bh)x, (__m512bh)w[k]);
      }
    }
  }
  for (int j = 0; j < NX; ++j)
    for (int k = 0; k < NV; ++k) _mm512_storeu_ps(mo + k * mbs + j * mpx, acc[j][k]);
}

using GemmTileFn = void (*)(const uint16_t*, int64_t, int, const uint16_t*, int, float*, int64_t, int64_t,
                            const float*);
template <int NV, int... NX>
constexpr auto make_gemm_table(std::integer_sequence<int, NX...>) {
  return std::array<GemmTileFn, sizeof...(NX)>{{&gemm_bf16_tile<NX + 1, NV>...}};
}

template <int NV, int NXMAX>
inline void gemm_bf16(const WinoArgs& a, const void* vin, int64_t nband, int q, int g, int64_t n0, int nt, float* m) {
  // V: [36][icb][nband][16] bf16  U: [OC/ocg][36][IC/2][ocg][2] bf16 -> M: [ocb][nband][36][16] fp32
  static constexpr auto table = make_gemm_table<NV>(std::make_integer_sequence<int, NXMAX>{});
  const int64_t vt = (int64_t)a.icb * nband * 16;
  const uint16_t* v = static_cast<const uint16_t*>(vin) + q * vt + n0 * 16;
  const uint16_t* u = static_cast<const uint16_t*>(a.u) + wino_u_offset(a, g, q);
  constexpr int64_t px = kWinoT * 16;
  float* mo = m + ((int64_t)(g * a.ocg / 16) * nband + n0) * px + q * 16;
  const int64_t bs = nband * 16, mbs = nband * px;
  int j = 0;
  for (; j + NXMAX <= nt; j += NXMAX)
    gemm_bf16_tile<NXMAX, NV>(v + j * 16, bs, a.icb, u, a.ocg, mo + j * px, mbs, px, nullptr);
  if (j < nt) table[nt - j - 1](v + j * 16, bs, a.icb, u, a.ocg, mo + j * px, mbs, px, nullptr);
}

// upconv2x2 + bias in bf16: input row iy rounded to bf16 once (a per-thread buffer, same blocked
// layout), then per (dy, dx) the register-tiled GEMM above over runs of input pixels, bias in the
// accumulators; output pixel stride 2 x 16 floats.
template <int NV, int NXMAX>
inline void up_bf16(const UpArgs& a, int g, int iy) {
  static constexpr auto table = make_gemm_table<NV>(std::make_integer_sequence<int, NXMAX>{});
  thread_local std::vector<uint16_t> row;
  const int nblk = a.in.nblk, iw = a.iw;
  const int64_t xbs = (int64_t)iw * 16, ic = (int64_t)nblk * 16;
  if ((int64_t)row.size() < nblk * xbs) row.resize(nblk * xbs);
  for (int blk = 0; blk < nblk; ++blk) {
    const float* src = a.in.p + blk * a.in.bs + (int64_t)iy * a.in.rs;
    for (int x = 0; x < iw; ++x) Avx512Bf16::store_bf16(row.data() + blk * xbs + x * 16, _mm512_loadu_ps(src + x * 16));
  }
  const float* bias = a.bias + g * a.ocg;
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const uint16_t* w = a.w16 + ((int64_t)(g * 2 + dy) * 2 + dx) * ic * a.ocg;
      float* y = a.y.p + (int64_t)(g * a.ocg / 16) * a.y.bs + (int64_t)(2 * iy + dy) * a.y.rs + dx * 16;
      int x = 0;
      for (; x + NXMAX <= iw; x += NXMAX)
        gemm_bf16_tile<NXMAX, NV>(row.data() + x * 16, xbs, nblk, w, a.ocg, y + x * 32, a.y.bs, 32, bias);
      if (x < iw) table[iw - x - 1](row.data() + x * 16, xbs, nblk, w, a.ocg, y + x * 32, a.y.bs, 32, bias);
    }
}
}  // namespace simd

void upconv2x2_bf16_avx512bf16(const UpArgs& a, int g, int iy) {
  if (a.ocg == 32) simd::up_bf16<2, 12>(a, g, iy);
  else simd::up_bf16<1, 24>(a, g, iy);
}

void conv3x3_wino_in_bf16_avx512bf16(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Avx512Bf16, true>(a, v, nband, tile, n);
}
void conv3x3_wino_wt_bf16_avx512bf16(const float* g, int ic, int ocg, int row, void* u) {
  simd::wino_wt<simd::Avx512Bf16, true>(g, ic, ocg, row, u);
}
void conv3x3_wino_gemm_bf16_avx512bf16(const WinoArgs& a, const void* v, int64_t nband, int q, int g, int64_t n0,
                                       int nt, float* m) {
  if (a.ocg == 32) simd::gemm_bf16<2, 12>(a, v, nband, q, g, n0, nt, m);
  else simd::gemm_bf16<1, 24>(a, v, nband, q, g, n0, nt, m);
}

}  // namespace unet_rt::kernels
