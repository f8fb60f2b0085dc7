// Winograd F(4x4, 3x3) GEMMs on AMX tiles (tdpbf16ps; Sapphire Rapids and later): the bf16 tier's
// GEMM where the CPU and the OS allow AMX. The input transform, the weight transform and the output
// transform are the AVX512-BF16 tier's (avx512bf16.cc): V and U have the same bf16 layouts, which
// are already what the tile instructions read (kernels.h):
//   A (16 rows x 32 bytes): 16 band tiles x one block of 16 input channels, V[q][blk][tile][16]
//   B (8 rows x 64 bytes):  8 input-channel pairs x 16 output channels, U[g][q][ic/2][ocg][2]
//   C (16 rows x 64 bytes): 16 band tiles x 16 output channels, fp32, into M[ob][tile][36][16]
// C[m][n] += sum_k A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1]: one block of 16 input channels per
// tdpbf16ps, C accumulating over the blocks in the tile register; 2 x ocg/16 C tiles at a time (32
// band tiles x ocg channels), the band's last < 32 tiles 16 at a time.
//
// Compiled with -mamx-tile -mamx-bf16 (CMake, by file name). AMX needs the kernel's permission
// (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, Linux only) before the first tile instruction:
// amx_bf16_enable() asks for it (platform::request_amx_permission) once per process. dispatch.cc runs
// amx_bf16_self_check() against the AVX512-BF16 GEMM before choosing this tier and falls back (with a
// precision note) if it disagrees. First run on an Intel Xeon with AMX on 2026-12-03 (docs/speed.md,
// "The AMX tier"): correct, but the GEMM reaches ~12% of the tile peak inside the network, waiting
// on V and U from L2, not on this loop, which runs at its K = 16 limit (half the peak) from L1.
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

// tmm0..tmm3: C[rb][cb] as tmm(2 rb + cb) (rows x 64 bytes fp32: 16 band tiles x 16 output channels);
// tmm4, tmm5: A of row blocks 0, 1 (rows x 32 bytes bf16); tmm6, tmm7: B of column blocks 0, 1 (8 x 64
// bytes). `rows` (<= 16) is the band tiles of the C and A tiles.
void configure(int rows) {
  TileConfig c;
  for (int t = 0; t < 6; ++t) {
    c.rows[t] = (uint8_t)rows;
    c.colsb[t] = t < 4 ? 64 : 32;
  }
  c.rows[6] = c.rows[7] = 8;
  c.colsb[6] = c.colsb[7] = 64;
  _tile_loadconfig(&c);
}

// C[RB x 16 band tiles][CB x 16 output channels] over all input blocks, in tile registers: RB * CB
// independent accumulation chains (tdpbf16ps has several times its issue interval as latency) and
// one tile load per tdpbf16ps when RB = CB = 2. a: V of the first tile at block 0 (a block further:
// +vblk elements); b: U at the first channel pair (+8 pairs per block); c: M of C[0][0], the column
// block cb at +ccb floats, a band tile at +crow floats.
template <int RB, int CB>
inline void gemm_block(const uint16_t* a, int64_t vblk, const uint16_t* b, int64_t ustride, int icb, int ocg, float* c,
                       int64_t ccb, int64_t crow) {
  _tile_zero(0);
  if constexpr (CB == 2) _tile_zero(1);
  if constexpr (RB == 2) _tile_zero(2);
  if constexpr (RB == 2 && CB == 2) _tile_zero(3);
  for (int blk = 0; blk < icb; ++blk, a += vblk, b += (int64_t)8 * ocg * 2) {
    _tile_loadd(6, b, ustride);
    _tile_loadd(4, a, 32);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (CB == 2) {
      _tile_loadd(7, b + 32, ustride);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (RB == 2) {
      _tile_loadd(5, a + 16 * 16, 32);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (CB == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, crow * 4);
  if constexpr (CB == 2) _tile_stored(1, c + ccb, crow * 4);
  if constexpr (RB == 2) _tile_stored(2, c + 16 * crow, crow * 4);
  if constexpr (RB == 2 && CB == 2) _tile_stored(3, c + ccb + 16 * crow, crow * 4);
}

template <int CB>
void gemm(const WinoArgs& a, const uint16_t* v, int64_t nband, const uint16_t* u, float* mo, int64_t n0, int nt) {
  constexpr int64_t px = kWinoT * 16;          // M floats per band tile
  const int64_t vblk = nband * 16;             // V elements from one input block to the next
  const int64_t ustride = (int64_t)a.ocg * 4;  // bytes from one input-channel pair to the next
  const int64_t end = n0 + nt;
  int64_t j0 = n0;
  int configured = 16;
  configure(16);
  for (; j0 + 32 <= end; j0 += 32)
    gemm_block<2, CB>(v + j0 * 16, vblk, u, ustride, a.icb, a.ocg, mo + j0 * px, nband * px, px);
  for (; j0 < end; j0 += 16) {
    const int rows = (int)std::min<int64_t>(16, end - j0);
    if (rows != configured) {
      configure(rows);
      configured = rows;
    }
    gemm_block<1, CB>(v + j0 * 16, vblk, u, ustride, a.icb, a.ocg, mo + j0 * px, nband * px, px);
  }
  _tile_release();
}

}  // namespace

void conv3x3_wino_gemm_bf16_amx(const WinoArgs& a, const void* vin, int64_t nband, int q, int g, int64_t n0, int nt,
                                float* m) {
  // V: [36][icb][nband][16] bf16  U: [OC/ocg][36][IC/2][ocg][2] bf16 -> M: [ocb][nband][36][16] fp32
  const uint16_t* v = static_cast<const uint16_t*>(vin) + q * (int64_t)a.icb * nband * 16;
  const uint16_t* u = static_cast<const uint16_t*>(a.u) + wino_u_offset(a, g, q);
  float* mo = m + (int64_t)(g * a.ocg / 16) * nband * kWinoT * 16 + q * 16;
  if (a.ocg == 32) gemm<2>(a, v, nband, u, mo, n0, nt);
  else gemm<1>(a, v, nband, u, mo, n0, nt);
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
  // GEMM calls over tiles 2..52 (a 32-tile block, a 16-tile block, a 3-tile rest), 3 input blocks,
  // ocg 16 and 32, two groups, on random bf16 data: the products are exact in both kernels, only the
  // fp32 summation order differs.
  const int icb = 3;
  const int64_t nband = 53;
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
