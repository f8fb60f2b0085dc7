// Types shared by the model reader, the tiler and the executor: the architecture, borrowed weight
// tensors and the strided output view. Kept apart from network.h so that the reader and the tiler
// do not depend on the executor.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace unet_rt {

struct Arch {
  int in_channels = 1;
  int classes = 2;
  int depth = 4;
  int base = 64;
  bool same_padding = false;
};

// A borrowed fp32 tensor in PyTorch layout (row-major), as stored in the model file.
// Names and shapes: see src/unet_rt/format/model_file.py (enc.{l}.conv1.weight, dec.{l}.up.weight, head.*).
struct TensorView {
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
using Weights = std::map<std::string, TensorView>;

// Every weight tensor's name and shape for an architecture: the one list both the model reader
// and the executor check against (mirrored for writing by src/unet_rt/format/model_file.py expected_shapes;
// tests/test_validators.py checks files through both).
std::map<std::string, std::vector<int64_t>> expected_weight_shapes(const Arch& a);
// "[2, 3, 3]"
std::string shape_str(const std::vector<int64_t>& shape);
// Throws std::invalid_argument naming the first missing, misshapen or unexpected tensor.
void check_weights(const Arch& a, const Weights& w);

// Where a tile's output goes: out[k * channel_stride + y * row_stride + x], k < classes, y < oh,
// x < ow. Strides let the tiler write a tile's output straight into place in the whole image.
struct OutputView {
  float* data = nullptr;
  int64_t channel_stride = 0;
  int64_t row_stride = 0;
};

// Arithmetic of the Winograd-domain GEMMs (and of the transformed inputs they read): fp32 (exact to
// rounding, the default) or bf16 (inputs and weights rounded to bfloat16, fp32 accumulation).
enum class Precision { F32, BF16 };

}  // namespace unet_rt
