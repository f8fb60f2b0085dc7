// Stand-alone copy of the AMX Winograd GEMM loop (csrc/kernels/conv3x3/amxbf16.cc) over the executor's
// data layouts, to see what bounds it inside a layer (docs/speed.md, "The AMX tier"): V [36][icb][tiles][16]
// bf16, U [g][36][IC/2][32][2] bf16, M [OC/16][tiles][36][16] fp32, units (q, g, 96-tile chunk).
//   g++ -O2 -mamx-tile -mamx-bf16 bench/amx/gemm_layout.cc -o /tmp/gemm_layout
//   /tmp/gemm_layout IC TILES STORE ORDER [pairs]     e.g. 256 576 1 qgc   (enc.2 of the 512² network)
// STORE 0 stores every C tile to one place instead of M (what the M stores cost); ORDER is the loop
// nest from outer to inner: qgc (the executor's), gcq or cgq; or l1: one unit (32 tiles x 32 output
// channels) again and again, its A and B in L1 (the loop's own speed: `256 32 0 l1`). `pairs`: the
// layout that was tried instead, V in pairs of input blocks [36][icb/2][tiles][32], so that each
// tdpbf16ps does K = 32 (the tile's depth) instead of 16. IC a multiple of 32. Linux only.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

struct alignas(64) Cfg {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s IC TILES STORE ORDER (e.g. 256 576 1 qgc)\n", argv[0]);
    return 2;
  }
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) {
    std::fprintf(stderr, "no AMX permission from the kernel\n");
    return 1;
  }
  const int IC = std::atoi(argv[1]), OC = IC, tiles = std::atoi(argv[2]), store = std::atoi(argv[3]);
  const char* order = argv[4];
  const bool pairs = argc > 5 && !std::strcmp(argv[5], "pairs");
  const int icb = IC / 16, ocg = 32, G = OC / ocg, nt = 96;
  const size_t nv = (size_t)36 * icb * tiles * 16, nu = (size_t)36 * IC * OC, nm = (size_t)(OC / 16) * tiles * 36 * 16;
  auto* V = static_cast<uint16_t*>(std::aligned_alloc(64, nv * 2));
  auto* U = static_cast<uint16_t*>(std::aligned_alloc(64, nu * 2));
  auto* M = static_cast<float*>(std::aligned_alloc(64, nm * 4));
  for (size_t i = 0; i < nv; ++i) V[i] = 0x3f80;  // bf16 1.0
  for (size_t i = 0; i < nu; ++i) U[i] = 0x3f80;
  std::memset(M, 0, nm * 4);
  const int kb = pairs ? 32 : 16;  // input channels per tdpbf16ps
  Cfg c;  // the kernel's configuration: tmm0-1 C (16 x 64 B), tmm2 A (16 x 2*kb B), tmm3-4 B (kb/2 x 64 B)
  for (int t = 0; t < 5; ++t) {
    c.rows[t] = t < 3 ? 16 : kb / 2;
    c.colsb[t] = t == 2 ? 2 * kb : 64;
  }
  _tile_loadconfig(&c);
  const int64_t px = 36 * 16, ustride = ocg * 4;
  auto unit = [&](int q, int g, int n0) {
    const uint16_t* v = V + (int64_t)q * icb * tiles * 16;
    const uint16_t* u = U + ((int64_t)g * 36 + q) * IC * ocg;
    float* mo = M + (int64_t)(g * ocg / 16) * tiles * px + q * 16;
    for (int j0 = n0; j0 < n0 + nt && j0 + 16 <= tiles; j0 += 16) {  // the kernel's loop (full tiles only)
      _tile_zero(0);
      _tile_zero(1);
      for (int k = 0; k < IC / kb; ++k) {
        const uint16_t* ub = u + (int64_t)k * (kb / 2) * ocg * 2;
        _tile_loadd(2, v + ((int64_t)k * tiles + j0) * kb, 2 * kb);
        _tile_loadd(3, ub, ustride);
        _tile_dpbf16ps(0, 2, 3);
        _tile_loadd(4, ub + 32, ustride);
        _tile_dpbf16ps(1, 2, 4);
      }
      if (store) {
        _tile_stored(0, mo + j0 * px, px * 4);
        _tile_stored(1, mo + ((int64_t)tiles + j0) * px, px * 4);
      } else {
        _tile_stored(0, M, 64);
      }
    }
  };
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t done = 0;  // tiles the loop computes: full 16-tile blocks of each chunk
    for (int n0 = 0; n0 < tiles; n0 += nt) done += std::min(nt, tiles - n0) / 16 * 16;
    double flops = 2.0 * 36 * done * (double)IC * OC;
    if (!std::strcmp(order, "l1")) {
      const int reps = 20000;
      for (int r = 0; r < reps; ++r) unit(0, 0, 0);
      flops = 2.0 * reps * std::min(tiles, nt) * (double)IC * ocg;
    } else if (!std::strcmp(order, "gcq")) {
      for (int g = 0; g < G; ++g)
        for (int n0 = 0; n0 < tiles; n0 += nt)
          for (int q = 0; q < 36; ++q) unit(q, g, n0);
    } else if (!std::strcmp(order, "cgq")) {
      for (int n0 = 0; n0 < tiles; n0 += nt)
        for (int g = 0; g < G; ++g)
          for (int q = 0; q < 36; ++q) unit(q, g, n0);
    } else {
      for (int q = 0; q < 36; ++q)
        for (int g = 0; g < G; ++g)
          for (int n0 = 0; n0 < tiles; n0 += nt) unit(q, g, n0);
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("IC=%d tiles=%d store=%d order=%s%s: %.2f ms, %.1f GFLOP/s\n", IC, tiles, store, order,
                pairs ? " pairs" : "", dt * 1e3, flops / dt * 1e-9);
  }
  _tile_release();
  return 0;
}
