// Winograd convolution driver: see winograd.h and kernels.h.
#include "executor/winograd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "core/memory.h"
#include "core/platform.h"

namespace unet_rt {

namespace k = kernels;

int64_t wino_v_bytes(int icb, int64_t band, bool bf16) { return k::wino_v_elems(icb, band) * (bf16 ? 2 : 4); }
int64_t wino_m_bytes(int ocb, int64_t band) { return k::wino_m_floats(ocb, band) * 4; }

int64_t wino_band(int icb, int ocb, int64_t tiles, double u_bytes, bool bf16) {
  const double target = std::max(4.0 * (1 << 20), std::min(32.0 * (1 << 20), u_bytes / 2));
  const int64_t per_tile = wino_v_bytes(icb, 1, bf16) + wino_m_bytes(ocb, 1);
  const int64_t band = std::max<int64_t>(24, (int64_t)(target / per_tile) / 24 * 24);
  return std::min(band, tiles);
}

int wino_kc_blocks(int ocg) {
  const int64_t l1 = platform::cache_sizes().l1d > 0 ? platform::cache_sizes().l1d : 32 * 1024;
  return (int)std::max<int64_t>(1, l1 / 2 / ((int64_t)16 * ocg * 4));
}

double wino_private_default_bytes() {
  const int64_t l2 = platform::cache_sizes().l2 > 0 ? platform::cache_sizes().l2 : 1 << 20;
  return 0.75 * (double)l2;
}

int64_t wino_private_band(int icb, int ocb, int64_t tiles, double bytes, bool bf16) {
  const double per_tile = (double)(wino_v_bytes(icb, 1, bf16) + wino_m_bytes(ocb, 1));
  return std::min<int64_t>(tiles, std::max<int64_t>(12, (int64_t)(bytes / per_tile)));
}

template <class Clock>
static void run_private_bands(const k::Kernels& kn, const k::WinoArgs& a, const WinoSchedule& s, const ParallelFor& pf,
                              double* seconds, const Clock& now) {
  const int64_t tiles = (int64_t)a.th * a.tw, nb = std::min(s.private_band, tiles), units = (tiles + nb - 1) / nb;
  const int ng = a.ocb * 16 / a.ocg;
  const size_t vfl = (size_t)(wino_v_bytes(a.icb, nb, kn.bf16) + 63) / 64 * 16,
               mfl = (size_t)k::wino_m_floats(a.ocb, nb);
  std::atomic<int64_t> ns[3] = {0, 0, 0};  // per-phase thread time (profile), nanoseconds
  const double w0 = seconds ? now() : 0.0;
  pf(units, [&](int64_t b) {
    thread_local Scratch<float> buf;  // V, then M
    float* v = buf.get(vfl + mfl);
    float* m = v + vfl;
    const int64_t t0 = b * nb, n = std::min(nb, tiles - t0);
    double t = seconds ? now() : 0.0;
    auto lap = [&](int i) {
      if (!seconds) return;
      const double t1 = now();
      ns[i] += (int64_t)((t1 - t) * 1e9);
      t = t1;
    };
    for (int64_t j = 0; j < n; ++j) kn.wino_in(a, v, nb, t0 + j, j);
    lap(0);
    for (int g = 0; g < ng; ++g)
      for (int q = 0; q < k::kWinoT; ++q)
        for (int64_t n0 = 0; n0 < n; n0 += s.gemm_nt)
          kn.wino_gemm(a, v, nb, q, g, n0, (int)std::min<int64_t>(s.gemm_nt, n - n0), m);
    lap(1);
    for (int ob = 0; ob < a.ocb; ++ob) kn.wino_out(a, m, nb, t0, ob, 0, (int)n);
    lap(2);
  });
  if (seconds) {  // the wall time, split in the proportion of the phases' thread time
    const double wall = now() - w0, sum = 1e-9 * (double)(ns[0] + ns[1] + ns[2]);
    for (int i = 0; i < 3; ++i) seconds[i] += sum > 0 ? wall * 1e-9 * (double)ns[i] / sum : 0.0;
  }
}

void run_winograd(const k::Kernels& kn, const k::WinoArgs& a, const WinoSchedule& s, void* v, float* m,
                  const ParallelFor& pf, double* seconds) {
  auto now = [&s]() {
    return s.clock ? s.clock()
                   : std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  const int64_t tiles = (int64_t)a.th * a.tw, nb = s.band > 0 ? s.band : tiles;
  const int ng = a.ocb * 16 / a.ocg;
  auto lap = [&](double& t, int i) {
    if (!seconds) return;
    const double t1 = now();
    seconds[i] += t1 - t;
    t = t1;
  };
  if (s.private_band > 0) {
    run_private_bands(kn, a, s, pf, seconds, now);
    return;
  }
  for (int64_t t0 = 0; t0 < tiles; t0 += nb) {
    const int64_t n = std::min(nb, tiles - t0);
    double t = seconds ? now() : 0.0;
    // 1. input transforms, a few tiles per work item
    const int64_t in_units = (n + s.in_nt - 1) / s.in_nt;
    pf(in_units, [&](int64_t i) {
      const int64_t j1 = std::min(n, (i + 1) * s.in_nt);
      for (int64_t j = i * s.in_nt; j < j1; ++j) kn.wino_in(a, v, nb, t0 + j, j);
    });
    lap(t, 0);
    // 2. GEMMs: unit (q, g, chunk), chunks innermost so that consecutive units share U[g][q]
    const int64_t chunks = (n + s.gemm_nt - 1) / s.gemm_nt;
    if (s.raw) {
      // unit (row, g), g fastest: transform U_g's 6 positions of that row into a per-thread buffer
      // (L2-sized), then run those 6 GEMMs over the band; consecutive units share V's 6 positions.
      const int64_t ic = (int64_t)a.icb * 16, elems = 6 * ic * a.ocg;
      pf(6 * ng, [&](int64_t u) {
        const int row = (int)(u / ng), g = (int)(u % ng);
        thread_local Scratch<float> ug;  // bf16: two per float
        float* u6 = ug.get((size_t)(kn.bf16 ? (elems + 1) / 2 : elems));
        kn.wino_wt(s.raw + g * ic * 9 * a.ocg, (int)ic, a.ocg, row, u6);
        k::WinoArgs ag = a;
        ag.u = u6;
        ag.u_gs = 0;
        ag.u_q0 = 6 * row;
        for (int q = 6 * row; q < 6 * row + 6; ++q)
          for (int64_t n0 = 0; n0 < n; n0 += s.gemm_nt)
            kn.wino_gemm(ag, v, nb, q, g, n0, (int)std::min<int64_t>(s.gemm_nt, n - n0), m);
      });
    } else {
      pf((int64_t)k::kWinoT * ng * chunks, [&](int64_t u) {
        const int64_t c = u % chunks, qg = u / chunks;
        const int q = (int)(qg / ng), g = (int)(qg % ng);
        const int64_t n0 = c * s.gemm_nt;
        kn.wino_gemm(a, v, nb, q, g, n0, (int)std::min<int64_t>(s.gemm_nt, n - n0), m);
      });
    }
    lap(t, 1);
    // 3. output transforms (+ bias, ReLU) per 16-channel block and run of tiles
    const int64_t out_chunks = (n + s.out_nt - 1) / s.out_nt;
    pf((int64_t)a.ocb * out_chunks, [&](int64_t u) {
      const int ob = (int)(u / out_chunks);
      const int64_t n0 = (u % out_chunks) * s.out_nt;
      kn.wino_out(a, m, nb, t0, ob, n0, (int)std::min<int64_t>(s.out_nt, n - n0));
    });
    lap(t, 2);
  }
}

}  // namespace unet_rt
