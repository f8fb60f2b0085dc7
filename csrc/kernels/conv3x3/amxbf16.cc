// Winograd F(4x4, 3x3) GEMMs on AMX tiles (tdpbf16ps; Sapphire Rapids and later): the bf16 tier's
// GEMM where the CPU and the OS allow AMX. The input transform, the weight transform and the output
// transform are the AVX512-BF16 tier's (avx512bf16.cc): V and U have the same bf16 layouts, which
// are already what the tile instructions read (kernels.h):
//   A (16 rows x 32 bytes): 16 band tiles x one block of 16 input channels, V[q][blk][tile][16]
//   B (8 rows x 64 bytes):  8 input-channel pairs x 16 output channels, U[g][q][ic/2][ocg][2]
//   C (16 rows x 64 bytes): 16 band tiles x 16 output channels, fp32, into M[ob][tile][36][16]
// C[m][n] += sum_k A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1]: one block of 16 input channels per
// tdpbf16ps, C accumulating over the blocks in the tile register, ocg/16 C tiles per call.
//
// Compiled with -mamx-tile -mamx-bf16 (CMake, by file name). AMX needs the kernel's permission
// (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, Linux only) before the first tile instruction:
// amx_bf16_enable() asks for it (platform::request_amx_permission) once per process. dispatch.cc runs
// amx_bf16_self_check() against the AVX512-BF16 GEMM before choosing this tier and falls back (with a
// precision note) if it disagrees. First run on an Intel Xeon with AMX on 2026-12-03 (docs/speed.md,
// "The AMX tier"): correct, but the GEMM reaches ~12% of the tile peak inside the network, waiting
// on memory (V and U from L2, the M stores); from L1 this loop runs at its K = 16 limit, half the
// peak (bench/amx/gemm_layout.cc).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/platform.h"
#include "kernels/kernels.h"

namespace unet_rt::kernels {

#if defined(__linux__)
namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tmm0, tmm1: C (rows x 64 bytes fp32); tmm2: A (rows x 32 bytes bf16); tmm3, tmm4: B (8 x 64 bytes).
void configure(int rows) {
  TileConfig c;
  c.rows[0] = c.rows[1] = c.rows[2] = (uint8_t)rows;
  c.colsb[0] = c.colsb[1] = 64;
  c.colsb[2] = 32;
  c.rows[3] = c.rows[4] = 8;
  c.colsb[3] = c.colsb[4] = 64;
  _tile_loadconfig(&c);
}

}  // namespace

void conv3x3_wino_gemm_bf16_amx(const WinoArgs& a, const void* vin, int64_t nband, int q, int g, int64_t n0, int nt,
                                float* m) {
  // V: [36][icb][nband][16] bf16  U: [OC/ocg][36][IC/2][ocg][2] bf16 -> M: [ocb][nband][36][16] fp32
  const int64_t vt = (int64_t)a.icb * nband * 16;
  const uint16_t* v = static_cast<const uint16_t*>(vin) + q * vt;
  const uint16_t* u = static_cast<const uint16_t*>(a.u) + wino_u_offset(a, g, q);
  constexpr int64_t px = kWinoT * 16;  // M floats per band tile
  float* mo = m + (int64_t)(g * a.ocg / 16) * nband * px + q * 16;
  const int64_t ustride = (int64_t)a.ocg * 4;  // bytes from one input-channel pair to the next
  int configured = 0;
  for (int64_t j0 = n0; j0 < n0 + nt; j0 += 16) {
    const int rows = (int)std::min<int64_t>(16, n0 + nt - j0);
    if (rows != configured) {
      configure(rows);
      configured = rows;
    }
    _tile_zero(0);
    _tile_zero(1);
    for (int blk = 0; blk < a.icb; ++blk) {
      const uint16_t* ub = u + (int64_t)blk * 8 * a.ocg * 2;
      _tile_loadd(2, v + ((int64_t)blk * nband + j0) * 16, 32);
      _tile_loadd(3, ub, ustride);
      _tile_dpbf16ps(0, 2, 3);
      if (a.ocg == 32) {
        _tile_loadd(4, ub + 32, ustride);
        _tile_dpbf16ps(1, 2, 4);
      }
    }
    _tile_stored(0, mo + j0 * px, px * 4);
    if (a.ocg == 32) _tile_stored(1, mo + (nband + j0) * px, px * 4);
  }
  _tile_release();
}

#else  // AMX is asked for on Linux only (platform::request_amx_permission): amx_bf16_enable() below
       // is false elsewhere and this GEMM is never chosen. Not compiled there: GCC's tile-load
       // intrinsics cast the stride to long, which is 32 bits on Windows (MinGW-w64 cannot assemble it).
void conv3x3_wino_gemm_bf16_amx(const WinoArgs&, const void*, int64_t, int, int, int64_t, int, float*) { std::abort(); }
#endif

bool amx_bf16_enable(std::string* why) {
  const platform::CpuFeatures& f = platform::cpu_features();
  if (!f.amx_tile || !f.amx_bf16) {
    if (why) *why = "no AMX-TILE/AMX-BF16 on this CPU (or the OS does not enable the tile state)";
    return false;
  }
  return platform::request_amx_permission(why);
}

bool amx_bf16_self_check(WinoGemmFn reference, std::string* why) {
  // GEMM calls with remainders (21 tiles: 16 + 5), 3 input blocks, ocg 16 and 32, two groups, on
  // random bf16 data: the products are exact in both kernels, only the fp32 summation order differs.
  const int icb = 3;
  const int64_t nband = 21;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<uint16_t> v(wino_v_elems(icb, nband));
  for (auto& x : v) x = f32_to_bf16(d(rng));
  double worst = 0.0;
  for (int ocg : {16, 32}) {
    WinoArgs a;
    a.icb = icb;
    a.ocb = 2 * ocg / 16;
    a.ocg = ocg;
    std::vector<uint16_t> u((size_t)2 * kWinoT * icb * 16 * ocg);
    for (auto& x : u) x = f32_to_bf16(d(rng));
    a.u = u.data();
    std::vector<float> m1(wino_m_floats(a.ocb, nband), 0.0f), m2(m1.size(), 0.0f);
    for (int g : {0, 1})
      for (int q : {0, 17, 35}) {
        conv3x3_wino_gemm_bf16_amx(a, v.data(), nband, q, g, 2, (int)nband - 2, m1.data());
        reference(a, v.data(), nband, q, g, 2, (int)nband - 2, m2.data());
      }
    for (size_t i = 0; i < m1.size(); ++i) worst = std::max(worst, (double)std::fabs(m1[i] - m2[i]));
  }
  // |sum| <= IC = 48 terms of magnitude <= 1: fp32 reordering error far below 1e-3
  if (!(worst <= 1e-3)) {
    if (why) *why = "AMX self-check disagreed with the AVX512-BF16 GEMM (max difference " + std::to_string(worst) + ")";
    return false;
  }
  return true;
}

}  // namespace unet_rt::kernels
