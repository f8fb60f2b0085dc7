// x86 CPU features and CPUID cache parameters (platform.h): the same CPUID/XGETBV reading on every
// OS, with the GCC/Clang spelling (<cpuid.h>, inline xgetbv) and the MSVC one (<intrin.h>
// __cpuidex/_xgetbv; unverified: no MSVC here). Compiled without ISA flags: runs on any x86-64.
#include "core/platform.h"

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#define UNET_RT_X86 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace unet_rt::platform {

#if defined(UNET_RT_X86)
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

unsigned max_leaf(unsigned base) {
  Regs r;
#if defined(_MSC_VER) && !defined(__clang__)
  int v[4];
  __cpuid(v, int(base));
  r.a = unsigned(v[0]);
#else
  r.a = __get_cpuid_max(base, nullptr);
#endif
  return r.a;
}

// CPUID(leaf, sub); zeros for a leaf beyond the CPU's maximum of its range.
Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  if (leaf > max_leaf(leaf & 0x80000000u)) return r;
#if defined(_MSC_VER) && !defined(__clang__)
  int v[4];
  __cpuidex(v, int(leaf), int(sub));
  r.a = unsigned(v[0]), r.b = unsigned(v[1]), r.c = unsigned(v[2]), r.d = unsigned(v[3]);
#else
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
#endif
  return r;
}

// XCR0: the register states the OS saves on a context switch. Only valid with CPUID.1:ECX.OSXSAVE.
uint64_t xcr0() {
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  unsigned lo = 0, hi = 0;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));  // xgetbv, no -mxsave needed
  return (uint64_t(hi) << 32) | lo;
#endif
}

bool bit(unsigned r, int i) { return (r >> i) & 1u; }

CpuFeatures read_features() {
  CpuFeatures f;
  const Regs l1 = cpuid(1, 0);
  if (!bit(l1.c, 27) || !bit(l1.c, 28)) return f;  // no OSXSAVE or no AVX: nothing above SSE
  const uint64_t x = xcr0();
  const bool os_avx = (x & 0x6) == 0x6;                 // XMM + YMM state
  const bool os_avx512 = os_avx && (x & 0xe0) == 0xe0;  // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (x & 0x60000) == 0x60000;         // XTILECFG + XTILEDATA
  if (!os_avx) return f;
  const Regs l7 = cpuid(7, 0), l71 = cpuid(7, 1);
  f.fma = bit(l1.c, 12);
  f.f16c = bit(l1.c, 29);
  f.avx2 = bit(l7.b, 5);
  if (os_avx512) {
    f.avx512f = bit(l7.b, 16);
    f.avx512dq = bit(l7.b, 17);
    f.avx512bw = bit(l7.b, 30);
    f.avx512vl = bit(l7.b, 31);
    f.avx512bf16 = f.avx512f && bit(l71.a, 5);
  }
  if (os_amx) {
    f.amx_bf16 = bit(l7.d, 22);
    f.amx_tile = bit(l7.d, 24);
  }
  return f;
}

bool is_amd() {
  const Regs v = cpuid(0, 0);  // vendor string in EBX, EDX, ECX: "AuthenticAMD" / "HygonGenuine"
  return (v.b == 0x68747541u && v.d == 0x69746e65u && v.c == 0x444d4163u) ||
         (v.b == 0x6f677948u && v.d == 0x6e65476eu && v.c == 0x656e6975u);
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = read_features();
  return f;
}

CacheSizes cache_sizes_from_cpuid() {
  // Deterministic cache parameters: leaf 4 on Intel, 0x8000001D on AMD (same register layout).
  CacheSizes s;
  unsigned leaf = 4;
  if (is_amd()) {
    if (!bit(cpuid(0x80000001u, 0).c, 22)) return s;  // no TopologyExtensions: no leaf 0x8000001D
    leaf = 0x8000001Du;
  }
  for (unsigned i = 0; i < 16; ++i) {
    const Regs r = cpuid(leaf, i);
    const unsigned type = r.a & 0x1f, level = (r.a >> 5) & 0x7;
    if (type == 0) break;                  // no more caches
    if (type != 1 && type != 3) continue;  // 1 data, 2 instruction, 3 unified
    const int64_t ways = ((r.b >> 22) & 0x3ff) + 1, parts = ((r.b >> 12) & 0x3ff) + 1, line = (r.b & 0xfff) + 1,
                  sets = int64_t(r.c) + 1;
    const int64_t bytes = ways * parts * line * sets;
    if (level == 1 && !s.l1d) s.l1d = bytes;
    if (level == 2 && !s.l2) s.l2 = bytes;
    if (level == 3 && !s.l3) s.l3 = bytes;
  }
  if (s.l1d || s.l2 || s.l3) s.source = "cpuid";
  return s;
}

#else  // not x86: no x86 features; the aarch64 tier needs no run-time check (Advanced SIMD is mandatory)

const CpuFeatures& cpu_features() {
  static const CpuFeatures f;
  return f;
}

CacheSizes cache_sizes_from_cpuid() { return CacheSizes(); }

#endif

const CacheSizes& cache_sizes() {
  static const CacheSizes s = [] {
    CacheSizes c = cache_sizes_from_os();
    if (c.source.empty()) c = cache_sizes_from_cpuid();
    if (c.source.empty()) c.source = "unknown";
    return c;
  }();
  return s;
}

}  // namespace unet_rt::platform
