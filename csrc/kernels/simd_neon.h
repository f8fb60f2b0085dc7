// AArch64 Advanced SIMD (NEON) vector traits for simd_impl.h (include only from */neon.cc).
// Advanced SIMD is mandatory on ARMv8-A, so these files need no ISA flags and no run-time check.
//
// 4 floats per register and 32 registers (v0-v31). fma_lane<K> multiplies by lane K of a register
// (FMLA by element, vfmaq_laneq_f32): simd_impl.h's register tile then loads 4 input channels of a
// pixel with one 128-bit load and uses each lane in turn, instead of one broadcast load per channel.
#pragma once
#include <arm_neon.h>

namespace unet_rt::kernels::simd {
struct Neon {
  using reg = float32x4_t;
  static constexpr int L = 4;
  static constexpr bool lane_fma = true;  // simd_impl.h: the tile uses fma_lane for 16-channel blocks
  static inline reg load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, reg v) { vst1q_f32(p, v); }
  static inline reg bcast(const float* p) { return vld1q_dup_f32(p); }
  static inline reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }   // a*b + c, one rounding
  static inline reg fnma(reg a, reg b, reg c) { return vfmsq_f32(c, a, b); }  // c - a*b, one rounding
  template <int K>
  static inline reg fma_lane(reg acc, reg w, reg x) {
    return vfmaq_laneq_f32(acc, w, x, K);
  }  // acc + w*x[K]
  static inline reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  static inline reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static inline reg sub(reg a, reg b) { return vsubq_f32(a, b); }
  static inline reg set1(float v) { return vdupq_n_f32(v); }
  static inline reg zero() { return vdupq_n_f32(0.0f); }
  static inline float hsum(reg v) { return vaddvq_f32(v); }
};
}  // namespace unet_rt::kernels::simd
