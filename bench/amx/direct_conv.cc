// Stand-alone AMX *direct* 3x3 convolution (an implicit GEMM, as oneDNN runs convolutions on AMX), to see
// whether it would beat the AMX Winograd layer (docs/speed.md, "The AMX tier"; not in the runtime).
// bf16 X [IC/32][H+2][W+2][32], W [OC/16][9 taps][IC/32][16 channel pairs][16][2], fp32 Y
// [OC/16][H][W][16]; a 2 x 2 block of C tiles (2 runs of 16 output pixels x 2 blocks of 16 output
// channels) over the whole K loop (9 taps x IC/32, K = 32 per tdpbf16ps), loads interleaved with the
// tile products, then stored; no bias/ReLU. Checks 50 outputs against a scalar sum; prints GFLOP/s of
// the direct convolution's 2*9*IC*OC per output pixel.
//   g++ -O2 -mamx-tile -mamx-bf16 bench/amx/direct_conv.cc -o /tmp/direct_conv
//   /tmp/direct_conv IC OC SIZE [off16]   e.g. 256 256 96 (enc.2); SIZE a multiple of 32, IC of 32.
// Buffers start on a cache line; `off16` starts them 16 bytes later, as std::vector's large blocks do
// with glibc (every 64-byte tile row then straddles two lines). Linux only.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <cmath>
#include <random>
struct alignas(64) Cfg {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static uint16_t bf(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return u >> 16;
}
static float fb(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s IC OC SIZE (e.g. 256 256 96)\n", argv[0]);
    return 2;
  }
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0) {
    std::fprintf(stderr, "no AMX permission from the kernel\n");
    return 1;
  }
  const int IC = atoi(argv[1]), OC = atoi(argv[2]), H = atoi(argv[3]), Wd = H;
  const int IH = H + 2, IW = Wd + 2, icb = IC / 32, ocb = OC / 16;
  const size_t off = argc > 4 && !std::strcmp(argv[4], "off16") ? 16 : 0;
  auto buffer = [off](size_t bytes) { return static_cast<char*>(std::aligned_alloc(64, bytes + 64)) + off; };
  const size_t nx = (size_t)icb * IH * IW * 32, nw = (size_t)ocb * 9 * icb * 16 * 16 * 2,
               ny = (size_t)ocb * H * Wd * 16;
  uint16_t* X = reinterpret_cast<uint16_t*>(buffer(nx * 2));
  uint16_t* Wt = reinterpret_cast<uint16_t*>(buffer(nw * 2));
  float* Y = reinterpret_cast<float*>(buffer(ny * 4));  // not freed: the program ends
  std::mt19937 r(1);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < nx; ++i) X[i] = bf(nd(r));
  for (size_t i = 0; i < nw; ++i) Wt[i] = bf(nd(r) * 0.05f);
  Cfg c;
  for (int t = 0; t < 4; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }  // C
  for (int t = 4; t < 8; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }  // A0 A1 B0 B1
  _tile_loadconfig(&c);
  const int64_t xcs = (int64_t)IH * IW * 32, wts = (int64_t)icb * 512, wob = 9 * wts;
  auto run = [&]() {
    for (int ob = 0; ob < ocb; ob += 2)
      for (int oy = 0; oy < H; ++oy)
        for (int ox = 0; ox < Wd; ox += 32) {  // assumes Wd % 32 == 0 for the exploration
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
          for (int t = 0; t < 9; ++t) {
            const int ky = t / 3, kx = t % 3;
            const uint16_t* xp = X + ((int64_t)(oy + ky) * IW + ox + kx) * 32;
            const uint16_t* wp = Wt + ob * wob + t * wts;
            for (int k = 0; k < icb; ++k, xp += xcs, wp += 512) {
              _tile_loadd(4, xp, 64);
              _tile_loadd(6, wp, 64);
              _tile_dpbf16ps(0, 4, 6);
              _tile_loadd(5, xp + 16 * 32, 64);
              _tile_dpbf16ps(2, 5, 6);
              _tile_loadd(7, wp + wob, 64);
              _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
          float* y0 = Y + ((int64_t)ob * H + oy) * Wd * 16 + ox * 16;
          float* y1 = y0 + (int64_t)H * Wd * 16;
          _tile_stored(0, y0, 64);
          _tile_stored(1, y1, 64);
          _tile_stored(2, y0 + 256, 64);
          _tile_stored(3, y1 + 256, 64);
        }
  };
  run();
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("IC=%d OC=%d %dx%d%s: %.2f ms, %.0f GFLOP/s\n", IC, OC, H, Wd, off ? " off16" : "", dt * 1e3,
           2.0 * 9 * IC * OC * H * Wd / dt * 1e-9);
  }
  // spot-check a few outputs against a scalar reference
  double worst = 0;
  for (int s = 0; s < 50; ++s) {
    int o = r() % OC, y = r() % H, x = r() % Wd;
    double ref = 0;
    for (int i = 0; i < IC; ++i)
      for (int t = 0; t < 9; ++t) {
        float xv = fb(X[((int64_t)(i / 32) * IH + y + t / 3) * IW * 32 + (int64_t)(x + t % 3) * 32 + i % 32]);
        // W[ob][t][icb][pair][16][2]: ic = icb*32 + 2*pair + e
        int ic32 = i % 32;
        float wv =
            fb(Wt[(size_t)(o / 16) * wob + t * wts + (i / 32) * 512 + (ic32 / 2) * 32 + (o % 16) * 2 + ic32 % 2]);
        ref += (double)xv * wv;
      }
    float got = Y[((int64_t)(o / 16) * H + y) * Wd * 16 + x * 16 + o % 16];
    worst = std::max(worst, std::fabs(got - ref));
  }
  printf("max |err| %.2e\n", worst);
  _tile_release();
}
