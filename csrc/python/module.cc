// The unet_rt._core Python module. Bindings only: the logic lives in csrc/src and csrc/kernels.
#include <pybind11/pybind11.h>

#include "src/geometry.h"

namespace py = pybind11;

void unet_rt_bind_kernels(py::module_& m);  // csrc/python/kernels.cc

PYBIND11_MODULE(_core, m) {
  m.doc() = "unet-rt native core";
  m.def("output_size", [](int size, int depth, bool same_padding) {
    return unet_rt::output_size(size, depth, same_padding);
  }, py::arg("size"), py::arg("depth") = 4, py::arg("same_padding") = false,
     "Output size of a U-Net tile (ValueError if the input size is not valid).");
  unet_rt_bind_kernels(m);
}
