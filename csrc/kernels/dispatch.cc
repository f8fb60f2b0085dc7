// Run-time ISA choice: one if/else chain over CPU features, ending in the scalar reference.
#include <stdexcept>

#include "kernels/kernels.h"

namespace unet_rt::kernels {

int64_t conv_group_weights(const ConvArgs& a) {
  int64_t n = 0;
  for (int i = 0; i < a.nin; ++i) n += (int64_t)a.in[i].nblk * a.in[i].cb;
  return n * a.kh * a.kw * a.ocg;
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::Ref:
      return true;
  }
  return false;
#else
  return isa == Isa::Ref;
#endif
}

Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Ref;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "ref";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "auto" || name.empty()) return best_isa();
  if (name == "ref") return Isa::Ref;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  throw std::invalid_argument("unknown ISA '" + name + "' (expected ref, avx2, avx512 or auto)");
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (Isa i : {Isa::Ref, Isa::Avx2, Isa::Avx512})
    if (isa_supported(i)) out.push_back(isa_name(i));
  return out;
}

const Kernels& kernels_for(Isa isa) {
  static const Kernels ref{Isa::Ref, "ref", conv3x3_ref, upconv2x2_ref, pool2x2_ref, head1x1_ref, 16};
  static const Kernels avx2{Isa::Avx2, "avx2", conv3x3_avx2, upconv2x2_avx2, pool2x2_avx2, head1x1_avx2, 16};
  static const Kernels avx512{Isa::Avx512, "avx512", conv3x3_avx512, upconv2x2_avx512, pool2x2_avx512,
                              head1x1_avx512, 32};
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("this CPU does not support ") + isa_name(isa));
  switch (isa) {
    case Isa::Avx512: return avx512;
    case Isa::Avx2: return avx2;
    default: return ref;
  }
}

}  // namespace unet_rt::kernels
