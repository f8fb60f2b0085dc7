// Tile geometry of the U-Net family (docs/architecture.md, "Tiling"); the same arithmetic as src/unet_rt/format/geometry.py
// (tests/test_geometry.py checks that the two agree).
#pragma once
#include <stdexcept>
#include <string>

namespace unet_rt {

// Output size along one axis for an input of `size` pixels; -1 if `size` is not a valid input.
inline int output_size_or_neg(int size, int depth, bool same_padding) {
  if (size <= 0 || depth < 1) return -1;
  if (same_padding) return (size % (1 << depth)) ? -1 : size;
  int s = size;
  for (int l = 0; l < depth; ++l) {
    s -= 4;  // two unpadded 3x3 convs
    if (s <= 0 || (s & 1)) return -1;
    s /= 2;  // 2x2 max-pool
  }
  s -= 4;  // bottleneck convs
  if (s <= 0) return -1;
  for (int l = 0; l < depth; ++l) {
    s = 2 * s - 4;  // 2x2 up-conv, two unpadded 3x3 convs
    if (s <= 0) return -1;
  }
  return s;
}

inline int output_size(int size, int depth, bool same_padding) {
  int o = output_size_or_neg(size, depth, same_padding);
  if (o < 0)
    throw std::invalid_argument("input size " + std::to_string(size) + " is not valid for a depth-" +
                                std::to_string(depth) + (same_padding ? " same" : " valid") + "-padded U-Net");
  return o;
}

inline int min_input_size(int depth, bool same_padding) {
  for (int s = 1;; ++s)
    if (output_size_or_neg(s, depth, same_padding) > 0) return s;
}

// Pixels lost on each side (92 for depth 4, valid; 0 for same padding).
inline int halo(int depth, bool same_padding) {
  if (same_padding) return 0;
  int i = min_input_size(depth, same_padding);
  return (i - output_size(i, depth, same_padding)) / 2;
}

// Valid inputs are spaced by 2^depth: the smallest valid input >= size.
inline int next_valid_input(int size, int depth, bool same_padding) {
  int s = size < 1 ? 1 : size;
  while (output_size_or_neg(s, depth, same_padding) < 0) ++s;
  return s;
}

}  // namespace unet_rt
