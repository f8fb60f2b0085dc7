// SIMD kernel bodies shared by the AVX2, AVX-512 and NEON versions of each family, written once against a
// small vector-traits type V (V::reg, V::L lanes, load/store/bcast/fma/max/zero). Include ONLY from
// a file compiled with the matching ISA flags (csrc/kernels/<family>/{avx2,avx512,neon}.cc): the traits
// live in simd_avx2.h / simd_avx512.h / simd_neon.h.
//
// The core is an implicit-GEMM register tile: NX output pixels x NV vectors of output channels
// (NV*L = ocg) live in NX*NV accumulator registers; for each input channel and tap, the NV weight
// vectors are loaded once and each of the NX input values is broadcast and FMA'd into its row of
// accumulators. Bias, ReLU and the store to the blocked output happen once per tile (fused).
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/kernels.h"

namespace unet_rt::kernels::simd {

// Traits with `lane_fma` (NEON) multiply by one lane of a register (V::fma_lane<K>): for blocks of a
// fixed channel count CB (a multiple of L) the tile then loads L channels of each pixel with one
// vector load and uses its lanes in turn; the sums are the same, in the same order, as with a
// broadcast per channel. Other traits (x86: a broadcast load is as cheap as a plain one) keep the
// broadcast.
template <class V, class = void>
struct has_lane_fma : std::false_type {};
template <class V>
struct has_lane_fma<V, std::void_t<decltype(V::lane_fma)>> : std::bool_constant<V::lane_fma> {};

// Traits with `unroll_cb` (AVX2) unroll the loop over a fixed channel count CB whole (see tile()).
template <class V, class = void>
struct has_unroll_cb : std::false_type {};
template <class V>
struct has_unroll_cb<V, std::void_t<decltype(V::unroll_cb)>> : std::bool_constant<V::unroll_cb> {};

// One register tile. in[i] points at input pixel (row, x0) of the tile's first tap; w at the
// group's packed weights for these inputs; y at output pixel 0 of the tile (pixel stride opx),
// output-channel vector v goes to block v*L/16 (block stride ybs), lane offset (v*L)%16. The sums
// start from bias, or with bias == nullptr from the values already at y.
template <class V, int NX, int NV, int CB>
inline void tile(const View* in, int nin, int kh, int kw, int64_t row, int64_t x0, const float* w, const float* bias,
                 bool relu, float* y, int64_t opx, int64_t ybs) {
  constexpr int L = V::L;
  constexpr int OCG = NV * L;
  typename V::reg acc[NX][NV];
  for (int v = 0; v < NV; ++v) {
    if (!bias) {  // accumulate onto y (a GEMM split over its input channels: the same FMAs, in order)
      for (int j = 0; j < NX; ++j) acc[j][v] = V::load(y + ((v * L) / 16) * ybs + j * opx + (v * L) % 16);
      continue;
    }
    typename V::reg b = V::load(bias + v * L);
    for (int j = 0; j < NX; ++j) acc[j][v] = b;
  }
  for (int i = 0; i < nin; ++i) {
    const View& vw = in[i];
    const int cb = CB ? CB : vw.cb;
    const int64_t rs = vw.rs;
    const float* base = vw.p + row * rs + x0 * cb;
    for (int blk = 0; blk < vw.nblk; ++blk, base += vw.bs)
      for (int ky = 0; ky < kh; ++ky)
        for (int kx = 0; kx < kw; ++kx) {
          const float* ip = base + ky * rs + kx * cb;
          if constexpr (has_lane_fma<V>::value && CB > 0 && CB % L == 0) {
            // acc[j][v] += w[c + K][v] * x[j][c + K], K < 4: NX*NV accumulators + NX input vectors +
            // the weight vector in use (loaded one at a time, each used NX times)
            static_assert(L == 4, "lane_fma: 4-lane traits");
#pragma GCC unroll 16
            for (int c = 0; c < CB; c += L, w += L * OCG) {
              typename V::reg xv[NX];
              for (int j = 0; j < NX; ++j) xv[j] = V::load(ip + j * CB + c);
#define UNET_RT_LANE_STEP(K)                                                                \
  for (int v = 0; v < NV; ++v) {                                                            \
    const typename V::reg wv = V::load(w + (K) * OCG + v * L);                              \
    for (int j = 0; j < NX; ++j) acc[j][v] = V::template fma_lane<K>(acc[j][v], wv, xv[j]); \
  }
              UNET_RT_LANE_STEP(0)
              UNET_RT_LANE_STEP(1)
              UNET_RT_LANE_STEP(2)
              UNET_RT_LANE_STEP(3)
#undef UNET_RT_LANE_STEP
            }
            continue;
          }
// One input channel c: the NV weight vectors, then each pixel's value (stride S) broadcast into its row.
// Traits with unroll_cb run a fixed channel count CB unrolled whole: with 16 registers GCC keeps the
// accumulators in registers only then (the rolled loop stores all NX*NV of them to the stack on every
// iteration); with 32 (AVX-512) the rolled loop is the one that keeps them.
#define UNET_RT_BCAST_STEP(S)                                              \
  typename V::reg wv[NV];                                                  \
  for (int v = 0; v < NV; ++v) wv[v] = V::load(w + v * L);                 \
  for (int j = 0; j < NX; ++j) {                                           \
    typename V::reg xb = V::bcast(ip + j * (S) + c);                       \
    for (int v = 0; v < NV; ++v) acc[j][v] = V::fma(xb, wv[v], acc[j][v]); \
  }
          if constexpr (CB > 0 && has_unroll_cb<V>::value) {
#pragma GCC unroll 16
            for (int c = 0; c < CB; ++c, w += OCG) {
              UNET_RT_BCAST_STEP(CB)
            }
            continue;
          }
          for (int c = 0; c < cb; ++c, w += OCG) {
            UNET_RT_BCAST_STEP(cb)
          }
#undef UNET_RT_BCAST_STEP
        }
  }
  const typename V::reg zero = V::zero();
  for (int j = 0; j < NX; ++j)
    for (int v = 0; v < NV; ++v) {
      typename V::reg r = relu ? V::max(acc[j][v], zero) : acc[j][v];
      V::store(y + ((v * L) / 16) * ybs + j * opx + (v * L) % 16, r);
    }
}

using TileFn = void (*)(const View*, int, int, int, int64_t, int64_t, const float*, const float*, bool, float*, int64_t,
                        int64_t);

template <class V, int NV, int CB, int... NX>
constexpr auto make_tile_table(std::integer_sequence<int, NX...>) {
  return std::array<TileFn, sizeof...(NX)>{{&tile<V, NX + 1, NV, CB>...}};
}

// Runs tiles of NXMAX pixels along one output row of `ow` pixels, then one remainder tile.
template <class V, int NV, int CB, int NXMAX>
inline void row_tiles(const View* in, int nin, int kh, int kw, int64_t row, int ow, const float* w, const float* bias,
                      bool relu, float* y, int64_t opx, int64_t ybs) {
  static constexpr auto table = make_tile_table<V, NV, CB>(std::make_integer_sequence<int, NXMAX>{});
  int x = 0;
  for (; x + NXMAX <= ow; x += NXMAX)
    tile<V, NXMAX, NV, CB>(in, nin, kh, kw, row, x, w, bias, relu, y + x * opx, opx, ybs);
  if (x < ow) table[ow - x - 1](in, nin, kh, kw, row, x, w, bias, relu, y + x * opx, opx, ybs);
}

template <class V, int NV, int NXMAX>
inline void conv_row_nv(const ConvArgs& a, int g, int oy) {
  const float* w = a.w + g * conv_group_weights(a);
  const float* bias = a.bias + g * a.ocg;
  float* y = a.y.p + (int64_t)(g * a.ocg / 16) * a.y.bs + (int64_t)oy * a.y.rs;
  bool cb16 = true;
  for (int i = 0; i < a.nin; ++i) cb16 = cb16 && a.in[i].cb == 16;
  if (cb16) row_tiles<V, NV, 16, NXMAX>(a.in, a.nin, a.kh, a.kw, oy, a.ow, w, bias, a.relu, y, 16, a.y.bs);
  else row_tiles<V, NV, 0, NXMAX>(a.in, a.nin, a.kh, a.kw, oy, a.ow, w, bias, a.relu, y, 16, a.y.bs);
}

template <class V, int NV, int NXMAX>
inline void up_row_nv(const UpArgs& a, int g, int iy) {
  const int64_t ic = a.in.nblk * 16;
  const float* bias = a.bias + g * a.ocg;
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const float* w = a.w + ((int64_t)(g * 2 + dy) * 2 + dx) * ic * a.ocg;
      float* y = a.y.p + (int64_t)(g * a.ocg / 16) * a.y.bs + (int64_t)(2 * iy + dy) * a.y.rs + dx * 16;
      row_tiles<V, NV, 16, NXMAX>(&a.in, 1, 1, 1, iy, a.iw, w, bias, false, y, 32, a.y.bs);
    }
}

template <class V>
inline void pool_row(const PoolArgs& a, int blk, int oy) {
  constexpr int L = V::L;
  const float* r0 = a.in.p + blk * a.in.bs + (int64_t)(2 * oy) * a.in.rs;
  const float* r1 = r0 + a.in.rs;
  float* yo = a.y.p + blk * a.y.bs + (int64_t)oy * a.y.rs;
  for (int ox = 0; ox < a.ow; ++ox)
    for (int c = 0; c < 16; c += L) {
      const int i0 = 2 * ox * 16 + c, i1 = i0 + 16;
      V::store(yo + ox * 16 + c,
               V::max(V::max(V::load(r0 + i0), V::load(r0 + i1)), V::max(V::load(r1 + i0), V::load(r1 + i1))));
    }
}

// Head: per pixel, K dot products over the channel blocks (vector FMAs, one horizontal sum each),
// written straight to the planar output; the softmax then runs in place over the strided values.
template <class V>
inline void head_row(const HeadArgs& a, int oy) {
  constexpr int L = V::L;
  const int c16 = a.in.nblk * 16;
  float* orow = a.out + (int64_t)oy * a.out_rs;
  for (int ox = 0; ox < a.ow; ++ox) {
    for (int k = 0; k < a.k; ++k) {
      typename V::reg s = V::zero();
      for (int blk = 0; blk < a.in.nblk; ++blk) {
        const float* ip = a.in.p + blk * a.in.bs + (int64_t)oy * a.in.rs + (int64_t)ox * 16;
        for (int c = 0; c < 16; c += L) s = V::fma(V::load(ip + c), V::load(a.w + k * c16 + blk * 16 + c), s);
      }
      orow[k * a.out_cs + ox] = a.bias[k] + V::hsum(s);
    }
    if (a.softmax) softmax_inplace(orow + ox, a.k, a.out_cs);
  }
}

static inline int imin(int a, int b) { return a < b ? a : b; }

// ---- Winograd F(4x4, 3x3) (kernels.h) ------------------------------------------------------------
// Winograd F(4x4, 3x3) on the interpolation points 0, 1, -1, 1/2, -2 (and infinity) rather than the
// usual 0, +-1, +-2: the same exact result with half the error once V and U are rounded to bf16
// (measured on random layers: max error 0.015 vs 0.033 of the largest output; docs/speed.md). The
// matrices (exact rationals; tests/test_kernels.py checks y = A^T [(G g G^T) . (B^T d B)] A):
//   B^T: [1 -3/2 -2 3/2 1 0] [0 -1 1/2 5/2 1 0] [0 1 -5/2 1/2 1 0] [0 -2 -1 2 1 0] [0 1/2 -1 -1/2 1 0]
//        [0 1 -3/2 -2 3/2 1]
//   A^T: [1 1 1 1 1 0] [0 1 -1 1/2 -2 0] [0 1 1 1/4 4 0] [0 1 -1 1/8 -8 1]
//   G:   [1 0 0] [1/3 1/3 1/3] [-1/3 1/3 -1/3] [-16/15 -8/15 -4/15] [1/15 -2/15 4/15] [0 0 1]
// o[k*os] = (B^T d)_k for d[k*s], k < 6.
template <class V>
inline void wino_bt(const typename V::reg* d, int s, typename V::reg* o, int os) {
  using R = typename V::reg;
  const R c05 = V::set1(0.5f), c15 = V::set1(1.5f), c2 = V::set1(2.0f), c3 = V::set1(3.0f);
  const R d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  const R m13 = V::sub(d3, d1), s42 = V::sub(d4, d2), p = V::fma(c05, V::add(d2, d3), d4);
  o[0] = V::fma(c15, m13, V::fnma(c2, d2, V::add(d0, d4)));
  o[os] = V::fma(c2, d3, V::sub(p, d1));
  o[2 * os] = V::fnma(c3, d2, V::add(p, d1));
  o[3 * os] = V::fma(c2, m13, s42);
  o[4 * os] = V::fnma(c05, m13, s42);
  o[5 * os] = V::fma(c15, s42, V::fnma(c2, d3, V::add(d1, d5)));
}

// o[k*os] = (A^T m)_k, k < 4.
template <class V>
inline void wino_at(const typename V::reg* m, int s, typename V::reg* o, int os) {
  using R = typename V::reg;
  const R c2 = V::set1(2.0f), c4 = V::set1(4.0f), c8 = V::set1(8.0f);
  const R c05 = V::set1(0.5f), c025 = V::set1(0.25f), c0125 = V::set1(0.125f);
  const R p12 = V::add(m[s], m[2 * s]), m12 = V::sub(m[s], m[2 * s]), m3 = m[3 * s], m4 = m[4 * s];
  o[0] = V::add(V::add(m[0], p12), V::add(m3, m4));
  o[os] = V::fma(c05, m3, V::fnma(c2, m4, m12));
  o[2 * os] = V::fma(c025, m3, V::fma(c4, m4, p12));
  o[3 * os] = V::add(V::fma(c0125, m3, V::fnma(c8, m4, m12)), m[5 * s]);
}

// Row A of (G k) for k[j*s], j < 3. One definition per row, so that the full transform (wino_g) and
// the on-the-fly transform of one row (wino_wt_rows) compute U with the same operations.
template <class V, int A>
inline typename V::reg wino_g_row(const typename V::reg* k, int s) {
  const typename V::reg k0 = k[0], k1 = k[s], k2 = k[2 * s], z = V::zero();
  if constexpr (A == 0) return k0;
  if constexpr (A == 1) return V::fma(V::set1(1.0f / 3), V::add(V::add(k0, k2), k1), z);
  if constexpr (A == 2) return V::fma(V::set1(1.0f / 3), V::sub(k1, V::add(k0, k2)), z);
  if constexpr (A == 3)
    return V::fnma(V::set1(16.0f / 15), k0, V::fnma(V::set1(8.0f / 15), k1, V::fnma(V::set1(4.0f / 15), k2, z)));
  if constexpr (A == 4)
    return V::fma(V::set1(1.0f / 15), k0, V::fnma(V::set1(2.0f / 15), k1, V::fma(V::set1(4.0f / 15), k2, z)));
  return k2;
}

// o[a*os] = (G k)_a, a < 6.
template <class V>
inline void wino_g(const typename V::reg* k, int s, typename V::reg* o, int os) {
  o[0] = wino_g_row<V, 0>(k, s);
  o[os] = wino_g_row<V, 1>(k, s);
  o[2 * os] = wino_g_row<V, 2>(k, s);
  o[3 * os] = wino_g_row<V, 3>(k, s);
  o[4 * os] = wino_g_row<V, 4>(k, s);
  o[5 * os] = wino_g_row<V, 5>(k, s);
}

// Weight transform of one output group (kernels.h WinoWeightsFn): g [IC][9][ocg] -> U_g = G g G^T,
// [36][IC][ocg] fp32 (A < 0) or transform row A only (positions 6A .. 6A+5, [6][IC][ocg]), or with
// BF16 [..][IC/2][ocg][2] (V::store_bf16_pairs interleaves two input channels' values, lane by lane).
template <class V, bool BF16, int A>
inline void wino_wt_rows(const float* g, int ic, int ocg, void* uout) {
  using R = typename V::reg;
  constexpr int L = V::L, P = BF16 ? 2 : 1, NQ = A < 0 ? 36 : 6;
  const int64_t qs = (int64_t)ic * ocg;  // elements per transform position
  for (int c = 0; c < ic; c += P)
    for (int lo = 0; lo < ocg; lo += L) {
      R u[P][NQ];
      for (int p = 0; p < P; ++p) {
        R k[9];
        for (int i = 0; i < 9; ++i) k[i] = V::load(g + ((int64_t)(c + p) * 9 + i) * ocg + lo);
        if constexpr (A < 0) {
          R t[18];
          for (int j = 0; j < 3; ++j) wino_g<V>(k + j, 3, t + j, 3);             // t[a][j] = (G k)[a][j]
          for (int a = 0; a < 6; ++a) wino_g<V>(t + 3 * a, 1, u[p] + 6 * a, 1);  // u[a][b] = (t G^T)[a][b]
        } else {
          R t[3];
          for (int j = 0; j < 3; ++j) t[j] = wino_g_row<V, A>(k + j, 3);  // t[A][j]
          wino_g<V>(t, 1, u[p], 1);
        }
      }
      if constexpr (BF16) {
        uint16_t* o = static_cast<uint16_t*>(uout) + ((int64_t)(c / 2) * ocg + lo) * 2;
        for (int q = 0; q < NQ; ++q) V::store_bf16_pairs(o + q * qs, u[0][q], u[P - 1][q]);
      } else {
        float* o = static_cast<float*>(uout) + (int64_t)c * ocg + lo;
        for (int q = 0; q < NQ; ++q) V::store(o + q * qs, u[0][q]);
      }
    }
}
template <class V, bool BF16 = false>
inline void wino_wt(const float* g, int ic, int ocg, int row, void* u) {
  switch (row) {
    case 0: return wino_wt_rows<V, BF16, 0>(g, ic, ocg, u);
    case 1: return wino_wt_rows<V, BF16, 1>(g, ic, ocg, u);
    case 2: return wino_wt_rows<V, BF16, 2>(g, ic, ocg, u);
    case 3: return wino_wt_rows<V, BF16, 3>(g, ic, ocg, u);
    case 4: return wino_wt_rows<V, BF16, 4>(g, ic, ocg, u);
    case 5: return wino_wt_rows<V, BF16, 5>(g, ic, ocg, u);
    default: return wino_wt_rows<V, BF16, -1>(g, ic, ocg, u);
  }
}

// Input transform of one tile. BF16: V in bf16 (V::store_bf16, only in the bf16 traits).
template <class V, bool BF16 = false>
inline void wino_in(const WinoArgs& a, void* vout, int64_t nband, int64_t tile, int64_t n) {
  // x_i: [IC_i/16, OH+2, OW+2, 16] -> V[t][blk][n][16]
  using R = typename V::reg;
  constexpr int L = V::L;
  const int ty = (int)(tile / a.tw), tx = (int)(tile % a.tw);
  const int y0 = 4 * ty, x0 = 4 * tx;
  const int ny = imin(6, a.oh + 2 - y0), nx = imin(6, a.ow + 2 - x0);  // valid input rows/cols
  const int64_t vt = (int64_t)a.icb * nband * 16;
  int blk_all = 0;
  for (int i = 0; i < a.nin; ++i) {
    const View& in = a.in[i];
    for (int blk = 0; blk < in.nblk; ++blk, ++blk_all) {
      const float* ip = in.p + blk * in.bs + (int64_t)y0 * in.rs + (int64_t)x0 * 16;
      const int64_t vo = (int64_t)blk_all * nband * 16 + n * 16;
      for (int lo = 0; lo < 16; lo += L) {
        R d[36], t[36];
        if (ny == 6 && nx == 6) {
          for (int r = 0; r < 6; ++r)
            for (int c = 0; c < 6; ++c) d[r * 6 + c] = V::load(ip + r * in.rs + c * 16 + lo);
        } else {
          for (int r = 0; r < 6; ++r)
            for (int c = 0; c < 6; ++c)
              d[r * 6 + c] = (r < ny && c < nx) ? V::load(ip + r * in.rs + c * 16 + lo) : V::zero();
        }
        for (int c = 0; c < 6; ++c) wino_bt<V>(d + c, 6, t + c, 6);          // columns: t = B^T d
        for (int k = 0; k < 6; ++k) wino_bt<V>(t + 6 * k, 1, d + 6 * k, 1);  // rows: d = t B
        if constexpr (BF16) {
          uint16_t* v = static_cast<uint16_t*>(vout) + vo + lo;
          for (int q = 0; q < 36; ++q) V::store_bf16(v + q * vt, d[q]);
        } else {
          float* v = static_cast<float*>(vout) + vo + lo;
          for (int q = 0; q < 36; ++q) V::store(v + q * vt, d[q]);
        }
      }
    }
  }
}

// fp32 GEMM of one (q, g) over band slots [n0, n0+nt): the implicit-GEMM register tile above with
// the tiles as "pixels" (stride 16) and the input blocks as channels. With a.kc_blocks > 0 the input
// blocks are taken kc_blocks at a time over all nt tiles, so that this part of U[g][q] (kc_blocks * 16 *
// ocg floats, sized by the executor for the L1 cache) is read from L1 by every register tile; the
// partial sums go through M in fp32, so the result is the same, bit for bit, as in one pass.
template <class V, int NV, int NXMAX>
inline void wino_gemm(const WinoArgs& a, const void* vin, int64_t nband, int q, int g, int64_t n0, int nt, float* m) {
  // V: [36][icb][nband][16]  U: [OC/ocg][36][icb*16][ocg] -> M: [ocb][nband][36][16]
  alignas(64) static const float kZeros[32] = {};
  const int64_t vt = (int64_t)a.icb * nband * 16;
  const float* ug = static_cast<const float*>(a.u) + wino_u_offset(a, g, q);
  const float* vq = static_cast<const float*>(vin) + q * vt + n0 * 16;
  float* mo = m + ((int64_t)(g * a.ocg / 16) * nband + n0) * kWinoT * 16 + q * 16;
  const int kc = a.kc_blocks > 0 ? imin(a.kc_blocks, a.icb) : a.icb;
  for (int k0 = 0; k0 < a.icb; k0 += kc) {
    View vv;
    vv.p = vq + (int64_t)k0 * nband * 16;
    vv.cb = 16;
    vv.nblk = imin(kc, a.icb - k0);
    vv.rs = 0;
    vv.bs = nband * 16;
    row_tiles<V, NV, 16, NXMAX>(&vv, 1, 1, 1, 0, nt, ug + (int64_t)k0 * 16 * a.ocg, k0 == 0 ? kZeros : nullptr, false,
                                mo, kWinoT * 16, nband * kWinoT * 16);
  }
}

// Output transform of 16-channel block ob for band slots [n0, n0+nt) (+ bias, ReLU).
template <class V>
inline void wino_out(const WinoArgs& a, const float* m, int64_t nband, int64_t t0, int ob, int64_t n0, int nt) {
  // M: [ocb][nband][36][16] -> y: [OC/16, OH, OW, 16]
  using R = typename V::reg;
  constexpr int L = V::L;
  const R zero = V::zero();
  for (int j = 0; j < nt; ++j) {
    const int64_t tile = t0 + n0 + j;
    const int ty = (int)(tile / a.tw), tx = (int)(tile % a.tw);
    const int ny = imin(4, a.oh - 4 * ty), nx = imin(4, a.ow - 4 * tx);
    float* yo = a.y.p + (int64_t)ob * a.y.bs + (int64_t)(4 * ty) * a.y.rs + (int64_t)(4 * tx) * 16;
    const float* mp = m + ((int64_t)ob * nband + n0 + j) * kWinoT * 16;
    for (int lo = 0; lo < 16; lo += L) {
      R mm[36], t[24], o[16];
      for (int q = 0; q < 36; ++q) mm[q] = V::load(mp + q * 16 + lo);
      for (int c = 0; c < 6; ++c) wino_at<V>(mm + c, 6, t + c, 6);         // t[k*6+c] = (A^T m)[k][c]
      for (int k = 0; k < 4; ++k) wino_at<V>(t + 6 * k, 1, o + 4 * k, 1);  // o[k*4+j] = (t A)[k][j]
      const R b = V::load(a.bias + ob * 16 + lo);
      for (int r = 0; r < ny; ++r)
        for (int c = 0; c < nx; ++c) {
          R val = V::add(o[r * 4 + c], b);
          if (a.relu) val = V::max(val, zero);
          V::store(yo + r * a.y.rs + c * 16 + lo, val);
        }
    }
  }
}

}  // namespace unet_rt::kernels::simd
