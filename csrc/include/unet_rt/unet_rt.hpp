// unet-rt C++ API: a header-only RAII wrapper over the C API (unet_rt.h). Errors throw unet_rt::Error.
//
//   unet_rt::Engine engine("model.plan", {/*threads*/ 4});
//   std::vector<uint8_t> labels(h * w);
//   engine.segment(frame_u16, 1, h, w, labels.data());
//
//   // a camera buffer with a row pitch, a region of interest, labels and probabilities in one pass
//   auto img = unet_rt::Image<uint16_t>(sdk_ptr, h, w).pitch(sdk_stride_bytes).roi(x, y, rw, rh);
//   engine.run(img, unet_rt::Output().labels(lab.data(), lab.size()).scores(prob.data(), prob.size()),
//              [](int done, int total) { return keep_going; });
//
//   // frames off the acquisition thread, at most 2 in flight
//   unet_rt::Queue queue(engine, 2);
//   uint64_t t;  if (!queue.try_submit(img, out, &t)) ++dropped;  ...  queue.wait(t);
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
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
  float overlap = 0.25f;        // same-padded networks only
  bool gaussian_blend = false;  // same-padded networks only
  bool bf16 = false;            // bf16 Winograd GEMMs where the CPU has AVX512-BF16 (info().precision)
};

// Pixel and label types the library takes: uint8_t, uint16_t, float (pixels); uint8_t, uint16_t (labels).
template <typename T>
struct dtype_of;
template <>
struct dtype_of<uint8_t> {
  static constexpr unet_rt_dtype value = UNET_RT_U8;
};
template <>
struct dtype_of<uint16_t> {
  static constexpr unet_rt_dtype value = UNET_RT_U16;
};
template <>
struct dtype_of<float> {
  static constexpr unet_rt_dtype value = UNET_RT_F32;
};
template <typename L>
struct is_label : std::integral_constant<bool, std::is_same<L, uint8_t>::value || std::is_same<L, uint16_t>::value> {};

// A typed view of a caller's image buffer (see unet_rt_image): channels planes (CHW) or interleaved (HWC).
template <typename T>
class Image {
 public:
  Image(const T* data, int height, int width, int channels = 1, unet_rt_layout layout = UNET_RT_LAYOUT_CHW) {
    unet_rt_image_init(&img_, data, dtype_of<T>::value, layout, channels, height, width);
  }
  Image& pitch(size_t row_bytes) {
    img_.row_pitch = row_bytes;
    return *this;
  }
  Image& plane_pitch(size_t bytes) {
    img_.plane_pitch = bytes;
    return *this;
  }
  Image& size_bytes(size_t bytes) {
    img_.data_bytes = bytes;
    return *this;
  }
  Image& roi(int x, int y, int width, int height) {
    img_.roi_x = x;
    img_.roi_y = y;
    img_.roi_width = width;
    img_.roi_height = height;
    return *this;
  }
  int out_height() const { return img_.roi_height ? img_.roi_height : img_.height; }
  int out_width() const { return img_.roi_width ? img_.roi_width : img_.width; }
  const unet_rt_image* c() const { return &img_; }

 private:
  unet_rt_image img_;
};

// Where a run writes: labels (uint8_t / uint16_t), scores (float probabilities or logits), or both.
class Output {
 public:
  Output() { unet_rt_output_init(&out_); }
  template <typename L>
  Output& labels(L* data, size_t count, size_t row_pitch_bytes = 0) {
    static_assert(is_label<L>::value, "labels: uint8_t or uint16_t");
    out_.labels = data;
    out_.labels_dtype = dtype_of<L>::value;
    out_.labels_bytes = count * sizeof(L);
    out_.labels_pitch = row_pitch_bytes;
    return *this;
  }
  Output& scores(float* data, size_t count, bool logits = false, size_t row_pitch_bytes = 0,
                 size_t plane_pitch_bytes = 0) {
    out_.scores = data;
    out_.scores_bytes = count * sizeof(float);
    out_.logits = logits ? 1 : 0;
    out_.scores_row_pitch = row_pitch_bytes;
    out_.scores_plane_pitch = plane_pitch_bytes;
    return *this;
  }
  const unet_rt_output* c() const { return &out_; }

 private:
  unet_rt_output out_;
};

// progress(done, total) -> true to go on, false to cancel (the run throws Error UNET_RT_ERR_CANCELLED).
using Progress = std::function<bool(int done, int total)>;

namespace detail {
inline int call_progress(void* user, int done, int total) {
  try {
    return (*static_cast<const Progress*>(user))(done, total) ? 0 : 1;
  } catch (...) {
    return 1;  // no exception may cross the C API: an exception in the callback cancels
  }
}
inline unet_rt_run_options run_options(const Progress* progress, const volatile int* cancel) {
  unet_rt_run_options r;
  unet_rt_run_options_init(&r);
  if (progress && *progress) {
    r.progress = call_progress;
    r.progress_user = const_cast<Progress*>(progress);
  }
  r.cancel = cancel;
  return r;
}
}  // namespace detail

class Engine {
 public:
  explicit Engine(const std::string& path, const Options& o = Options()) {
    unet_rt_options opt = c_options(o);
    check(unet_rt_engine_create(path.c_str(), &opt, &e_));
    load_info();
  }
  // From a model file's bytes in memory (may be freed after construction).
  Engine(const void* data, size_t size, const Options& o = Options()) {
    unet_rt_options opt = c_options(o);
    check(unet_rt_engine_create_from_memory(data, size, &opt, &e_));
    load_info();
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
  std::string isa() const { return info_.isa; }
  std::string class_name(int k) const {
    const char* n = unet_rt_engine_class_name(e_, k);
    if (!n) throw Error(UNET_RT_ERR_INVALID_ARGUMENT, unet_rt_last_error());
    return n;
  }
  unet_rt_plan plan(int height, int width) const {
    unet_rt_plan p;
    p.struct_size = sizeof p;
    check(unet_rt_engine_plan(e_, height, width, &p));
    return p;
  }
  void warmup(int height, int width) const { check(unet_rt_engine_warmup(e_, height, width)); }
  unet_rt_engine* handle() const { return e_; }

  // One pass over img's region of interest into out; progress per tile; *cancel non-zero stops it.
  template <typename T>
  void run(const Image<T>& img, const Output& out, const Progress& progress = Progress(),
           const volatile int* cancel = nullptr) const {
    unet_rt_run_options r = detail::run_options(&progress, cancel);
    check(unet_rt_run(e_, img.c(), out.c(), &r));
  }

  // Labels of a tight channels x height x width image (CHW unless layout says HWC) into labels[height * width].
  template <typename T, typename L>
  void segment(const T* image, int channels, int height, int width, L* labels,
               unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    static_assert(is_label<L>::value, "labels: uint8_t or uint16_t");
    check(unet_rt_segment(e_, image, dtype_of<T>::value, layout, channels, height, width, labels,
                          size_t(height) * size_t(width), dtype_of<L>::value));
  }
  template <typename L = uint8_t, typename T>
  std::vector<L> segment(const T* image, int channels, int height, int width,
                         unet_rt_layout layout = UNET_RT_LAYOUT_CHW) const {
    std::vector<L> labels(size_t(height) * size_t(width));
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
  static unet_rt_options c_options(const Options& o) {
    unet_rt_options opt;
    unet_rt_options_init(&opt);
    opt.precision = o.bf16 ? UNET_RT_PRECISION_BF16 : UNET_RT_PRECISION_FP32;
    opt.threads = o.threads;
    opt.tile = o.tile;
    opt.memory_budget_mb = o.memory_budget_mb;
    opt.overlap = o.overlap;
    opt.gaussian_blend = o.gaussian_blend ? 1 : 0;
    return opt;
  }
  void load_info() {
    info_.struct_size = sizeof info_;
    check(unet_rt_engine_info(e_, &info_));
  }
  unet_rt_engine* e_ = nullptr;
  unet_rt_info info_{};
};

// The frame queue (unet_rt_queue_*): frames run in order on the queue's thread, at most `capacity`
// in flight; try_submit never blocks. A submitted frame's buffers stay the caller's responsibility
// until its wait() returns. A progress callback is not offered here (it would have to outlive the
// call); use cancel(ticket).
class Queue {
 public:
  Queue(const Engine& engine, int capacity) { check(unet_rt_queue_create(engine.handle(), capacity, &q_)); }
  ~Queue() { unet_rt_queue_destroy(q_); }
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // false when the queue is full (the frame was not queued); throws on bad arguments.
  template <typename T>
  bool try_submit(const Image<T>& img, const Output& out, uint64_t* ticket) {
    unet_rt_status s = unet_rt_queue_submit(q_, img.c(), out.c(), nullptr, ticket);
    if (s == UNET_RT_ERR_BUSY) return false;
    check(s);
    return true;
  }
  // Waits for the frame (timeout_ms < 0: forever); false on timeout (still in flight). Throws the
  // frame's own error.
  bool wait(uint64_t ticket, int timeout_ms = -1) {
    unet_rt_status s = unet_rt_queue_wait(q_, ticket, timeout_ms);
    if (s == UNET_RT_ERR_TIMEOUT) return false;
    check(s);
    return true;
  }
  void cancel(uint64_t ticket) { check(unet_rt_queue_cancel(q_, ticket)); }
  int in_flight() const { return unet_rt_queue_in_flight(q_); }

 private:
  unet_rt_queue* q_ = nullptr;
};

}  // namespace unet_rt
