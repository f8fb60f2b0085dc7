// libFuzzer target for the overlap-tile driver alone (tile_predict: any dtype,
// channel count, size, layout, negative strides, tile size, padding mode, output kind) with a tile
// function that checks what it is given and writes exactly the tile's output. Buffers are
// allocated to their exact size, so ASan reports any read or write outside them. The input's first
// 16 bytes choose the parameters; the rest fills the pixels (cyclically).
//   make fuzz FUZZ_TARGETS=tiler   (docs/fuzzing.md; the C API + real network target is fuzz_image.cc)
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/geometry.h"
#include "runtime/tiler.h"

namespace {

using namespace unet_rt;

struct Params {
  DType dtype;
  int c, h, w, layout, depth, classes, tile, max_tile;
  bool same, gaussian, fused, u16_labels;
  OutputKind kind;
  double overlap;
  size_t budget;
};

Params decode(const uint8_t* b) {
  Params p;
  p.dtype = DType(b[0] % 3);
  p.c = 1 + b[1] % 3;
  p.h = 1 + (b[2] | (b[3] << 8)) % 160;
  p.w = 1 + (b[4] | (b[5] << 8)) % 160;
  p.layout = b[6] % 4;  // 0 CHW, 1 HWC, 2 CHW with row padding, 3 CHW flipped (negative strides)
  p.depth = 1 + b[8] % 3;
  p.same = b[9] & 1;
  p.kind = OutputKind((b[9] >> 1) % 3);
  p.fused = (b[9] >> 3) & 1;
  p.u16_labels = (b[9] >> 4) & 1;
  p.classes = 1 + b[10] % 4;
  const int g = 1 << p.depth;
  if (b[11] % 3 == 0) p.tile = 0;
  else if (p.same) p.tile = g * (1 + b[11] % 6);
  else p.tile = min_input_size(p.depth, false) + g * (b[11] % 5) + ((b[11] & 0x80) ? 1 : 0);  // sometimes invalid
  p.max_tile = b[12] % 2 ? int(b[12]) : 0;
  p.overlap = (b[13] % 11) / 10.0;  // 1.0 is invalid
  p.gaussian = b[13] & 0x80;
  p.budget = b[14] % 2 ? size_t(b[14]) * 4096 : 0;
  return p;
}

template <typename T>
void fill(std::vector<uint8_t>& buf, const uint8_t* src, size_t n) {
  for (size_t i = 0; i + sizeof(T) <= buf.size(); i += sizeof(T)) {
    T v;
    uint8_t raw[sizeof(T)];
    for (size_t k = 0; k < sizeof(T); ++k) raw[k] = n ? src[(i + k) % n] : uint8_t(i + k);
    std::memcpy(&v, raw, sizeof(T));
    std::memcpy(buf.data() + i, &v, sizeof(T));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  const Params p = decode(data);
  const size_t es = p.dtype == DType::U8 ? 1 : p.dtype == DType::U16 ? 2 : 4;
  const int pad = p.layout == 2 ? 1 + data[7] % 7 : 0;
  const size_t row = size_t(p.w + pad);
  const size_t elems = p.layout == 1 ? size_t(p.h) * p.w * p.c : size_t(p.c) * p.h * row;
  // exact-size heap buffer: ASan catches any access outside it
  std::unique_ptr<uint8_t[]> pix(new uint8_t[elems * es]);
  {
    std::vector<uint8_t> tmp(elems * es);
    if (p.dtype == DType::F32) {
      // finite floats from the bytes (NaN/Inf are rejected up front; keep most inputs valid)
      const size_t n = size - 16;
      for (size_t i = 0; i < elems; ++i) {
        float v = n ? float(data[16 + i % n] % 251) - 100.0f : 1.0f;
        if (n && data[16 + (i * 7) % n] == 0xFF && (i % 97) == 0) v = NAN;
        std::memcpy(tmp.data() + i * 4, &v, 4);
      }
    } else if (p.dtype == DType::U16) {
      fill<uint16_t>(tmp, data + 16, size - 16);
    } else {
      fill<uint8_t>(tmp, data + 16, size - 16);
    }
    std::memcpy(pix.get(), tmp.data(), tmp.size());
  }
  ImageView v;
  v.dtype = p.dtype;
  v.channels = p.c;
  v.height = p.h;
  v.width = p.w;
  v.data = pix.get();
  if (p.layout == 1) {
    v.channel_stride = 1;
    v.row_stride = int64_t(p.w) * p.c;
    v.col_stride = p.c;
  } else {
    v.channel_stride = int64_t(p.h) * int64_t(row);
    v.row_stride = int64_t(row);
    v.col_stride = 1;
    if (p.layout == 3) {  // flipped both ways: data points at the last pixel of plane 0's last row
      v.row_stride = -int64_t(row);
      v.col_stride = -1;
      v.data = static_cast<const uint8_t*>(v.data) + ((size_t(p.h) - 1) * row + size_t(p.w) - 1) * es;
    }
  }
  std::vector<float> mean(size_t(p.c), 3.0f), sd(size_t(p.c), 2.0f);
  TileGeometry g{p.c, p.classes, p.depth, p.same};
  TileOptions opt;
  opt.tile = p.tile;
  opt.max_tile = p.max_tile;
  opt.overlap = p.overlap;
  opt.blend = p.gaussian ? Blend::Gaussian : Blend::Constant;
  opt.memory_budget = p.budget;
  opt.workspace_bytes = [](int h, int w) { return size_t(h) * size_t(w) * 64; };
  size_t tiles_seen = 0, total_seen = 0;
  opt.progress = [&](size_t done, size_t total) {
    if (done != tiles_seen || (total_seen && total != total_seen)) __builtin_trap();
    total_seen = total;
    ++tiles_seen;
    return !(data[15] == 0x42 && done == 2);  // sometimes cancel
  };
  const int K = p.classes;
  TileFn fn = [&](const float* in, int h, int w, const OutputView& o) {
    const int oh = output_size(h, p.depth, p.same), ow = output_size(w, p.depth, p.same);
    float acc = 0;
    for (size_t i = 0; i < size_t(p.c) * size_t(h) * size_t(w); ++i) acc += in[i];  // reads all of `in`
    if (!std::isfinite(acc)) __builtin_trap();                                      // inputs are finite and normalised
    for (int k = 0; k < K; ++k)
      for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x)
          o.data[k * o.channel_stride + y * o.row_stride + x] = float(k) * 0.1f + float(x % 3);
  };
  TileOutput out;
  out.kind = p.kind;
  out.fn_writes_probabilities = p.fused;
  const size_t npix = size_t(p.h) * size_t(p.w);
  std::unique_ptr<float[]> scores;
  std::unique_ptr<uint8_t[]> labels;
  if (p.kind == OutputKind::Labels) {
    out.labels_dtype = p.u16_labels ? DType::U16 : DType::U8;
    labels.reset(new uint8_t[npix * (p.u16_labels ? 2 : 1)]);
    out.labels = labels.get();
  } else {
    scores.reset(new float[size_t(K) * npix]);
    for (size_t i = 0; i < size_t(K) * npix; ++i) scores[i] = NAN;  // a pixel left unwritten fails below
    out.scores = scores.get();
  }
  try {
    tile_predict(v, mean, sd, g, fn, opt, out);
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const Cancelled&) {
    return 0;
  }
  if (p.kind == OutputKind::Labels) {
    for (size_t i = 0; i < npix; ++i) {
      int l = p.u16_labels ? reinterpret_cast<uint16_t*>(labels.get())[i] : labels[i];
      if (l >= K) __builtin_trap();
    }
  } else {
    for (size_t i = 0; i < size_t(K) * npix; ++i)
      if (!std::isfinite(scores[i])) __builtin_trap();
  }
  return 0;
}

#include "standalone_main.h"
