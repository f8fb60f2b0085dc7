// Running one Winograd F(4x4, 3x3) convolution through the three kernel phases of kernels.h, band
// by band; shared by the executor (network.cc, on its thread pool) and the kernel tests' bindings
// (serially), so that the tests exercise the executor's own work split.
#pragma once
#include <cstdint>
#include <functional>

#include "kernels/kernels.h"

namespace unet_rt {

// parallel_for(n, fn): fn(i) for every i in [0, n), in any order, on any threads.
using ParallelFor = std::function<void(int64_t, const std::function<void(int64_t)>&)>;

struct WinoSchedule {
  int64_t band = 0;             // tiles per band (V and M hold one band)
  int gemm_nt = 96;             // tiles per GEMM work unit (one q, one group)
  int in_nt = 8;                // tiles per input-transform work unit
  int out_nt = 16;              // tiles per output-transform work unit
  double (*clock)() = nullptr;  // seconds for the phase times (default: steady wall clock)
  // Weights kept as raw taps (PackedConv::raw()): each band's GEMM phase runs units (row, group):
  // the group's 6 transform positions of that row transformed into a per-thread buffer
  // (Kernels::wino_wt), then their GEMMs (parallelism = 6 * OC / ocg).
  const float* raw = nullptr;
  // > 0: private bands of this many tiles instead: each work unit runs one band through all three
  // phases on one thread, V and M in that thread's own buffers (no barrier between phases; sized for
  // L2 by the executor for layers whose U is small enough to stay cached across bands).
  int64_t private_band = 0;
};

// Band size for a conv with icb input / ocb output blocks and u_bytes of transformed weights over
// `tiles` tiles: V + M of a band take about max(4 MB, min(32 MB, u_bytes / 2)), so deep layers
// (weights >> activations) stream their weights from memory once for many tiles, shallow layers
// keep V and M near the L3 cache.
int64_t wino_band(int icb, int ocb, int64_t tiles, double u_bytes, bool bf16);
// Tiles of a private band (WinoSchedule::private_band) whose V + M take about `bytes` (at least 12).
int64_t wino_private_band(int icb, int ocb, int64_t tiles, double bytes, bool bf16);
// Input blocks per pass of the fp32 GEMM (WinoArgs::kc_blocks): the part of U[g][q] a pass reads,
// kc_blocks * 16 * ocg floats, takes about half of this core's L1 data cache (platform::cache_sizes(),
// 32 KB where unknown), so that every register tile of the pass reads it from L1.
int wino_kc_blocks(int ocg);
// V + M of a private band by default: 3/4 of this core's L2 (platform::cache_sizes(); 1 MB where
// unknown), 768 KB on the 1 MB L2 of AMD Zen 4 where it was tuned, 384 KB on Zen 3's 512 KB.
double wino_private_default_bytes();
// Bytes of V (elements of 2 or 4 bytes) and M for a band.
int64_t wino_v_bytes(int icb, int64_t band, bool bf16);
int64_t wino_m_bytes(int ocb, int64_t band);

// Runs the conv: a.{in, icb, ocb, u, bias, ocg, oh, ow, th, tw, y, relu} set (a.u unused with
// s.raw); v and m hold a band.
// seconds (if not null) accumulates [input transform, GEMM, output transform] wall time.
void run_winograd(const kernels::Kernels& kn, const kernels::WinoArgs& a, const WinoSchedule& s, void* v, float* m,
                  const ParallelFor& pf, double* seconds = nullptr);

}  // namespace unet_rt
