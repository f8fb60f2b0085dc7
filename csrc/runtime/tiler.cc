// Overlap-tile inference: see tiler.h.
#include "runtime/tiler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>

#include "kernels/kernels.h"
#include "core/geometry.h"

namespace unet_rt {

long long AxisGrid::total_input() const {
  long long t = 0;
  for (int s : in_size) t += s;
  return t;
}
int TileGrid::max_in_h() const { return y.in_size.empty() ? 0 : *std::max_element(y.in_size.begin(), y.in_size.end()); }
int TileGrid::max_in_w() const { return x.in_size.empty() ? 0 : *std::max_element(x.in_size.begin(), x.in_size.end()); }

namespace {

// ---- planning: valid networks ------------------------------------------------------------------

// Smallest valid input whose output covers `n` pixels.
int covering_input(int n, int depth) {
  int i = next_valid_input(n + 2 * halo(depth, false), depth, false);
  while (output_size(i, depth, false) < n) i += 1 << depth;
  return i;
}

// One axis of `n` output pixels with full tiles of input `tile`; `shrink_last`: the last tile is
// the smallest valid tile that still reaches the border (automatic mode).
AxisGrid valid_axis(int n, int tile, int depth, bool shrink_last) {
  const int g = 1 << depth;
  const int o = output_size(tile, depth, false);
  AxisGrid a;
  if (o >= n) {
    int i = shrink_last ? covering_input(n, depth) : tile;
    a.out_start.push_back(0);
    a.in_size.push_back(i);
    a.out_size.push_back(output_size(i, depth, false));
    return a;
  }
  const int stride = (o / g) * g;  // keeps every tile origin on the pooling grid
  if (stride <= 0) throw std::invalid_argument("tile " + std::to_string(tile) + " is too small to tile an image");
  int s = 0;
  for (;;) {
    if (s + o >= n) {
      int i = shrink_last ? covering_input(n - s, depth) : tile;
      a.out_start.push_back(s);
      a.in_size.push_back(i);
      a.out_size.push_back(output_size(i, depth, false));
      return a;
    }
    a.out_start.push_back(s);
    a.in_size.push_back(tile);
    a.out_size.push_back(o);
    s += stride;
  }
}

size_t tile_bytes(const TileGeometry& g, const TileOptions& opt, int ih, int iw, int oh, int ow) {
  size_t b = size_t(g.in_channels) * size_t(ih) * size_t(iw) * 4 + size_t(g.classes) * size_t(oh) * size_t(ow) * 4;
  if (opt.workspace_bytes) b += opt.workspace_bytes(ih, iw);
  return b;
}

TileGrid plan_valid(int H, int W, const TileGeometry& g, const TileOptions& opt) {
  TileGrid p;
  p.halo = halo(g.depth, false);
  p.padded_h = H;
  p.padded_w = W;
  if (opt.tile > 0) {
    if (output_size_or_neg(opt.tile, g.depth, false) < 0)
      throw std::invalid_argument("tile " + std::to_string(opt.tile) + " is not a valid input size for a depth-" +
                                  std::to_string(g.depth) +
                                  " valid U-Net (valid sizes: " + std::to_string(min_input_size(g.depth, false)) +
                                  " + multiples of " + std::to_string(1 << g.depth) + ")");
    p.y = valid_axis(H, opt.tile, g.depth, false);
    p.x = valid_axis(W, opt.tile, g.depth, false);
    return p;
  }
  // Automatic: candidate full-tile sizes per axis, from the smallest that can stride up to the one
  // that covers the axis at once; cost = total input area = (sum of heights) * (sum of widths).
  const int step = 1 << g.depth;
  auto candidates = [&](int n) {
    std::vector<AxisGrid> out;
    int cover = covering_input(n, g.depth);
    for (int i = min_input_size(g.depth, false); i <= cover; i += step) {
      if (output_size(i, g.depth, false) < step && i != cover) continue;  // stride would be 0
      if (opt.max_tile > 0 && i > opt.max_tile && !out.empty()) break;
      out.push_back(valid_axis(n, i, g.depth, true));
    }
    return out;
  };
  std::vector<AxisGrid> cy = candidates(H), cx = candidates(W);
  // The largest input side of candidate i is its full tile, increasing with i; the memory of a
  // tile grows with both sides, so the candidates that fit form, for each row candidate, a prefix
  // of the column candidates: find its end by bisection (few workspace_bytes calls).
  auto max_of = [](const std::vector<int>& v) { return *std::max_element(v.begin(), v.end()); };
  auto fits = [&](int iy, int ix) {
    const AxisGrid &ay = cy[size_t(iy)], &ax = cx[size_t(ix)];
    int ih = max_of(ay.in_size), iw = max_of(ax.in_size);
    if (opt.max_tile > 0 && (ih > opt.max_tile || iw > opt.max_tile)) return false;
    return opt.memory_budget == 0 ||
           tile_bytes(g, opt, ih, iw, max_of(ay.out_size), max_of(ax.out_size)) <= opt.memory_budget;
  };
  struct Best {
    long long cost = -1;
    size_t tiles = 0;
    int iy = 0, ix = 0;
  } best;
  for (int iy = 0; iy < int(cy.size()); ++iy) {
    int lo = 0, hi = int(cx.size());  // fits(iy, ix) for ix < lo; not for ix >= hi
    if (!fits(iy, 0)) break;          // larger iy fit even less
    lo = 1;
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      if (fits(iy, mid)) lo = mid + 1;
      else hi = mid;
    }
    for (int ix = 0; ix < lo; ++ix) {
      long long cost = cy[size_t(iy)].total_input() * cx[size_t(ix)].total_input();
      size_t tiles = cy[size_t(iy)].in_size.size() * cx[size_t(ix)].in_size.size();
      if (best.cost < 0 || cost < best.cost || (cost == best.cost && tiles < best.tiles)) best = {cost, tiles, iy, ix};
    }
  }
  // Nothing fits the budget: the smallest tiles.
  p.y = cy[size_t(best.iy)];
  p.x = cx[size_t(best.ix)];
  return p;
}

// ---- planning: same networks (MONAI sliding window) --------------------------------------------

AxisGrid same_axis(int n_padded, int roi, double overlap) {
  AxisGrid a;
  int interval = roi;
  if (roi != n_padded) {
    interval = int(double(roi) * (1.0 - overlap));
    if (interval <= 0) interval = 1;
  }
  int num = int(std::ceil(double(n_padded) / interval));
  int scan = 0;
  bool found = false;
  for (int d = 0; d < num; ++d)
    if (int64_t(d) * interval + roi >= n_padded) {
      scan = d;
      found = true;
      break;
    }
  int count = found ? scan + 1 : 1;
  for (int d = 0; d < count; ++d) {
    int s = d * interval;
    s -= std::max(s + roi - n_padded, 0);
    a.out_start.push_back(s);
    a.in_size.push_back(roi);
    a.out_size.push_back(roi);
  }
  return a;
}

TileGrid plan_same(int H, int W, const TileGeometry& g, const TileOptions& opt) {
  const int step = 1 << g.depth;
  if (!(opt.overlap >= 0.0 && opt.overlap < 1.0)) throw std::invalid_argument("overlap must be in [0, 1)");
  int ry, rx;
  if (opt.tile > 0) {
    if (opt.tile % step)
      throw std::invalid_argument("tile " + std::to_string(opt.tile) + " is not valid for a depth-" +
                                  std::to_string(g.depth) + " same-padded U-Net (needs a multiple of " +
                                  std::to_string(step) + ")");
    ry = rx = opt.tile;
  } else {
    auto up = [&](int n) { return (n + step - 1) / step * step; };
    ry = up(H);
    rx = up(W);
    int cap = opt.max_tile > 0 ? std::max(step, opt.max_tile / step * step) : 0;
    for (;;) {
      bool over_cap = cap && (ry > cap || rx > cap);
      bool over_budget = opt.memory_budget > 0 && tile_bytes(g, opt, ry, rx, ry, rx) > opt.memory_budget;
      if (!(over_cap || over_budget) || (ry == step && rx == step)) break;
      if (ry >= rx) ry -= step;
      else rx -= step;
    }
  }
  TileGrid p;
  p.halo = 0;
  p.padded_h = std::max(H, ry);
  p.padded_w = std::max(W, rx);
  p.pad_y = (p.padded_h - H) / 2;
  p.pad_x = (p.padded_w - W) / 2;
  p.y = same_axis(p.padded_h, ry, opt.overlap);
  p.x = same_axis(p.padded_w, rx, opt.overlap);
  return p;
}

// ---- execution helpers ------------------------------------------------------------------------

// The view's frame (ImageView::frame_*): origin of the view in it and its size, per axis.
struct Frame {
  int y0, x0, h, w;
  explicit Frame(const ImageView& v)
      : y0(v.frame_height ? v.frame_y : 0),
        x0(v.frame_height ? v.frame_x : 0),
        h(v.frame_height ? v.frame_height : v.height),
        w(v.frame_height ? v.frame_width : v.width) {}
  // the view row / column that view coordinate i reads: mirrored at the frame's edges
  int row(long long i) const { return reflect_index(i + y0, h) - y0; }
  int col(long long i) const { return reflect_index(i + x0, w) - x0; }
};

template <typename T>
void gather_t(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd, int oy, int ox,
              int ih, int iw, float* dst, std::vector<int>& cols) {
  const T* src = static_cast<const T*>(img.data);
  const Frame f(img);
  cols.resize(size_t(iw));
  for (int x = 0; x < iw; ++x) cols[size_t(x)] = f.col(ox + x);
  for (int c = 0; c < img.channels; ++c) {
    const float m = mean[size_t(c)], s = sd[size_t(c)];
    for (int y = 0; y < ih; ++y) {
      const T* row = src + int64_t(c) * img.channel_stride + int64_t(f.row(oy + y)) * img.row_stride;
      float* d = dst + (size_t(c) * size_t(ih) + size_t(y)) * size_t(iw);
      if (img.col_stride == 1 && ox + f.x0 >= 0 && ox + f.x0 + iw <= f.w) {
        const T* r = row + ox;
        for (int x = 0; x < iw; ++x) d[x] = (float(r[x]) - m) / s;
      } else {
        for (int x = 0; x < iw; ++x) d[x] = (float(row[int64_t(cols[size_t(x)]) * img.col_stride]) - m) / s;
      }
    }
  }
}

// Reads the tile [oy, oy + ih) x [ox, ox + iw) of the mirror-extrapolated, normalised image.
void gather(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd, int oy, int ox, int ih,
            int iw, float* dst, std::vector<int>& cols) {
  switch (img.dtype) {
    case DType::U8: gather_t<uint8_t>(img, mean, sd, oy, ox, ih, iw, dst, cols); break;
    case DType::U16: gather_t<uint16_t>(img, mean, sd, oy, ox, ih, iw, dst, cols); break;
    case DType::F32: gather_t<float>(img, mean, sd, oy, ox, ih, iw, dst, cols); break;
  }
}

// The contiguous range of view rows (or columns) that view coordinates [lo, hi) read after mirroring at
// the frame's edges: [first, second).
template <typename At>
std::pair<int, int> read_span(int lo, int hi, At&& at) {
  int a = at(lo), b = a;
  for (int i = lo + 1; i < hi; ++i) a = std::min(a, at(i)), b = std::max(b, at(i));
  return std::make_pair(a, b + 1);
}

// Every pixel of view rows `ry` and columns `rx` (ranges after mirroring) is finite.
void check_finite(const ImageView& img, std::pair<int, int> ry, std::pair<int, int> rx) {
  if (img.dtype != DType::F32) return;
  const Frame f(img);
  const float* p = static_cast<const float*>(img.data);
  for (int c = 0; c < img.channels; ++c)
    for (int y = ry.first; y < ry.second; ++y) {
      const float* row = p + int64_t(c) * img.channel_stride + int64_t(y) * img.row_stride;
      for (int x = rx.first; x < rx.second; ++x)
        if (!std::isfinite(row[int64_t(x) * img.col_stride]))
          throw std::invalid_argument("image holds NaN or Inf (channel " + std::to_string(c) + ", row " +
                                      std::to_string(y + f.y0) + ", column " + std::to_string(x + f.x0) + ")");
    }
}

// Where a run's tiles sit: the plan, the offsets from plan coordinates to view coordinates, the
// tiles that write the view's pixels (in run order) and the view pixels they read.
struct Layout {
  TileGrid plan;
  int out_y = 0, out_x = 0;                // a tile's output [out_start, + out_size) is view [out_start - out_*, ...)
  int in_y = 0, in_x = 0;                  // its input [0, in_size) starts at view out_start - in_*
  std::vector<std::pair<int, int>> tiles;  // (iy, ix), in order of their shape (the executor plans each shape once)
  std::pair<int, int> rows, cols;          // view rows / columns read (after mirroring): [first, second)
};

void check_frame(const ImageView& img) {
  if (img.frame_height || img.frame_width) {
    if (img.frame_height < 1 || img.frame_width < 1 || img.frame_y < 0 || img.frame_x < 0 ||
        int64_t(img.frame_y) + img.height > img.frame_height || int64_t(img.frame_x) + img.width > img.frame_width)
      throw std::invalid_argument("the view is not inside its frame");
  }
}

Layout layout(const ImageView& img, const TileGeometry& g, const TileOptions& opt) {
  check_frame(img);
  const Frame f(img);
  const int H = img.height, W = img.width;
  // plan coordinates of the view's pixel (0, 0) and the size of the planned image
  int sy = 0, sx = 0, ph = H, pw = W;
  if (opt.frame_plan) {  // the whole frame's plan
    sy = f.y0, sx = f.x0, ph = f.h, pw = f.w;
  } else if (!g.same_padding) {
    // valid networks: a view inside a frame is tiled from the frame's pooling grid (shift before the
    // view), so that its tiles are those of a whole-frame pass
    const int grid = 1 << std::clamp(g.depth, 1, 8);
    sy = f.y0 % grid, sx = f.x0 % grid, ph = H + sy, pw = W + sx;
  }
  Layout L;
  L.plan = plan_tiles(ph, pw, g, opt);
  const TileGrid& p = L.plan;
  L.out_y = sy + (g.same_padding ? p.pad_y : 0);
  L.out_x = sx + (g.same_padding ? p.pad_x : 0);
  L.in_y = sy + (g.same_padding ? p.pad_y : p.halo);
  L.in_x = sx + (g.same_padding ? p.pad_x : p.halo);
  auto writes = [](const AxisGrid& a, int i, int off, int n) {
    const int o = a.out_start[size_t(i)] - off;
    return o < n && o + a.out_size[size_t(i)] > 0;
  };
  int y_lo = 0, y_hi = 0, x_lo = 0, x_hi = 0;
  for (int iy = 0; iy < int(p.y.in_size.size()); ++iy) {
    if (!writes(p.y, iy, L.out_y, H)) continue;
    for (int ix = 0; ix < int(p.x.in_size.size()); ++ix) {
      if (!writes(p.x, ix, L.out_x, W)) continue;
      const int ty = p.y.out_start[size_t(iy)] - L.in_y, tx = p.x.out_start[size_t(ix)] - L.in_x;
      if (L.tiles.empty()) y_lo = ty, y_hi = ty, x_lo = tx, x_hi = tx;
      y_lo = std::min(y_lo, ty), y_hi = std::max(y_hi, ty + p.y.in_size[size_t(iy)]);
      x_lo = std::min(x_lo, tx), x_hi = std::max(x_hi, tx + p.x.in_size[size_t(ix)]);
      L.tiles.emplace_back(iy, ix);
    }
  }
  std::stable_sort(L.tiles.begin(), L.tiles.end(), [&](const std::pair<int, int>& a, const std::pair<int, int>& b) {
    return std::make_pair(p.y.in_size[size_t(a.first)], p.x.in_size[size_t(a.second)]) <
           std::make_pair(p.y.in_size[size_t(b.first)], p.x.in_size[size_t(b.second)]);
  });
  L.rows = read_span(y_lo, y_hi, [&](int i) { return f.row(i); });
  L.cols = read_span(x_lo, x_hi, [&](int i) { return f.col(i); });
  if (img.held_height || img.held_width) {                       // the buffer holds only part of the frame
    const int hy0 = img.held_y - f.y0, hx0 = img.held_x - f.x0;  // in view coordinates
    if (L.rows.first < hy0 || L.rows.second > hy0 + img.held_height || L.cols.first < hx0 ||
        L.cols.second > hx0 + img.held_width)
      throw std::invalid_argument(
          "the tiles read frame rows " + std::to_string(L.rows.first + f.y0) + ".." +
          std::to_string(L.rows.second + f.y0) + " and columns " + std::to_string(L.cols.first + f.x0) + ".." +
          std::to_string(L.cols.second + f.x0) + ", outside the part of the frame the buffer holds (rows " +
          std::to_string(img.held_y) + ".." + std::to_string(img.held_y + img.held_height) + ", columns " +
          std::to_string(img.held_x) + ".." + std::to_string(img.held_x + img.held_width) + ")");
  }
  return L;
}

// Every value of the [K, h, w] block at p (strides cs, rs) is finite; else NumericError.
void check_tile_finite(const float* p, int K, int64_t cs, int64_t rs, int h, int w, int y0, int x0) {
  for (int k = 0; k < K; ++k)
    for (int y = 0; y < h; ++y) {
      const float* r = p + k * cs + y * rs;
      for (int x = 0; x < w; ++x)
        if (!std::isfinite(r[x]))
          throw NumericError("the network produced NaN or Inf (class " + std::to_string(k) + ", tile at row " +
                             std::to_string(y0) + ", column " + std::to_string(x0) +
                             "): the model's weights overflow float32 on this input");
    }
}

// The one softmax (kernels::softmax_inplace, which every ISA's fused head also uses), per pixel over
// the class planes.
void softmax_planes(float* scores, int K, size_t npix) {
  for (size_t i = 0; i < npix; ++i) kernels::softmax_inplace(scores + i, K, int64_t(npix));
}

// Labels by `out`'s decision (argmax without one: decision.h's default) of the h x w block of scores at
// src (strides cs, rs) into view pixels [y0, y0 + h) x [x0, x0 + w); `probs`: src holds probabilities.
void labels_into(const TileOutput& out, const float* src, int K, int64_t cs, int64_t rs, int h, int w, int W, int y0,
                 int x0, bool probs) {
  const Decision argmax = default_decision(K);
  decide_labels(src, cs, rs, h, w, probs, K, out.decision ? *out.decision : argmax, out.labels,
                out.labels_dtype == DType::U16, W, y0, x0);
}

std::vector<float> blend_weights(int n, Blend b, double sigma_scale) {
  std::vector<float> w(size_t(n), 1.0f);
  if (b == Blend::Gaussian) {
    // As MONAI's compute_importance_map: exp(t^2 / (-2 sigma^2)), t = i - (n-1)/2, sigma = scale * n,
    // in float32; the 2-D map is the outer product, clamped below at max(min(map), 1e-3).
    const float sigma = float(double(n) * sigma_scale);
    for (int i = 0; i < n; ++i) {
      float t = -float(n - 1) / 2.0f + float(i);
      w[size_t(i)] = std::exp(t * t / (-2.0f * sigma * sigma));
    }
  }
  return w;
}

}  // namespace

TileGrid plan_tiles(int height, int width, const TileGeometry& g, const TileOptions& opt) {
  if (height < 1 || width < 1) throw std::invalid_argument("image is empty");
  if (height > kMaxImageSide || width > kMaxImageSide)
    throw std::invalid_argument("image of " + std::to_string(height) + " x " + std::to_string(width) +
                                " pixels: sides above " + std::to_string(kMaxImageSide) +
                                " are not supported (split the image)");
  if (opt.tile > kMaxImageSide || opt.max_tile > kMaxImageSide)
    throw std::invalid_argument("tile size above " + std::to_string(kMaxImageSide));
  if (g.depth < 1 || g.depth > 8) throw std::invalid_argument("depth must be in [1, 8]");
  return g.same_padding ? plan_same(height, width, g, opt) : plan_valid(height, width, g, opt);
}

void tile_predict(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                  const TileGeometry& g, const TileFn& fn, const TileOptions& opt, const TileOutput& out) {
  // ---- checks ----
  if (img.height < 1 || img.width < 1 || img.channels < 1)
    throw std::invalid_argument("image is empty (" + std::to_string(img.channels) + " x " + std::to_string(img.height) +
                                " x " + std::to_string(img.width) + ")");
  if (!img.data) throw std::invalid_argument("image data is null");
  if (img.channels != g.in_channels)
    throw std::invalid_argument("image has " + std::to_string(img.channels) + " channels, the model expects " +
                                std::to_string(g.in_channels));
  if (mean.size() != size_t(g.in_channels) || sd.size() != size_t(g.in_channels))
    throw std::invalid_argument("normalization needs one mean and one std per input channel");
  for (size_t c = 0; c < sd.size(); ++c)
    if (!std::isfinite(mean[c]) || !std::isfinite(sd[c]) || !(sd[c] > 0))
      throw std::invalid_argument("normalization needs finite means and positive stds");
  const int K = g.classes, H = img.height, W = img.width;
  if (K < 1) throw std::invalid_argument("classes must be >= 1");
  if (out.kind == OutputKind::Labels && !out.labels) throw std::invalid_argument("labels buffer is null");
  if (out.labels && (out.labels_dtype == DType::F32 || (out.labels_dtype == DType::U8 && K > 256) || K > 65536))
    throw std::invalid_argument("labels dtype too small for " + std::to_string(K) + " classes");
  if (out.kind != OutputKind::Labels && !out.scores) throw std::invalid_argument("output buffer is null");
  if (out.fn_writes_probabilities && (g.same_padding || out.kind == OutputKind::Logits))
    throw std::invalid_argument("a tile function that applies the softmax cannot give logits or be blended");
  const Layout L = layout(img, g, opt);
  const TileGrid& plan = L.plan;
  check_finite(img, L.rows, L.cols);  // the pixels the tiles read must be finite
  const size_t npix = size_t(H) * size_t(W);
  std::vector<int> cols;
  std::vector<float> tile_in, scratch;
  const auto& order = L.tiles;
  size_t done = 0;
  auto report = [&] {  // before the first tile and after each one
    if (opt.progress && !opt.progress(done, order.size())) throw Cancelled(done, order.size());
    ++done;
  };
  report();

  if (!g.same_padding) {
    // ---- valid networks: every output pixel written once (overlap strips: identical values) ----
    const int dy = L.out_y, dx = L.out_x;
    for (const auto& [ty, tx] : order) {
      const int ih = plan.y.in_size[size_t(ty)], iw = plan.x.in_size[size_t(tx)];
      const int oh = plan.y.out_size[size_t(ty)], ow = plan.x.out_size[size_t(tx)];
      const int sy = plan.y.out_start[size_t(ty)], sx = plan.x.out_start[size_t(tx)];
      tile_in.resize(size_t(g.in_channels) * size_t(ih) * size_t(iw));
      gather(img, mean, sd, sy - L.in_y, sx - L.in_x, ih, iw, tile_in.data(), cols);
      // tile output (y, x) is view pixel (sy - dy + y, sx - dx + x); [y0, y1) x [x0, x1) is inside the view
      const int y0 = std::max(0, dy - sy), y1 = std::min(oh, H + dy - sy);
      const int x0 = std::max(0, dx - sx), x1 = std::min(ow, W + dx - sx);
      const int vy = sy - dy + y0, vx = sx - dx + x0;  // where that part goes
      if (out.kind != OutputKind::Labels && y0 == 0 && x0 == 0 && y1 == oh && x1 == ow) {
        float* dst = out.scores + size_t(vy) * size_t(W) + size_t(vx);
        fn(tile_in.data(), ih, iw, OutputView{dst, int64_t(npix), W});
        check_tile_finite(dst, K, int64_t(npix), W, oh, ow, vy, vx);
        report();
        continue;
      }
      scratch.assign(size_t(K) * size_t(oh) * size_t(ow), 0.0f);
      fn(tile_in.data(), ih, iw, OutputView{scratch.data(), int64_t(oh) * ow, ow});
      check_tile_finite(scratch.data(), K, int64_t(oh) * ow, ow, oh, ow, vy, vx);
      const float* part = scratch.data() + size_t(y0) * size_t(ow) + size_t(x0);
      if (out.kind == OutputKind::Labels) {
        labels_into(out, part, K, int64_t(oh) * ow, ow, y1 - y0, x1 - x0, W, vy, vx, out.fn_writes_probabilities);
      } else {
        for (int k = 0; k < K; ++k)
          for (int y = 0; y < y1 - y0; ++y)
            std::memcpy(out.scores + size_t(k) * npix + size_t(vy + y) * size_t(W) + size_t(vx),
                        part + (size_t(k) * size_t(oh) + size_t(y)) * size_t(ow), size_t(x1 - x0) * 4);
      }
      report();
    }
    if (out.kind == OutputKind::Probabilities && !out.fn_writes_probabilities) softmax_planes(out.scores, K, npix);
    if (out.kind != OutputKind::Labels && out.labels)
      labels_into(out, out.scores, K, int64_t(npix), W, H, W, W, 0, 0, out.kind == OutputKind::Probabilities);
    return;
  }

  // ---- same networks: blended sliding windows (accumulate in the image frame; padding cropped) ----
  std::vector<float> acc_owned;
  float* acc = out.scores;
  if (out.kind == OutputKind::Labels) {
    acc_owned.assign(size_t(K) * npix, 0.0f);
    acc = acc_owned.data();
  } else {
    std::fill(acc, acc + size_t(K) * npix, 0.0f);
  }
  std::vector<float> count(npix, 0.0f);
  const int ry = plan.y.in_size.empty() ? 0 : plan.y.in_size[0], rx = plan.x.in_size.empty() ? 0 : plan.x.in_size[0];
  std::vector<float> wy = blend_weights(ry, opt.blend, opt.sigma_scale),
                     wx = blend_weights(rx, opt.blend, opt.sigma_scale);
  std::vector<float> wmap(size_t(ry) * size_t(rx));
  float wmin = std::numeric_limits<float>::infinity();
  for (int y = 0; y < ry; ++y)
    for (int x = 0; x < rx; ++x) {
      float v = opt.blend == Blend::Gaussian ? wx[size_t(x)] * wy[size_t(y)] : 1.0f;
      wmap[size_t(y) * size_t(rx) + size_t(x)] = v;
      wmin = std::min(wmin, v);
    }
  const float floor_w = std::max(wmin, 1e-3f);
  for (float& v : wmap) v = std::max(v, floor_w);

  const int oy = L.out_y, ox = L.out_x;  // = L.in_y, L.in_x: a window's output is its input's pixels
  for (const auto& [ty, tx] : order) {
    const int sy = plan.y.out_start[size_t(ty)], sx = plan.x.out_start[size_t(tx)];
    tile_in.resize(size_t(g.in_channels) * size_t(ry) * size_t(rx));
    gather(img, mean, sd, sy - oy, sx - ox, ry, rx, tile_in.data(), cols);
    scratch.assign(size_t(K) * size_t(ry) * size_t(rx), 0.0f);
    fn(tile_in.data(), ry, rx, OutputView{scratch.data(), int64_t(ry) * rx, rx});
    check_tile_finite(scratch.data(), K, int64_t(ry) * rx, rx, ry, rx, sy, sx);
    // window pixel (y, x) -> view pixel (sy - oy + y, sx - ox + x)
    const int y0 = std::max(0, oy - sy), y1 = std::min(ry, H + oy - sy);
    const int x0 = std::max(0, ox - sx), x1 = std::min(rx, W + ox - sx);
    const int n = x1 - x0;
    for (int y = y0; y < y1; ++y) {
      // view pixel (sy - oy + y, sx - ox + x0): both coordinates >= 0 (the window may start
      // in the padding: offsets are taken from x0, never from a negative column; fuzz_image found
      // the unsigned wrap-around the old form relied on)
      const size_t at = size_t(sy - oy + y) * size_t(W) + size_t(sx - ox + x0);
      const float* wr = wmap.data() + size_t(y) * size_t(rx) + size_t(x0);
      for (int x = 0; x < n; ++x) count[at + size_t(x)] += wr[x];
      for (int k = 0; k < K; ++k) {
        const float* sr = scratch.data() + (size_t(k) * size_t(ry) + size_t(y)) * size_t(rx) + size_t(x0);
        float* ar = acc + size_t(k) * npix + at;
        for (int x = 0; x < n; ++x) ar[x] += wr[x] * sr[x];
      }
    }
    report();
  }
  for (int k = 0; k < K; ++k)
    for (size_t i = 0; i < npix; ++i) acc[size_t(k) * npix + i] /= count[i];
  if (out.kind == OutputKind::Probabilities) softmax_planes(acc, K, npix);
  if (out.labels) labels_into(out, acc, K, int64_t(npix), W, H, W, W, 0, 0, out.kind == OutputKind::Probabilities);
}

FrameReads frame_reads(const ImageView& view, const TileGeometry& g, const TileOptions& opt) {
  if (view.height < 1 || view.width < 1) throw std::invalid_argument("the region is empty");
  ImageView v = view;
  v.held_height = v.held_width = 0;
  const Layout L = layout(v, g, opt);
  const Frame f(v);
  return FrameReads{L.rows.first + f.y0, L.rows.second + f.y0, L.cols.first + f.x0, L.cols.second + f.x0};
}

}  // namespace unet_rt
