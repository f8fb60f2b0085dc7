// Weight packing of the executor (network.cc) into the kernels' layouts (csrc/kernels/kernels.h);
// the kernel tests' bindings (csrc/python/kernels.cc) use these same functions.
#pragma once
#include <cstdint>
#include <vector>

#include "src/types.h"

namespace unet_rt {

struct PackedConv {
  std::vector<float> w, b;   // direct: [OC/ocg][i][blk][3][3][cb][ocg]; Winograd fp32: U [OC/ocg][36][IC][ocg]
  std::vector<uint16_t> w16; // Winograd bf16: U [OC/ocg][36][IC/2][ocg][2] (w is then empty)
  int oc = 0, ocg = 16;
  bool wino = false;
  const void* u() const { return w16.empty() ? static_cast<const void*>(w.data()) : w16.data(); }
  size_t bytes() const { return (w.size() + b.size()) * sizeof(float) + w16.size() * sizeof(uint16_t); }
  int groups() const { return (int)(b.size() / ocg); }
};
struct PackedUp {
  std::vector<float> w, b;   // [OC/ocg][a][b][IC/16*16][ocg]
  int oc = 0, ocg = 16;
  size_t bytes() const { return (w.size() + b.size()) * sizeof(float); }
};

// Input-channel groups of a conv as the kernel sees them (see kernels.h packing).
struct InDesc {
  int channels, cb, nblk;
};

// w: PyTorch [OC][IC][kh][kw] -> [OC/ocg][i][blk][kh][kw][cb_i][ocg], zeros where padded.
PackedConv pack_conv(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg);
// Winograd F(4x4, 3x3) version of a 3x3 conv whose inputs all use 16-channel blocks (bf16: U in
// bf16 pairs for the bf16 kernels).
PackedConv pack_wino(const TensorView& w, const TensorView& b, const std::vector<InDesc>& ins, int ocg, bool bf16);
// w: PyTorch ConvTranspose2d [IC][OC][2][2] -> [OC/ocg][a][b][IC/16*16][ocg].
PackedUp pack_up(const TensorView& w, const TensorView& b, int ocg);

}  // namespace unet_rt
