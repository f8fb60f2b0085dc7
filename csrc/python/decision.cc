// Bindings of the decision and instance code (csrc/postprocess/decision.h) on probability maps: the same
// functions the native Engine applies, for the other backends, test-time augmentation and calibration.
#include "python/decision.h"

#include <pybind11/numpy.h>

#include <cmath>
#include <stdexcept>

#include "core/json.h"

namespace py = pybind11;

namespace unet_rt {

Decision decision_from_json(const std::string& text, int classes) {
  json::Value v;
  try {
    v = json::parse(text);
  } catch (const json::JsonError& e) {
    throw std::invalid_argument(std::string("bad decision JSON: ") + e.what());
  }
  return parse_decision(v, classes);
}

py::dict decision_dict(const Decision& d) {
  auto opt = [](float x) { return std::isnan(x) ? py::object(py::none()) : py::object(py::float_(x)); };
  py::dict inst;
  inst["mask_threshold"] = opt(d.instances.mask_threshold);
  inst["marker_threshold"] = opt(d.instances.marker_threshold);
  inst["min_marker_size"] = d.instances.min_marker_size;
  inst["min_size"] = d.instances.min_size;
  py::dict out;
  out["foreground_class"] = d.foreground_class;
  out["threshold"] = opt(d.threshold);
  out["instances"] = inst;
  return out;
}

}  // namespace unet_rt

namespace {

using namespace unet_rt;
using Probs = py::array_t<float, py::array::c_style | py::array::forcecast>;

void check_probs(const Probs& p) {
  if (p.ndim() != 3 || p.shape(0) < 1 || p.shape(1) < 1 || p.shape(2) < 1)
    throw std::invalid_argument("probabilities must be a non-empty array [classes, height, width]");
  if (p.shape(0) > 65536 || p.shape(1) > (1 << 30) || p.shape(2) > (1 << 30))
    throw std::invalid_argument("probability map too large");
}

Decision decision_or_default(const py::object& decision, int K) {
  return decision.is_none() ? default_decision(K) : decision_from_json(decision.cast<std::string>(), K);
}

}  // namespace

void unet_rt_bind_decision(py::module_& m) {
  m.def(
      "decision", [](const std::string& text, int classes) { return decision_dict(decision_from_json(text, classes)); },
      py::arg("decision"), py::arg("classes"),
      "Validate a decision (JSON text, as the model file's 'decision' metadata) for a model with this many "
      "classes; returns its canonical dict.");
  m.def(
      "decide_labels",
      [](const Probs& probs, const py::object& decision) -> py::array {
        check_probs(probs);
        const int K = int(probs.shape(0)), H = int(probs.shape(1)), W = int(probs.shape(2));
        Decision d = decision_or_default(decision, K);
        const bool u16 = K > 256;
        py::array out = u16 ? py::array(py::array_t<uint16_t>({H, W})) : py::array(py::array_t<uint8_t>({H, W}));
        void* lab = out.mutable_data();
        const float* p = probs.data();
        {
          py::gil_scoped_release release;
          decide_labels(p, true, K, H, W, d, lab, u16);
        }
        return out;
      },
      py::arg("probabilities"), py::arg("decision") = py::none(),
      "Labels [H, W] from probabilities [K, H, W] by a decision (JSON text; None: argmax), exactly as "
      "the native Engine.segment applies it.");
  // int32 [H, W] from probabilities [K, H, W] by one of the decision's per-pixel steps, GIL released
  using Int32Step = int64_t (*)(const float*, int, int, int, const Decision&, int32_t*);  // returns the count
  auto int32_step = [](Int32Step step) {
    return [step](const Probs& probs, const py::object& decision) {
      check_probs(probs);
      const int K = int(probs.shape(0)), H = int(probs.shape(1)), W = int(probs.shape(2));
      Decision d = decision_or_default(decision, K);
      py::array_t<int32_t> out({H, W});
      int32_t* lab = out.mutable_data();
      const float* p = probs.data();
      {
        py::gil_scoped_release release;
        step(p, K, H, W, d, lab);
      }
      return out;
    };
  };
  m.def("instances", int32_step(&instances_from_probabilities), py::arg("probabilities"),
        py::arg("decision") = py::none(),
        "Instance labels [H, W] int32 (0 = background) from probabilities [K, H, W] by the marker-controlled "
        "watershed of the decision (JSON text; None: connected components of the argmax foreground).");
  m.def("instance_markers", int32_step(&instance_markers), py::arg("probabilities"), py::arg("decision") = py::none(),
        "The markers instances() floods from: int32 [H, W], 1..m in raster order of their first pixel, 0 "
        "elsewhere (the decision's mask and marker thresholds, markers below min_marker_size dropped).");
}
