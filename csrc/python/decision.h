// Decision helpers shared by the Python bindings (module.cc, decision.cc).
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "postprocess/decision.h"

namespace unet_rt {

// A decision from its JSON text (validated as the model file's "decision" metadata).
Decision decision_from_json(const std::string& text, int classes);
// The canonical dict of a decision: foreground_class, threshold (None: argmax), instances.
pybind11::dict decision_dict(const Decision& d);

}  // namespace unet_rt

void unet_rt_bind_decision(pybind11::module_& m);  // csrc/python/decision.cc
