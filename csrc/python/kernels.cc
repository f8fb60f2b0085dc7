// Test-only access to the executor and each kernel family (module unet_rt._core._kernels).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void unet_rt_bind_kernels(py::module_& m) {
  py::module_ k = m.def_submodule("_kernels", "test access to the CPU executor and kernels");
  (void)k;
}
