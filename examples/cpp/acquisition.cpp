// An acquisition loop as a microscope program runs it: a camera thread delivers 16-bit frames at a
// fixed rate into buffers of its own (rows padded to a pitch, as camera SDKs do); each frame is
// handed to unet-rt's frame queue without a copy and without ever waiting; a second thread collects
// the labels. When segmentation falls behind, the camera drops the frame instead of blocking
// (bounded queue). At the end: frames segmented, dropped, and the latency from capture to labels.
//
//   acquisition MODEL FRAMES HEIGHT WIDTH [LABELS_OUT] [THREADS] [FPS] [IN_FLIGHT] [FRAMES_IN]
//
// FPS 0 (default): the camera waits for a free buffer (no drops; measures throughput). IN_FLIGHT
// (default 2): frames the queue holds at most. Frame f's pixel (y, x) is
// ((7x + 13y + 101f) ^ (x*y)) % 4096, so that a test can regenerate it; with FRAMES_IN (a raw file
// of HEIGHT x WIDTH uint16 little-endian frames, e.g. recorded images) frame f is instead that
// file's frame f modulo its frame count. With LABELS_OUT, each segmented frame is appended there
// as its int32 index and then HEIGHT x WIDTH uint8 labels.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "unet_rt/unet_rt.hpp"

using Clock = std::chrono::steady_clock;

// Frame f into the camera's buffer: from `recorded` (whole frames, h x w each) if it has any, else synthetic.
static void camera_frame(int f, int h, int w, size_t pitch_px, const std::vector<uint16_t>& recorded, uint16_t* frame) {
  const size_t n = size_t(h) * size_t(w), count = recorded.size() / n;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      frame[size_t(y) * pitch_px + x] = count ? recorded[size_t(f) % count * n + size_t(y) * size_t(w) + size_t(x)]
                                              : uint16_t(((7 * x + 13 * y + 101 * f) ^ (x * y)) % 4096);
}

struct Slot {                  // one camera buffer and the labels of the frame in it
  std::vector<uint16_t> pixels;
  std::vector<uint8_t> labels;
};

struct Submitted {
  uint64_t ticket;
  int slot, frame;
  Clock::time_point captured;
};

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL FRAMES HEIGHT WIDTH [LABELS_OUT] [THREADS] [FPS] [IN_FLIGHT] [FRAMES_IN]\n",
                 argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const int frames = std::atoi(argv[2]), h = std::atoi(argv[3]), w = std::atoi(argv[4]);
  const std::string out_path = argc > 5 ? argv[5] : "";
  unet_rt::Options opt;
  opt.threads = argc > 6 ? std::atoi(argv[6]) : 0;
  const double fps = argc > 7 ? std::atof(argv[7]) : 0.0;
  const int in_flight = argc > 8 ? std::atoi(argv[8]) : 2;
  if (frames < 0 || h < 1 || w < 1 || in_flight < 1) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  std::vector<uint16_t> recorded;  // FRAMES_IN: whole little-endian uint16 frames
  if (argc > 9) {
    std::ifstream in(argv[9], std::ios::binary | std::ios::ate);
    const std::streamoff bytes = in ? std::streamoff(in.tellg()) : std::streamoff(-1);
    const std::streamoff frame_bytes = std::streamoff(h) * w * 2;
    if (bytes < frame_bytes) {
      std::fprintf(stderr, "%s: cannot read one %dx%d uint16 frame from it\n", argv[9], h, w);
      return 2;
    }
    recorded.resize(size_t(bytes / frame_bytes) * size_t(h) * size_t(w));
    in.seekg(0);
    std::vector<unsigned char> raw(recorded.size() * 2);
    in.read(reinterpret_cast<char*>(raw.data()), std::streamsize(raw.size()));
    for (size_t i = 0; i < recorded.size(); ++i) recorded[i] = uint16_t(raw[2 * i] | (raw[2 * i + 1] << 8));
  }
  try {
    const auto t0 = Clock::now();
    unet_rt::Engine engine(model, opt);  // load once
    const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (engine.in_channels() != 1) {
      std::fprintf(stderr, "this example streams single-channel frames\n");
      return 1;
    }
    const auto t1 = Clock::now();
    engine.warmup(h, w);  // plans and memory for this frame size: the first frame is not slower
    const double warm_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
    const unet_rt_plan plan = engine.plan(h, w);
    std::printf("unet-rt %s (%s kernels, %d threads): model %s (%d classes) loaded in %.1f ms, warm-up %.1f ms; "
                "%dx%d frames: %d tile(s) of %dx%d\n",
                unet_rt::version().c_str(), engine.isa().c_str(), engine.info().threads, model.c_str(),
                engine.classes(), load_ms, warm_ms, h, w, plan.tiles, plan.tile_height, plan.tile_width);

    // Camera buffers: rows padded to a 64-pixel multiple (a camera SDK's pitch), read in place.
    const size_t pitch_px = (size_t(w) + 63) / 64 * 64;
    // As many buffers as frames in flight: a buffer is free again once its frame's labels are
  // collected, which is also when the queue has room again.
  const int nslots = in_flight;
    std::vector<Slot> slots(static_cast<size_t>(nslots));
    for (Slot& s : slots) {
      s.pixels.assign(pitch_px * size_t(h), 0);
      s.labels.assign(size_t(h) * size_t(w), 0);
    }
    std::mutex m;
    std::condition_variable cv;
    std::vector<int> free_slots;
    for (int i = nslots - 1; i >= 0; --i) free_slots.push_back(i);
    std::deque<Submitted> submitted;
    bool camera_done = false;
    int dropped = 0;

    unet_rt::Queue queue(engine, in_flight);
    std::thread camera([&] {
      const auto start = Clock::now();
      for (int f = 0; f < frames; ++f) {
        int slot = -1;
        if (fps > 0) {
          std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(f / fps)));
          std::lock_guard<std::mutex> lk(m);
          if (free_slots.empty()) {  // segmentation is behind: drop, never wait
            ++dropped;
            continue;
          }
          slot = free_slots.back();
          free_slots.pop_back();
        } else {
          std::unique_lock<std::mutex> lk(m);
          cv.wait(lk, [&] { return !free_slots.empty(); });
          slot = free_slots.back();
          free_slots.pop_back();
        }
        Slot& s = slots[size_t(slot)];
        camera_frame(f, h, w, pitch_px, recorded, s.pixels.data());  // the camera writes its buffer
        const auto captured = Clock::now();
        auto img = unet_rt::Image<uint16_t>(s.pixels.data(), h, w).pitch(pitch_px * sizeof(uint16_t));
        auto out = unet_rt::Output().labels(s.labels.data(), s.labels.size());
        uint64_t ticket = 0;
        std::lock_guard<std::mutex> lk(m);
        if (!queue.try_submit(img, out, &ticket)) {  // queue full: drop
          ++dropped;
          free_slots.push_back(slot);
          continue;
        }
        submitted.push_back({ticket, slot, f, captured});
        cv.notify_all();
      }
      std::lock_guard<std::mutex> lk(m);
      camera_done = true;
      cv.notify_all();
    });

    // The collector: labels of each frame in order, latency from capture to labels.
    std::ofstream out;
    if (!out_path.empty()) out.open(out_path, std::ios::binary | std::ios::trunc);
    std::vector<double> latency_ms;
    std::string error;
    const auto run_start = Clock::now();
    for (;;) {
      Submitted s;
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return camera_done || !submitted.empty(); });
        if (submitted.empty()) break;
        s = submitted.front();
        submitted.pop_front();
      }
      try {
        queue.wait(s.ticket);
      } catch (const unet_rt::Error& e) {
        if (error.empty()) error = e.what();
      }
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s.captured).count();
      latency_ms.push_back(ms);
      const std::vector<uint8_t>& labels = slots[size_t(s.slot)].labels;
      size_t fg = 0;
      for (uint8_t l : labels) fg += l != 0;
      std::printf("frame %d: %.2f ms from capture to labels, %.1f%% foreground\n", s.frame, ms,
                  100.0 * double(fg) / double(labels.size()));
      if (out) {
        const int32_t idx = s.frame;
        out.write(reinterpret_cast<const char*>(&idx), sizeof idx);
        out.write(reinterpret_cast<const char*>(labels.data()), std::streamsize(labels.size()));
      }
      std::lock_guard<std::mutex> lk(m);
      free_slots.push_back(s.slot);
      cv.notify_all();
    }
    camera.join();
    const double secs = std::chrono::duration<double>(Clock::now() - run_start).count();
    if (!error.empty()) {
      std::fprintf(stderr, "segmentation failed: %s\n", error.c_str());
      return 1;
    }
    std::vector<double> sorted = latency_ms;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) {
      return sorted.empty() ? 0.0 : sorted[std::min(sorted.size() - 1, size_t(p / 100.0 * double(sorted.size())))];
    };
    double mean = 0;
    for (double v : sorted) mean += v;
    if (!sorted.empty()) mean /= double(sorted.size());
    std::printf("%d frames of %dx%d at %s: %zu segmented, %d dropped, %.2f frames/s; latency p50 %.1f ms, "
                "p99 %.1f ms, max %.1f ms; mean %.2f ms/frame\n",
                frames, h, w, fps > 0 ? (std::to_string(fps) + " fps").c_str() : "full speed", sorted.size(), dropped,
                double(sorted.size()) / secs, pct(50), pct(99), sorted.empty() ? 0.0 : sorted.back(), mean);
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
