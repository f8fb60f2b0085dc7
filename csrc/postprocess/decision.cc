// A model's decision: see decision.h. Validation mirrors model_file._validate_decision.
#include "postprocess/decision.h"

#include <stdexcept>

namespace unet_rt {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument("bad 'decision' metadata: " + msg); }

// A probability threshold in (0, 1).
float get_prob(const json::Value& v, const char* key) {
  if (!v.is_number() || !(v.number > 0.0 && v.number < 1.0)) bad(std::string(key) + " must be a number in (0, 1)");
  return float(v.number);
}

int64_t get_count(const json::Value& v, const char* key, int64_t lo) {
  int64_t x;
  try {
    x = v.as_int64(key);
  } catch (const json::JsonError&) {
    bad(std::string(key) + " must be an integer");
  }
  if (x < lo || x > (int64_t(1) << 40)) bad(std::string(key) + " must be an integer >= " + std::to_string(lo));
  return x;
}

}  // namespace

Decision default_decision(int classes) {
  Decision d;
  d.foreground_class = classes >= 2 ? 1 : 0;
  return d;
}

Decision parse_decision(const json::Value& v, int classes) {
  if (!v.is_object()) bad("not an object");
  Decision d = default_decision(classes);
  const json::Value* fg = v.find("foreground_class");
  if (!fg) bad("no foreground_class");
  int64_t f = get_count(*fg, "foreground_class", 0);
  if (f >= classes) bad("foreground_class " + std::to_string(f) + " of a " + std::to_string(classes) + "-class model");
  d.foreground_class = int(f);
  for (const auto& kv : v.object) {
    const std::string& k = kv.first;
    if (k == "foreground_class" || k == "calibration") continue;  // calibration: free-form record
    if (k == "threshold") {
      if (!kv.second.is_null()) d.threshold = get_prob(kv.second, "threshold");
    } else if (k == "instances") {
      if (kv.second.is_null()) continue;
      if (!kv.second.is_object()) bad("instances must be an object");
      InstanceParams& p = d.instances;
      for (const auto& ikv : kv.second.object) {
        const std::string& ik = ikv.first;
        const json::Value& iv = ikv.second;
        if (ik == "mask_threshold") {
          if (!iv.is_null()) p.mask_threshold = get_prob(iv, "mask_threshold");
        } else if (ik == "marker_threshold") {
          if (!iv.is_null()) p.marker_threshold = get_prob(iv, "marker_threshold");
        } else if (ik == "min_marker_size") {
          p.min_marker_size = get_count(iv, "min_marker_size", 1);
        } else if (ik == "min_size") {
          p.min_size = get_count(iv, "min_size", 0);
        } else {
          bad("unknown instances key '" + ik + "'");
        }
      }
    } else {
      bad("unknown key '" + k + "'");
    }
  }
  if (classes < 2 && d.has_threshold()) bad("a threshold needs a model with at least 2 classes");
  return d;
}

void decide_labels(const float* scores, int64_t cstride, int64_t rstride, int h, int w, bool probs, int K,
                   const Decision& d, void* labels, bool u16, int W, int y0, int x0) {
  for (int y = 0; y < h; ++y) {
    const float* row = scores + int64_t(y) * rstride;
    const size_t at = size_t(y0 + y) * size_t(W) + size_t(x0);
    for (int x = 0; x < w; ++x) {
      const int c = decide_pixel(row + x, cstride, K, probs, d);
      if (u16) static_cast<uint16_t*>(labels)[at + size_t(x)] = uint16_t(c);
      else static_cast<uint8_t*>(labels)[at + size_t(x)] = uint8_t(c);
    }
  }
}

}  // namespace unet_rt
