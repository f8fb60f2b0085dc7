// The executor's memory layout (MemoryLayout; network.cc runs it): the op list of one forward pass on
// an h x w tile, every tensor's lifetime and offset in one arena, and the Winograd schedule of each
// conv (shared bands and their V/M buffers in the arena, or private per-thread bands). Planned once
// per tile shape and cached by the Network.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"

namespace unet_rt {

enum class OpKind { Reorder, Conv, Pool, Up, Head };

struct Op {
  OpKind kind;
  std::string name;          // layer name for the profile: enc.3.conv2, dec.0.up, ...
  int64_t band = 0;          // Winograd conv: tiles per band
  int64_t private_band = 0;  // Winograd conv: tiles per private band (WinoSchedule), 0: shared bands
  int out = -1;              // tensor id (-1: the caller's output)
  int in[2] = {-1, -1};
  int dy[2] = {0, 0}, dx[2] = {0, 0};  // view offsets into each input (crop; -1 for same padding)
  int nin = 0;
  int weights = -1;    // index into the convs (enc_conv / dec_conv) or the up-convs (level)
  int oh = 0, ow = 0;  // output size
};

struct Tensor {
  int nblk = 0, cb = 16, h = 0, w = 0;
  int64_t off = 0, floats = 0;
  int first = 0, last = 0;
};

struct MemoryLayout {
  std::vector<Tensor> t;
  std::vector<Op> ops;
  int64_t floats = 0;              // activations + Winograd scratch (the arena)
  int64_t wino_v = 0, wino_m = 0;  // Winograd band buffers V then M (floats) at offset act_floats
  int64_t act_floats = 0;
  int oh = 0, ow = 0;
};

// What the planner needs to know of a network's packed weights.
struct LayoutConv {
  bool wino = false, raw_taps = false;  // Winograd; its weights kept as taps (PackedConv)
  int64_t u_bytes = 0;                  // Winograd: bytes of the transformed weights
  int ocb = 0;                          // Winograd: 16-channel blocks of M (OC padded to ocg)
};
struct LayoutSpec {
  Arch arch;
  int pad = 0;                    // 1 for same padding (zero border in memory)
  int in_cb = 1;                  // channel block of the reordered input
  std::vector<int> widths;        // channels per level
  std::vector<LayoutConv> convs;  // indexed like the packed convs (enc_conv, dec_conv)
  bool bf16 = false;              // Winograd V in bf16
  double private_bytes = 0;       // V + M of a private band (0: none)
  double private_max_u = 0;       // private bands for Winograd convs with U up to this many bytes
};

// Index of a conv's weights: enc.l.conv(j+1) at 2l + j, then dec.l.conv(j+1).
inline int enc_conv(int l, int j) { return 2 * l + j; }
inline int dec_conv(const Arch& a, int l, int j) { return 2 * (a.depth + 1) + 2 * l + j; }

// Plans one forward pass on an h x w input tile (sizes already validated).
MemoryLayout build_memory_layout(const LayoutSpec& spec, int h, int w);

}  // namespace unet_rt
