// Peak fp32 FMA throughput of this machine on `threads` threads, with the widest ISA the CPU has
// (the probe loops live in peak/{avx2,avx512,avx512bf16,amxbf16,neon}.cc). Used to report the kernels' efficiency.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "kernels/kernels.h"

namespace unet_rt::kernels {

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
double fma_probe_avx2(int64_t iters, float* sink);
double fma_probe_avx512(int64_t iters, float* sink);
double bf16_probe_avx512bf16(int64_t iters, float* sink);
double bf16_probe_amx(int64_t iters, float* sink);
#endif
#if defined(__aarch64__)
double fma_probe_neon(int64_t iters, float* sink);
#endif

static double fma_probe_ref(int64_t iters, float* sink) {
  float acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = 1.0f + j;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = acc[j] * 0.999999f + 1e-7f;
  float s = 0;
  for (float v : acc) s += v;
  *sink = s;
  return 2.0 * 12 * (double)iters;
}

ProbeFn bf16_probe_for(Isa isa) {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
  const Kernels* k16 = isa == Isa::Ref ? nullptr : bf16_kernels_for(isa);
  if (!k16) return nullptr;
  return k16->wino_gemm == conv3x3_wino_gemm_bf16_amx ? bf16_probe_amx : bf16_probe_avx512bf16;
#else
  (void)isa;
  return nullptr;  // no bf16 tier outside x86-64
#endif
}

double peak_gflops(int threads, double seconds, bool bf16) {
  if (threads <= 0) threads = (int)std::max(1u, std::thread::hardware_concurrency());
  const Isa isa = best_isa();
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
  auto probe = isa == Isa::Avx512 ? fma_probe_avx512 : isa == Isa::Avx2 ? fma_probe_avx2 : fma_probe_ref;
  if (bf16) {
    probe = bf16_probe_for(isa);
    if (!probe) return 0.0;
  }
#elif defined(__aarch64__)
  auto probe = isa == Isa::Neon ? fma_probe_neon : fma_probe_ref;
  if (bf16) return 0.0;  // no bf16 tier on AArch64
#else
  auto probe = fma_probe_ref;
  if (bf16) return 0.0;
#endif
  // Calibrate the iteration count on one thread, then run `threads` copies at once.
  float sink = 0;
  int64_t iters = 1 << 16;
  using clk = std::chrono::steady_clock;
  for (;;) {
    auto t0 = clk::now();
    probe(iters, &sink);
    double dt = std::chrono::duration<double>(clk::now() - t0).count();
    if (dt > seconds / 4 || iters > (int64_t(1) << 40)) {
      iters = (int64_t)(iters * (seconds / (dt > 0 ? dt : 1e-9)));
      break;
    }
    iters *= 4;
  }
  std::vector<std::thread> ts;
  std::vector<float> sinks(threads);
  std::vector<double> flops(threads);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      flops[t] = probe(iters, &sinks[t]);
    });
  while (ready.load() < threads) std::this_thread::yield();
  auto t0 = clk::now();
  go.store(true);
  for (auto& t : ts) t.join();
  double dt = std::chrono::duration<double>(clk::now() - t0).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / dt * 1e-9;
}

}  // namespace unet_rt::kernels
