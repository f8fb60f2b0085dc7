/* unet-rt C API: run a U-Net model file (src/unet_rt/format/model_file.py) on images in memory, no Python.
 *
 *   unet_rt_options opt;  unet_rt_options_init(&opt);  opt.threads = 4;
 *   unet_rt_engine* e;
 *   if (unet_rt_engine_create("model.plan", &opt, &e) != UNET_RT_OK) {
 *     fprintf(stderr, "%s\n", unet_rt_last_error());  ...
 *   }
 *   unet_rt_segment(e, frame, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, h, w, labels, (size_t)h * w, UNET_RT_U8);
 *   unet_rt_engine_destroy(e);
 *
 * For acquisition software (docs/embedding.md): unet_rt_run() reads a camera buffer in place (row
 * pitch, region of interest), writes labels and/or probabilities with their own pitch in one pass,
 * reports progress per tile and can be cancelled; unet_rt_queue_* segments frames on a thread of
 * its own with a bounded number in flight, so the acquisition thread never waits.
 *
 * Every function returns a status; on failure unet_rt_last_error() (thread-local) says why, and
 * output buffers hold unspecified contents. No C++ exception crosses this API. An engine may be
 * used from several threads at once (calls are serialised on its executor).
 *
 * ABI: structs that may grow start with `size_t struct_size`, which the caller sets to
 * sizeof(the struct) it was compiled with (the *_init functions do); the library reads and writes
 * only the fields that struct_size covers, so a program built against an older header keeps
 * working with a newer library of the same major version. Fields are only ever added at the end.
 */
#ifndef UNET_RT_H_
#define UNET_RT_H_

#include <stddef.h>
#include <stdint.h>

#define UNET_RT_VERSION_MAJOR 0
#define UNET_RT_VERSION_MINOR 1
#define UNET_RT_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH: compare with unet_rt_version_number() at run time. */
#define UNET_RT_VERSION_NUMBER (UNET_RT_VERSION_MAJOR * 10000 + UNET_RT_VERSION_MINOR * 100 + UNET_RT_VERSION_PATCH)

/* Symbol visibility: the shared library exports exactly the unet_rt_* functions. Windows (MinGW-w64
 * and MSVC): define UNET_RT_BUILDING while building the DLL (CMake does), nothing when using it;
 * UNET_RT_STATIC for a static build. GCC/Clang elsewhere: default visibility (the library is built
 * with hidden visibility and, on ELF, a version script). */
#if defined(UNET_RT_STATIC)
#define UNET_RT_API
#elif defined(_WIN32)
#if defined(UNET_RT_BUILDING)
#define UNET_RT_API __declspec(dllexport)
#else
#define UNET_RT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define UNET_RT_API __attribute__((visibility("default")))
#else
#define UNET_RT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum unet_rt_status {
  UNET_RT_OK = 0,
  UNET_RT_ERR_INVALID_ARGUMENT = 1, /* bad image, buffer, option or call */
  UNET_RT_ERR_IO = 2,               /* model file missing, unreadable or not a regular file */
  UNET_RT_ERR_MODEL = 3,            /* model file malformed or not supported (e.g. a TensorRT plan) */
  UNET_RT_ERR_OUT_OF_MEMORY = 4,
  UNET_RT_ERR_INTERNAL = 5,  /* also: threads could not be started */
  UNET_RT_ERR_CANCELLED = 6, /* the progress callback or the cancel flag stopped the run */
  UNET_RT_ERR_NUMERIC = 7,   /* the network produced NaN/Inf (weights overflow float32) */
  UNET_RT_ERR_BUSY = 8,      /* unet_rt_queue_submit: the queue is full (nothing was queued) */
  UNET_RT_ERR_TIMEOUT = 9    /* unet_rt_queue_wait: the frame is not done yet */
} unet_rt_status;

/* The *_RANGE_ entries are not values: they make every int a valid value of the enum for C++ too,
 * so that an unknown dtype or layout from a caller is an UNET_RT_ERR_INVALID_ARGUMENT, never
 * undefined behaviour in the library (fuzz_image found it; docs/fuzzing.md). */
typedef enum unet_rt_dtype {
  UNET_RT_U8 = 0,
  UNET_RT_U16 = 1,
  UNET_RT_F32 = 2,
  UNET_RT_DTYPE_RANGE_MIN_ = -2147483647 - 1,
  UNET_RT_DTYPE_RANGE_MAX_ = 2147483647
} unet_rt_dtype;

/* CHW: planes one after the other; HWC: channels interleaved per pixel. */
typedef enum unet_rt_layout {
  UNET_RT_LAYOUT_CHW = 0,
  UNET_RT_LAYOUT_HWC = 1,
  UNET_RT_LAYOUT_RANGE_MIN_ = -2147483647 - 1,
  UNET_RT_LAYOUT_RANGE_MAX_ = 2147483647
} unet_rt_layout;

typedef struct unet_rt_options {
  size_t struct_size;   /* sizeof(unet_rt_options) (unet_rt_options_init sets it) */
  int threads;          /* 0: every core; at most 4 x the CPUs (more is clamped, with a log message) */
  int tile;             /* 0: automatic; else the input tile size (valid nets: 572, 588, ...) */
  int memory_budget_mb; /* per-tile working memory; 0: the default (what the weights leave under 825 MiB, 384-768) */
  float overlap;        /* same-padded networks: window overlap in [0, 1) (default 0.25) */
  int gaussian_blend;   /* same-padded networks: 1 = gaussian weights, 0 = constant (default) */
  int precision;        /* UNET_RT_PRECISION_FP32 (default) or _BF16 (bf16 Winograd GEMMs where the CPU
                           has AVX512-BF16, else fp32: unet_rt_info.precision says what runs) */
} unet_rt_options;

enum { UNET_RT_PRECISION_FP32 = 0, UNET_RT_PRECISION_BF16 = 1 };

typedef struct unet_rt_info {
  size_t struct_size; /* set by the caller: sizeof(unet_rt_info) */
  int in_channels;
  int classes;
  int depth;
  int base;
  int same_padding; /* 0: valid (the paper's), 1: same */
  int halo;         /* pixels lost per side by one tile (92 for the paper's network) */
  int tile;         /* the tile option (0: automatic) */
  int threads;      /* threads in use (after clamping) */
  int memory_budget_mb;
  char isa[16];  /* kernels chosen for this CPU: "avx512", "avx2", "neon" or "ref" */
  int precision; /* UNET_RT_PRECISION_* that runs */
  /* Cache sizes of one core in bytes, as the OS reports them (Linux sysfs, Windows
   * GetLogicalProcessorInformation, macOS sysctl; CPUID where the OS says nothing); 0: unknown.
   * cache_l3 is the whole shared cache the core sits behind. */
  size_t cache_l1d, cache_l2, cache_l3;
} unet_rt_info;

/* The tiling of one image size (unet_rt_engine_plan). */
typedef struct unet_rt_plan {
  size_t struct_size; /* set by the caller: sizeof(unet_rt_plan) */
  int tiles;          /* tiles_y * tiles_x */
  int tiles_y, tiles_x;
  int tile_height; /* largest input tile (pixels, halo included) */
  int tile_width;
  size_t workspace_bytes; /* executor memory for the largest tile */
} unet_rt_plan;

/* An image in the caller's memory, read in place. Pixel (c, y, x) of the buffer is at byte
 *   CHW: c * plane_pitch + y * row_pitch + x * esize
 *   HWC: y * row_pitch + (x * channels + c) * esize
 * from `data` (esize = 1, 2, 4 for U8, U16, F32). Only the region of interest is segmented, but the
 * buffer's pixels around it are read as the context its tiles need (a valid U-Net's output pixel
 * sees `halo` input pixels on each side): mirror extrapolation happens only at the buffer's edges,
 * and the ROI's result equals the same pixels of the whole buffer's result up to fp32 rounding
 * (valid networks; docs/architecture.md, "Tiling"). */
typedef struct unet_rt_image {
  size_t struct_size; /* sizeof(unet_rt_image) (unet_rt_image_init sets it) */
  const void* data;
  unet_rt_dtype dtype;
  unet_rt_layout layout;
  int channels, height, width; /* of the buffer */
  size_t row_pitch;            /* bytes; 0: tight (width * esize, x channels for HWC) */
  size_t plane_pitch;          /* CHW, bytes; 0: row_pitch * height */
  size_t data_bytes;           /* size of the buffer, checked against the above; 0: not checked */
  int roi_x, roi_y;            /* region of interest; roi_width or roi_height 0: the whole buffer */
  int roi_width, roi_height;
} unet_rt_image;

/* Where unet_rt_run writes, for the region of interest (roi_height x roi_width pixels). Labels,
 * scores or both (from one pass). */
typedef struct unet_rt_output {
  size_t struct_size;         /* sizeof(unet_rt_output) (unet_rt_output_init sets it) */
  void* labels;               /* NULL: no labels. Row y at labels + y * labels_pitch */
  unet_rt_dtype labels_dtype; /* UNET_RT_U8 (classes <= 256) or UNET_RT_U16 */
  size_t labels_pitch;        /* bytes; 0: tight */
  size_t labels_bytes;        /* capacity of `labels` in bytes (checked) */
  float* scores;              /* NULL: none. Class k, row y at scores + k * plane + y * row (bytes) */
  size_t scores_row_pitch;    /* bytes; 0: tight */
  size_t scores_plane_pitch;  /* bytes; 0: scores_row_pitch * roi_height */
  size_t scores_bytes;        /* capacity of `scores` in bytes (checked) */
  int logits;                 /* scores: 0 = probabilities (softmax over classes), 1 = raw logits */
} unet_rt_output;

/* Called on the running thread before the first tile (done = 0) and after each tile. Return 0 to
 * go on, non-zero to cancel (the run returns UNET_RT_ERR_CANCELLED). */
typedef int (*unet_rt_progress_fn)(void* user, int done, int total);

typedef struct unet_rt_run_options {
  size_t struct_size;           /* sizeof(unet_rt_run_options) (unet_rt_run_options_init sets it) */
  unet_rt_progress_fn progress; /* may be NULL */
  void* progress_user;
  const volatile int* cancel; /* may be NULL; read before each tile: non-zero cancels */
} unet_rt_run_options;

typedef enum unet_rt_log_level {
  UNET_RT_LOG_DEBUG = 0,
  UNET_RT_LOG_INFO = 1,
  UNET_RT_LOG_WARNING = 2,
  UNET_RT_LOG_ERROR = 3
} unet_rt_log_level;
/* Called on the thread that logs, possibly from several threads at once; must not call back into
 * unet-rt's logging. The message is valid during the call only. */
typedef void (*unet_rt_log_fn)(void* user, int level, const char* message);

typedef struct unet_rt_engine unet_rt_engine;
typedef struct unet_rt_queue unet_rt_queue;

/* ---- library ---- */
UNET_RT_API const char* unet_rt_version(void); /* "MAJOR.MINOR.PATCH" */
UNET_RT_API int unet_rt_version_number(void);  /* as UNET_RT_VERSION_NUMBER */
/* The last error of the calling thread ("" if none). Valid until the next failing call on it. */
UNET_RT_API const char* unet_rt_last_error(void);
/* Where diagnostics go (a clamped option, ...): fn(user, level, message) for levels >= min_level.
 * NULL restores the default, one line on stderr for warnings and errors. Process-wide. */
UNET_RT_API void unet_rt_set_log_hook(unet_rt_log_fn fn, void* user, int min_level);

UNET_RT_API void unet_rt_options_init(unet_rt_options* opt);
UNET_RT_API void unet_rt_run_options_init(unet_rt_run_options* run);
/* A tight, whole-buffer image (then set row_pitch, roi_* as needed). */
UNET_RT_API void unet_rt_image_init(unet_rt_image* image, const void* data, unet_rt_dtype dtype, unet_rt_layout layout,
                                    int channels, int height, int width);
UNET_RT_API void unet_rt_output_init(unet_rt_output* out);

/* ---- engines ---- */
/* opt may be NULL (defaults). *engine is set to NULL on failure. */
UNET_RT_API unet_rt_status unet_rt_engine_create(const char* path, const unet_rt_options* opt, unet_rt_engine** engine);
/* The same from a model file's bytes in memory (copied while loading; `data` may be freed after). */
UNET_RT_API unet_rt_status unet_rt_engine_create_from_memory(const void* data, size_t size, const unet_rt_options* opt,
                                                             unet_rt_engine** engine);
UNET_RT_API void unet_rt_engine_destroy(unet_rt_engine* engine); /* NULL is fine */
UNET_RT_API unet_rt_status unet_rt_engine_info(const unet_rt_engine* engine, unet_rt_info* info);
/* The tiling used for a height x width image. */
UNET_RT_API unet_rt_status unet_rt_engine_plan(const unet_rt_engine* engine, int height, int width, unet_rt_plan* plan);
/* Plans and allocates everything a height x width image needs and runs it once, so that the first
 * real frame is as fast as the others. */
UNET_RT_API unet_rt_status unet_rt_engine_warmup(const unet_rt_engine* engine, int height, int width);
/* Class name k (UTF-8), valid while the engine lives; NULL if k is out of range. */
UNET_RT_API const char* unet_rt_engine_class_name(const unet_rt_engine* engine, int k);
/* Mean / std of input channel c into *value. */
UNET_RT_API unet_rt_status unet_rt_engine_normalization(const unet_rt_engine* engine, int c, float* mean, float* std);

/* ---- one image ---- */
/* Segments the region of interest of `image` into `out` (labels and/or scores). run may be NULL. */
UNET_RT_API unet_rt_status unet_rt_run(const unet_rt_engine* engine, const unet_rt_image* image,
                                       const unet_rt_output* out, const unet_rt_run_options* run);

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

/* ---- a frame queue: segmentation off the acquisition thread ----
 * Frames submitted are run one after another, in order, on a thread the queue owns (each run uses
 * the engine's threads). At most `capacity` frames are in flight (submitted and not yet collected
 * by unet_rt_queue_wait); beyond that, submit returns UNET_RT_ERR_BUSY at once (drop the frame or
 * retry): it never blocks. The image and output structs are copied at submit; the buffers they
 * point to (and the run options' user data) must stay valid, and the outputs untouched, until the
 * frame's wait has returned something other than UNET_RT_ERR_TIMEOUT. The engine must outlive
 * the queue. */
UNET_RT_API unet_rt_status unet_rt_queue_create(const unet_rt_engine* engine, int capacity, unet_rt_queue** queue);
/* Cancels the frames not yet started, waits for the running one, frees the queue. NULL is fine. */
UNET_RT_API void unet_rt_queue_destroy(unet_rt_queue* queue);
/* *ticket identifies the frame for wait / cancel. */
UNET_RT_API unet_rt_status unet_rt_queue_submit(unet_rt_queue* queue, const unet_rt_image* image,
                                                const unet_rt_output* out, const unet_rt_run_options* run,
                                                uint64_t* ticket);
/* Waits up to timeout_ms (< 0: forever; 0: poll) for the frame; returns its status (its error
 * message in unet_rt_last_error() of the calling thread) and forgets it, or UNET_RT_ERR_TIMEOUT
 * (still in flight: wait again later). An unknown or already collected ticket is
 * UNET_RT_ERR_INVALID_ARGUMENT. */
UNET_RT_API unet_rt_status unet_rt_queue_wait(unet_rt_queue* queue, uint64_t ticket, int timeout_ms);
/* Asks the frame to stop: a queued frame is not run, a running one stops at its next tile; its wait
 * then returns UNET_RT_ERR_CANCELLED (or OK if it had finished). */
UNET_RT_API unet_rt_status unet_rt_queue_cancel(unet_rt_queue* queue, uint64_t ticket);
/* Frames in flight (submitted, not collected). */
UNET_RT_API int unet_rt_queue_in_flight(const unet_rt_queue* queue);

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
