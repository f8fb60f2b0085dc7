// Kernel micro-benchmark (make kbench): GFLOP/s of every Winograd conv3x3 variant this CPU runs
// (fp32 per ISA tier, bf16) under each of the executor's schedules (shared bands, private bands,
// weights kept as taps) and of the direct conv, per phase, on layer shapes of the paper network,
// against the measured peak of the same arithmetic (fp32 FMA; vdpbf16ps, or AMX tdpbf16ps, for bf16).
//
// One thread, the executor's own packing (executor/pack.cc) and Winograd driver (executor/winograd.cc).
// GFLOP/s count the arithmetic done: the Winograd-domain GEMM multiplies (2 * 36 * tiles * IC * OC),
// not the direct-convolution equivalent. Times are the thread's CPU time (best of `reps` runs), so
// that a machine shared with other work still gives the kernels' own speed; the peaks are measured
// the same way (one thread, CPU time). Wall time of the best run is shown beside it.
//   build/kbench/kbench [reps] [layer...]     (layers: enc.0 enc.2 enc.3 enc.4 dec.3c1; default all)
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/memory.h"
#include "kernels/kernels.h"
#include "executor/pack.h"
#include "executor/winograd.h"

namespace unet_rt::kernels {
#if defined(__aarch64__)
double fma_probe_neon(int64_t iters, float* sink);
#else
double fma_probe_avx512(int64_t iters, float* sink);
double fma_probe_avx2(int64_t iters, float* sink);
#endif
}  // namespace unet_rt::kernels
namespace k = unet_rt::kernels;
using unet_rt::InDesc;
using unet_rt::TensorView;

namespace {

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
double wall_now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Layer {
  const char* name;
  int ic, oc, out;  // input channels (one input), output channels, output size (square)
};

struct Result {
  double wall = 1e30, cpu = 0, phase[3] = {0, 0, 0};
};

template <class F>
Result best_of(int reps, F run) {
  Result best;
  for (int r = 0; r < reps; ++r) {
    double ph[3] = {0, 0, 0};
    const double w0 = wall_now(), c0 = cpu_now();
    run(ph);
    const double w = wall_now() - w0, c = cpu_now() - c0;
    if (c < best.cpu || r == 0) {
      best.wall = w;
      best.cpu = c;
      std::copy(ph, ph + 3, best.phase);
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const Layer layers[] = {{"enc.0", 64, 64, 200},
                          {"enc.2", 256, 256, 96},
                          {"enc.3", 512, 512, 64},
                          {"enc.4", 1024, 1024, 36},
                          {"dec.3c1", 1024, 512, 64}};
  auto named = [&](const Layer& l) {  // the layers given after reps (none: all)
    return argc <= 2 || std::any_of(argv + 2, argv + argc, [&](const char* a) { return l.name == std::string(a); });
  };
  char* end = nullptr;
  const long reps = argc > 1 ? std::strtol(argv[1], &end, 10) : 3;
  const long found = std::count_if(std::begin(layers), std::end(layers), named);
  const bool bad = argc > 1 && (*end != '\0' || reps < 1 || reps > 1000 || (argc > 2 && found != argc - 2));
  if (bad) {
    std::fprintf(stderr,
                 "usage: %s [reps] [layer...]\n  reps: runs per variant, best kept (1-1000, default 3)\n"
                 "  layers: enc.0 enc.2 enc.3 enc.4 dec.3c1 (default: all)\n",
                 argv[0]);
    return 2;
  }
  auto probe = [](double (*fn)(int64_t, float*)) {
    float sink = 0;
    double best = 0;
    for (int r = 0; r < 3; ++r) {
      const double c0 = cpu_now(), fl = fn(int64_t(20) << 20, &sink), c = cpu_now() - c0;
      best = std::max(best, fl / c * 1e-9);
    }
    return best;
  };
  // Each tier against its own peak: the FMA throughput of its own vector width (an AVX2 probe for the
  // avx2 rows even where the CPU has AVX-512), and for the bf16 GEMMs vdpbf16ps, or AMX tdpbf16ps.
  std::vector<std::pair<k::Isa, double>> peaks32;
  double peak16 = 0.0;
  std::string name16 = "bf16";
  for (const std::string& n : k::available_isas()) {
    const k::Isa isa = k::isa_from_name(n);
#if defined(__aarch64__)
    if (isa == k::Isa::Neon) peaks32.push_back({isa, probe(k::fma_probe_neon)});
#else
    if (isa == k::Isa::Avx2) peaks32.push_back({isa, probe(k::fma_probe_avx2)});
    if (isa == k::Isa::Avx512) {
      peaks32.push_back({isa, probe(k::fma_probe_avx512)});
      if (const k::ProbeFn p16 = k::bf16_probe_for(isa)) {
        peak16 = probe(p16);
        name16 += std::string(" (") + k::bf16_kernels_for(isa)->gemm_isa + ")";
      }
    }
#endif
  }
  auto peak_of = [&](const k::Kernels& kn) {
    if (kn.bf16) return peak16;
    for (const auto& [isa, p] : peaks32)
      if (isa == kn.isa) return p;
    return 0.0;
  };
  std::string peak_line;
  for (const auto& [isa, p] : peaks32) peak_line += std::string(k::isa_name(isa)) + " " + std::to_string((int)p) + ", ";
  std::printf(
      "kbench: 1 thread, CPU time; measured peak GFLOP/s (each tier's rows against its own): fp32 FMA %s%s %s\n",
      peak_line.c_str(), name16.c_str(), peak16 > 0 ? std::to_string((int)peak16).c_str() : "n/a (no AVX512-BF16)");
  std::printf("%-10s %-42s %-8s %8s %8s %8s %8s %8s %7s %9s\n", "layer", "kernel", "schedule", "wall ms", "cpu ms",
              "in ms", "gemm ms", "out ms", "GFLOP/s", "% peak");
  const char* kc_env = std::getenv("KBENCH_KC_BLOCKS");  // experiments: input blocks per GEMM pass (0: all)
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (const Layer& L : layers) {
    if (!named(L)) continue;
    const int ih = L.out + 2;
    // activations 64-byte aligned, as in the executor's arena (core/memory.h)
    unet_rt::AlignedVector<float> x((size_t)(L.ic / 16) * ih * ih * 16), y((size_t)L.oc * L.out * L.out);
    std::vector<float> w((size_t)L.oc * L.ic * 9), b(L.oc);
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = nd(rng) * 0.05f;
    const TensorView tw{{L.oc, L.ic, 3, 3}, w.data()}, tb{{L.oc}, b.data()};
    std::vector<const k::Kernels*> tables;
    for (const std::string& n : k::available_isas()) {
      const k::Isa isa = k::isa_from_name(n);
      if (isa != k::Isa::Ref) tables.push_back(&k::kernels_for(isa));
      if (const k::Kernels* t = k::bf16_kernels_for(isa); t && isa != k::Isa::Ref) tables.push_back(t);
    }
    for (const k::Kernels* kn : tables)
      for (const char* sched : {"shared", "private", "taps"}) {
        // the executor's three schedules (executor/winograd.h): shared bands, private L2-sized bands
        // (3/4 of L2 of V + M, the executor's default), weights kept as taps (transformed per row and group)
        const bool taps = std::string(sched) == "taps";
        const int ocg = kn->ocg_for(L.oc);
        const unet_rt::PackedConv pc = unet_rt::pack_wino(tw, tb, {InDesc{L.ic, 16, L.ic / 16}}, ocg, *kn, taps);
        k::WinoArgs a;
        a.in[0] = k::View{x.data(), 16, L.ic / 16, (int64_t)ih * 16, (int64_t)ih * ih * 16};
        a.icb = L.ic / 16;
        a.ocb = pc.groups() * ocg / 16;
        a.u = pc.u();
        a.bias = pc.b.data();
        a.ocg = ocg;
        a.oh = a.ow = L.out;
        a.th = a.tw = (L.out + 3) / 4;
        a.y = k::OutView{y.data(), (int64_t)L.out * 16, (int64_t)L.out * L.out * 16};
        a.kc_blocks = kc_env ? std::atoi(kc_env) : unet_rt::wino_kc_blocks(ocg);  // as the executor
        const int64_t tiles = (int64_t)a.th * a.tw;
        unet_rt::WinoSchedule s;
        s.clock = cpu_now;
        s.band = unet_rt::wino_band(a.icb, a.ocb, tiles, (double)pc.u_bytes, kn->bf16);
        s.raw = pc.raw();
        if (std::string(sched) == "private")
          s.private_band =
              unet_rt::wino_private_band(a.icb, a.ocb, tiles, unet_rt::wino_private_default_bytes(), kn->bf16);
        unet_rt::AlignedVector<float> v(unet_rt::wino_v_bytes(a.icb, s.band, kn->bf16) / 4 + 16),
            m(k::wino_m_floats(a.ocb, s.band));
        const unet_rt::ParallelFor serial = [](int64_t n, const std::function<void(int64_t)>& fn) {
          for (int64_t i = 0; i < n; ++i) fn(i);
        };
        const Result r =
            best_of(reps, [&](double* ph) { unet_rt::run_winograd(*kn, a, s, v.data(), m.data(), serial, ph); });
        const double flops = 2.0 * k::kWinoT * tiles * L.ic * (double)(a.ocb * 16);
        const double peak = peak_of(*kn);
        std::printf("%-10s %-42s %-8s %8.1f %8.1f %8.1f %8.1f %8.1f %7.1f %8.0f%%\n", L.name,
                    kn->wino_gemm_name(ocg).c_str(), sched, r.wall * 1e3, r.cpu * 1e3, r.phase[0] * 1e3,
                    r.phase[1] * 1e3, r.phase[2] * 1e3, flops / r.phase[1] * 1e-9,
                    100 * flops / r.phase[1] * 1e-9 / peak);
      }
    // direct conv (fp32, every tier), for scale: GFLOP/s of its 9 * IC * OC multiplies per pixel
    for (const k::Kernels* knp : tables) {
      if (knp->bf16) continue;
      const k::Kernels& kn = *knp;
      const int ocg = kn.ocg_for(L.oc);
      const unet_rt::PackedConv pc = unet_rt::pack_conv(tw, tb, {InDesc{L.ic, 16, L.ic / 16}}, ocg);
      k::ConvArgs c;
      c.in[0] = k::View{x.data(), 16, L.ic / 16, (int64_t)ih * 16, (int64_t)ih * ih * 16};
      c.w = pc.w.data();
      c.bias = pc.b.data();
      c.ocg = ocg;
      c.ow = L.out;
      c.y = k::OutView{y.data(), (int64_t)L.out * 16, (int64_t)L.out * L.out * 16};
      const int ng = pc.groups();
      const Result r = best_of(reps, [&](double*) {
        for (int g = 0; g < ng; ++g)
          for (int oy = 0; oy < L.out; ++oy) kn.conv(c, g, oy);
      });
      const double flops = 2.0 * 9 * L.ic * (double)L.oc * L.out * L.out;
      std::printf("%-10s %-42s %-8s %8.1f %8.1f %8s %8s %8s %7.1f %8.0f%%\n", L.name, kn.direct_name(ocg).c_str(), "",
                  r.wall * 1e3, r.cpu * 1e3, "", "", "", flops / r.cpu * 1e-9,
                  100 * flops / r.cpu * 1e-9 / peak_of(kn));
    }
  }
  return 0;
}
