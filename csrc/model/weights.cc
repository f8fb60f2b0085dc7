// Weight names and shapes of the U-Net family (network.h): the one list the model reader and the
// executor check against. Kept apart from the executor so that the model reader (and its fuzz
// target) needs no kernels.
#include <stdexcept>

#include "executor/network.h"

namespace unet_rt {

std::map<std::string, std::vector<int64_t>> expected_weight_shapes(const Arch& a) {
  std::map<std::string, std::vector<int64_t>> s;
  int64_t prev = a.in_channels;
  for (int l = 0; l <= a.depth; ++l) {
    int64_t c = int64_t(a.base) << l;
    std::string p = "enc." + std::to_string(l) + ".";
    s[p + "conv1.weight"] = {c, prev, 3, 3};
    s[p + "conv1.bias"] = {c};
    s[p + "conv2.weight"] = {c, c, 3, 3};
    s[p + "conv2.bias"] = {c};
    prev = c;
  }
  for (int l = 0; l < a.depth; ++l) {
    int64_t c = int64_t(a.base) << l;
    std::string p = "dec." + std::to_string(l) + ".";
    s[p + "up.weight"] = {2 * c, c, 2, 2};
    s[p + "up.bias"] = {c};
    s[p + "conv1.weight"] = {c, 2 * c, 3, 3};
    s[p + "conv1.bias"] = {c};
    s[p + "conv2.weight"] = {c, c, 3, 3};
    s[p + "conv2.bias"] = {c};
  }
  s["head.weight"] = {a.classes, a.base, 1, 1};
  s["head.bias"] = {a.classes};
  return s;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void check_weights(const Arch& a, const Weights& ws) {
  const auto want = expected_weight_shapes(a);
  for (const auto& [name, shape] : want) {
    auto it = ws.find(name);
    if (it == ws.end())
      throw std::invalid_argument("weights do not match the architecture: missing tensor '" + name + "'");
    if (it->second.shape != shape)
      throw std::invalid_argument("tensor " + name + " has shape " + shape_str(it->second.shape) + ", expected " +
                                  shape_str(shape));
    if (!it->second.data) throw std::invalid_argument("weight tensor '" + name + "' has no data");
  }
  for (const auto& kv : ws)
    if (!want.count(kv.first))
      throw std::invalid_argument("weights do not match the architecture: unexpected tensor '" + kv.first + "'");
}

}  // namespace unet_rt
