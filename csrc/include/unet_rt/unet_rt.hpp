// unet-rt C++ API: a header-only RAII wrapper over the C API (unet_rt.h). Errors throw unet_rt::Error.
//
//   unet_rt::Engine engine("model.plan", {/*threads*/ 4});
//   std::vector<uint8_t> labels(h * w);
//   engine.segment(frame_u16, 1, h, w, labels.data());
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "unet_rt/unet_rt.h"

namespace unet_rt {

class Error : public std::runtime_error {
 public:
  Error(unet_rt_status status, const std::string& msg) : std::runtime_error(msg), status_(status) {}
  unet_rt_status status() const noexcept { return status_; }

 private:
  unet_rt_status status_;
};

inline void check(unet_rt_status s) {
  if (s != UNET_RT_OK) throw Error(s, unet_rt_last_error());
}

inline std::string version() { return unet_rt_version(); }

struct Options {
  int threads = 0;
  int tile = 0;
  int memory_budget_mb = 0;
  float overlap = 0.25f;      // same-padded networks only
  bool gaussian_blend = false;  // same-padded networks only
};

template <typename T> struct dtype_of;
template <> struct dtype_of<uint8_t> { static constexpr unet_rt_dtype value = UNET_RT_U8; };
template <> struct dtype_of<uint16_t> { static constexpr unet_rt_dtype value = UNET_RT_U16; };
template <> struct dtype_of<float> { static constexpr unet_rt_dtype value = UNET_RT_F32; };

class Engine {
 public:
  explicit Engine(const std::string& path, const Options& o = Options()) {
    unet_rt_options opt;
    unet_rt_options_init(&opt);
    opt.threads = o.threads;
    opt.tile = o.tile;
    opt.memory_budget_mb = o.memory_budget_mb;
    opt.overlap = o.overlap;
    opt.gaussian_blend = o.gaussian_blend ? 1 : 0;
    check(unet_rt_engine_create(path.c_str(), &opt, &e_));
    check(unet_rt_engine_info(e_, &info_));
  }
  ~Engine() { unet_rt_engine_destroy(e_); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  Engine(Engine&& o) noexcept : e_(o.e_), info_(o.info_) { o.e_ = nullptr; }
  Engine& operator=(Engine&& o) noexcept {
    if (this != &o) {
      unet_rt_engine_destroy(e_);
      e_ = o.e_;
      info_ = o.info_;
      o.e_ = nullptr;
    }
    return *this;
  }

  const unet_rt_info& info() const { return info_; }
  int in_channels() const { return info_.in_channels; }
  int classes() const { return info_.classes; }
  std::string class_name(int k) const {
    const char* n = unet_rt_engine_class_name(e_, k);
    if (!n) throw Error(UNET_RT_ERR_INVALID_ARGUMENT, unet_rt_last_error());
    return n;
  }
  unet_rt_engine* handle() const { return e_; }

  // Labels of a channels x height x width image (CHW unless layout says HWC) into labels[height * width].
  template <typename T, typename L>
  void segment(const T* image, int channels, int height, int width, L* labels,
               unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    static_assert(std::is_same<L, uint8_t>::value || std::is_same<L, uint16_t>::value, "labels: uint8_t or uint16_t");
    check(unet_rt_segment(e_, image, dtype_of<T>::value, layout, channels, height, width, labels,
                          size_t(height) * size_t(width), dtype_of<L>::value));
  }
  template <typename T>
  std::vector<uint8_t> segment(const T* image, int channels, int height, int width,
                               unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    std::vector<uint8_t> labels(size_t(height) * size_t(width));
    segment(image, channels, height, width, labels.data(), layout);
    return labels;
  }
  // Instance labels (0 = background) [height * width] by the model's watershed decision.
  template <typename T>
  std::vector<int32_t> instances(const T* image, int channels, int height, int width,
                                 unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    std::vector<int32_t> labels(size_t(height) * size_t(width));
    check(unet_rt_instances(e_, image, dtype_of<T>::value, layout, channels, height, width, labels.data(),
                            labels.size(), nullptr));
    return labels;
  }
  // Probabilities (or logits) [classes, height, width] into out.
  template <typename T>
  void predict(const T* image, int channels, int height, int width, float* out, bool logits = false,
               unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    check(unet_rt_predict(e_, image, dtype_of<T>::value, layout, channels, height, width, out,
                          size_t(info_.classes) * size_t(height) * size_t(width), logits ? 1 : 0));
  }

 private:
  unet_rt_engine* e_ = nullptr;
  unet_rt_info info_{};
};

}  // namespace unet_rt
