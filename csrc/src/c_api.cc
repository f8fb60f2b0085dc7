// The C API (include/unet_rt/unet_rt.h) over unet_rt::Engine. No exception crosses it.
#include "unet_rt/unet_rt.h"

#include <cerrno>
#include <new>
#include <stdexcept>
#include <string>

#include "src/engine.h"

namespace unet_rt {
const char* version();  // version.cc
}

struct unet_rt_engine {
  std::unique_ptr<unet_rt::Engine> engine;
};

namespace {

thread_local std::string g_last_error;

unet_rt_status set_error(unet_rt_status s, const std::string& msg) {
  try {
    g_last_error = msg;
  } catch (...) {
  }
  return s;
}

template <typename F>
unet_rt_status guarded(F&& f) {
  try {
    f();
    return UNET_RT_OK;
  } catch (const unet_rt::ModelError& e) {
    return set_error(UNET_RT_ERR_MODEL, e.what());
  } catch (const unet_rt::IoError& e) {
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

bool to_dtype(unet_rt_dtype d, unet_rt::DType* out) {
  switch (d) {
    case UNET_RT_U8: *out = unet_rt::DType::U8; return true;
    case UNET_RT_U16: *out = unet_rt::DType::U16; return true;
    case UNET_RT_F32: *out = unet_rt::DType::F32; return true;
  }
  return false;
}

unet_rt::ImageView make_view(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                             int channels, int height, int width) {
  if (!e || !e->engine) throw std::invalid_argument("engine is NULL");
  if (!image) throw std::invalid_argument("image is NULL");
  if (channels < 1 || height < 1 || width < 1)
    throw std::invalid_argument("image is empty (" + std::to_string(channels) + " x " + std::to_string(height) +
                                " x " + std::to_string(width) + ")");
  unet_rt::ImageView v;
  if (!to_dtype(dtype, &v.dtype)) throw std::invalid_argument("unknown image dtype " + std::to_string(int(dtype)));
  v.data = image;
  v.channels = channels;
  v.height = height;
  v.width = width;
  if (layout == UNET_RT_LAYOUT_CHW) {
    v.channel_stride = int64_t(height) * width;
    v.row_stride = width;
    v.col_stride = 1;
  } else if (layout == UNET_RT_LAYOUT_HWC) {
    v.channel_stride = 1;
    v.row_stride = int64_t(width) * channels;
    v.col_stride = channels;
  } else {
    throw std::invalid_argument("unknown image layout " + std::to_string(int(layout)));
  }
  return v;
}

}  // namespace

extern "C" {

const char* unet_rt_version(void) { return unet_rt::version(); }

const char* unet_rt_last_error(void) { return g_last_error.c_str(); }

void unet_rt_options_init(unet_rt_options* opt) {
  if (!opt) return;
  opt->threads = 0;
  opt->tile = 0;
  opt->memory_budget_mb = 0;
  opt->overlap = 0.25f;
  opt->gaussian_blend = 0;
}

unet_rt_status unet_rt_engine_create(const char* path, const unet_rt_options* opt, unet_rt_engine** engine) {
  if (!engine) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine output pointer is NULL");
  *engine = nullptr;
  if (!path) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "path is NULL");
  return guarded([&] {
    unet_rt::EngineOptions o;
    if (opt) {
      if (opt->threads < 0 || opt->tile < 0 || opt->memory_budget_mb < 0)
        throw std::invalid_argument("options must be >= 0");
      o.threads = opt->threads;
      o.tile = opt->tile;
      o.memory_budget_mb = size_t(opt->memory_budget_mb);
      o.overlap = double(opt->overlap);
      o.blend = opt->gaussian_blend ? unet_rt::Blend::Gaussian : unet_rt::Blend::Constant;
    }
    auto h = std::make_unique<unet_rt_engine>();
    h->engine = std::make_unique<unet_rt::Engine>(path, o);
    *engine = h.release();
  });
}

void unet_rt_engine_destroy(unet_rt_engine* engine) { delete engine; }

unet_rt_status unet_rt_engine_info(const unet_rt_engine* e, unet_rt_info* info) {
  if (!e || !info) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine or info is NULL");
  return guarded([&] {
    const auto& a = e->engine->info().arch;
    info->in_channels = a.in_channels;
    info->classes = a.classes;
    info->depth = a.depth;
    info->base = a.base;
    info->same_padding = a.same_padding ? 1 : 0;
    info->halo = e->engine->halo();
    info->tile = e->engine->tile();
    info->threads = e->engine->threads();
  });
}

const char* unet_rt_engine_class_name(const unet_rt_engine* e, int k) {
  if (!e) {
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
  if (!e) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "engine is NULL");
  const auto& n = e->engine->info().normalization;
  if (c < 0 || size_t(c) >= n.mean.size()) return set_error(UNET_RT_ERR_INVALID_ARGUMENT, "channel out of range");
  if (mean) *mean = n.mean[size_t(c)];
  if (std) *std = n.std[size_t(c)];
  return UNET_RT_OK;
}

unet_rt_status unet_rt_segment(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                               int channels, int height, int width, void* labels, size_t labels_count,
                               unet_rt_dtype labels_dtype) {
  return guarded([&] {
    unet_rt::ImageView v = make_view(e, image, dtype, layout, channels, height, width);
    if (!labels) throw std::invalid_argument("labels buffer is NULL");
    if (labels_count < size_t(height) * size_t(width))
      throw std::invalid_argument("labels buffer holds " + std::to_string(labels_count) + " elements, the image needs " +
                                  std::to_string(size_t(height) * size_t(width)));
    unet_rt::DType ld;
    if (!to_dtype(labels_dtype, &ld) || ld == unet_rt::DType::F32)
      throw std::invalid_argument("labels dtype must be UNET_RT_U8 or UNET_RT_U16");
    e->engine->segment(v, labels, ld);
  });
}

unet_rt_status unet_rt_predict(const unet_rt_engine* e, const void* image, unet_rt_dtype dtype, unet_rt_layout layout,
                               int channels, int height, int width, float* out, size_t out_count, int logits) {
  return guarded([&] {
    unet_rt::ImageView v = make_view(e, image, dtype, layout, channels, height, width);
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
    unet_rt::ImageView v = make_view(e, image, dtype, layout, channels, height, width);
    if (!labels) throw std::invalid_argument("labels buffer is NULL");
    if (labels_count < size_t(height) * size_t(width))
      throw std::invalid_argument("labels buffer holds " + std::to_string(labels_count) + " elements, the image needs " +
                                  std::to_string(size_t(height) * size_t(width)));
    int64_t n = e->engine->instances(v, labels);
    if (count) *count = n;
  });
}

}  // extern "C"
