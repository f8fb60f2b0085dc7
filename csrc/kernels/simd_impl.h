// SIMD kernel bodies shared by the AVX2 and AVX-512 versions of each family, written once against a
// small vector-traits type V (V::reg, V::L lanes, load/store/bcast/fma/max/zero). Include ONLY from
// a file compiled with the matching ISA flags (csrc/kernels/<family>/{avx2,avx512}.cc): the traits
// live in simd_avx2.h / simd_avx512.h.
//
// The core is an implicit-GEMM register tile: NX output pixels x NV vectors of output channels
// (NV*L = ocg) live in NX*NV accumulator registers; for each input channel and tap, the NV weight
// vectors are loaded once and each of the NX input values is broadcast and FMA'd into its row of
// accumulators. Bias, ReLU and the store to the blocked output happen once per tile (fused).
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/kernels.h"

namespace unet_rt::kernels::simd {

// One register tile. in[i] points at input pixel (row, x0) of the tile's first tap; w at the
// group's packed weights for these inputs; y at output pixel 0 of the tile (pixel stride opx),
// output-channel vector v goes to block v*L/16 (block stride ybs), lane offset (v*L)%16.
template <class V, int NX, int NV, int CB>
inline void tile(const View* in, int nin, int kh, int kw, int64_t row, int64_t x0, const float* w,
                 const float* bias, bool relu, float* y, int64_t opx, int64_t ybs) {
  constexpr int L = V::L;
  constexpr int OCG = NV * L;
  typename V::reg acc[NX][NV];
  for (int v = 0; v < NV; ++v) {
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
          for (int c = 0; c < cb; ++c, w += OCG) {
            typename V::reg wv[NV];
            for (int v = 0; v < NV; ++v) wv[v] = V::load(w + v * L);
            for (int j = 0; j < NX; ++j) {
              typename V::reg xb = V::bcast(ip + j * cb + c);
              for (int v = 0; v < NV; ++v) acc[j][v] = V::fma(xb, wv[v], acc[j][v]);
            }
          }
        }
  }
  const typename V::reg zero = V::zero();
  for (int j = 0; j < NX; ++j)
    for (int v = 0; v < NV; ++v) {
      typename V::reg r = relu ? V::max(acc[j][v], zero) : acc[j][v];
      V::store(y + ((v * L) / 16) * ybs + j * opx + (v * L) % 16, r);
    }
}

using TileFn = void (*)(const View*, int, int, int, int64_t, int64_t, const float*, const float*, bool,
                        float*, int64_t, int64_t);

template <class V, int NV, int CB, int... NX>
constexpr auto make_tile_table(std::integer_sequence<int, NX...>) {
  return std::array<TileFn, sizeof...(NX)>{{&tile<V, NX + 1, NV, CB>...}};
}

// Runs tiles of NXMAX pixels along one output row of `ow` pixels, then one remainder tile.
template <class V, int NV, int CB, int NXMAX>
inline void row_tiles(const View* in, int nin, int kh, int kw, int64_t row, int ow, const float* w,
                      const float* bias, bool relu, float* y, int64_t opx, int64_t ybs) {
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
  if (cb16)
    row_tiles<V, NV, 16, NXMAX>(a.in, a.nin, a.kh, a.kw, oy, a.ow, w, bias, a.relu, y, 16, a.y.bs);
  else
    row_tiles<V, NV, 0, NXMAX>(a.in, a.nin, a.kh, a.kw, oy, a.ow, w, bias, a.relu, y, 16, a.y.bs);
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
      V::store(yo + ox * 16 + c, V::max(V::max(V::load(r0 + i0), V::load(r0 + i1)),
                                        V::max(V::load(r1 + i0), V::load(r1 + i1))));
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

}  // namespace unet_rt::kernels::simd
