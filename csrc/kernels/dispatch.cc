// Run-time ISA choice: one if/else chain over CPU features, ending in the scalar reference. On x86-64
// the chain reads CPUID (avx512, avx2); on AArch64 Advanced SIMD is part of the base architecture
// (ARMv8-A), so the neon tier is always there. Each architecture's tables reference only the kernels
// CMake compiles for it (x86 ISA files on x86, neon.cc on AArch64).
#include <cstdlib>
#include <stdexcept>

#include "core/platform.h"
#include "kernels/kernels.h"

namespace unet_rt::kernels {

int64_t conv_group_weights(const ConvArgs& a) {
  int64_t n = 0;
  for (int i = 0; i < a.nin; ++i) n += (int64_t)a.in[i].nblk * a.in[i].cb;
  return n * a.kh * a.kw * a.ocg;
}

AlignedVector<float> wino_pack_raw(const float* w, int oc, const std::vector<int>& in_channels, int ocg) {
  int ictot = 0, icp = 0;
  for (int c : in_channels) {
    ictot += c;
    icp += (c + 15) / 16 * 16;
  }
  const int ng = ((oc + 15) / 16 * 16 + ocg - 1) / ocg;
  AlignedVector<float> r((size_t)ng * icp * 9 * ocg, 0.0f);
  for (int o = 0; o < oc; ++o) {
    const int g = o / ocg, oo = o % ocg;
    int src = 0, dst = 0;
    for (int c : in_channels) {
      for (int ci = 0; ci < c; ++ci)
        for (int t = 0; t < 9; ++t)
          r[(((size_t)g * icp + dst + ci) * 9 + t) * ocg + oo] = w[((size_t)o * ictot + src + ci) * 9 + t];
      src += c;
      dst += (c + 15) / 16 * 16;
    }
  }
  return r;
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
  // CPU features: CPUID, and XGETBV for the OS's support of the AVX/AVX-512 state (platform.h)
  const platform::CpuFeatures& f = platform::cpu_features();
  switch (isa) {
    case Isa::Avx512: return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma;
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::Ref: return true;
    default: return false;
  }
#elif defined(__aarch64__)
  return isa == Isa::Ref || isa == Isa::Neon;
#else
  return isa == Isa::Ref;
#endif
}

Isa best_isa() {
  if (isa_supported(Isa::Neon)) return Isa::Neon;
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Ref;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Neon: return "neon";
    default: return "ref";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "auto" || name.empty()) return best_isa();
  if (name == "ref") return Isa::Ref;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  if (name == "neon") return Isa::Neon;
  throw std::invalid_argument("unknown ISA '" + name + "' (expected ref, avx2, avx512, neon or auto)");
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (Isa i : {Isa::Ref, Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (isa_supported(i)) out.push_back(isa_name(i));
  return out;
}

// Tables: conv, up, pool, head, wino in/gemm/out/weights, preferred ocg, bf16, GEMM tile (ocg 16, 32), GEMM ISA.
static const Kernels kRef{Isa::Ref,
                          "ref",
                          conv3x3_ref,
                          upconv2x2_ref,
                          pool2x2_ref,
                          head1x1_ref,
                          conv3x3_wino_in_f32_ref,
                          conv3x3_wino_gemm_f32_ref,
                          conv3x3_wino_out_f32_ref,
                          conv3x3_wino_wt_f32_ref,
                          16,
                          false,
                          2,
                          2,
                          "ref"};
static const Kernels kRefBf16{Isa::Ref,
                              "ref_bf16",
                              conv3x3_ref,
                              upconv2x2_bf16_ref,
                              pool2x2_ref,
                              head1x1_ref,
                              conv3x3_wino_in_bf16_ref,
                              conv3x3_wino_gemm_bf16_ref,
                              conv3x3_wino_out_f32_ref,
                              conv3x3_wino_wt_bf16_ref,
                              16,
                              true,
                              1,
                              1,
                              "ref"};
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
static const Kernels kAvx2{Isa::Avx2,
                           "avx2",
                           conv3x3_avx2,
                           upconv2x2_avx2,
                           pool2x2_avx2,
                           head1x1_avx2,
                           conv3x3_wino_in_f32_avx2,
                           conv3x3_wino_gemm_f32_avx2,
                           conv3x3_wino_out_f32_avx2,
                           conv3x3_wino_wt_f32_avx2,
                           16,
                           false,
                           6,
                           3,
                           "avx2"};
static const Kernels kAvx512{Isa::Avx512,
                             "avx512",
                             conv3x3_avx512,
                             upconv2x2_avx512,
                             pool2x2_avx512,
                             head1x1_avx512,
                             conv3x3_wino_in_f32_avx512,
                             conv3x3_wino_gemm_f32_avx512,
                             conv3x3_wino_out_f32_avx512,
                             conv3x3_wino_wt_f32_avx512,
                             32,
                             false,
                             24,
                             12,
                             "avx512"};
// The AVX512-BF16 tier: the avx512 table with the Winograd input transform, the GEMMs and the up-convs in bf16.
static const Kernels kAvx512Bf16{Isa::Avx512,
                                 "avx512_bf16",
                                 conv3x3_avx512,
                                 upconv2x2_bf16_avx512bf16,
                                 pool2x2_avx512,
                                 head1x1_avx512,
                                 conv3x3_wino_in_bf16_avx512bf16,
                                 conv3x3_wino_gemm_bf16_avx512bf16,
                                 conv3x3_wino_out_f32_avx512,
                                 conv3x3_wino_wt_bf16_avx512bf16,
                                 32,
                                 true,
                                 24,
                                 12,
                                 "avx512bf16"};

// The AMX tier: the AVX512-BF16 table with the GEMM on AMX tiles (conv3x3/amxbf16.cc).
static const Kernels kAmxBf16{Isa::Avx512,
                              "amx_bf16",
                              conv3x3_avx512,
                              upconv2x2_bf16_avx512bf16,
                              pool2x2_avx512,
                              head1x1_avx512,
                              conv3x3_wino_in_bf16_avx512bf16,
                              conv3x3_wino_gemm_bf16_amx,
                              conv3x3_wino_out_f32_avx512,
                              conv3x3_wino_wt_bf16_avx512bf16,
                              32,
                              true,
                              16,
                              16,
                              "amx"};
#endif
#if defined(__aarch64__)
// NEON (csrc/kernels/conv3x3/neon.cc: register tiles 5 x 16 and 3 x 32 for 32 128-bit registers; ocg 16
// preferred). fp32 only: bf16 falls back to fp32 (bf16_kernels_for).
static const Kernels kNeon{Isa::Neon,
                           "neon",
                           conv3x3_neon,
                           upconv2x2_neon,
                           pool2x2_neon,
                           head1x1_neon,
                           conv3x3_wino_in_f32_neon,
                           conv3x3_wino_gemm_f32_neon,
                           conv3x3_wino_out_f32_neon,
                           conv3x3_wino_wt_f32_neon,
                           16,
                           false,
                           5,
                           3,
                           "neon"};
#endif

const Kernels& kernels_for(Isa isa) {
  if (!isa_supported(isa)) throw std::invalid_argument(std::string("this CPU does not support ") + isa_name(isa));
  switch (isa) {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    case Isa::Avx512: return kAvx512;
    case Isa::Avx2: return kAvx2;
#endif
#if defined(__aarch64__)
    case Isa::Neon: return kNeon;
#endif
    default: return kRef;
  }
}

[[maybe_unused]] static bool cpu_has_avx512bf16() { return platform::cpu_features().avx512bf16; }

// AMX: the CPU has it, the OS grants tile data, and one GEMM agrees with vdpbf16ps (once per process).
// amx_note() says why not.
static std::string& amx_reason() {
  static std::string r;
  return r;
}
static bool amx_usable() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool ok = [] {
    if (!cpu_has_avx512bf16()) {  // amxbf16.cc is compiled with AVX-512 flags: nothing in it may run here
      amx_reason() = "no AVX512-BF16 on this CPU";
      return false;
    }
    return amx_bf16_enable(&amx_reason()) && amx_bf16_self_check(conv3x3_wino_gemm_bf16_avx512bf16, &amx_reason());
  }();
  return ok;
#else
  amx_reason() = "not x86-64";
  return false;
#endif
}
const std::string& amx_note() {
  amx_usable();
  return amx_reason();
}

const Kernels* bf16_kernels_for(Isa isa, std::string* why) {
  kernels_for(isa);  // throws if the CPU lacks the tier
  // The if/else chain of the bf16 tiers.
  if (isa == Isa::Ref) return &kRefBf16;
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
  if (isa == Isa::Avx512 && cpu_has_avx512bf16()) {
    const char* env = std::getenv("UNET_RT_AMX");
    if (!(env && std::string(env) == "0") && amx_usable()) return &kAmxBf16;
    return &kAvx512Bf16;
  }
#endif
  if (why)
    *why = isa == Isa::Avx512 ? "bf16 needs AVX512-BF16 (vdpbf16ps), which this CPU lacks: running fp32"
           : isa == Isa::Neon ? "bf16 kernels exist for x86-64 (AVX512-BF16) only; the kernels are neon: running fp32"
                              : std::string("bf16 needs the avx512 tier with AVX512-BF16; the kernels are ") +
                                    isa_name(isa) + ": running fp32";
  return nullptr;
}

}  // namespace unet_rt::kernels
