// Shared by the C API's sources (c_api.cc, c_api_queue.cc): the engine handle, the status mapping
// of exceptions (docs/architecture.md, "Error model") and the conversion of the public structs.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

#include "runtime/engine.h"
#include "unet_rt/unet_rt.h"

struct unet_rt_engine {
  std::unique_ptr<unet_rt::Engine> engine;
};

namespace unet_rt::capi {

unet_rt_status set_error(unet_rt_status s, const std::string& msg);

// Thrown by unet_rt_queue_submit when the queue is full (UNET_RT_ERR_BUSY).
class Busy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The status for the exception being handled (call inside a catch block); records its message.
unet_rt_status status_of_current_exception();

template <typename F>
unet_rt_status guarded(F&& f) {
  try {
    f();
    return UNET_RT_OK;
  } catch (...) {
    return status_of_current_exception();
  }
}

// Does a caller's struct of `struct_size` bytes hold `field`? (Older callers pass smaller structs.)
#define UNET_RT_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)nullptr)->field))

// A validated unet_rt_image / unet_rt_output / unet_rt_run_options, copied (the queue keeps them).
struct Job {
  ImageView view;  // the region of interest
  int roi_h = 0, roi_w = 0;
  void* labels = nullptr;
  DType labels_dtype = DType::U8;
  size_t labels_pitch = 0;  // bytes
  float* scores = nullptr;
  size_t scores_row = 0, scores_plane = 0;  // bytes
  bool logits = false;
  unet_rt_progress_fn progress = nullptr;
  void* progress_user = nullptr;
  const volatile int* cancel = nullptr;
};

Job make_job(const unet_rt_engine* e, const unet_rt_image* image, const unet_rt_output* out,
             const unet_rt_run_options* run);
// Runs a job; `extra_cancel` (may be null) is a second flag read before each tile (the queue's).
void run_job(const unet_rt_engine* e, const Job& job, const std::atomic<int>* extra_cancel = nullptr);

}  // namespace unet_rt::capi
