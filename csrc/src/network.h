// The network executor: runs one tile of a U-Net (any depth, width, in channels, classes; valid or
// same padding) through the fused CPU kernels of csrc/kernels/.
//
// This header is the contract between the executor (network.cc, kernels/) and its users (the
// tiler, the C API, the Python bindings). Keep it small and stable.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
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
// Names and shapes: see unet_rt/model_file.py (enc.{l}.conv1.weight, dec.{l}.up.weight, head.*).
struct TensorView {
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
using Weights = std::map<std::string, TensorView>;

// Every weight tensor's name and shape for an architecture: the one list both the model reader
// and the executor check against (mirrored for writing by unet_rt/model_file.py expected_shapes;
// tests/test_validators.py checks files through both).
std::map<std::string, std::vector<int64_t>> expected_weight_shapes(const Arch& a);
// "[2, 3, 3]"
std::string shape_str(const std::vector<int64_t>& shape);
// Throws std::invalid_argument naming the first missing, misshapen or unexpected tensor.
void check_weights(const Arch& a, const Weights& w);

enum class HeadOutput { Logits, Probabilities };

// Where forward() writes: out[k * channel_stride + y * row_stride + x], k < classes, y < oh, x < ow.
// Strides let the tiler write a tile's output straight into place in the whole-image buffer.
struct OutputView {
  float* data = nullptr;
  int64_t channel_stride = 0;
  int64_t row_stride = 0;
};

class Network {
 public:
  // Checks every tensor's name and shape against `arch` (std::invalid_argument with a clear
  // message otherwise) and repacks the weights into the kernels' layout: `weights` may be freed
  // after construction. threads = 0 uses every core.
  Network(const Arch& arch, const Weights& weights, int threads = 0);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const Arch& arch() const;
  int threads() const;
  // Output size for an input tile of `size` pixels (std::invalid_argument if not valid).
  int output_size(int size) const;
  // Bytes of activation memory one forward() of an h x w tile needs (planned once per shape).
  size_t workspace_bytes(int h, int w) const;
  // Memory held between calls: the plans of at most kMaxPlans tile shapes (all are dropped when a
  // new shape would exceed it) and one arena, sized for the largest cached plan that has run.
  static constexpr size_t kMaxPlans = 16;
  size_t cached_plans() const;
  size_t arena_bytes() const;
  // in: [in_channels, h, w] fp32, normalised, contiguous. Writes [classes, oh, ow] to `out`.
  // Calls from several threads on one Network are serialised internally.
  void forward(const float* in, int h, int w, const OutputView& out, HeadOutput head = HeadOutput::Logits);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace unet_rt
