// CPU kernel families of the network executor (DESIGN.md §6).
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
// versions (avx2.cc, avx512.cc, compiled with their ISA flags by CMake); dispatch.cc picks one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace unet_rt::kernels {

enum class Isa { Ref = 0, Avx2 = 1, Avx512 = 2 };

struct View {
  const float* p = nullptr;
  int cb = 16;       // channels per block
  int nblk = 0;      // number of blocks
  int64_t rs = 0;    // row stride (floats)
  int64_t bs = 0;    // block stride (floats)
};

struct OutView {
  float* p = nullptr;
  int64_t rs = 0;    // row stride (floats); pixel stride is 16 (cb = 16 for every produced tensor)
  int64_t bs = 0;    // block stride (floats)
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
struct UpArgs {
  View in;                      // cb must be 16
  const float* w = nullptr;
  const float* bias = nullptr;
  int ocg = 16;
  int iw = 0;                   // input width
  OutView y;
};
// Computes output rows 2*iy and 2*iy+1 of group g.
using UpRowFn = void (*)(const UpArgs& a, int g, int iy);

// pool2x2 (max, stride 2, floor):
// x: [C/16, H, W, 16] -> y: [C/16, H/2, W/2, 16]
struct PoolArgs {
  View in;                      // cb must be 16
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
// instead of 9, i.e. 4x fewer multiplies than direct convolution. Two phases per band of tiles:
//   in:  x_i: [IC_i/16, >= OH+2, >= OW+2, 16] views -> V: [36][IC/16][nband][16]   (one tile)
//   out: V, U: [OC/ocg][36][IC][ocg] -> M: [36][ocg/16][nt][16] (scratch) -> y: [OC/16, OH, OW, 16]
// Tiles are numbered row-major (ty * tw + tx); a band is a contiguous range of them. Input pixels
// beyond the view's OH+2 x OW+2 are read as zeros (partial edge tiles), outputs beyond OH x OW are
// not written.
constexpr int kWinoT = 36;
struct WinoArgs {
  View in[2];                   // every input has cb = 16
  int nin = 1;
  int icb = 0;                  // input blocks over all inputs
  const float* u = nullptr;     // transformed weights [OC/ocg][36][icb*16][ocg]
  const float* bias = nullptr;  // [OC padded to ocg]
  int ocg = 16;
  int oh = 0, ow = 0, th = 0, tw = 0;
  OutView y;
  bool relu = true;
};
// Input transform of tile `tile` into band slot n: V[t][blk][n][16] at v + t*vt + blk*nband*16 + n*16.
using WinoInFn = void (*)(const WinoArgs& a, float* v, int64_t nband, int64_t tile, int64_t n);
// GEMMs + output transform for group g, band slots [n0, n0+nt) (band starts at tile t0);
// m: scratch of 36*ocg*nt floats.
using WinoOutFn = void (*)(const WinoArgs& a, const float* v, int64_t nband, int64_t t0, int g, int64_t n0,
                           int nt, float* m);

// U = G g G^T for every (oc, ic) of w: [OC][sum(in_channels)][3][3] (PyTorch layout), computed in
// double, packed as [OC/ocg][36][sum(blocks16(in_channels_i))*16][ocg] with zeros in padding.
std::vector<float> wino_pack_weights(const float* w, int oc, const std::vector<int>& in_channels, int ocg);
// Floats of a band's V (tiles, input blocks) and of one work unit's M scratch (nt tiles).
inline int64_t wino_v_floats(int icb, int64_t nband) { return (int64_t)kWinoT * icb * nband * 16; }
inline int64_t wino_m_floats(int ocg, int nt) { return (int64_t)kWinoT * ocg * nt; }

struct Kernels {
  Isa isa;
  const char* name;
  ConvRowFn conv;
  UpRowFn up;
  PoolRowFn pool;
  HeadRowFn head;
  WinoInFn wino_in;
  WinoOutFn wino_out;
  int preferred_ocg;  // 32 where the ISA has the registers for it
  // ocg for OC output channels (OC padded to 16).
  int ocg_for(int oc) const { return (preferred_ocg == 32 && ((oc + 15) / 16) % 2 == 0) ? 32 : 16; }
};

// Per-ISA tables (defined in each family's file, gathered in dispatch.cc).
const Kernels& kernels_for(Isa isa);    // std::invalid_argument if this CPU lacks the ISA
Isa best_isa();                          // if/else chain over CPU features, ending in Ref
bool isa_supported(Isa isa);
Isa isa_from_name(const std::string& name);  // "ref" | "avx2" | "avx512" | "auto"
const char* isa_name(Isa isa);
std::vector<std::string> available_isas();

// Per-family entry points (one symbol per family x ISA).
void conv3x3_ref(const ConvArgs&, int, int);
void conv3x3_avx2(const ConvArgs&, int, int);
void conv3x3_avx512(const ConvArgs&, int, int);
void conv3x3_wino_in_ref(const WinoArgs&, float*, int64_t, int64_t, int64_t);
void conv3x3_wino_in_avx2(const WinoArgs&, float*, int64_t, int64_t, int64_t);
void conv3x3_wino_in_avx512(const WinoArgs&, float*, int64_t, int64_t, int64_t);
void conv3x3_wino_out_ref(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int, float*);
void conv3x3_wino_out_avx2(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int, float*);
void conv3x3_wino_out_avx512(const WinoArgs&, const float*, int64_t, int64_t, int, int64_t, int, float*);
void upconv2x2_ref(const UpArgs&, int, int);
void upconv2x2_avx2(const UpArgs&, int, int);
void upconv2x2_avx512(const UpArgs&, int, int);
void pool2x2_ref(const PoolArgs&, int, int);
void pool2x2_avx2(const PoolArgs&, int, int);
void pool2x2_avx512(const PoolArgs&, int, int);
void head1x1_ref(const HeadArgs&, int);
void head1x1_avx2(const HeadArgs&, int);
void head1x1_avx512(const HeadArgs&, int);

// Softmax over v[0], v[stride], ..., v[(k-1)*stride] in place (max-subtracted; shared by every
// ISA's head, compiled without ISA flags).
void softmax_inplace(float* v, int k, int64_t stride);

// FMA throughput probe: GFLOP/s of independent fp32 FMA chains on `threads` threads with the
// widest ISA (the machine's practical peak for these kernels).
double peak_gflops(int threads, double seconds = 0.2);

}  // namespace unet_rt::kernels
