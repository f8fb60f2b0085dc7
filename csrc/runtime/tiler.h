// Overlap-tile inference of a whole image (docs/architecture.md, "Tiling"), independent of what runs a tile: the CPU
// executor (engine.cc) and the Python GPU backends (through _core.tile_predict) share this code.
//
// Valid networks (the paper's): the image is mirror-extrapolated without limit (numpy 'reflect'
// extended periodically, so images smaller than the halo work), tiles are cut so that every tile's
// input origin sits on the 2^depth pooling grid of one virtual whole-image pass (origin -halo), and
// each tile's output goes straight into place. Hence the tiled output EQUALS one whole-image pass:
// no blending, no seams. Output stride O' = O rounded down to a multiple of 2^depth (O = I - 2*halo
// is 4 mod 16 for depth 4, so neighbours recompute a 4-pixel strip: a shift by O would change the
// max-pool phase and the result). Tile sizes are chosen per axis (rectangular tiles, a smaller last
// tile) to minimise the total input area within a memory budget.
//
// Same-padded networks: overlapping windows of a fixed size, blended with constant or gaussian
// weights exactly as MONAI's sliding_window_inference (scan interval int(roi * (1 - overlap)), the
// last window shifted back to the border, the image padded to the window size when smaller — here by
// mirroring, MONAI's padding_mode='reflect').
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "core/types.h"
#include "postprocess/decision.h"

namespace unet_rt {

enum class Blend { Constant, Gaussian };

// Per-tile progress: called on the thread that runs tile_predict, with done = 0 before the first
// tile and after each tile (done = 1..total). Returning false stops the run: tile_predict throws
// Cancelled and the output's contents are unspecified. An exception thrown by the callback reaches
// tile_predict's caller unchanged.
using ProgressFn = std::function<bool(size_t done, size_t total)>;

// The largest image side the tiler accepts: keeps every size, offset and plan computation far
// from INT_MAX (and planning fast). 1M pixels a side; memory runs out long before.
constexpr int kMaxImageSide = 1 << 20;

struct TileGeometry {
  int in_channels = 1;
  int classes = 2;
  int depth = 4;
  bool same_padding = false;
};

struct TileOptions {
  int tile = 0;           // 0: automatic. Valid nets: input tile size (every tile is tile x tile).
                          // Same nets: window (roi) size, a multiple of 2^depth.
  int max_tile = 0;       // automatic mode: largest input tile side (0: no limit but the budget)
  double overlap = 0.25;  // same nets only
  Blend blend = Blend::Constant;
  double sigma_scale = 0.125;
  size_t memory_budget = 0;  // bytes for one tile's workspace (0: no limit)
  // Bytes of working memory for an h x w input tile (e.g. Network::workspace_bytes); may be empty.
  std::function<size_t(int h, int w)> workspace_bytes;
  ProgressFn progress;  // may be empty
  // A view inside a frame (ImageView::frame_*) runs the tiles of the whole frame's plan that write
  // its pixels, so that its result equals those pixels of the whole frame's result bit for bit (the
  // blocks of unet_rt.scale). false: the view's own plan, started on the frame's pooling grid (the
  // C API's ROI: equal to fp32 rounding).
  bool frame_plan = false;
};

// One axis of a tiling. Valid nets: tile i reads input [out_start[i] - halo, + in_size[i]) and
// produces output [out_start[i], + out_size[i]) in image coordinates (possibly beyond the image).
// Same nets: window i covers [out_start[i], + in_size[i]) of the (padded) image.
struct AxisGrid {
  std::vector<int> out_start, in_size, out_size;
  long long total_input() const;
};

struct TileGrid {
  AxisGrid y, x;
  int halo = 0;
  int pad_y = 0, pad_x = 0;  // same nets: mirror padding before the image (image smaller than the window)
  int padded_h = 0, padded_w = 0;
  int max_in_h() const;
  int max_in_w() const;
  size_t tiles() const { return y.in_size.size() * x.in_size.size(); }
};

TileGrid plan_tiles(int height, int width, const TileGeometry& g, const TileOptions& opt);

// Runs one tile: `in` is [in_channels, h, w] fp32 normalised, contiguous; writes [classes, oh, ow]
// (oh, ow = output size of the tile) through `out`.
using TileFn = std::function<void(const float* in, int h, int w, const OutputView& out)>;

enum class OutputKind { Logits, Probabilities, Labels };

struct TileOutput {
  OutputKind kind = OutputKind::Probabilities;
  float* scores = nullptr;             // Logits/Probabilities: [classes, H, W] contiguous
  void* labels = nullptr;              // Labels: [H, W] contiguous argmax over classes (first maximum),
  const Decision* decision = nullptr;  // or this decision (decision.h) when set; with
                                       // Logits/Probabilities: also the labels of the scores (one pass)
  DType labels_dtype = DType::U8;      // U8 (classes <= 256) or U16 (classes <= 65536)
  // The tile function already applies the softmax (the CPU executor's fused head). Only allowed
  // for valid networks (same networks blend logits, then apply the softmax).
  bool fn_writes_probabilities = false;
};

// Tiles `img` (normalised per channel with mean/std on the fly) through `fn` and writes the result.
// A view inside a frame (ImageView::frame_*) reads the frame's pixels as context; for valid networks
// its tiles also sit on the frame's pooling grid (the tiling is extended back to the frame
// coordinates that are multiples of 2^depth), so that the result equals the same pixels of the
// whole frame's result up to fp32 rounding (tests/test_roi.py).
// Throws std::invalid_argument on bad input (shape, channels, NaN/Inf in float images), NumericError
// when `fn` produces NaN/Inf, Cancelled when opt.progress says stop.
void tile_predict(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& std,
                  const TileGeometry& g, const TileFn& fn, const TileOptions& opt, const TileOutput& out);

// The frame rows [y0, y1) and columns [x0, x1) that tile_predict reads for `view` (after mirror
// extrapolation at the frame's edges): what a buffer must hold (ImageView::held_*). `view` needs only its
// geometry (frame_*, height, width), not its data.
struct FrameReads {
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;
};
FrameReads frame_reads(const ImageView& view, const TileGeometry& g, const TileOptions& opt);

// numpy 'reflect' extended periodically: the index in [0, n) that mirror extrapolation reads.
inline int reflect_index(long long i, int n) {
  if (n == 1) return 0;
  long long p = 2LL * (n - 1);
  i %= p;
  if (i < 0) i += p;
  return int(i < n ? i : p - i);
}

}  // namespace unet_rt
