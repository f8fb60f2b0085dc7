// Percentile normalisation: see normalize.h. Validation mirrors model_file._validate_norm.
#include "runtime/normalize.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "model/model_reader.h"

namespace unet_rt {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument("bad 'normalization' metadata: " + msg); }

// [lo, hi] with 0 <= lo < hi <= 100.
std::vector<float> percentile_pair(const json::Value* v, const char* key) {
  if (!v->is_array() || v->array.size() != 2 || !v->array[0].is_number() || !v->array[1].is_number())
    bad(std::string(key) + " must be [low, high]");
  double lo = v->array[0].number, hi = v->array[1].number;
  if (!(lo >= 0.0 && lo < hi && hi <= 100.0)) bad(std::string(key) + " must satisfy 0 <= low < high <= 100");
  return {float(lo), float(hi)};
}

std::vector<double> per_channel(const json::Value* v, const char* key, int channels) {
  if (!v || !v->is_array() || v->array.size() != size_t(channels))
    bad(std::string("train_range ") + key + " needs " + std::to_string(channels) + " numbers");
  std::vector<double> out;
  for (const auto& x : v->array) {
    if (!x.is_number() || !std::isfinite(x.number)) bad(std::string("train_range ") + key + " must be finite numbers");
    out.push_back(x.number);
  }
  return out;
}

// The values of float channel c (checked finite: they are sorted).
void channel_values(const ImageView& img, int c, std::vector<float>& out) {
  const float* p = static_cast<const float*>(img.data) + int64_t(c) * img.channel_stride;
  out.clear();
  out.reserve(size_t(img.height) * size_t(img.width));
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      float v = p[int64_t(y) * img.row_stride + int64_t(x) * img.col_stride];
      if (!std::isfinite(v)) throw std::invalid_argument("image holds NaN or Inf (channel " + std::to_string(c) + ")");
      out.push_back(v);
    }
}

// Smallest and largest value of float channel c.
void minmax(const ImageView& img, int c, float& lo, float& hi) {
  const float* p = static_cast<const float*>(img.data) + int64_t(c) * img.channel_stride;
  lo = hi = p[0];
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const float v = p[int64_t(y) * img.row_stride + int64_t(x) * img.col_stride];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
}

template <typename T>
void histogram(const ImageView& img, int c, std::vector<int64_t>& h) {
  const T* p = static_cast<const T*>(img.data) + int64_t(c) * img.channel_stride;
  h.assign(size_t(1) << (8 * sizeof(T)), 0);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) h[p[int64_t(y) * img.row_stride + int64_t(x) * img.col_stride]]++;
}

}  // namespace

void parse_normalization_extras(const json::Value& v, int channels, Normalization& n) {
  n.percentiles.clear();
  for (const auto& kv : v.object) {
    const std::string& k = kv.first;
    if (k == "mean" || k == "std") continue;
    if (k == "percentiles") {
      if (!kv.second.is_null()) n.percentiles = percentile_pair(&kv.second, "percentiles");
    } else if (k == "train_range") {
      if (kv.second.is_null()) continue;
      const json::Value& t = kv.second;
      if (!t.is_object()) bad("train_range must be an object");
      for (const auto& tk : t.object)
        if (tk.first != "percentiles" && tk.first != "low" && tk.first != "high")
          bad("unknown train_range key '" + tk.first + "'");
      const json::Value* q = t.find("percentiles");
      if (!q) bad("train_range needs percentiles");
      percentile_pair(q, "train_range percentiles");
      std::vector<double> lo = per_channel(t.find("low"), "low", channels),
                          hi = per_channel(t.find("high"), "high", channels);
      for (int c = 0; c < channels; ++c)
        if (lo[size_t(c)] > hi[size_t(c)]) bad("train_range low must be <= high");
    } else {
      bad("unknown key '" + k + "'");
    }
  }
}

PercentileRanks percentile_ranks(int64_t n, double q) {
  if (n < 1) throw std::invalid_argument("percentile of an empty image");
  const double idx = q / 100.0 * double(n - 1);
  PercentileRanks r;
  r.k = std::min<int64_t>(std::max<int64_t>(int64_t(std::floor(idx)), 0), n - 1);
  r.k1 = std::min<int64_t>(r.k + 1, n - 1);
  return r;
}

double percentile_from_ranks(int64_t n, double q, double a, double b) {
  const double t = q / 100.0 * double(n - 1) - double(percentile_ranks(n, q).k);
  const double d = b - a;  // numpy's _lerp
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

double percentile(const ImageView& img, int c, double q) {
  const int64_t n = int64_t(img.height) * img.width;
  const PercentileRanks r = percentile_ranks(n, q);
  const int64_t k = r.k, k1 = r.k1;
  double a, b;
  if (img.dtype == DType::F32) {
    std::vector<float> v;
    channel_values(img, c, v);
    std::nth_element(v.begin(), v.begin() + k, v.end());
    a = v[size_t(k)];
    b = k1 == k ? a : *std::min_element(v.begin() + k + 1, v.end());
  } else {
    std::vector<int64_t> h;
    if (img.dtype == DType::U8) histogram<uint8_t>(img, c, h);
    else histogram<uint16_t>(img, c, h);
    auto rank = [&](int64_t r) {  // value of rank r
      int64_t seen = 0;
      for (size_t i = 0; i < h.size(); ++i) {
        seen += h[i];
        if (seen > r) return double(i);
      }
      return double(h.size() - 1);
    };
    a = rank(k);
    b = rank(k1);
  }
  return percentile_from_ranks(n, q, a, b);
}

namespace {

// mean' = P_lo + mean * s, std' = std * s (s = P_hi - P_lo, 1 if 0); the values of `img` stay finite
// once normalised ((float(x) - mean') / std' in float32, as the tiler computes it).
void fold(const ImageView& img, int c, double lo, double hi, float mean, float sd, float& m, float& d) {
  const double s = hi > lo ? hi - lo : 1.0;
  m = float(lo + double(mean) * s);
  d = float(double(sd) * s);
  // integer images cannot overflow: their percentile range is 0 -> 1, or at least 1
  float vmin = 0.0f, vmax = 0.0f;
  if (img.dtype == DType::F32) minmax(img, c, vmin, vmax);
  if (!std::isfinite(m) || !(d > 0.0f) || !std::isfinite(d) || !std::isfinite((vmin - m) / d) ||
      !std::isfinite((vmax - m) / d))
    throw std::invalid_argument("percentile normalisation: channel " + std::to_string(c) +
                                " has a range float32 cannot scale (" + std::to_string(lo) + " .. " +
                                std::to_string(hi) + ")");
}

void check_channels(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd) {
  if (mean.size() != size_t(img.channels) || sd.size() != size_t(img.channels))
    throw std::invalid_argument("normalization needs one mean and one std per input channel");
}

}  // namespace

void effective_normalization(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                             const std::vector<float>& percentiles, std::vector<float>& mean_out,
                             std::vector<float>& sd_out) {
  mean_out = mean;
  sd_out = sd;
  if (percentiles.empty()) return;
  if (percentiles.size() != 2) throw std::invalid_argument("percentiles must be [low, high]");
  check_channels(img, mean, sd);
  for (int c = 0; c < img.channels; ++c)
    fold(img, c, percentile(img, c, percentiles[0]), percentile(img, c, percentiles[1]), mean[size_t(c)], sd[size_t(c)],
         mean_out[size_t(c)], sd_out[size_t(c)]);
}

void normalization_from_percentiles(const ImageView& img, const std::vector<float>& mean, const std::vector<float>& sd,
                                    const std::vector<double>& lo, const std::vector<double>& hi,
                                    std::vector<float>& mean_out, std::vector<float>& sd_out) {
  check_channels(img, mean, sd);
  if (lo.size() != size_t(img.channels) || hi.size() != size_t(img.channels))
    throw std::invalid_argument("percentiles need one low and one high value per input channel");
  ImageView held = img;  // the pixels the buffer holds
  if (img.held_height || img.held_width) {
    const int fy = img.frame_height ? img.frame_y : 0, fx = img.frame_height ? img.frame_x : 0;
    held.data = static_cast<const char*>(img.data) +
                (int64_t(img.held_y - fy) * img.row_stride + int64_t(img.held_x - fx) * img.col_stride) *
                    int64_t(img.dtype == DType::U8    ? 1
                            : img.dtype == DType::U16 ? 2
                                                      : 4);
    held.height = img.held_height;
    held.width = img.held_width;
  }
  mean_out = mean;
  sd_out = sd;
  for (int c = 0; c < img.channels; ++c) {
    if (!std::isfinite(lo[size_t(c)]) || !std::isfinite(hi[size_t(c)]))
      throw std::invalid_argument("percentiles must be finite");
    fold(held, c, lo[size_t(c)], hi[size_t(c)], mean[size_t(c)], sd[size_t(c)], mean_out[size_t(c)], sd_out[size_t(c)]);
  }
}

}  // namespace unet_rt
