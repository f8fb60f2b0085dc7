/* The C API's error paths (and one successful call), in plain C99: run by tests/test_cpp_example.py.
 *   c_api_errors GOOD_MODEL CORRUPT_MODEL TENSORRT_MODEL MISSING_PATH
 * GOOD_MODEL: 1 input channel, 2 classes, valid padding. Prints "ALL OK" and exits 0 on success. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unet_rt/unet_rt.h"

static int failures = 0;

#define CHECK(cond, what)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "FAIL %s:%d %s (last error: %s)\n", __FILE__, __LINE__, what,    \
              unet_rt_last_error());                                                   \
      ++failures;                                                                      \
    }                                                                                  \
  } while (0)

static void expect(unet_rt_status got, unet_rt_status want, const char* needle, const char* what) {
  if (got != want) {
    fprintf(stderr, "FAIL %s: status %d, expected %d (last error: %s)\n", what, (int)got, (int)want,
            unet_rt_last_error());
    ++failures;
    return;
  }
  if (needle && !strstr(unet_rt_last_error(), needle)) {
    fprintf(stderr, "FAIL %s: message '%s' lacks '%s'\n", what, unet_rt_last_error(), needle);
    ++failures;
    return;
  }
  printf("ok   %-40s %s\n", what, want == UNET_RT_OK ? "" : unet_rt_last_error());
}

static void* other_thread(void* arg) {
  (void)arg;
  unet_rt_engine* e = NULL;
  unet_rt_engine_create("/nonexistent/other-thread.plan", NULL, &e);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s GOOD CORRUPT TENSORRT MISSING\n", argv[0]);
    return 2;
  }
  const char *good = argv[1], *corrupt = argv[2], *trt = argv[3], *missing = argv[4];
  CHECK(unet_rt_version() && strlen(unet_rt_version()) > 0, "version string");
  CHECK(strcmp(unet_rt_last_error(), "") == 0, "no error before any call");

  unet_rt_engine* e = (unet_rt_engine*)0x1;
  expect(unet_rt_engine_create(missing, NULL, &e), UNET_RT_ERR_IO, "not found", "missing file");
  CHECK(e == NULL, "engine NULL after failure");
  expect(unet_rt_engine_create(corrupt, NULL, &e), UNET_RT_ERR_MODEL, corrupt, "corrupt file");
  expect(unet_rt_engine_create(trt, NULL, &e), UNET_RT_ERR_MODEL, "TensorRT", "TensorRT model");
  expect(unet_rt_engine_create(NULL, NULL, &e), UNET_RT_ERR_INVALID_ARGUMENT, "NULL", "NULL path");
  expect(unet_rt_engine_create(good, NULL, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "NULL", "NULL engine pointer");
  unet_rt_options opt;
  unet_rt_options_init(&opt);
  opt.threads = -1;
  expect(unet_rt_engine_create(good, &opt, &e), UNET_RT_ERR_INVALID_ARGUMENT, ">= 0", "negative threads");
  unet_rt_options_init(&opt);
  opt.tile = 61;
  expect(unet_rt_engine_create(good, &opt, &e), UNET_RT_ERR_INVALID_ARGUMENT, "not a valid input size", "bad tile");
  unet_rt_options_init(&opt);
  CHECK(opt.overlap == 0.25f && opt.gaussian_blend == 0 && opt.threads == 0, "option defaults");
  opt.overlap = 1.5f;
  expect(unet_rt_engine_create(good, &opt, &e), UNET_RT_ERR_INVALID_ARGUMENT, "overlap", "bad overlap");

  /* the last error is per thread */
  expect(unet_rt_engine_create(corrupt, NULL, &e), UNET_RT_ERR_MODEL, NULL, "corrupt file again");
  pthread_t th;
  pthread_create(&th, NULL, other_thread, NULL);
  pthread_join(th, NULL);
  CHECK(strstr(unet_rt_last_error(), corrupt) != NULL, "last error is thread-local");

  unet_rt_options_init(&opt);
  opt.threads = 1;
  expect(unet_rt_engine_create(good, &opt, &e), UNET_RT_OK, NULL, "good model");
  if (!e) return 1;
  unet_rt_info info;
  info.struct_size = 0;
  expect(unet_rt_engine_info(e, &info), UNET_RT_ERR_INVALID_ARGUMENT, "struct_size", "info without struct_size");
  info.struct_size = sizeof info;
  expect(unet_rt_engine_info(e, &info), UNET_RT_OK, NULL, "info");
  CHECK(info.in_channels == 1 && info.classes == 2 && info.same_padding == 0 && info.threads == 1, "info values");
  CHECK(info.halo > 0, "halo");
  CHECK(unet_rt_engine_class_name(e, 1) != NULL, "class name 1");
  CHECK(unet_rt_engine_class_name(e, 2) == NULL, "class name out of range -> NULL");
  float mean = 0, sd = 0;
  expect(unet_rt_engine_normalization(e, 0, &mean, &sd), UNET_RT_OK, NULL, "normalization");
  CHECK(sd > 0, "std > 0");
  expect(unet_rt_engine_normalization(e, 1, &mean, &sd), UNET_RT_ERR_INVALID_ARGUMENT, "range", "normalization c=1");

  enum { H = 37, W = 41 };
  static unsigned short img[2 * H * W];
  static float fimg[H * W];
  static unsigned char labels[H * W];
  static float probs[2 * H * W];
  for (int i = 0; i < 2 * H * W; ++i) img[i] = (unsigned short)((i * 37) % 1000);
  for (int i = 0; i < H * W; ++i) fimg[i] = (float)(i % 17);

  expect(unet_rt_segment(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 2, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "2 channels, the model expects 1", "wrong channel count");
  expect(unet_rt_segment(e, NULL, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "NULL", "NULL image");
  expect(unet_rt_segment(NULL, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "NULL", "NULL engine");
  expect(unet_rt_segment(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, 0, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "empty", "empty image");
  expect(unet_rt_segment(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W - 1, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "labels buffer", "labels buffer too small");
  expect(unet_rt_segment(e, img, (unet_rt_dtype)7, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "dtype", "unknown dtype");
  expect(unet_rt_segment(e, img, UNET_RT_U16, (unet_rt_layout)9, 1, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "layout", "unknown layout");
  expect(unet_rt_segment(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_F32),
         UNET_RT_ERR_INVALID_ARGUMENT, "labels dtype", "float labels");
  fimg[5] = NAN;
  expect(unet_rt_segment(e, fimg, UNET_RT_F32, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_U8),
         UNET_RT_ERR_INVALID_ARGUMENT, "NaN", "NaN in the image");
  fimg[5] = 0.0f;
  expect(unet_rt_predict(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, probs, 2 * H * W - 1, 0),
         UNET_RT_ERR_INVALID_ARGUMENT, "output buffer", "probability buffer too small");

  memset(labels, 0xff, sizeof labels);
  expect(unet_rt_segment(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, labels, H * W, UNET_RT_U8), UNET_RT_OK,
         NULL, "segment");
  int bad = 0;
  for (int i = 0; i < H * W; ++i) bad += labels[i] > 1;
  CHECK(bad == 0, "labels in [0, classes)");
  expect(unet_rt_predict(e, img, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W, probs, 2 * H * W, 0), UNET_RT_OK, NULL,
         "predict");
  for (int i = 0; i < H * W; ++i) {
    float s = probs[i] + probs[H * W + i];
    if (fabsf(s - 1.0f) > 1e-5f || probs[i] < 0) ++bad;
    if ((probs[H * W + i] > probs[i]) != (labels[i] == 1) && fabsf(probs[H * W + i] - probs[i]) > 1e-4f) ++bad;
  }
  CHECK(bad == 0, "probabilities sum to 1 and agree with the labels");
  unet_rt_engine_destroy(e);
  unet_rt_engine_destroy(NULL);
  if (failures) {
    fprintf(stderr, "%d FAILURES\n", failures);
    return 1;
  }
  printf("ALL OK\n");
  return 0;
}
