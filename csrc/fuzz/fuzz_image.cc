// libFuzzer target for the image entry points of the C API (unet_rt.h) running a real network: a
// tiny U-Net (depth 1-2, base 2, 1-3 input channels, 1-3 classes, valid or same padding, optional
// percentile normalisation, threshold decision or float32-overflowing weights) is built here as a
// model file in memory, loaded with unet_rt_engine_create_from_memory under a fuzzed
// unet_rt_options (threads, tile, memory budget, overlap, blend, precision, struct_size), and one
// image goes through unet_rt_run, the frame queue, or the tight unet_rt_segment / _predict /
// _instances, with fuzzed dtype, layout, size (up to 24 x 24), row and plane pitch, buffer size,
// region of interest, output pitches and capacities, progress callback, cancellation and pixel
// values (NaN, Inf, denormals, huge floats).
//
// Every buffer is allocated to its exact size, so ASan reports any access outside it. Checks beyond
// the sanitizers: the status is one the API documents for the case; on success every output pixel
// of the ROI was written (outputs start as sentinels), labels are < classes and agree with the
// probabilities of the same pass, probabilities are in [0, 1] and sum to 1, the bytes between
// output rows and planes (the pitch padding) are never touched, progress counts 0, 1, ..., total.
// The SIMD kernels are linked without sanitizers (they are tested against float64 references, and
// instrumenting them only slows the campaign); everything that calls them is instrumented.
//   make fuzz FUZZ_TARGETS=image   (docs/fuzzing.md)
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/geometry.h"
#include "core/types.h"
#include "unet_rt/unet_rt.h"

namespace {

struct ModelKey {
  int in_ch, classes, depth;
  bool same, percentiles, threshold, huge;
  bool operator<(const ModelKey& o) const {
    return std::tie(in_ch, classes, depth, same, percentiles, threshold, huge) <
           std::tie(o.in_ch, o.classes, o.depth, o.same, o.percentiles, o.threshold, o.huge);
  }
};

std::string json_quote(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

// A model file (docs/architecture.md, "File format") with deterministic pseudo-random weights.
std::vector<uint8_t> build_model(const ModelKey& k) {
  unet_rt::Arch a;
  a.in_channels = k.in_ch;
  a.classes = k.classes;
  a.depth = k.depth;
  a.base = 2;
  a.same_padding = k.same;
  std::string arch = "{\"in_channels\": " + std::to_string(k.in_ch) + ", \"classes\": " + std::to_string(k.classes) +
                     ", \"depth\": " + std::to_string(k.depth) + ", \"base\": 2, \"padding\": \"" +
                     (k.same ? "same" : "valid") + "\"}";
  std::string mean = "[", sd = "[";
  for (int c = 0; c < k.in_ch; ++c) {
    mean += std::string(c ? ", " : "") + std::to_string(100 + 20 * c);
    sd += std::string(c ? ", " : "") + std::to_string(50 + 10 * c);
  }
  std::string norm =
      "{\"mean\": " + mean + "], \"std\": " + sd + "]" + (k.percentiles ? ", \"percentiles\": [1.0, 99.5]}" : "}");
  std::string header =
      "{\"__metadata__\": {\"format\": \"unet-rt\", \"format_version\": \"1\", \"kind\": \"weights\", "
      "\"arch\": " +
      json_quote(arch) + ", \"normalization\": " + json_quote(norm);
  if (k.threshold && k.classes >= 2)
    header += ", \"decision\": " + json_quote("{\"foreground_class\": 1, \"threshold\": 0.4}");
  header += "}";
  std::vector<float> data;
  uint32_t state = 12345;
  for (const auto& kv : unet_rt::expected_weight_shapes(a)) {
    size_t n = 1;
    for (int64_t d : kv.second) n *= size_t(d);
    std::string shape;
    for (size_t i = 0; i < kv.second.size(); ++i) shape += (i ? ", " : "") + std::to_string(kv.second[i]);
    header += ", " + json_quote(kv.first) + ": {\"dtype\": \"F32\", \"shape\": [" + shape + "], \"data_offsets\": [" +
              std::to_string(data.size() * 4) + ", " + std::to_string((data.size() + n) * 4) + "]}";
    for (size_t i = 0; i < n; ++i) {
      state = state * 1664525u + 1013904223u;
      float v = (float(state >> 8) / float(1 << 24) - 0.5f) * 0.8f;
      data.push_back(k.huge ? v * 1e30f : v);
    }
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::vector<uint8_t> bytes(8 + header.size() + data.size() * 4);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = uint8_t(n >> (8 * i));
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  std::memcpy(bytes.data() + 8 + header.size(), data.data(), data.size() * 4);
  return bytes;
}

const std::vector<uint8_t>& model_bytes(const ModelKey& k) {
  static std::map<ModelKey, std::vector<uint8_t>> cache;  // at most 3*3*2*2*2*2*2 small files
  auto it = cache.find(k);
  if (it == cache.end()) it = cache.emplace(k, build_model(k)).first;
  return it->second;
}

void quiet(void*, int, const char*) {}

struct Progress {
  int calls = 0, total = -1, cancel_at = -1;
};
int on_progress(void* user, int done, int total) {
  auto* p = static_cast<Progress*>(user);
  if (done != p->calls || total < 1 || (p->total >= 0 && total != p->total) || done > total) __builtin_trap();
  p->total = total;
  ++p->calls;
  return done == p->cancel_at;
}

// The outputs' bytes outside the ROI rows (pitch padding) hold this pattern and must keep it.
constexpr uint8_t kPad = 0xA5;
const float kUnwritten = std::nanf("1");

size_t esize(int dt) { return dt == UNET_RT_U8 ? 1 : dt == UNET_RT_U16 ? 2 : 4; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t size) {
  constexpr size_t kParams = 24;
  if (size < kParams) return 0;
  static bool once = [] {
    unet_rt_set_log_hook(quiet, nullptr, UNET_RT_LOG_DEBUG);
    return true;
  }();
  (void)once;
  // ---- the model and the engine options ----
  ModelKey mk;
  mk.in_ch = 1 + d[0] % 3;
  mk.classes = 1 + d[1] % 3;
  mk.depth = 1 + ((d[1] >> 2) & 1);
  mk.same = (d[1] >> 3) & 1;
  mk.percentiles = (d[1] >> 4) & 1;
  mk.threshold = (d[1] >> 5) & 1;
  mk.huge = d[1] >= 0xE0;
  const std::vector<uint8_t>& model = model_bytes(mk);
  unet_rt_options opt;
  unet_rt_options_init(&opt);
  // mostly one thread: a pool's per-layer hand-offs dominate a tiny network's time (and a nice'd
  // campaign's threads wait for each other on a loaded machine); 2 threads for 1 input in 16
  opt.threads = (d[2] & 3) == 3 && ((d[2] >> 2) & 3) == 3 ? 2 : 1;
  if (((d[2] >> 2) & 7) == 7) opt.struct_size = offsetof(unet_rt_options, gaussian_blend);  // too small
  if (((d[2] >> 2) & 7) == 6) opt.struct_size = offsetof(unet_rt_options, precision);       // an older caller
  opt.precision = (d[2] >> 6) == 3 && (d[2] & 1) ? 2 : (d[2] >> 5) & 1;                     // 2 is invalid
  const int g = 1 << mk.depth;
  switch (d[3] % 4) {
    // valid sizes with at most ~3 tiles per axis of a 24-pixel image (the campaign's speed)
    case 1:
      opt.tile =
          mk.same ? g * (2 + (d[3] >> 2) % 3) : unet_rt::min_input_size(mk.depth, false) + g * (2 + (d[3] >> 2) % 4);
      break;
    case 2: opt.tile = d[3] >> 2; break;  // often invalid
    default: opt.tile = 0;
  }
  opt.memory_budget_mb = d[4] % 4 == 3 ? -1 : d[4] % 3;
  opt.gaussian_blend = d[4] >> 7;
  // 0 .. 0.72, and invalid: -0.1, 1.0, NaN
  opt.overlap = d[5] == 0xFF ? NAN : d[5] % 12 == 11 ? 1.0f : d[5] % 12 == 10 ? -0.1f : float(d[5] % 12) * 0.08f;
  // Engines are long-lived in real use: keep the last few (by model and option bytes), so that most
  // inputs reuse one, with its plan cache and arena, as an application does.
  static std::map<std::vector<uint8_t>, std::shared_ptr<unet_rt_engine>> engines;
  const std::vector<uint8_t> ekey(d, d + 6);
  unet_rt_engine* e = nullptr;
  unet_rt_status st = UNET_RT_OK;
  std::shared_ptr<unet_rt_engine> engine;
  if (auto it = engines.find(ekey); it != engines.end()) {
    engine = it->second;
    e = engine.get();
  } else {
    st = unet_rt_engine_create_from_memory(model.data(), model.size(), &opt, &e);
    if (st == UNET_RT_OK) {
      if (engines.size() >= 64) engines.clear();
      engine.reset(e, unet_rt_engine_destroy);
      engines[ekey] = engine;
    }
  }
  if (st != UNET_RT_OK) {
    if (st != UNET_RT_ERR_INVALID_ARGUMENT || e || !*unet_rt_last_error()) {
      std::fprintf(stderr, "engine: status %d: %s\n", int(st), unet_rt_last_error());
      __builtin_trap();
    }
    return 0;
  }
  const int K = mk.classes;

  // ---- the image: dtype, layout, size, pitches, buffer size, ROI ----
  int dtype = d[6] % 3, layout = (d[6] >> 2) & 1;
  if (d[6] % 16 == 15) dtype = 3;            // invalid
  if (((d[6] >> 3) & 15) == 15) layout = 2;  // invalid
  const bool raw_floats = d[6] >> 7;
  const int H = 1 + d[7] % 24, W = 1 + d[8] % 24;
  const int C = d[9] == 0xFF ? mk.in_ch + 1 : mk.in_ch;  // 0xFF: wrong channel count
  const size_t es = dtype == 3 ? 1 : esize(dtype);
  const bool hwc = layout == UNET_RT_LAYOUT_HWC;
  const size_t row_bytes = size_t(W) * (hwc ? size_t(C) : 1) * es;
  size_t row_pitch = d[10] % 4 == 0 ? 0 : row_bytes + es * ((d[10] >> 2) % 8);
  if (d[10] == 0xFE && es > 1) row_pitch = row_bytes + 1;  // not a multiple of the pixel size
  const size_t row = row_pitch ? row_pitch : row_bytes;
  const size_t plane_min = row * size_t(H - 1) + row_bytes;
  size_t plane_pitch = d[11] % 4 == 0 ? 0 : plane_min + es * ((d[11] >> 2) % 8);
  if (d[11] == 0xFF) plane_pitch = plane_min - es;  // too small
  const size_t plane = plane_pitch ? plane_pitch : row * size_t(H);
  const size_t need = hwc ? plane_min : plane * size_t(C - 1) + plane_min;
  size_t data_bytes = d[12] % 4 == 0 ? 0 : need;
  if (d[12] % 4 == 3) data_bytes = need - 1;  // too small
  // The buffer is `need` bytes (or the checked data_bytes when larger, never here), so an
  // unchecked wrong pitch that the API accepted would read outside it: ASan reports that.
  std::unique_ptr<uint8_t[]> pix(new uint8_t[need]);
  const uint8_t* src = d + kParams;
  const size_t n = size - kParams;
  if (dtype == UNET_RT_F32 && !raw_floats) {  // finite floats of every magnitude, -0, denormals
    const float scale = std::ldexp(1.0f, int((d[6] >> 3) & 15) * 9 - 70);
    for (size_t i = 0; i + 4 <= need; i += 4) {
      float v = n ? float(int8_t(src[(i / 4) % n])) * scale : -0.0f;
      std::memcpy(pix.get() + i, &v, 4);
    }
    for (size_t i = need / 4 * 4; i < need; ++i) pix[i] = 0;
  } else {
    for (size_t i = 0; i < need; ++i) pix[i] = n ? src[i % n] : uint8_t(i);
  }
  unet_rt_image img;
  unet_rt_image_init(&img, pix.get(), unet_rt_dtype(dtype), unet_rt_layout(layout), C, H, W);
  img.row_pitch = row_pitch;
  img.plane_pitch = plane_pitch;
  img.data_bytes = data_bytes;
  int RX = 0, RY = 0, RW = W, RH = H;
  if (d[13] % 4) {
    RX = d[14] % W;
    RY = d[15] % H;
    RW = 1 + d[16] % (W - RX);
    RH = 1 + d[17] % (H - RY);
    img.roi_x = RX;
    img.roi_y = RY;
    img.roi_width = RW;
    img.roi_height = RH;
    if (d[13] % 16 == 15) img.roi_width = RW + 1;  // outside the image
  }

  // ---- outputs: labels and/or scores with their pitches and capacities ----
  const int ldt = (d[18] % 3) == 0 ? -1 : (d[18] % 3) == 1 ? UNET_RT_U8 : UNET_RT_U16;  // -1: no labels
  const int skind = (d[18] >> 2) % 3;                                                   // 0 none, 1 probs, 2 logits
  const size_t ls = ldt < 0 ? 1 : esize(ldt);
  const size_t lpitch = (size_t(RW) + ((d[18] >> 4) & 3)) * ls;
  const size_t lbytes = ldt < 0 ? 0 : lpitch * size_t(RH - 1) + size_t(RW) * ls - ((d[18] >> 6) == 3 ? 1 : 0);
  const size_t srow = (size_t(RW) + (d[19] & 3)) * 4;
  const size_t splane = srow * size_t(RH) + 4 * ((d[19] >> 2) & 3);
  const size_t sbytes =
      skind == 0 ? 0
                 : splane * size_t(K - 1) + srow * size_t(RH - 1) + size_t(RW) * 4 - (((d[19] >> 4) & 7) == 7 ? 4 : 0);
  std::unique_ptr<uint8_t[]> labels(new uint8_t[lbytes + 1]);  // + 1: never a zero-size array
  std::unique_ptr<uint8_t[]> scores(new uint8_t[sbytes + 1]);
  std::memset(labels.get(), kPad, lbytes + 1);
  std::memset(scores.get(), kPad, sbytes + 1);
  auto label_at = [&](int y, int x) -> uint8_t* { return labels.get() + size_t(y) * lpitch + size_t(x) * ls; };
  auto score_at = [&](int k, int y, int x) -> uint8_t* {
    return scores.get() + size_t(k) * splane + size_t(y) * srow + size_t(x) * 4;
  };
  for (int y = 0; y < RH; ++y)
    for (int x = 0; x < RW; ++x) {
      if (ldt >= 0 && size_t(label_at(y, x) - labels.get()) + ls <= lbytes) std::memset(label_at(y, x), 0xFF, ls);
      for (int k = 0; k < K && skind; ++k)
        if (size_t(score_at(k, y, x) - scores.get()) + 4 <= sbytes) std::memcpy(score_at(k, y, x), &kUnwritten, 4);
    }
  unet_rt_output out;
  unet_rt_output_init(&out);
  if (ldt >= 0) {
    out.labels = labels.get();
    out.labels_dtype = unet_rt_dtype(ldt);
    out.labels_pitch = lpitch;
    out.labels_bytes = lbytes;
  }
  if (skind) {
    out.scores = reinterpret_cast<float*>(scores.get());
    out.scores_row_pitch = srow;
    out.scores_plane_pitch = splane;
    out.scores_bytes = sbytes;
    out.logits = skind == 2;
  }

  // ---- run options ----
  Progress prog;
  if (((d[20] >> 1) & 7) == 7) prog.cancel_at = (d[20] >> 4) & 3;
  volatile int cancel_flag = ((d[20] >> 5) & 3) == 3;
  unet_rt_run_options run;
  unet_rt_run_options_init(&run);
  if (d[20] & 1) {
    run.progress = on_progress;
    run.progress_user = &prog;
  }
  run.cancel = &cancel_flag;
  const unet_rt_run_options* runp = (d[20] >> 7) ? nullptr : &run;

  // ---- the entry point ----
  const int entry = d[21] % 10;
  const size_t tight = size_t(C) * size_t(H) * size_t(W) * es;
  std::unique_ptr<uint8_t[]> tight_img;
  if (entry >= 7) {  // the tight entry points read a contiguous CHW / HWC image: copy the pixels
    tight_img.reset(new uint8_t[tight]);
    for (size_t i = 0; i < tight; ++i) tight_img[i] = pix[i % need];
  }
  const size_t npix = size_t(H) * size_t(W);
  // the tight entry points' outputs: exactly H x W u16 labels, K x H x W floats
  std::unique_ptr<uint8_t[]> tl(new uint8_t[npix * 2]);
  std::unique_ptr<float[]> ts(new float[size_t(K) * npix]);
  std::memset(tl.get(), 0xFF, npix * 2);
  for (size_t i = 0; i < size_t(K) * npix; ++i) ts[i] = kUnwritten;
  std::unique_ptr<int32_t[]> inst;
  int64_t inst_count = -1;
  const bool short_tight = d[22] == 0xFF;  // a capacity one short
  const bool roi_outputs = entry <= 6;
  switch (entry) {
    case 7:
      st = unet_rt_segment(e, tight_img.get(), unet_rt_dtype(dtype), unet_rt_layout(layout), C, H, W, tl.get(),
                           npix - (short_tight ? 1 : 0), UNET_RT_U16);
      break;
    case 8:
      st = unet_rt_predict(e, tight_img.get(), unet_rt_dtype(dtype), unet_rt_layout(layout), C, H, W, ts.get(),
                           size_t(K) * npix - (short_tight ? 1 : 0), d[22] & 1);
      break;
    case 9:
      inst.reset(new int32_t[npix]);
      st = unet_rt_instances(e, tight_img.get(), unet_rt_dtype(dtype), unet_rt_layout(layout), C, H, W, inst.get(),
                             npix - (short_tight ? 1 : 0), &inst_count);
      break;
    case 6: {  // the frame queue: submit, then wait (or cancel, or destroy with the frame in flight)
      unet_rt_queue* q = nullptr;
      if (unet_rt_queue_create(e, 1 + d[22] % 2, &q) != UNET_RT_OK) __builtin_trap();
      uint64_t ticket = 0;
      st = unet_rt_queue_submit(q, &img, &out, runp, &ticket);
      if (st == UNET_RT_OK) {
        if (unet_rt_queue_in_flight(q) != 1) __builtin_trap();
        if ((d[22] >> 1) & 1) unet_rt_queue_cancel(q, ticket);
        st = unet_rt_queue_wait(q, ticket, -1);
        if (unet_rt_queue_wait(q, ticket, 0) != UNET_RT_ERR_INVALID_ARGUMENT) __builtin_trap();  // collected once
        if ((d[22] >> 1) & 1) {
          unet_rt_queue_destroy(q);
          return 0;  // cancelled or finished: either is right
        }
      }
      unet_rt_queue_destroy(q);
      break;
    }
    default: st = unet_rt_run(e, &img, &out, runp);
  }

  // ---- checks ----
  if (st != UNET_RT_OK) {
    if (st != UNET_RT_ERR_INVALID_ARGUMENT && st != UNET_RT_ERR_CANCELLED && st != UNET_RT_ERR_NUMERIC)
      __builtin_trap();
    if (st == UNET_RT_ERR_NUMERIC && !mk.huge && !(dtype == UNET_RT_F32)) __builtin_trap();  // only from overflow
    if (!*unet_rt_last_error()) __builtin_trap();
  }
  if (roi_outputs) {  // pitch padding untouched, whatever the status
    for (int y = 0; y < RH && ldt >= 0; ++y)
      for (size_t b = size_t(RW) * ls; b < lpitch && size_t(y) * lpitch + b < lbytes; ++b)
        if (labels[size_t(y) * lpitch + b] != kPad) __builtin_trap();
    for (int k = 0; k < K && skind; ++k)
      for (int y = 0; y < RH; ++y)
        for (size_t b = size_t(RW) * 4; b < srow; ++b) {
          size_t at = size_t(k) * splane + size_t(y) * srow + b;
          if (at < sbytes && scores[at] != kPad) __builtin_trap();
        }
    if (ldt >= 0 && labels[lbytes] != kPad) __builtin_trap();
    if (skind && scores[sbytes] != kPad) __builtin_trap();
  }
  if (st != UNET_RT_OK) return 0;
  if (cancel_flag && runp && entry <= 6) __builtin_trap();  // a set cancel flag always cancels
  if (prog.cancel_at >= 0 && runp && (d[20] & 1) && entry <= 6 && prog.total >= prog.cancel_at) __builtin_trap();
  if (runp && (d[20] & 1) && entry <= 6 && prog.calls != prog.total + 1) __builtin_trap();  // 0 .. total
  if (entry == 9) {
    for (size_t i = 0; i < npix; ++i)
      if (inst[i] < 0 || inst[i] > inst_count) __builtin_trap();
    return 0;
  }
  const int oh = roi_outputs ? RH : H, ow = roi_outputs ? RW : W;
  const size_t olp = roi_outputs ? lpitch : size_t(W) * 2, osr = roi_outputs ? srow : size_t(W) * 4;
  const size_t osp = roi_outputs ? splane : npix * 4;
  const bool has_labels = roi_outputs ? ldt >= 0 : entry == 7;
  const int has_scores = roi_outputs ? skind : entry == 8 ? 1 + (d[22] & 1) : 0;
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      float p[3];
      float sum = 0;
      int best = 0;
      for (int k = 0; k < K && has_scores; ++k) {
        std::memcpy(&p[k],
                    (roi_outputs ? scores.get() : reinterpret_cast<uint8_t*>(ts.get())) + size_t(k) * osp +
                        size_t(y) * osr + size_t(x) * 4,
                    4);
        if (!std::isfinite(p[k])) __builtin_trap();  // unwritten (NaN) or not finite
        if (has_scores == 1 && !(p[k] >= 0.0f && p[k] <= 1.0f)) __builtin_trap();
        sum += p[k];
        if (p[k] > p[best]) best = k;
      }
      if (has_scores == 1 && std::fabs(sum - 1.0f) > 1e-4f) __builtin_trap();
      if (!has_labels) continue;
      const uint8_t* l = (roi_outputs ? labels.get() : tl.get()) + size_t(y) * olp + size_t(x) * (roi_outputs ? ls : 2);
      const int lab = (roi_outputs ? ls : 2) == 1 ? l[0] : int(l[0] | (l[1] << 8));
      if (lab >= K) __builtin_trap();  // unwritten (0xFF / 0xFFFF) or out of range
      if (has_scores == 1) {           // the labels of the same pass's probabilities
        int want = best;
        if (mk.threshold && K >= 2) {
          if (p[1] > 0.4f) want = 1;
          else {
            want = 0;
            for (int k = 2; k < K; ++k)
              if (p[k] > p[want]) want = k;
          }
        }
        if (lab != want) __builtin_trap();
      }
    }
  return 0;
}

#include "standalone_main.h"
