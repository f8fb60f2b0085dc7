// The native inference engine: model file reader + executor (Network) + overlap-tile + normalisation.
// This is what the C API and the Python _core.Engine wrap.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "model/model_reader.h"
#include "executor/network.h"
#include "runtime/tiler.h"

namespace unet_rt {

struct EngineOptions {
  int threads = 0;                       // 0: every core
  int tile = 0;                          // 0: automatic (see tiler.h); else the input tile size
  size_t memory_budget_mb = 0;           // per-tile working memory; 0: kDefaultBudgetMb
  double overlap = 0.25;                 // same-padded networks: window overlap (MONAI semantics)
  Blend blend = Blend::Constant;         // same-padded networks: blending of overlapping windows
  Precision precision = Precision::F32;  // Winograd GEMMs in bf16 where the CPU can (network.h)
};

// A run over a region of a frame (ImageView::frame_*; the buffer may hold only the part of the frame
// the tiles read, ImageView::held_*): the whole frame's tiles that write the region run
// (TileOptions::frame_plan), so that the result equals those pixels of the whole frame's bit for bit.
// For models with per-image percentile normalisation, lo[c] and hi[c] are the frame's percentiles
// (normalize.h: normalization_from_percentiles); empty otherwise.
struct FrameRegion {
  std::vector<double> lo, hi;
};

// The default per-tile budget leaves room for the executor's weights under ~1 GB for the whole
// process: kDefaultTotalMb - weights (MiB), clamped to [kDefaultBudgetMb, kMaxDefaultBudgetMb]. Paper
// network: weights 237 MB fp32 (its three largest layers keep their 3x3 taps, network.cc) / 232 MB
// bf16, budget 600 / 605 MB: a 2048x2048 image runs as 8 tiles (15 when the fully transformed fp32
// weights, 463 MB, left 384 MB) and peaks at ~0.85 GB beyond its output (tests/test_engine_core.py).
// A 512x512 image is one 700 tile either way.
constexpr size_t kDefaultBudgetMb = 384, kMaxDefaultBudgetMb = 768, kDefaultTotalMb = 825;
size_t default_budget_mb(size_t weight_bytes);

class Engine {
 public:
  explicit Engine(const std::string& path, const EngineOptions& opt = {});
  // From a model file's bytes in memory (copied while loading).
  Engine(const void* data, size_t size, const EngineOptions& opt = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelInfo& info() const { return info_; }
  int halo() const;
  int tile() const { return opt_.tile; }
  int threads() const;
  Precision precision() const { return net_->precision(); }  // what runs
  const Network& network() const { return *net_; }
  // Per-layer profile (Network::ProfileRow) of every tile run since set_profile(true) or the last
  // reset_profile(), summed per layer and phase (UNET_RT_PROFILE=1 also prints each tile's rows).
  void set_profile(bool on) const { net_->set_profile(on); }
  std::vector<Network::ProfileRow> profile() const { return net_->profile_totals(); }
  void reset_profile() const { net_->reset_profile(); }
  size_t cached_plans() const { return net_->cached_plans(); }  // see Network::kMaxPlans
  size_t arena_bytes() const { return net_->arena_bytes(); }
  size_t memory_budget_bytes() const { return budget_; }
  size_t workspace_bytes(int h, int w) const { return net_->workspace_bytes(h, w); }
  const EngineOptions& options() const { return opt_; }
  // The tiling this engine uses for an image of this size.
  TileGrid tile_grid(int height, int width) const;

  // Writes [classes, H, W] float32 probabilities (or logits) into `out` (contiguous).
  // Safe to call from several threads (the executor serialises the tiles). `progress` (may be
  // empty) is called per tile on the calling thread; returning false throws Cancelled (tiler.h).
  // `region`: `img` is a region of a frame (FrameRegion).
  void predict(const ImageView& img, float* out, bool logits = false, const ProgressFn& progress = {},
               const FrameRegion* region = nullptr) const;
  // Writes the labels [H, W] (U8 if classes <= 256, else U16 as `dtype` says) by the model's
  // decision (decision.h: a threshold on p(foreground) if the model file has one, else argmax),
  // or by `decision` when given. `progress`: as predict.
  void segment(const ImageView& img, void* labels, DType labels_dtype, const Decision* decision = nullptr,
               const ProgressFn& progress = {}, const FrameRegion* region = nullptr) const;
  // Both from one pass: scores [classes, H, W] (probabilities, or logits) and/or labels [H, W] by the
  // model's decision (either may be null, not both).
  void infer(const ImageView& img, float* scores, bool logits, void* labels, DType labels_dtype,
             const ProgressFn& progress = {}) const;
  // Writes instance labels [H, W] (0 = background) by the watershed of decision.h on the whole
  // stitched probability map, with the model's decision or `decision`. Returns the instance count.
  // `progress`: as predict (the tiled pass; the watershed follows it).
  int64_t instances(const ImageView& img, int32_t* labels, const Decision* decision = nullptr,
                    const ProgressFn& progress = {}) const;
  // Checks a decision against this model (foreground class in range); throws std::invalid_argument.
  void check_decision(const Decision& d) const;
  // One tile through the network, no tiling and no padding: `in` [in_channels, h, w] fp32,
  // normalised, contiguous; writes [classes, oh, ow] logits (or the fused softmax). The unit of work
  // of predict(), for callers that cut the whole-image pass's tiles themselves (unet_rt.scale).
  void forward_tile(const float* in, int h, int w, const OutputView& out, bool probabilities) const;

 private:
  void init(std::unique_ptr<ModelFile> mf);
  TileOptions tile_options() const;
  TileGeometry geometry() const;
  void run(const ImageView& img, const TileOutput& out, const ProgressFn& progress,
           const FrameRegion* region = nullptr) const;

  ModelInfo info_;
  EngineOptions opt_;
  size_t budget_ = 0;
  std::unique_ptr<Network> net_;
};

// "avx512", "avx2", "neon" or "ref": the kernels the executor's dispatch picks on this CPU.
std::string cpu_isa();

}  // namespace unet_rt
