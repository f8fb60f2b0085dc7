/* unet-rt C API: run a U-Net model file (unet_rt/model_file.py) on images in memory, no Python.
 *
 *   unet_rt_options opt;  unet_rt_options_init(&opt);  opt.threads = 4;
 *   unet_rt_engine* e;
 *   if (unet_rt_engine_create("model.plan", &opt, &e) != UNET_RT_OK) {
 *     fprintf(stderr, "%s\n", unet_rt_last_error());  ...
 *   }
 *   unet_rt_segment(e, frame, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, h, w, labels, (size_t)h * w, UNET_RT_U8);
 *   unet_rt_engine_destroy(e);
 *
 * Every function returns a status; on failure unet_rt_last_error() (thread-local) says why, and no
 * output buffer has been half-written as far as the status is concerned (its contents are
 * unspecified). No C++ exception crosses this API. An engine may be used from several threads at
 * once (calls are serialised on the executor).
 */
#ifndef UNET_RT_H_
#define UNET_RT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define UNET_RT_API __declspec(dllexport)
#else
#define UNET_RT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum unet_rt_status {
  UNET_RT_OK = 0,
  UNET_RT_ERR_INVALID_ARGUMENT = 1, /* bad image, buffer, option or call */
  UNET_RT_ERR_IO = 2,               /* model file missing or unreadable */
  UNET_RT_ERR_MODEL = 3,            /* model file malformed or not supported (e.g. a TensorRT plan) */
  UNET_RT_ERR_OUT_OF_MEMORY = 4,
  UNET_RT_ERR_INTERNAL = 5
} unet_rt_status;

typedef enum unet_rt_dtype { UNET_RT_U8 = 0, UNET_RT_U16 = 1, UNET_RT_F32 = 2 } unet_rt_dtype;

/* CHW: planes one after the other; HWC: channels interleaved per pixel. Rows are contiguous. */
typedef enum unet_rt_layout { UNET_RT_LAYOUT_CHW = 0, UNET_RT_LAYOUT_HWC = 1 } unet_rt_layout;

typedef struct unet_rt_options {
  int threads;          /* 0: every core */
  int tile;             /* 0: automatic; else the input tile size (valid nets: 572, 588, ...) */
  int memory_budget_mb; /* per-tile working memory; 0: the default (512 MB) */
  float overlap;        /* same-padded networks: window overlap in [0, 1) (default 0.25) */
  int gaussian_blend;   /* same-padded networks: 1 = gaussian weights, 0 = constant (default) */
} unet_rt_options;

typedef struct unet_rt_info {
  int in_channels;
  int classes;
  int depth;
  int base;
  int same_padding; /* 0: valid (the paper's), 1: same */
  int halo;         /* pixels lost per side by one tile (92 for the paper's network) */
  int tile;         /* the tile option (0: automatic) */
  int threads;
} unet_rt_info;

typedef struct unet_rt_engine unet_rt_engine;

UNET_RT_API const char* unet_rt_version(void);
/* The last error of the calling thread ("" if none). Valid until the next failing call on it. */
UNET_RT_API const char* unet_rt_last_error(void);
UNET_RT_API void unet_rt_options_init(unet_rt_options* opt);

/* opt may be NULL (defaults). *engine is set to NULL on failure. */
UNET_RT_API unet_rt_status unet_rt_engine_create(const char* path, const unet_rt_options* opt, unet_rt_engine** engine);
UNET_RT_API void unet_rt_engine_destroy(unet_rt_engine* engine); /* NULL is fine */
UNET_RT_API unet_rt_status unet_rt_engine_info(const unet_rt_engine* engine, unet_rt_info* info);
/* Class name k (UTF-8), valid while the engine lives; NULL if k is out of range. */
UNET_RT_API const char* unet_rt_engine_class_name(const unet_rt_engine* engine, int k);
/* Mean / std of input channel c into *value. */
UNET_RT_API unet_rt_status unet_rt_engine_normalization(const unet_rt_engine* engine, int c, float* mean, float* std);

/* Labels of one image of `channels` x `height` x `width` pixels of `dtype` in `layout`, into
 * labels[height * width] of labels_dtype (UNET_RT_U8 when classes <= 256, or UNET_RT_U16), by the
 * model file's decision: a threshold on p(foreground class) when the file stores one, else argmax
 * over classes. labels_count is the capacity of `labels` in elements. */
UNET_RT_API unet_rt_status unet_rt_segment(const unet_rt_engine* engine, const void* image, unet_rt_dtype dtype,
                                           unet_rt_layout layout, int channels, int height, int width, void* labels,
                                           size_t labels_count, unet_rt_dtype labels_dtype);

/* Class probabilities (softmax; or logits if `logits` is non-zero) into out[classes * height * width]
 * (planes per class); out_count is the capacity of `out` in floats. */
UNET_RT_API unet_rt_status unet_rt_predict(const unet_rt_engine* engine, const void* image, unet_rt_dtype dtype,
                                           unet_rt_layout layout, int channels, int height, int width, float* out,
                                           size_t out_count, int logits);

/* Instance labels (0 = background, 1..n) of one image into labels[height * width]: a
 * marker-controlled watershed on the foreground probability of the whole image, with the
 * parameters of the model file's decision (as Engine.instances in Python). labels_count is the
 * capacity of `labels`; *count (may be NULL) receives n. */
UNET_RT_API unet_rt_status unet_rt_instances(const unet_rt_engine* engine, const void* image, unet_rt_dtype dtype,
                                             unet_rt_layout layout, int channels, int height, int width,
                                             int32_t* labels, size_t labels_count, int64_t* count);

#ifdef __cplusplus
}
#endif

#endif /* UNET_RT_H_ */
