/* The C API for acquisition software (unet_rt.h), in plain C99: run by tests/test_cpp_example.py.
 *   c_api_acquisition GOOD_MODEL     (1 input channel, 2 classes, valid padding)
 * Every result of the pitched / queued paths is compared with the same ROI of a tight copy of the frame
 * (the ROI reads the frame around it as context: tests/test_roi.py checks that against an independent
 * reference). Prints "ALL OK" and exits 0 on success. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unet_rt/unet_rt.h"

static int failures = 0;
#define CHECK(cond, what)                                                                                 \
  do {                                                                                                    \
    if (!(cond)) {                                                                                        \
      fprintf(stderr, "FAIL %s:%d %s (last error: %s)\n", __FILE__, __LINE__, what, unet_rt_last_error()); \
      ++failures;                                                                                         \
    } else {                                                                                              \
      printf("ok   %s\n", what);                                                                          \
    }                                                                                                     \
  } while (0)
#define EXPECT(call, status, needle, what) \
  CHECK((call) == (status) && (!(needle) || strstr(unet_rt_last_error(), (needle))), what)

enum { H = 70, W = 90, RX = 9, RY = 5, RW = 61, RH = 47, PITCH = 128 /* pixels */ };

static int progress_calls, progress_last, cancel_at = -1;
static int progress(void* user, int done, int total) {
  (void)user;
  if (done != progress_calls) ++failures; /* 0, 1, 2, ... */
  ++progress_calls;
  progress_last = total;
  return done == cancel_at;
}

/* blocks the queue's worker inside frame A until main has cancelled frame B */
static volatile int release_a = 0;
static int hold(void* user, int done, int total) {
  (void)user;
  (void)total;
  if (done == 0)
    while (!__atomic_load_n(&release_a, __ATOMIC_ACQUIRE)) usleep(1000);
  return 0;
}

static char logged[1024];
static void log_hook(void* user, int level, const char* msg) {
  (void)user;
  if (level >= UNET_RT_LOG_WARNING) snprintf(logged, sizeof logged, "%s", msg);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s GOOD_MODEL\n", argv[0]);
    return 2;
  }
  char v[32];
  snprintf(v, sizeof v, "%d.%d.%d", UNET_RT_VERSION_MAJOR, UNET_RT_VERSION_MINOR, UNET_RT_VERSION_PATCH);
  CHECK(strcmp(v, unet_rt_version()) == 0 && unet_rt_version_number() == UNET_RT_VERSION_NUMBER, "version macros");

  unet_rt_options opt;
  unet_rt_options_init(&opt);
  CHECK(opt.struct_size == sizeof opt, "options struct_size");
  opt.threads = 2;
  unet_rt_engine* e = NULL;
  EXPECT(unet_rt_engine_create(argv[1], &opt, &e), UNET_RT_OK, NULL, "create");
  if (!e) return 1;
  opt.struct_size = 4;
  unet_rt_engine* e2 = NULL;
  EXPECT(unet_rt_engine_create(argv[1], &opt, &e2), UNET_RT_ERR_INVALID_ARGUMENT, "struct_size", "options without struct_size");
  unet_rt_info info;
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  EXPECT(unet_rt_engine_info(e, &info), UNET_RT_OK, NULL, "info");
  CHECK(!strcmp(info.isa, "avx512") || !strcmp(info.isa, "avx2") || !strcmp(info.isa, "neon") || !strcmp(info.isa, "ref"),
        "info.isa");
#if defined(__aarch64__)
  CHECK(!strcmp(info.isa, "neon"), "info.isa is neon on aarch64"); /* Advanced SIMD is part of ARMv8-A */
#endif
  CHECK(info.threads == 2 && info.memory_budget_mb > 0, "info threads, budget");
  /* cache sizes as the OS reports them (0 = unknown), printed for the caller to compare with its own reading */
  printf("isa %s\ncaches %.0f %.0f %.0f\n", info.isa, (double)info.cache_l1d, (double)info.cache_l2, (double)info.cache_l3);
  CHECK(info.cache_l1d == 0 || (info.cache_l1d >= 4096 && info.cache_l1d <= ((size_t)1 << 22)), "info.cache_l1d plausible");
  CHECK(info.cache_l2 == 0 || (info.cache_l2 >= info.cache_l1d && info.cache_l2 <= ((size_t)1 << 30)), "info.cache_l2 plausible");
  {
    /* a caller compiled against the header before the cache fields: they are left alone */
    unet_rt_info old_info;
    memset(&old_info, 0x5a, sizeof old_info);
    old_info.struct_size = offsetof(unet_rt_info, cache_l1d);
    EXPECT(unet_rt_engine_info(e, &old_info), UNET_RT_OK, NULL, "info with the older struct_size");
    CHECK(old_info.threads == 2 && ((const unsigned char*)&old_info.cache_l1d)[0] == 0x5a &&
              ((const unsigned char*)&old_info.cache_l3)[0] == 0x5a, "older struct_size: the cache fields are not written");
  }
  unet_rt_plan plan;
  plan.struct_size = sizeof plan;
  EXPECT(unet_rt_engine_plan(e, 2000, 300, &plan), UNET_RT_OK, NULL, "plan");
  CHECK(plan.tiles == plan.tiles_x * plan.tiles_y && plan.tiles >= 1 && plan.tile_height > 300 && plan.tile_width > 300 &&
            plan.workspace_bytes > 0,
        "plan fields");
  EXPECT(unet_rt_engine_warmup(e, RH, RW), UNET_RT_OK, NULL, "warm-up");

  /* a camera buffer: H x W 16-bit pixels, rows PITCH pixels apart; a tight copy of it */
  static uint16_t cam[H * PITCH], tight[H * W];
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < PITCH; ++x) cam[y * PITCH + x] = (uint16_t)(x < W ? ((x * 37 + y * 101) ^ (x * y)) % 4096 : 65535);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) tight[y * W + x] = cam[y * PITCH + x];
  static uint8_t ref_labels[RH * RW];
  static float ref_probs[2 * RH * RW];
  unet_rt_image ref_img;
  unet_rt_image_init(&ref_img, tight, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W);
  ref_img.roi_x = RX;
  ref_img.roi_y = RY;
  ref_img.roi_width = RW;
  ref_img.roi_height = RH;
  unet_rt_output ref_out;
  unet_rt_output_init(&ref_out);
  ref_out.labels = ref_labels;
  ref_out.labels_bytes = sizeof ref_labels;
  EXPECT(unet_rt_run(e, &ref_img, &ref_out, NULL), UNET_RT_OK, NULL, "reference labels (ROI of the tight copy)");
  unet_rt_output_init(&ref_out);
  ref_out.scores = ref_probs;
  ref_out.scores_bytes = sizeof ref_probs;
  EXPECT(unet_rt_run(e, &ref_img, &ref_out, NULL), UNET_RT_OK, NULL, "reference probabilities");

  /* pitched input + ROI -> pitched labels and pitched probabilities, one pass */
  unet_rt_image img;
  unet_rt_image_init(&img, cam, UNET_RT_U16, UNET_RT_LAYOUT_CHW, 1, H, W);
  img.row_pitch = PITCH * sizeof(uint16_t);
  img.data_bytes = sizeof cam;
  img.roi_x = RX;
  img.roi_y = RY;
  img.roi_width = RW;
  img.roi_height = RH;
  enum { LP = RW + 3, SP = RW + 5 }; /* output pitches (elements) */
  static uint8_t labels[RH * LP];
  static float probs[2 * (RH + 1) * SP];
  unet_rt_output out;
  unet_rt_output_init(&out);
  out.labels = labels;
  out.labels_pitch = LP;
  out.labels_bytes = sizeof labels;
  out.scores = probs;
  out.scores_row_pitch = SP * sizeof(float);
  out.scores_plane_pitch = (RH + 1) * SP * sizeof(float);
  out.scores_bytes = sizeof probs;
  unet_rt_run_options run;
  unet_rt_run_options_init(&run);
  run.progress = progress;
  EXPECT(unet_rt_run(e, &img, &out, &run), UNET_RT_OK, NULL, "run: pitch + ROI, labels + probabilities");
  int bad = 0;
  for (int y = 0; y < RH; ++y)
    for (int x = 0; x < RW; ++x) {
      bad += labels[y * LP + x] != ref_labels[y * RW + x];
      for (int k = 0; k < 2; ++k) bad += probs[k * (RH + 1) * SP + y * SP + x] != ref_probs[k * RH * RW + y * RW + x];
    }
  CHECK(bad == 0, "pitched ROI results (labels + probabilities in one pass) equal the tight copy's");
  CHECK(progress_calls == progress_last + 1 && progress_last >= 1, "progress: done = 0 .. total");

  /* cancellation: by the callback, by the flag */
  progress_calls = 0;
  cancel_at = 0;
  EXPECT(unet_rt_run(e, &img, &out, &run), UNET_RT_ERR_CANCELLED, "cancelled", "progress callback cancels");
  cancel_at = -1;
  volatile int flag = 1;
  unet_rt_run_options_init(&run);
  run.cancel = &flag;
  EXPECT(unet_rt_run(e, &img, &out, &run), UNET_RT_ERR_CANCELLED, NULL, "cancel flag");
  flag = 0;
  EXPECT(unet_rt_run(e, &img, &out, &run), UNET_RT_OK, NULL, "cancel flag cleared");

  /* argument checks: no overflow near INT_MAX, pitches, ROI, capacities, struct sizes */
  unet_rt_image bad_img = img;
  bad_img.row_pitch = W * 2 - 2;
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "row_pitch", "pitch below the row");
  bad_img = img;
  bad_img.roi_x = W - 3;
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "region of interest", "ROI outside");
  bad_img = img;
  bad_img.data_bytes = (H - 1) * PITCH * sizeof(uint16_t) + W * sizeof(uint16_t) - 2; /* last row unpadded: 2 short */
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "buffer holds", "image buffer too small");
  bad_img = img;
  bad_img.height = INT_MAX;
  bad_img.width = INT_MAX;
  bad_img.row_pitch = 0;
  bad_img.roi_width = bad_img.roi_height = 0;
  bad_img.roi_x = bad_img.roi_y = 0;
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, NULL, "INT_MAX x INT_MAX image");
  bad_img.row_pitch = (size_t)-2;
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, NULL, "huge pitch");
  unet_rt_output bad_out = out;
  bad_out.labels_bytes = (RH - 1) * LP + RW - 1; /* one short of the last row */
  EXPECT(unet_rt_run(e, &img, &bad_out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "labels buffer", "labels buffer too small");
  bad_out = out;
  bad_out.labels = NULL;
  bad_out.scores = NULL;
  EXPECT(unet_rt_run(e, &img, &bad_out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "no output", "no output");
  bad_img = img;
  bad_img.struct_size = 0;
  EXPECT(unet_rt_run(e, &bad_img, &out, NULL), UNET_RT_ERR_INVALID_ARGUMENT, "struct_size", "image without struct_size");

  /* a model from memory */
  FILE* f = fopen(argv[1], "rb");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void* bytes = malloc((size_t)n);
  CHECK(fread(bytes, 1, (size_t)n, f) == (size_t)n, "read model bytes");
  fclose(f);
  unet_rt_engine* em = NULL;
  EXPECT(unet_rt_engine_create_from_memory(bytes, (size_t)n, NULL, &em), UNET_RT_OK, NULL, "create from memory");
  memset(bytes, 0, (size_t)n); /* the engine does not keep them */
  free(bytes);
  static uint8_t mem_labels[RH * RW];
  unet_rt_output_init(&ref_out);
  ref_out.labels = mem_labels;
  ref_out.labels_bytes = sizeof mem_labels;
  EXPECT(unet_rt_run(em, &ref_img, &ref_out, NULL), UNET_RT_OK, NULL, "segment (memory model)");
  CHECK(memcmp(mem_labels, ref_labels, sizeof mem_labels) == 0, "memory model gives the same labels");
  unet_rt_engine_destroy(em);
  EXPECT(unet_rt_engine_create_from_memory("garbage!", 8, NULL, &em), UNET_RT_ERR_MODEL, NULL, "garbage from memory");
  CHECK(em == NULL, "no engine from garbage");

  /* the frame queue */
  unet_rt_queue* q = NULL;
  EXPECT(unet_rt_queue_create(e, 2, &q), UNET_RT_OK, NULL, "queue");
  static uint8_t ql[3][RH * RW];
  unet_rt_output qo[3];
  for (int i = 0; i < 3; ++i) {
    unet_rt_output_init(&qo[i]);
    qo[i].labels = ql[i];
    qo[i].labels_bytes = sizeof ql[i];
  }
  unet_rt_run_options hold_a;
  unet_rt_run_options_init(&hold_a);
  hold_a.progress = hold;
  uint64_t ta = 0, tb = 0, tc = 0;
  EXPECT(unet_rt_queue_submit(q, &img, &qo[0], &hold_a, &ta), UNET_RT_OK, NULL, "submit A (held in its first tile)");
  EXPECT(unet_rt_queue_submit(q, &img, &qo[1], NULL, &tb), UNET_RT_OK, NULL, "submit B");
  CHECK(unet_rt_queue_in_flight(q) == 2, "2 in flight");
  EXPECT(unet_rt_queue_submit(q, &img, &qo[2], NULL, &tc), UNET_RT_ERR_BUSY, "queue full", "third submit: busy, not blocked");
  EXPECT(unet_rt_queue_wait(q, ta, 0), UNET_RT_ERR_TIMEOUT, NULL, "poll A: still running");
  EXPECT(unet_rt_queue_cancel(q, tb), UNET_RT_OK, NULL, "cancel B (queued)");
  __atomic_store_n(&release_a, 1, __ATOMIC_RELEASE);
  EXPECT(unet_rt_queue_wait(q, ta, -1), UNET_RT_OK, NULL, "wait A");
  CHECK(memcmp(ql[0], ref_labels, sizeof ql[0]) == 0, "queued frame A gives the same labels");
  EXPECT(unet_rt_queue_wait(q, tb, -1), UNET_RT_ERR_CANCELLED, NULL, "wait B: cancelled");
  EXPECT(unet_rt_queue_wait(q, tb, -1), UNET_RT_ERR_INVALID_ARGUMENT, "unknown ticket", "B collected once");
  EXPECT(unet_rt_queue_submit(q, &img, &qo[2], NULL, &tc), UNET_RT_OK, NULL, "submit C after collecting");
  EXPECT(unet_rt_queue_wait(q, tc, -1), UNET_RT_OK, NULL, "wait C");
  CHECK(memcmp(ql[2], ref_labels, sizeof ql[2]) == 0, "queued frame C gives the same labels");
  bad_out = qo[0];
  bad_out.labels_bytes = 1;
  EXPECT(unet_rt_queue_submit(q, &img, &bad_out, NULL, &tc), UNET_RT_ERR_INVALID_ARGUMENT, "labels buffer",
         "bad frame refused at submit");
  EXPECT(unet_rt_queue_submit(q, &img, &qo[0], NULL, &tc), UNET_RT_OK, NULL, "submit, then destroy without waiting");
  unet_rt_queue_destroy(q);
  unet_rt_queue_destroy(NULL);

  /* the logging hook: a clamped thread count is reported through it */
  unet_rt_set_log_hook(log_hook, NULL, UNET_RT_LOG_WARNING);
  unet_rt_options_init(&opt);
  opt.threads = 100000;
  EXPECT(unet_rt_engine_create(argv[1], &opt, &e2), UNET_RT_OK, NULL, "create with threads=100000");
  CHECK(strstr(logged, "threads=100000") != NULL, "clamp message through the log hook");
  unet_rt_set_log_hook(NULL, NULL, UNET_RT_LOG_WARNING);
  unet_rt_engine_destroy(e2);

  unet_rt_engine_destroy(e);
  if (failures) {
    fprintf(stderr, "%d FAILURES\n", failures);
    return 1;
  }
  printf("ALL OK\n");
  return 0;
}
