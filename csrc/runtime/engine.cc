// The native inference engine: see engine.h.
#include "runtime/engine.h"

#include <algorithm>
#include <stdexcept>

#include "core/env.h"
#include "kernels/kernels.h"
#include "core/geometry.h"
#include "runtime/normalize.h"

namespace unet_rt {

static void check_options(const EngineOptions& opt) {
  if (opt.threads < 0) throw std::invalid_argument("threads must be >= 0");
  if (opt.tile < 0) throw std::invalid_argument("tile must be >= 0");
  if (!(opt.overlap >= 0.0 && opt.overlap < 1.0)) throw std::invalid_argument("overlap must be in [0, 1)");
  if (opt.memory_budget_mb > (size_t(1) << 30)) throw std::invalid_argument("memory_budget_mb is absurdly large");
}

Engine::Engine(const std::string& path, const EngineOptions& opt) : opt_(opt) {
  check_options(opt);
  init(ModelFile::open(path));
}

Engine::Engine(const void* data, size_t size, const EngineOptions& opt) : opt_(opt) {
  check_options(opt);
  if (!data && size) throw std::invalid_argument("model data is NULL");
  init(ModelFile::from_bytes(data ? data : "", size));
}

void Engine::init(std::unique_ptr<ModelFile> mf) {
  info_ = mf->info();
  if (opt_.tile > 0) plan_tiles(1, 1, geometry(), tile_options());  // validates the tile size early
  net_ = std::make_unique<Network>(info_.arch, mf->weights(), opt_.threads, opt_.precision);
  budget_ =
      (opt_.memory_budget_mb ? opt_.memory_budget_mb : default_budget_mb(net_->weight_bytes())) * size_t(1024) * 1024;
}  // the file's bytes are released here: the executor holds repacked weights

Engine::~Engine() = default;

size_t default_budget_mb(size_t weight_bytes) {
  const size_t w = weight_bytes >> 20;
  const size_t room = w < kDefaultTotalMb ? kDefaultTotalMb - w : 0;
  return std::min(kMaxDefaultBudgetMb, std::max(kDefaultBudgetMb, room));
}

int Engine::halo() const { return unet_rt::halo(info_.arch.depth, info_.arch.same_padding); }
int Engine::threads() const { return net_->threads(); }

TileGeometry Engine::geometry() const {
  return TileGeometry{info_.arch.in_channels, info_.arch.classes, info_.arch.depth, info_.arch.same_padding};
}

TileOptions Engine::tile_options() const {
  TileOptions t;
  t.tile = opt_.tile;
  t.overlap = opt_.overlap;
  t.blend = opt_.blend;
  t.memory_budget = budget_;
  const Network* net = net_.get();
  if (net) t.workspace_bytes = [net](int h, int w) { return net->workspace_bytes(h, w); };
  return t;
}

TileGrid Engine::tile_grid(int height, int width) const {
  return plan_tiles(height, width, geometry(), tile_options());
}

void Engine::run(const ImageView& img, const TileOutput& out, const ProgressFn& progress,
                 const FrameRegion* region) const {
  Network* net = net_.get();
  const HeadOutput head = out.fn_writes_probabilities ? HeadOutput::Probabilities : HeadOutput::Logits;
  TileFn fn = [net, head](const float* in, int h, int w, const OutputView& o) { net->forward(in, h, w, o, head); };
  std::vector<float> mean, sd;  // the model's mean/std, or per-image percentile normalisation (normalize.h)
  const Normalization& n = info_.normalization;
  TileOptions topt = tile_options();
  topt.progress = progress;
  if (region) {
    topt.frame_plan = true;
    if (n.percentiles.empty() != region->lo.empty())
      throw std::invalid_argument(n.percentiles.empty()
                                      ? "this model has no percentile normalisation: give no percentiles"
                                      : "this model normalises each image by its percentiles: give the frame's");
    if (n.percentiles.empty()) mean = n.mean, sd = n.std;
    else normalization_from_percentiles(img, n.mean, n.std, region->lo, region->hi, mean, sd);
  } else {
    effective_normalization(img, n.mean, n.std, n.percentiles, mean, sd);
  }
  tile_predict(img, mean, sd, geometry(), fn, topt, out);
}

void Engine::predict(const ImageView& img, float* out, bool logits, const ProgressFn& progress,
                     const FrameRegion* region) const {
  TileOutput o;
  o.kind = logits ? OutputKind::Logits : OutputKind::Probabilities;
  o.scores = out;
  // Valid nets: the executor's head applies the softmax (fused); same nets blend logits first.
  o.fn_writes_probabilities = !logits && !info_.arch.same_padding;
  run(img, o, progress, region);
}

void Engine::infer(const ImageView& img, float* scores, bool logits, void* labels, DType labels_dtype,
                   const ProgressFn& progress) const {
  if (!scores) return segment(img, labels, labels_dtype, nullptr, progress);
  TileOutput o;
  o.kind = logits ? OutputKind::Logits : OutputKind::Probabilities;
  o.scores = scores;
  o.labels = labels;
  o.labels_dtype = labels_dtype;
  o.decision = &info_.decision;
  o.fn_writes_probabilities = !logits && !info_.arch.same_padding;
  run(img, o, progress);
}

void Engine::check_decision(const Decision& d) const {
  const int K = info_.arch.classes;
  if (d.foreground_class < 0 || d.foreground_class >= K)
    throw std::invalid_argument("foreground class " + std::to_string(d.foreground_class) + " of a " +
                                std::to_string(K) + "-class model");
  if (d.has_threshold() && (K < 2 || !(d.threshold > 0.0f && d.threshold < 1.0f)))
    throw std::invalid_argument("threshold must lie in (0, 1) (and the model have 2 classes or more)");
}

void Engine::segment(const ImageView& img, void* labels, DType labels_dtype, const Decision* decision,
                     const ProgressFn& progress, const FrameRegion* region) const {
  if (decision) check_decision(*decision);
  TileOutput o;
  o.kind = OutputKind::Labels;
  o.labels = labels;
  o.labels_dtype = labels_dtype;
  o.decision = decision ? decision : &info_.decision;
  run(img, o, progress, region);
}

int64_t Engine::instances(const ImageView& img, int32_t* labels, const Decision* decision,
                          const ProgressFn& progress) const {
  if (decision) check_decision(*decision);
  if (!labels) throw std::invalid_argument("labels buffer is null");
  if (img.height < 1 || img.width < 1) throw std::invalid_argument("image is empty");
  const int K = info_.arch.classes;
  std::vector<float> probs(size_t(K) * size_t(img.height) * size_t(img.width));
  predict(img, probs.data(), false, progress);
  return instances_from_probabilities(probs.data(), K, img.height, img.width, decision ? *decision : info_.decision,
                                      labels);
}

void Engine::forward_tile(const float* in, int h, int w, const OutputView& out, bool probabilities) const {
  net_->forward(in, h, w, out, probabilities ? HeadOutput::Probabilities : HeadOutput::Logits);
}

std::string cpu_isa() {  // the executor's own choice (network.cc)
  return kernels::isa_name(kernels::isa_from_name(read_env().isa));
}

}  // namespace unet_rt
