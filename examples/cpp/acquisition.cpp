// An acquisition-style loop: load the model once, then segment a stream of frames arriving in
// memory into one preallocated label buffer, printing the time per frame.
//
//   acquisition MODEL FRAMES HEIGHT WIDTH [LABELS_OUT] [THREADS]
//
// The frames are synthetic 16-bit images (a camera would deliver them): pixel (f, y, x) =
// ((7x + 13y + 101f) ^ (x*y)) % 4096, so that a test can regenerate them. With LABELS_OUT, the
// labels of every frame are appended to that file (raw uint8, FRAMES x HEIGHT x WIDTH).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "unet_rt/unet_rt.hpp"

static void synthetic_frame(int f, int h, int w, std::vector<uint16_t>& frame) {
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      frame[size_t(y) * w + x] = uint16_t(((7 * x + 13 * y + 101 * f) ^ (x * y)) % 4096);
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL FRAMES HEIGHT WIDTH [LABELS_OUT] [THREADS]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const int frames = std::atoi(argv[2]), h = std::atoi(argv[3]), w = std::atoi(argv[4]);
  const std::string out_path = argc > 5 ? argv[5] : "";
  unet_rt::Options opt;
  opt.threads = argc > 6 ? std::atoi(argv[6]) : 0;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    unet_rt::Engine engine(model, opt);  // load once
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("unet-rt %s: model %s (%d channel(s), %d classes), loaded in %.1f ms, %d threads\n",
                unet_rt::version().c_str(), model.c_str(), engine.in_channels(), engine.classes(), load_ms,
                engine.info().threads);
    if (engine.in_channels() != 1) {
      std::fprintf(stderr, "this example streams single-channel frames\n");
      return 1;
    }
    std::vector<uint16_t> frame(size_t(h) * w);   // the camera's buffer
    std::vector<uint8_t> labels(size_t(h) * w);   // preallocated once
    std::ofstream out;
    if (!out_path.empty()) out.open(out_path, std::ios::binary | std::ios::trunc);
    double total = 0;
    for (int f = 0; f < frames; ++f) {
      synthetic_frame(f, h, w, frame);
      const auto a = std::chrono::steady_clock::now();
      engine.segment(frame.data(), 1, h, w, labels.data());
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
      total += ms;
      size_t fg = 0;
      for (uint8_t l : labels) fg += l != 0;
      std::printf("frame %d: %.2f ms, %.1f%% foreground\n", f, ms, 100.0 * double(fg) / double(labels.size()));
      if (out) out.write(reinterpret_cast<const char*>(labels.data()), std::streamsize(labels.size()));
    }
    if (frames > 0) std::printf("mean %.2f ms/frame\n", total / frames);
    if (!out_path.empty() && !out) {
      std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
      return 1;
    }
  } catch (const unet_rt::Error& e) {
    std::fprintf(stderr, "unet-rt error %d: %s\n", int(e.status()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
