// A model's decision (docs/decision.md): how class scores become
// labels (a threshold on the foreground probability instead of argmax) and how the foreground
// probability becomes instances (a marker-controlled watershed). Stored in the model file's
// optional "decision" metadata (src/unet_rt/format/model_file.py documents the layout; both readers validate
// it the same way); absent, segmentation is the argmax and instances are the connected components
// of the argmax foreground.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/json.h"

namespace unet_rt {

struct InstanceParams {
  // NaN = unset. Foreground mask: p > mask_threshold (unset: the segmentation's decision).
  float mask_threshold = NAN;
  // Markers: 4-connected components of (mask and p > marker_threshold) (unset: of the mask).
  float marker_threshold = NAN;
  int64_t min_marker_size = 1;  // markers with fewer pixels are dropped
  int64_t min_size = 0;         // instances with fewer pixels after flooding become background
};

struct Decision {
  int foreground_class = 1;  // the class whose probability is thresholded / flooded
  float threshold = NAN;     // label = foreground_class iff p(foreground) > threshold; NaN: argmax
  InstanceParams instances;
  bool has_threshold() const { return !std::isnan(threshold); }
};

// Default decision of a model without "decision" metadata (argmax; foreground class 1, or 0 for a
// one-class model).
Decision default_decision(int classes);

// Validates the "decision" metadata (parsed JSON) of a model with `classes` classes; throws
// std::invalid_argument with a message naming the problem.
Decision parse_decision(const json::Value& v, int classes);

// The label of one pixel: scores[k * cstride], k < K, are probabilities (`probs`) or logits.
// With a threshold: foreground_class iff its probability > threshold, else the argmax of the
// other classes; without: the argmax (first maximum).
inline int decide_pixel(const float* s, int64_t cstride, int K, bool probs, const Decision& d) {
  if (!d.has_threshold()) {
    int best = 0;
    float bv = s[0];
    for (int k = 1; k < K; ++k) {
      float v = s[int64_t(k) * cstride];
      if (v > bv) {
        bv = v;
        best = k;
      }
    }
    return best;
  }
  const int f = d.foreground_class;
  float pf;
  if (probs) {
    pf = s[int64_t(f) * cstride];
  } else {  // softmax probability of class f from logits, stable: 1 / sum_k exp(l_k - l_f)
    const float lf = s[int64_t(f) * cstride];
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) sum += std::exp(s[int64_t(k) * cstride] - lf);
    pf = 1.0f / sum;
  }
  if (pf > d.threshold) return f;
  int best = -1;
  float bv = 0.0f;
  for (int k = 0; k < K; ++k) {
    if (k == f) continue;
    float v = s[int64_t(k) * cstride];
    if (best < 0 || v > bv) {
      bv = v;
      best = k;
    }
  }
  return best < 0 ? f : best;
}

// Labels (U8 or U16 per `u16`) of an h x w block of class scores, scores[k * cstride + y * rstride + x]
// (probabilities if `probs`, else logits), by decide_pixel, into labels[(y0 + y) * W + x0 + x]: the one
// place scores become labels (the tiler writes each tile's labels with it).
void decide_labels(const float* scores, int64_t cstride, int64_t rstride, int h, int w, bool probs, int K,
                   const Decision& d, void* labels, bool u16, int W, int y0, int x0);
// Labels [H, W] from class scores [K, H, W] (planes of H * W).
inline void decide_labels(const float* scores, bool probs, int K, int H, int W, const Decision& d, void* labels,
                          bool u16) {
  decide_labels(scores, int64_t(H) * W, W, H, W, probs, K, d, labels, u16, W, 0, 0);
}

// Instances [H, W] int32 (0 = background, 1..n in raster order of each marker's first pixel) from
// class probabilities [K, H, W] by a marker-controlled watershed on p = probs[foreground_class]:
// markers as InstanceParams says, flooded in order of decreasing p (ties: first pushed first) over
// the 4-connected foreground mask, as skimage.segmentation.watershed(-p, markers, mask=mask) does.
// Returns the number of instances.
int64_t instances_from_probabilities(const float* probs, int K, int H, int W, const Decision& d, int32_t* labels);

// The markers that watershed floods from (labels [H, W] int32: 1..m in raster order of their first
// pixel, 0 elsewhere), as instances_from_probabilities makes them; returns m. (unet_rt.scale numbers
// objects joined across blocks by their markers' first pixels, as the Engine does.)
int64_t instance_markers(const float* probs, int K, int H, int W, const Decision& d, int32_t* labels);

}  // namespace unet_rt
