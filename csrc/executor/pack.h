// Weight packing of the executor (network.cc) into the kernels' layouts (csrc/kernels/kernels.h);
// the kernel tests' bindings (csrc/python/kernels.cc) use these same functions.
#pragma once
#include <cstdint>
#include <vector>

#include "core/memory.h"
#include "core/types.h"

namespace unet_rt {

namespace kernels {
struct Kernels;
}

struct PackedConv {
  // direct: w [OC/ocg][i][blk][3][3][cb][ocg]. Winograd: U (transformed) in w [OC/ocg][36][IC][ocg]
  // (fp32) or w16 [OC/ocg][36][IC/2][ocg][2] (bf16); or, with raw_taps, the 3x3 taps
  // w [OC/ocg][IC][9][ocg] that the driver transforms per band and group (Kernels::wino_wt).
  // 64-byte aligned (core/memory.h): the kernels' weight loads and AMX tile rows are whole cache lines
  AlignedVector<float> w, b;
  AlignedVector<uint16_t> w16;
  int oc = 0, ocg = 16;
  bool wino = false, raw_taps = false;
  int64_t u_bytes = 0;  // Winograd: bytes of the transformed weights (held or not)
  const void* u() const { return raw_taps ? nullptr : w16.empty() ? static_cast<const void*>(w.data()) : w16.data(); }
  const float* raw() const { return raw_taps ? w.data() : nullptr; }
  size_t bytes() const { return (w.size() + b.size()) * sizeof(float) + w16.size() * sizeof(uint16_t); }
  int groups() const { return (int)(b.size() / ocg); }
};
struct PackedUp {
  AlignedVector<float> w, b;    // [OC/ocg][a][b][IC/16*16][ocg]
  AlignedVector<uint16_t> w16;  // bf16 tables: [OC/ocg][a][b][IC/2][ocg][2] (w is then empty)
  int oc = 0, ocg = 16;
  size_t bytes() const { return (w.size() + b.size()) * sizeof(float) + w16.size() * sizeof(uint16_t); }
};

// Input-channel groups of a conv as the kernel sees them (see kernels.h packing).
struct InDesc {
  int channels, cb, nblk;
};

// w: PyTorch [OC][IC][kh][kw] -> [OC/ocg][i][blk][kh][kw][cb_i][ocg], zeros where padded.
PackedConv pack_conv(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg);
// Bytes of a Winograd conv's transformed weights U (OC padded to ocg, each input to 16 channels).
int64_t wino_u_bytes(int oc, const std::vector<InDesc>& ins, int ocg, bool bf16);
// Winograd F(4x4, 3x3) version of a 3x3 conv whose inputs all use 16-channel blocks, for the kernel
// table kn (U in fp32, or in bf16 pairs for a bf16 table): transformed now by kn.wino_wt, or with
// raw_taps kept as taps (a quarter of fp32 U's memory) for the driver to transform on the fly; both
// give the same U.
PackedConv pack_wino(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg,
                     const kernels::Kernels& kn, bool raw_taps = false);
// w: PyTorch ConvTranspose2d [IC][OC][2][2] -> [OC/ocg][a][b][IC/16*16][ocg], or with bf16 the same
// rounded to bf16 in input-channel pairs (w16) for the bf16 tables' up-conv.
PackedUp pack_up(const TensorView& w, const TensorView& b, int ocg, bool bf16 = false);

}  // namespace unet_rt
