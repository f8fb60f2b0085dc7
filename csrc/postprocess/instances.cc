// Instances from a foreground probability map: a marker-controlled watershed (see decision.h).
//
// Runs on the whole stitched probability map (the tiler's output equals one whole-image pass),
// so an object is never cut at a tile seam. Deterministic: markers are numbered in raster order of
// their first pixel; the flood pops the highest probability first, ties by push order (then by
// pixel index for the markers), exactly the queue discipline of skimage.segmentation.watershed.
#include <climits>
#include <queue>
#include <stdexcept>
#include <vector>

#include "postprocess/decision.h"

namespace unet_rt {

namespace {

// 4-connected components of `on` (1 = in) into `lab` (0 = out, 1..n in raster order of each
// component's first pixel); returns n. Union-find with path halving over the raster scan; roots
// are each component's first pixel, so one pass in raster order numbers them.
int64_t components(const std::vector<uint8_t>& on, int H, int W, int32_t* lab) {
  const int32_t n = int32_t(int64_t(H) * W);
  std::vector<int32_t> parent(size_t(n), -1);
  auto find = [&](int32_t a) {
    while (parent[size_t(a)] != a) {
      parent[size_t(a)] = parent[size_t(parent[size_t(a)])];
      a = parent[size_t(a)];
    }
    return a;
  };
  auto unite = [&](int32_t a, int32_t b) {
    a = find(a);
    b = find(b);
    if (a < b) parent[size_t(b)] = a;
    else if (b < a) parent[size_t(a)] = b;
  };
  for (int32_t i = 0; i < n; ++i) {
    if (!on[size_t(i)]) continue;
    parent[size_t(i)] = i;
    if (i % W > 0 && on[size_t(i - 1)]) unite(i, i - 1);
    if (i >= W && on[size_t(i - W)]) unite(i, i - W);
  }
  int32_t count = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (!on[size_t(i)]) {
      lab[i] = 0;
    } else {
      const int32_t r = find(i);
      lab[i] = r == i ? ++count : lab[r];  // a root precedes its component's other pixels
    }
  }
  return count;
}

// Labels of regions with fewer than `min` pixels become 0; the rest are renumbered 1..m in order.
// Returns m.
int64_t drop_small(int32_t* lab, int64_t n, int64_t count, int64_t min) {
  if (min <= 1 || !count) return count;
  std::vector<int64_t> size(size_t(count) + 1, 0);
  for (int64_t i = 0; i < n; ++i) size[size_t(lab[i])]++;
  std::vector<int32_t> to(size_t(count) + 1, 0);
  int32_t next = 0;
  for (int64_t m = 1; m <= count; ++m)
    if (size[size_t(m)] >= min) to[size_t(m)] = ++next;
  for (int64_t i = 0; i < n; ++i) lab[i] = to[size_t(lab[i])];
  return next;
}

struct Item {
  float p;        // flooded in order of decreasing p
  uint32_t age;   // then of push order (each pixel is pushed at most once)
  int32_t index;  // then of pixel index (markers all have age 0)
};
struct Later {
  bool operator()(const Item& a, const Item& b) const {  // true: a pops after b
    if (a.p != b.p) return a.p < b.p;
    if (a.age != b.age) return a.age > b.age;
    return a.index > b.index;
  }
};

}  // namespace

namespace {

// Checks the inputs of instance_markers / instances_from_probabilities.
void check_instances_input(const float* probs, int K, int H, int W, const Decision& d, const int32_t* labels) {
  if (!probs || !labels) throw std::invalid_argument("null buffer");
  if (K < 1 || H < 1 || W < 1) throw std::invalid_argument("empty probability map");
  if (d.foreground_class < 0 || d.foreground_class >= K)
    throw std::invalid_argument("foreground class " + std::to_string(d.foreground_class) + " out of range for " +
                                std::to_string(K) + " classes");
  const InstanceParams& ip = d.instances;
  if (ip.min_marker_size < 1 || ip.min_size < 0) throw std::invalid_argument("bad instance sizes");
  if (int64_t(H) * W > INT32_MAX) throw std::invalid_argument("image too large for instances (2^31 pixels at most)");
  const int64_t n = int64_t(H) * W;
  const float* p = probs + int64_t(d.foreground_class) * n;
  for (int64_t i = 0; i < n; ++i)
    if (!(p[i] >= 0.0f && p[i] <= 1.0f))
      throw std::invalid_argument("foreground probabilities must lie in [0, 1] (pixel " + std::to_string(i) + ")");
}

// The foreground mask (into `mask`) and the kept markers (into `labels`); returns the marker count.
int64_t markers_and_mask(const float* probs, int K, int H, int W, const Decision& d, int32_t* labels,
                         std::vector<uint8_t>& mask) {
  const InstanceParams& ip = d.instances;
  const int64_t n = int64_t(H) * W;
  const float* p = probs + int64_t(d.foreground_class) * n;
  std::vector<uint8_t> seed(static_cast<size_t>(n));
  mask.assign(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    bool m = std::isnan(ip.mask_threshold) ? decide_pixel(probs + i, n, K, true, d) == d.foreground_class
                                           : p[i] > ip.mask_threshold;
    mask[size_t(i)] = m;
    seed[size_t(i)] = m && (std::isnan(ip.marker_threshold) || p[i] > ip.marker_threshold);
  }
  return drop_small(labels, n, components(seed, H, W, labels), ip.min_marker_size);
}

}  // namespace

int64_t instance_markers(const float* probs, int K, int H, int W, const Decision& d, int32_t* labels) {
  check_instances_input(probs, K, H, W, d, labels);
  std::vector<uint8_t> mask;
  return markers_and_mask(probs, K, H, W, d, labels, mask);
}

int64_t instances_from_probabilities(const float* probs, int K, int H, int W, const Decision& d, int32_t* labels) {
  check_instances_input(probs, K, H, W, d, labels);
  const InstanceParams& ip = d.instances;
  const int64_t n = int64_t(H) * W;
  const float* p = probs + int64_t(d.foreground_class) * n;

  // ---- foreground mask and markers ----
  std::vector<uint8_t> mask;
  int64_t nm = markers_and_mask(probs, K, H, W, d, labels, mask);

  // ---- flood: a pixel takes its label when pushed, from the neighbour that pushed it ----
  std::priority_queue<Item, std::vector<Item>, Later> q;
  for (int32_t i = 0; i < int32_t(n); ++i)
    if (labels[i]) q.push(Item{p[i], 0, i});
  uint32_t age = 0;
  while (!q.empty()) {
    const int32_t i = q.top().index;
    q.pop();
    const int y = i / W, x = i % W;
    const int32_t nb[4] = {y > 0 ? i - W : -1, x > 0 ? i - 1 : -1, x + 1 < W ? i + 1 : -1, y + 1 < H ? i + W : -1};
    for (int32_t j : nb) {
      if (j < 0 || !mask[size_t(j)] || labels[j]) continue;
      labels[j] = labels[i];
      q.push(Item{p[j], ++age, j});
    }
  }

  // ---- drop small instances, renumber 1..n in order ----
  return drop_small(labels, n, nm, ip.min_size);
}

}  // namespace unet_rt
