// conv3x3 + bias + ReLU, AArch64 NEON: register tiles of output pixels x output channels (simd_impl.h).
//
// Register tiles, for 32 128-bit registers (AVX-512's 12x32 / 24x16 would need 96 / 96 accumulators):
//   ocg 16: 5 pixels x 16 channels = 20 accumulators + 5 input vectors (4 channels each, used lane by
//           lane with FMLA by element) + 1-2 weight vectors = 27 registers;
//   ocg 32: 3 pixels x 32 channels = 24 accumulators + 3 input vectors + 1-2 weight vectors = 29.
// Per 4 input channels the 5x16 tile issues 80 FMAs for 5 + 16 = 21 loads (0.26 loads per FMA), the
// 3x32 tile 96 FMAs for 3 + 32 = 35 loads (0.36): ocg 16 is the NEON table's preferred group.
// What we expect (not measured: no ARM hardware here, and speed under qemu means nothing): Apple
// M1-M4 P-cores have 4 FMA pipes of 4 lanes with 4-cycle latency, i.e. 16 independent accumulators
// keep them busy; 20 (or 24) do, and 1.05 loads per cycle of the 3-4 load ports leave headroom, so
// the GEMM should run near its FMA peak (~32 flop/cycle) while operands come from L1/L2. Neoverse V1
// (Graviton3: 4 x 128-bit NEON FMA pipes, 3 loads/cycle) is the same case; Neoverse N1 (Graviton2:
// 2 FMA pipes, 2 loads/cycle) needs only 8 chains and is limited by its 2 pipes.
#include "kernels/simd_neon.h"
#include "kernels/simd_impl.h"

namespace unet_rt::kernels {

// x_i: [nblk_i, H, W, cb_i]  w: [OC/ocg][i][blk][3][3][cb_i][ocg]  -> y: [OC/16, OH, OW, 16], row oy of group g
void conv3x3_neon(const ConvArgs& a, int g, int oy) {
  if (a.ocg == 32) simd::conv_row_nv<simd::Neon, 8, 3>(a, g, oy);
  else simd::conv_row_nv<simd::Neon, 4, 5>(a, g, oy);
}

// Winograd F(4x4, 3x3), fp32: see kernels.h for the phases and layouts. The GEMM is the same register
// tile with the band's tiles as pixels (5 tiles x 16 or 3 tiles x 32 output channels).
void conv3x3_wino_in_f32_neon(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n) {
  simd::wino_in<simd::Neon>(a, v, nband, tile, n);
}
void conv3x3_wino_gemm_f32_neon(const WinoArgs& a, const void* v, int64_t nband, int q, int g, int64_t n0, int nt,
                                float* m) {
  if (a.ocg == 32) simd::wino_gemm<simd::Neon, 8, 3>(a, v, nband, q, g, n0, nt, m);
  else simd::wino_gemm<simd::Neon, 4, 5>(a, v, nband, q, g, n0, nt, m);
}
void conv3x3_wino_wt_f32_neon(const float* g, int ic, int ocg, int row, void* u) {
  simd::wino_wt<simd::Neon>(g, ic, ocg, row, u);
}
void conv3x3_wino_out_f32_neon(const WinoArgs& a, const float* m, int64_t nband, int64_t t0, int ob, int64_t n0,
                               int nt) {
  simd::wino_out<simd::Neon>(a, m, nband, t0, ob, n0, nt);
}

}  // namespace unet_rt::kernels
