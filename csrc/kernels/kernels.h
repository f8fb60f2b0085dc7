// CPU kernel families of the network executor (docs/speed.md: kernel names and tiers).
//
// Activation layout, the same through the whole network ("blocked"): a tensor of C channels is
// stored as [ceil(C/cb), H, W, cb] — blocks of cb channels, each block a row-major H x W image of
// cb-float pixels. Inside the network cb = 16 and padded channels hold zeros; the network input
// uses cb = C when C < 16 (no 16x padding of a 1- or 3-channel image). A View may point inside a
// larger buffer (a crop, or the interior of a zero-bordered buffer for "same" padding): element
// (blk, y, x, c) lives at p[blk*bs + y*rs + x*cb + c].
//
// Weights are repacked once by the network into [OC/ocg, <input channels>, kh, kw, ocg] with the
// input channels ordered by input, block, then (ky, kx) outside the channel-in-block index:
//   [g][input i][blk][ky][kx][c < cb_i][o < ocg]
// ocg (output channels per group, 16 or 32) is chosen by the ISA (kernels_for(isa).ocg_for(OC)).
//
// Each family computes one unit of work (one output row of one output-channel group); the network
// spreads units over its thread pool. Every family has a scalar reference (ref.cc) and SIMD
// versions: on x86-64 avx2.cc, avx512.cc (compiled with their ISA flags by CMake), on AArch64
// neon.cc (Advanced SIMD, part of the base architecture); dispatch.cc picks one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/memory.h"

namespace unet_rt::kernels {

enum class Isa { Ref = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };  // Avx2/Avx512 on x86-64, Neon on AArch64

struct View {
  const float* p = nullptr;
  int cb = 16;     // channels per block
  int nblk = 0;    // number of blocks
  int64_t rs = 0;  // row stride (floats)
  int64_t bs = 0;  // block stride (floats)
};

struct OutView {
  float* p = nullptr;
  int64_t rs = 0;  // row stride (floats); pixel stride is 16 (cb = 16 for every produced tensor)
  int64_t bs = 0;  // block stride (floats)
};

// conv3x3 (also any kh x kw; the network uses 3x3): y = act(bias + sum_inputs conv(x_i, w_i)).
// x_i: [nblk_i, >= OH+2, >= OW+2, cb_i] (views)  w: packed as above  -> y: [OC/16, OH, OW, 16]
struct ConvArgs {
  View in[2];
  int nin = 1;
  int kh = 3, kw = 3;
  const float* w = nullptr;     // packed weights
  const float* bias = nullptr;  // [OC padded to ocg]
  int ocg = 16;                 // output channels per group (16 or 32)
  int ow = 0;                   // output width
  OutView y;
  bool relu = true;
};
// Computes output row `oy` of output-channel group `g`.
using ConvRowFn = void (*)(const ConvArgs& a, int g, int oy);
// Packed weight floats per group.
int64_t conv_group_weights(const ConvArgs& a);

// upconv2x2 stride 2 (ConvTranspose2d k=2 s=2), no activation:
// x: [IC/16, H, W, 16]  w: packed [OC/ocg][a][b][IC/16][16][ocg]  -> y: [OC/16, 2H, 2W, 16]
// bf16 tables (upconv2x2_bf16_*): the inputs rounded to bf16, w16 the weights as bf16 pairs
// [OC/ocg][a][b][IC/2][ocg][2], products accumulated in fp32 (vdpbf16ps).
struct UpArgs {
  View in;  // cb must be 16
  const float* w = nullptr;
  const uint16_t* w16 = nullptr;
  const float* bias = nullptr;
  int ocg = 16;
  int iw = 0;  // input width
  OutView y;
};
// Computes output rows 2*iy and 2*iy+1 of group g.
using UpRowFn = void (*)(const UpArgs& a, int g, int iy);

// pool2x2 (max, stride 2, floor):
// x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16]
struct PoolArgs {
  View in;  // cb must be 16
  int ow = 0;
  OutView y;
};
// Computes output row `oy` of block `blk`.
using PoolRowFn = void (*)(const PoolArgs& a, int blk, int oy);

// head1x1: logits (or softmax probabilities) in plain planar layout, written in place:
// x: [C/16, H, W, 16]  w: [K, C padded to 16]  -> out[k*cs + y*rs + x], k < K
struct HeadArgs {
  View in;                      // cb must be 16
  const float* w = nullptr;     // [K][nblk*16] (zeros in padded channels)
  const float* bias = nullptr;  // [K]
  int k = 2;
  int ow = 0;
  float* out = nullptr;
  int64_t out_cs = 0, out_rs = 0;
  bool softmax = false;
};
using HeadRowFn = void (*)(const HeadArgs& a, int oy);

// conv3x3 by Winograd F(4x4, 3x3) (+ bias + ReLU): each 4x4 output tile comes from a 6x6 input
// tile d as  y = A^T [ (G g G^T) . (B^T d B) ] A : 36 independent GEMMs [tiles x IC] x [IC x OC]
// instead of 9, i.e. 4x fewer multiplies than direct convolution. Three phases per band of tiles:
//   in:   x_i: [IC_i/16, >= OH+2, >= OW+2, 16] views -> V: [36][icb][nband][16]   (one tile per call)
//   gemm: V, U -> M: [ocb][nband][36][16] fp32; one call = one transform position q x one output
//         group g x a run of band tiles, so U[g][q] (IC x ocg, 64-128 KB) stays in L2 while the
//         tiles stream past and every weight is read from memory once per band, not per tile chunk
//   out:  M -> y: [OC/16, OH, OW, 16] (+ bias, ReLU); one call = one 16-channel block x a run of tiles
// Tiles are numbered row-major (ty * tw + tx); a band is a contiguous range of them. Input pixels
// beyond the view's OH+2 x OW+2 are read as zeros (partial edge tiles), outputs beyond OH x OW are
// not written.
// Precision (Kernels::bf16): fp32 tables keep V and U in fp32 (U: [OC/ocg][36][IC][ocg]); bf16
// tables store V in bf16 and U as bf16 channel pairs [OC/ocg][36][IC/2][ocg][2] (what vdpbf16ps and
// AMX tdpbf16ps multiply), accumulating in fp32. M, the output transform and bias/ReLU stay fp32.
constexpr int kWinoT = 36;
struct WinoArgs {
  View in[2];  // every input has cb = 16
  int nin = 1;
  int icb = 0;                  // input blocks over all inputs
  int ocb = 0;                  // output blocks of M (OC padded to ocg, / 16)
  const void* u = nullptr;      // transformed weights (float or bf16 pairs, see above)
  int64_t u_gs = -1;            // elements from group g's U to g+1's (-1: dense, 36 * IC * ocg)
  int u_q0 = 0;                 // first transform position held at u (rows transformed on the fly)
  const float* bias = nullptr;  // [OC padded to ocg]
  int ocg = 16;
  int oh = 0, ow = 0, th = 0, tw = 0;
  OutView y;
  bool relu = true;
  int kc_blocks = 0;  // fp32 GEMM: input blocks per pass over the tiles (0: all; executor: wino_kc_blocks)
};
// Input transform of tile `tile` into band slot n: V[t][blk][n][16] at v + (t*icb*nband + blk*nband + n)*16
// elements (float, or uint16_t bf16 for the bf16 tables).
using WinoInFn = void (*)(const WinoArgs& a, void* v, int64_t nband, int64_t tile, int64_t n);
// M[g*ocg/16 ...][n0 .. n0+nt)[q] = V[q][.][n0 .. n0+nt) x U[g][q].
using WinoGemmFn = void (*)(const WinoArgs& a, const void* v, int64_t nband, int q, int g, int64_t n0, int nt,
                            float* m);
// Weight transform of one output group, U_g = G g G^T in fp32 (FMAs, the tier's own rounding):
// g: [IC][9][ocg] (ic padded to 16 with zeros; the raw 3x3 taps, see wino_pack_raw) ->
// U_g: [36][IC][ocg] fp32, or [36][IC/2][ocg][2] bf16 for the bf16 tables; with row in [0, 6) only
// positions 6*row .. 6*row+5 ([6][IC][ocg]). The executor runs it once at load time (weights kept
// transformed) or per band, row and group on the fly (weights kept raw: 4x less memory), with the
// same values.
using WinoWeightsFn = void (*)(const float* g, int ic, int ocg, int row, void* u);
// Output transform of block ob for band slots [n0, n0+nt) (the band starts at tile t0).
using WinoOutFn = void (*)(const WinoArgs& a, const float* m, int64_t nband, int64_t t0, int ob, int64_t n0, int nt);

// The raw taps the weight transform reads: [OC/ocg][IC][9][ocg] (IC = sum of blocks16(in_channels)*16).
AlignedVector<float> wino_pack_raw(const float* w, int oc, const std::vector<int>& in_channels, int ocg);
// Elements from a.u to U[g][q] (IC x ocg): groups a.u_gs apart (dense when -1), positions from a.u_q0.
inline int64_t wino_u_offset(const WinoArgs& a, int g, int q) {
  const int64_t per_q = (int64_t)a.icb * 16 * a.ocg;
  return g * (a.u_gs >= 0 ? a.u_gs : kWinoT * per_q) + (q - a.u_q0) * per_q;
}
// Elements of a band's V (tiles, input blocks), floats of its M.
inline int64_t wino_v_elems(int icb, int64_t nband) { return (int64_t)kWinoT * icb * nband * 16; }
inline int64_t wino_m_floats(int ocb, int64_t nband) { return (int64_t)kWinoT * ocb * nband * 16; }

// bfloat16: the top half of an fp32, rounded to nearest even (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Kernels {
  Isa isa;
  const char* name;  // "avx512", "avx512_bf16", ...
  ConvRowFn conv;
  UpRowFn up;
  PoolRowFn pool;
  HeadRowFn head;
  WinoInFn wino_in;
  WinoGemmFn wino_gemm;
  WinoOutFn wino_out;
  WinoWeightsFn wino_wt;
  int preferred_ocg;  // 32 where the ISA has the registers for it
  bool bf16;          // Winograd V and U in bf16 (see above)
  // The Winograd GEMM's register tile (tiles x output channels) for ocg = 16 and 32.
  int gemm_nx16, gemm_nx32;
  const char* gemm_isa;  // ISA part of the kernel name
  // ocg for OC output channels (OC padded to 16).
  int ocg_for(int oc) const { return (preferred_ocg == 32 && ((oc + 15) / 16) % 2 == 0) ? 32 : 16; }
  // op_dtype_tile_isa, e.g. conv3x3_wino_gemm_bf16_12x32_avx512bf16.
  std::string wino_gemm_name(int ocg) const {
    return std::string("conv3x3_wino_gemm_") + (bf16 ? "bf16_" : "f32_") +
           std::to_string(ocg == 32 ? gemm_nx32 : gemm_nx16) + "x" + std::to_string(ocg) + "_" + gemm_isa;
  }
  // The direct conv (fp32): the same register tile as the fp32 GEMM, e.g. conv3x3_direct_f32_6x16_avx2.
  std::string direct_name(int ocg) const {
    return std::string("conv3x3_direct_f32_") + std::to_string(ocg == 32 ? gemm_nx32 : gemm_nx16) + "x" +
           std::to_string(ocg) + "_" + name;
  }
};

// Per-ISA tables (defined in each family's file, gathered in dispatch.cc).
const Kernels& kernels_for(Isa isa);  // std::invalid_argument if this CPU lacks the ISA
// The bf16 table of a tier: ref (scalar, any CPU); for avx512 with AVX512-BF16, AMX (tdpbf16ps) where
// the CPU and OS allow it and its self-check passes (UNET_RT_AMX=0: never), else vdpbf16ps; nullptr
// where this CPU and tier have no bf16 GEMM (avx2, avx512 without AVX512-BF16, neon). *why says so.
const Kernels* bf16_kernels_for(Isa isa, std::string* why = nullptr);
Isa best_isa();  // if/else chain over CPU features, ending in Ref
bool isa_supported(Isa isa);
Isa isa_from_name(const std::string& name);  // "ref" | "avx2" | "avx512" | "neon" | "auto"
const char* isa_name(Isa isa);
std::vector<std::string> available_isas();

// Per-family entry points (one symbol per family x ISA).
void conv3x3_ref(const ConvArgs&, int, int);
void conv3x3_avx2(const ConvArgs&, int, int);
void conv3x3_avx512(const ConvArgs&, int, int);
void conv3x3_neon(const ConvArgs&, int, int);
// Winograd phases: conv3x3_wino_{in,gemm,out}_<dtype>_<isa> (the GEMM's register tile is in
// Kernels::wino_gemm_name).
#define UNET_RT_WINO_DECL(dt, isa)                                                                            \
  void conv3x3_wino_in_##dt##_##isa(const WinoArgs&, void*, int64_t, int64_t, int64_t);                       \
  void conv3x3_wino_gemm_##dt##_##isa(const WinoArgs&, const void*, int64_t, int, int, int64_t, int, float*); \
  void conv3x3_wino_wt_##dt##_##isa(const float*, int, int, int, void*);
UNET_RT_WINO_DECL(f32, ref)
UNET_RT_WINO_DECL(f32, avx2)
UNET_RT_WINO_DECL(f32, avx512)
UNET_RT_WINO_DECL(f32, neon)
UNET_RT_WINO_DECL(bf16, ref)
UNET_RT_WINO_DECL(bf16, avx512bf16)
#undef UNET_RT_WINO_DECL
// AMX (amxbf16.cc): the GEMM on tile registers; enable() asks the OS for tile data once per process,
// self_check() compares one GEMM with `reference` before dispatch chooses the tier.
void conv3x3_wino_gemm_bf16_amx(const WinoArgs&, const void*, int64_t, int, int, int64_t, int, float*);
bool amx_bf16_enable(std::string* why);
bool amx_bf16_self_check(WinoGemmFn reference, std::string* why);
// Why the AMX tier is not used ("" where it is).
const std::string& amx_note();
void conv3x3_wino_out_f32_ref(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int);
void conv3x3_wino_out_f32_avx2(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int);
void conv3x3_wino_out_f32_avx512(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int);
void conv3x3_wino_out_f32_neon(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int);
void upconv2x2_ref(const UpArgs&, int, int);
void upconv2x2_avx2(const UpArgs&, int, int);
void upconv2x2_avx512(const UpArgs&, int, int);
void upconv2x2_neon(const UpArgs&, int, int);
void upconv2x2_bf16_ref(const UpArgs&, int, int);
void upconv2x2_bf16_avx512bf16(const UpArgs&, int, int);
void pool2x2_ref(const PoolArgs&, int, int);
void pool2x2_avx2(const PoolArgs&, int, int);
void pool2x2_avx512(const PoolArgs&, int, int);
void pool2x2_neon(const PoolArgs&, int, int);
void head1x1_ref(const HeadArgs&, int);
void head1x1_avx2(const HeadArgs&, int);
void head1x1_avx512(const HeadArgs&, int);
void head1x1_neon(const HeadArgs&, int);

// Softmax over v[0], v[stride], ..., v[(k-1)*stride] in place (max-subtracted; shared by every
// ISA's head, compiled without ISA flags).
void softmax_inplace(float* v, int k, int64_t stride);

// FMA throughput probe: GFLOP/s of independent fp32 FMA chains on `threads` threads with the
// widest ISA (the machine's practical peak for these kernels).
// bf16: the same for the bf16 tier's arithmetic (AMX tdpbf16ps where that tier is AMX's, else
// vdpbf16ps), 0 where the CPU has no bf16 tier.
double peak_gflops(int threads, double seconds = 0.2, bool bf16 = false);
// One thread's probe loop for the bf16 tier of `isa` (flops executed in `iters` iterations): AMX
// tdpbf16ps where that tier's GEMM is AMX's, else vdpbf16ps; nullptr without a SIMD bf16 tier.
using ProbeFn = double (*)(int64_t iters, float* sink);
ProbeFn bf16_probe_for(Isa isa);

}  // namespace unet_rt::kernels
