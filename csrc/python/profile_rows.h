// The executor's profile rows (Network::ProfileRow) as Python dicts, for both modules' bindings.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

#include "executor/network.h"

namespace unet_rt {

inline pybind11::list profile_rows(const std::vector<Network::ProfileRow>& rows) {
  pybind11::list out;
  for (const auto& r : rows) {
    pybind11::dict d;
    d["layer"] = r.layer;
    d["phase"] = r.phase;
    d["seconds"] = r.seconds;
    d["flops"] = r.flops;
    d["bytes"] = r.bytes;
    out.append(d);
  }
  return out;
}

}  // namespace unet_rt
