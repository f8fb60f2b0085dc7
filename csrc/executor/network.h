// The network executor: runs one tile of a U-Net (any depth, width, in channels, classes; valid or
// same padding) through the fused CPU kernels of csrc/kernels/.
//
// This header is the contract between the executor (network.cc, kernels/) and its users (the
// tiler, the C API, the Python bindings). Keep it small and stable.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/types.h"

namespace unet_rt {

enum class HeadOutput { Logits, Probabilities };

class Network {
 public:
  // Checks every tensor's name and shape against `arch` (std::invalid_argument with a clear
  // message otherwise) and repacks the weights into the kernels' layout: `weights` may be freed
  // after construction. threads = 0 uses every core.
  // precision: arithmetic of the Winograd GEMMs; BF16 runs where the CPU has a bf16 tier
  // (AVX512-BF16) and falls back to F32 elsewhere (precision() and precision_note() say which).
  Network(const Arch& arch, const Weights& weights, int threads = 0, Precision precision = Precision::F32);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const Arch& arch() const;
  int threads() const;
  Precision precision() const;                // what runs (may be F32 where BF16 was asked for)
  const std::string& precision_note() const;  // why it fell back ("" if it did not)
  std::string kernel_name() const;            // the Winograd GEMM kernel, e.g. conv3x3_wino_gemm_bf16_12x32_avx512bf16
  size_t weight_bytes() const;                // repacked weights held by the executor
  // Per-layer profile of the last forward() (filled when profiling is on: UNET_RT_PROFILE=1 in the
  // environment when the Network was built, or set_profile(true)); printed to stderr when on via env.
  struct ProfileRow {
    std::string layer, phase;                  // e.g. "enc.3.conv2", "wino-gemm"
    double seconds = 0, flops = 0, bytes = 0;  // flops: arithmetic actually done (Winograd domain)
  };
  void set_profile(bool on);
  std::vector<ProfileRow> last_profile() const;
  // The rows of every forward() since reset_profile() (or since profiling was turned on), summed per
  // (layer, phase) in execution order: the whole of a tiled image (Engine resets it per call).
  std::vector<ProfileRow> profile_totals() const;
  void reset_profile();
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
