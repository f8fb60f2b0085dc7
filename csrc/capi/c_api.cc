// The C API (include/unet_rt/unet_rt.h) over unet_rt::Engine. No exception crosses it.
// The frame queue is in c_api_queue.cc; docs/architecture.md ("Error model") maps exceptions to
// statuses.
#include "unet_rt/unet_rt.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "capi/c_api_internal.h"
#include "core/log.h"
#include "core/platform.h"

namespace unet_rt {
const char* version();  // version.cc
}

namespace unet_rt::capi {

namespace {
thread_local std::string g_last_error;
}

unet_rt_status set_error(unet_rt_status s, const std::string& msg) {
  try {
    g_last_error = msg;
  } catch (...) {
  }
  return s;
}

unet_rt_status status_of_current_exception() {
  try {
    throw;
  } catch (const Busy& e) {
    return set_error(UNET_RT_ERR_BUSY, e.what());
  } catch (const Cancelled& e) {
    return set_error(UNET_RT_ERR_CANCELLED, e.what());
  } catch (const NumericError& e) {
    return set_error(UNET_RT_ERR_NUMERIC, e.what());
  } catch (const ModelError& e) {
    return set_error(UNET_RT_ERR_MODEL, e.what());
  } catch (const IoError& e) {
    return set_error(UNET_RT_ERR_IO, e.what());
  } catch (const std::invalid_argument& e) {
    return set_error(UNET_RT_ERR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(UNET_RT_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(UNET_RT_ERR_INTERNAL, e.what());
  } catch (...) {
    return set_error(UNET_RT_ERR_INTERNAL, "unknown error");
  }
}

namespace {

bool to_dtype(unet_rt_dtype d, DType* out) {
  switch (d) {
    case UNET_RT_U8: *out = DType::U8; return true;
    case UNET_RT_U16: *out = DType::U16; return true;
    case UNET_RT_F32: *out = DType::F32; return true;
    default: return false;
  }
}

size_t esize_of(DType d) { return d == DType::U8 ? 1 : d == DType::U16 ? 2 : 4; }

// a * b, or invalid_argument if it does not fit in 2^62 (every size and pitch stays far from overflow)
size_t mul(size_t a, size_t b, const char* what) {
  size_t r;
  if (unet_rt::platform::mul_overflow(a, b, &r) || r > (size_t(1) << 62))
    throw std::invalid_argument(std::string(what) + " is too large");
  return r;
}
size_t add(size_t a, size_t b, const char* what) {
  size_t r;
  if (unet_rt::platform::add_overflow(a, b, &r) || r > (size_t(1) << 62))
    throw std::invalid_argument(std::string(what) + " is too large");
  return r;
}

void need_struct(size_t struct_size, size_t minimum, const char* name) {
  if (struct_size < minimum)
    throw std::invalid_argument(std::string(name) + ".struct_size is " + std::to_string(struct_size) +
                                ": set it to sizeof(" + name + ") (the *_init functions do)");
}

const Engine& engine_of(const unet_rt_engine* e) {
  if (!e || !e->engine) throw std::invalid_argument("engine is NULL");
  return *e->engine;
}

EngineOptions engine_options(const unet_rt_options* opt) {
  EngineOptions o;
  if (!opt) return o;
  need_struct(opt->struct_size, offsetof(unet_rt_options, gaussian_blend) + sizeof(int), "unet_rt_options");
  if (opt->threads < 0 || opt->tile < 0 || opt->memory_budget_mb < 0)
    throw std::invalid_argument("options must be >= 0");
  o.threads = opt->threads;
  o.tile = opt->tile;
  o.memory_budget_mb = size_t(opt->memory_budget_mb);
  o.overlap = double(opt->overlap);
  o.blend = opt->gaussian_blend ? Blend::Gaussian : Blend::Constant;
  if (UNET_RT_HAS_FIELD(opt, unet_rt_options, precision)) {
    if (opt->precision != UNET_RT_PRECISION_FP32 && opt->precision != UNET_RT_PRECISION_BF16)
      throw std::invalid_argument("precision must be UNET_RT_PRECISION_FP32 or UNET_RT_PRECISION_BF16");
    o.precision = opt->precision == UNET_RT_PRECISION_BF16 ? Precision::BF16 : Precision::F32;
  }
  return o;
}

unet_rt_status create(unet_rt_engine** engine, const std::function<std::unique_ptr<Engine>()>& make) {
  if (!engine) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine output pointer is NULL");
  *engine = nullptr;
  return guarded([&] {
    auto h = std::make_unique<unet_rt_engine>();
    h->engine = make();
    *engine = h.release();
  });
}

// The tight entry points' labels buffer: non-NULL and holding height * width elements.
void check_labels(const void* labels, size_t labels_count, int height, int width) {
  if (!labels) throw std::invalid_argument("labels buffer is NULL");
  if (labels_count < size_t(height) * size_t(width))
    throw std::invalid_argument("labels buffer holds " + std::to_string(labels_count) + " elements, the image needs " +
                                std::to_string(size_t(height) * size_t(width)));
}

// The old entry points' tight image (layout CHW or HWC) as a view.
ImageView tight_view(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                     int channels, int height, int width) {
  unet_rt_image img;
  unet_rt_image_init(&img, image, dtype, layout, channels, height, width);
  return make_job(e, &img, nullptr, nullptr).view;
}

}  // namespace

Job make_job(const unet_rt_engine* e, const unet_rt_image* image, const unet_rt_output* out,
             const unet_rt_run_options* run) {
  const Engine& eng = engine_of(e);
  if (!image) throw std::invalid_argument("image is NULL");
  need_struct(image->struct_size, offsetof(unet_rt_image, roi_height) + sizeof(int), "unet_rt_image");
  if (!image->data) throw std::invalid_argument("image is NULL");
  Job j;
  ImageView& v = j.view;
  if (!to_dtype(image->dtype, &v.dtype))
    throw std::invalid_argument("unknown image dtype " + std::to_string(int(image->dtype)));
  const int C = image->channels, H = image->height, W = image->width;
  if (C < 1 || H < 1 || W < 1)
    throw std::invalid_argument("image is empty (" + std::to_string(C) + " x " + std::to_string(H) + " x " +
                                std::to_string(W) + ")");
  if (C != eng.info().arch.in_channels)
    throw std::invalid_argument("image has " + std::to_string(C) + " channels, the model expects " +
                                std::to_string(eng.info().arch.in_channels));
  const size_t es = esize_of(v.dtype);
  const bool hwc = image->layout == UNET_RT_LAYOUT_HWC;
  if (!hwc && image->layout != UNET_RT_LAYOUT_CHW)
    throw std::invalid_argument("unknown image layout " + std::to_string(int(image->layout)));
  const size_t row_bytes =
      mul(mul(size_t(W), hwc ? size_t(C) : 1, "image width"), es, "image width");  // one row's pixels
  const size_t row = image->row_pitch ? image->row_pitch : row_bytes;
  if (row < row_bytes || row % es)
    throw std::invalid_argument("row_pitch " + std::to_string(row) + " must be >= " + std::to_string(row_bytes) +
                                " bytes and a multiple of the pixel size");
  const size_t plane_min = add(mul(row, size_t(H - 1), "image"), row_bytes, "image");
  const size_t plane = hwc ? 0 : (image->plane_pitch ? image->plane_pitch : mul(row, size_t(H), "image"));
  if (!hwc && (plane < plane_min || plane % es))
    throw std::invalid_argument("plane_pitch " + std::to_string(plane) + " must be >= " + std::to_string(plane_min) +
                                " bytes and a multiple of the pixel size");
  const size_t need = hwc ? plane_min : add(mul(plane, size_t(C - 1), "image"), plane_min, "image");
  if (image->data_bytes && image->data_bytes < need)
    throw std::invalid_argument("image buffer holds " + std::to_string(image->data_bytes) +
                                " bytes, its size and pitch need " + std::to_string(need));
  // region of interest
  int rx = image->roi_x, ry = image->roi_y, rw = image->roi_width, rh = image->roi_height;
  if (rw == 0 && rh == 0) {
    if (rx != 0 || ry != 0) throw std::invalid_argument("roi_x / roi_y given without roi_width / roi_height");
    rw = W;
    rh = H;
  }
  if (rx < 0 || ry < 0 || rw < 1 || rh < 1 || int64_t(rx) + rw > W || int64_t(ry) + rh > H)
    throw std::invalid_argument("region of interest (" + std::to_string(rx) + ", " + std::to_string(ry) + ") + " +
                                std::to_string(rw) + " x " + std::to_string(rh) + " is not inside the " +
                                std::to_string(W) + " x " + std::to_string(H) + " image");
  v.channels = C;
  v.height = rh;
  v.width = rw;
  v.row_stride = int64_t(row / es);
  v.channel_stride = hwc ? 1 : int64_t(plane / es);
  v.col_stride = hwc ? C : 1;
  v.data = static_cast<const uint8_t*>(image->data) + size_t(ry) * row + size_t(rx) * (hwc ? size_t(C) : 1) * es;
  // the buffer's pixels around the ROI are the tiles' context (mirroring only at the buffer's edges)
  v.frame_y = ry;
  v.frame_x = rx;
  v.frame_height = H;
  v.frame_width = W;
  j.roi_h = rh;
  j.roi_w = rw;
  if (run) {
    need_struct(run->struct_size, offsetof(unet_rt_run_options, cancel) + sizeof(run->cancel), "unet_rt_run_options");
    j.progress = run->progress;
    j.progress_user = run->progress_user;
    j.cancel = run->cancel;
  }
  if (!out) return j;  // tight_view
  need_struct(out->struct_size, offsetof(unet_rt_output, logits) + sizeof(int), "unet_rt_output");
  if (!out->labels && !out->scores) throw std::invalid_argument("no output: set labels, scores or both");
  const int K = eng.info().arch.classes;
  if (out->labels) {
    if (!to_dtype(out->labels_dtype, &j.labels_dtype) || j.labels_dtype == DType::F32)
      throw std::invalid_argument("labels dtype must be UNET_RT_U8 or UNET_RT_U16");
    if (j.labels_dtype == DType::U8 && K > 256)
      throw std::invalid_argument(std::to_string(K) + " classes need UNET_RT_U16 labels");
    const size_t ls = esize_of(j.labels_dtype), lrow = mul(size_t(rw), ls, "labels");
    j.labels_pitch = out->labels_pitch ? out->labels_pitch : lrow;
    if (j.labels_pitch < lrow || j.labels_pitch % ls)
      throw std::invalid_argument("labels_pitch must be >= " + std::to_string(lrow) +
                                  " bytes and a multiple of the label size");
    const size_t lneed = add(mul(j.labels_pitch, size_t(rh - 1), "labels"), lrow, "labels");
    if (out->labels_bytes < lneed)
      throw std::invalid_argument("labels buffer holds " + std::to_string(out->labels_bytes) +
                                  " bytes, the image needs " + std::to_string(lneed));
    j.labels = out->labels;
  }
  if (out->scores) {
    const size_t srow = mul(size_t(rw), 4, "scores");
    j.scores_row = out->scores_row_pitch ? out->scores_row_pitch : srow;
    if (j.scores_row < srow || j.scores_row % 4)
      throw std::invalid_argument("scores_row_pitch must be >= " + std::to_string(srow) + " bytes and a multiple of 4");
    const size_t plane_min_s = add(mul(j.scores_row, size_t(rh - 1), "scores"), srow, "scores");
    j.scores_plane = out->scores_plane_pitch ? out->scores_plane_pitch : mul(j.scores_row, size_t(rh), "scores");
    if (j.scores_plane < plane_min_s || j.scores_plane % 4)
      throw std::invalid_argument("scores_plane_pitch must be >= " + std::to_string(plane_min_s) +
                                  " bytes and a multiple of 4");
    const size_t sneed = add(mul(j.scores_plane, size_t(K - 1), "scores"), plane_min_s, "scores");
    if (out->scores_bytes < sneed)
      throw std::invalid_argument("scores buffer holds " + std::to_string(out->scores_bytes) + " bytes, " +
                                  std::to_string(K) + " classes need " + std::to_string(sneed));
    j.scores = out->scores;
    j.logits = out->logits != 0;
  }
  return j;
}

void run_job(const unet_rt_engine* e, const Job& j, const std::atomic<int>* extra_cancel) {
  const Engine& eng = engine_of(e);
  ProgressFn pf;
  if (j.progress || j.cancel || extra_cancel)
    pf = [&j, extra_cancel](size_t done, size_t total) {
      if (j.cancel && __atomic_load_n(const_cast<const int*>(j.cancel), __ATOMIC_RELAXED)) return false;
      if (extra_cancel && extra_cancel->load(std::memory_order_relaxed)) return false;
      if (j.progress && j.progress(j.progress_user, int(done), int(total)) != 0) return false;
      return true;
    };
  const size_t npix = size_t(j.roi_h) * size_t(j.roi_w);
  const int K = eng.info().arch.classes;
  // Tight outputs are written in place; pitched ones through a tight buffer and a row copy.
  const size_t ls = esize_of(j.labels_dtype);
  const bool labels_tight = j.labels && j.labels_pitch == size_t(j.roi_w) * ls;
  const bool scores_tight = j.scores && j.scores_row == size_t(j.roi_w) * 4 && j.scores_plane == npix * 4;
  std::vector<uint8_t> lbuf;
  std::vector<float> sbuf;
  if (j.labels && !labels_tight) lbuf.resize(npix * ls);
  if (j.scores && !scores_tight) sbuf.resize(size_t(K) * npix);
  void* labels = !j.labels ? nullptr : labels_tight ? j.labels : lbuf.data();
  float* scores = !j.scores ? nullptr : scores_tight ? j.scores : sbuf.data();
  eng.infer(j.view, scores, j.logits, labels, j.labels_dtype, pf);
  if (j.labels && !labels_tight)
    for (int y = 0; y < j.roi_h; ++y)
      std::memcpy(static_cast<uint8_t*>(j.labels) + size_t(y) * j.labels_pitch, lbuf.data() + size_t(y) * j.roi_w * ls,
                  size_t(j.roi_w) * ls);
  if (j.scores && !scores_tight)
    for (int k = 0; k < K; ++k)
      for (int y = 0; y < j.roi_h; ++y)
        std::memcpy(reinterpret_cast<uint8_t*>(j.scores) + size_t(k) * j.scores_plane + size_t(y) * j.scores_row,
                    sbuf.data() + size_t(k) * npix + size_t(y) * j.roi_w, size_t(j.roi_w) * 4);
}

}  // namespace unet_rt::capi

using namespace unet_rt::capi;

extern "C" {

const char* unet_rt_version(void) { return unet_rt::version(); }
int unet_rt_version_number(void) { return UNET_RT_VERSION_NUMBER; }

const char* unet_rt_last_error(void) { return g_last_error.c_str(); }

void unet_rt_set_log_hook(unet_rt_log_fn fn, void* user, int min_level) {
  min_level = std::clamp(min_level, int(UNET_RT_LOG_DEBUG), int(UNET_RT_LOG_ERROR));
  unet_rt::set_log_hook(fn, user, unet_rt::LogLevel(min_level));
}

void unet_rt_options_init(unet_rt_options* opt) {
  if (!opt) return;
  std::memset(opt, 0, sizeof *opt);
  opt->struct_size = sizeof *opt;
  opt->overlap = 0.25f;
  opt->gaussian_blend = 0;
  opt->precision = UNET_RT_PRECISION_FP32;
}

void unet_rt_run_options_init(unet_rt_run_options* run) {
  if (!run) return;
  std::memset(run, 0, sizeof *run);
  run->struct_size = sizeof *run;
}

void unet_rt_image_init(unet_rt_image* image, const void* data, unet_rt_dtype dtype, unet_rt_layout layout,
                        int channels, int height, int width) {
  if (!image) return;
  std::memset(image, 0, sizeof *image);
  image->struct_size = sizeof *image;
  image->data = data;
  image->dtype = dtype;
  image->layout = layout;
  image->channels = channels;
  image->height = height;
  image->width = width;
}

void unet_rt_output_init(unet_rt_output* out) {
  if (!out) return;
  std::memset(out, 0, sizeof *out);
  out->struct_size = sizeof *out;
  out->labels_dtype = UNET_RT_U8;
}

unet_rt_status unet_rt_engine_create(const char* path, const unet_rt_options* opt, unet_rt_engine** engine) {
  if (engine && !path) {
    *engine = nullptr;
    return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "path is NULL");
  }
  return create(engine, [&] { return std::make_unique<unet_rt::Engine>(path, engine_options(opt)); });
}

unet_rt_status unet_rt_engine_create_from_memory(const void* data, size_t size, const unet_rt_options* opt,
                                                 unet_rt_engine** engine) {
  if (engine && !data) {
    *engine = nullptr;
    return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "model data is NULL");
  }
  return create(engine, [&] { return std::make_unique<unet_rt::Engine>(data, size, engine_options(opt)); });
}

void unet_rt_engine_destroy(unet_rt_engine* engine) { delete engine; }

unet_rt_status unet_rt_engine_info(const unet_rt_engine* e, unet_rt_info* info) {
  return guarded([&] {
    const unet_rt::Engine& eng = engine_of(e);
    if (!info) throw std::invalid_argument("info is NULL");
    need_struct(info->struct_size, offsetof(unet_rt_info, threads) + sizeof(int), "unet_rt_info");
    const auto& a = eng.info().arch;
    info->in_channels = a.in_channels;
    info->classes = a.classes;
    info->depth = a.depth;
    info->base = a.base;
    info->same_padding = a.same_padding ? 1 : 0;
    info->halo = eng.halo();
    info->tile = eng.tile();
    info->threads = eng.threads();
    if (UNET_RT_HAS_FIELD(info, unet_rt_info, precision))
      info->precision = eng.precision() == unet_rt::Precision::BF16 ? UNET_RT_PRECISION_BF16 : UNET_RT_PRECISION_FP32;
    if (UNET_RT_HAS_FIELD(info, unet_rt_info, memory_budget_mb))
      info->memory_budget_mb = int(eng.memory_budget_bytes() >> 20);
    if (UNET_RT_HAS_FIELD(info, unet_rt_info, cache_l3)) {
      const unet_rt::platform::CacheSizes& c = unet_rt::platform::cache_sizes();
      info->cache_l1d = size_t(c.l1d);
      info->cache_l2 = size_t(c.l2);
      info->cache_l3 = size_t(c.l3);
    }
    if (UNET_RT_HAS_FIELD(info, unet_rt_info, isa)) {
      std::string isa = unet_rt::cpu_isa();
      std::memset(info->isa, 0, sizeof info->isa);
      std::memcpy(info->isa, isa.c_str(), std::min(isa.size(), sizeof info->isa - 1));
    }
  });
}

unet_rt_status unet_rt_engine_plan(const unet_rt_engine* e, int height, int width, unet_rt_plan* plan) {
  return guarded([&] {
    const unet_rt::Engine& eng = engine_of(e);
    if (!plan) throw std::invalid_argument("plan is NULL");
    need_struct(plan->struct_size, offsetof(unet_rt_plan, workspace_bytes) + sizeof(size_t), "unet_rt_plan");
    unet_rt::TileGrid p = eng.tile_grid(height, width);
    plan->tiles_y = int(p.y.in_size.size());
    plan->tiles_x = int(p.x.in_size.size());
    plan->tiles = plan->tiles_y * plan->tiles_x;
    plan->tile_height = p.max_in_h();
    plan->tile_width = p.max_in_w();
    plan->workspace_bytes = eng.workspace_bytes(p.max_in_h(), p.max_in_w());
  });
}

unet_rt_status unet_rt_engine_warmup(const unet_rt_engine* e, int height, int width) {
  return guarded([&] {
    const unet_rt::Engine& eng = engine_of(e);
    if (height < 1 || width < 1 || height > unet_rt::kMaxImageSide || width > unet_rt::kMaxImageSide)
      throw std::invalid_argument("warm-up size out of range");
    const int C = eng.info().arch.in_channels;
    std::vector<uint8_t> zeros(size_t(C) * size_t(height) * size_t(width), 0);
    std::vector<uint16_t> labels(size_t(height) * size_t(width));
    eng.segment(unet_rt::chw_view(zeros.data(), unet_rt::DType::U8, C, height, width), labels.data(),
                unet_rt::DType::U16);
  });
}

const char* unet_rt_engine_class_name(const unet_rt_engine* e, int k) {
  if (!e || !e->engine) {
    set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine is NULL");
    return nullptr;
  }
  const auto& names = e->engine->info().class_names;
  if (k < 0 || size_t(k) >= names.size()) {
    set_error(UNET_RT_ERR_INVALID_ARGUMENT, "class index out of range");
    return nullptr;
  }
  return names[size_t(k)].c_str();
}

unet_rt_status unet_rt_engine_normalization(const unet_rt_engine* e, int c, float* mean, float* std) {
  if (!e || !e->engine) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine is NULL");
  const auto& n = e->engine->info().normalization;
  if (c < 0 || size_t(c) >= n.mean.size()) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "channel out of range");
  if (mean) *mean = n.mean[size_t(c)];
  if (std) *std = n.std[size_t(c)];
  return UNET_RT_OK;
}

unet_rt_status unet_rt_run(const unet_rt_engine* e, const unet_rt_image* image, const unet_rt_output* out,
                           const unet_rt_run_options* run) {
  return guarded([&] {
    if (!out) throw std::invalid_argument("output is NULL");
    run_job(e, make_job(e, image, out, run));
  });
}

unet_rt_status unet_rt_segment(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                               int channels, int height, int width, void* labels, size_t labels_count,
                               unet_rt_dtype labels_dtype) {
  return guarded([&] {
    unet_rt::ImageView v = tight_view(e, image, dtype, layout, channels, height, width);
    check_labels(labels, labels_count, height, width);
    unet_rt::DType ld;
    if (!to_dtype(labels_dtype, &ld) || ld == unet_rt::DType::F32)
      throw std::invalid_argument("labels dtype must be UNET_RT_U8 or UNET_RT_U16");
    e->engine->segment(v, labels, ld);
  });
}

unet_rt_status unet_rt_predict(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                               int channels, int height, int width, float* out, size_t out_count, int logits) {
  return guarded([&] {
    unet_rt::ImageView v = tight_view(e, image, dtype, layout, channels, height, width);
    if (!out) throw std::invalid_argument("output buffer is NULL");
    size_t need = size_t(e->engine->info().arch.classes) * size_t(height) * size_t(width);
    if (out_count < need)
      throw std::invalid_argument("output buffer holds " + std::to_string(out_count) + " floats, the image needs " +
                                  std::to_string(need));
    e->engine->predict(v, out, logits != 0);
  });
}

unet_rt_status unet_rt_instances(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                                 int channels, int height, int width, int32_t* labels, size_t labels_count,
                                 int64_t* count) {
  return guarded([&] {
    unet_rt::ImageView v = tight_view(e, image, dtype, layout, channels, height, width);
    check_labels(labels, labels_count, height, width);
    int64_t n = e->engine->instances(v, labels);
    if (count) *count = n;
  });
}

}  // extern "C"
