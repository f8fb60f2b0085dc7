// Test-only access to the executor and each kernel family: the extension module unet_rt._kernels,
// built for the development venv by `make install` (CMake option UNET_RT_TEST_BINDINGS) and never
// part of the wheel (tests/test_wheel_contents.py).
// Kernels take and return plain planar numpy arrays [C, H, W]; the bindings convert to and from
// the blocked layout (kernels.h) so the tests compare ISAs on exactly the kernels' work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/platform.h"
#include "kernels/kernels.h"
#include "executor/network.h"
#include "core/memory.h"
#include "executor/pack.h"
#include "executor/winograd.h"
#include "python/profile_rows.h"

namespace py = pybind11;
namespace k = unet_rt::kernels;

namespace unet_rt {
extern thread_local std::string g_network_isa_override;
extern thread_local int g_network_winograd_override;
}  // namespace unet_rt

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::vector<int64_t> shape_of(const py::array& a) {
  std::vector<int64_t> s;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(a.shape(i));
  return s;
}

void need_ndim(const F32& a, int nd, const char* what) {
  if (a.ndim() != nd)
    throw std::invalid_argument(std::string(what) + " must have " + std::to_string(nd) + " dimensions");
}

// A blocked tensor [ceil(C/cb), H, W, cb] holding a planar [C, H, W] array (zeros in padding).
struct Blocked {
  std::vector<float> d;
  int c, h, w, cb, nblk;
  Blocked(int c_, int h_, int w_, int cb_) : c(c_), h(h_), w(w_), cb(cb_), nblk((c_ + cb_ - 1) / cb_) {
    d.assign((size_t)nblk * h * w * cb, 0.0f);
  }
  static Blocked from(const F32& x, int cb) {
    Blocked b((int)x.shape(0), (int)x.shape(1), (int)x.shape(2), cb);
    const float* s = x.data();
    for (int ch = 0; ch < b.c; ++ch)
      for (int y = 0; y < b.h; ++y)
        for (int xx = 0; xx < b.w; ++xx)
          b.d[(((size_t)(ch / cb) * b.h + y) * b.w + xx) * cb + ch % cb] = s[((size_t)ch * b.h + y) * b.w + xx];
    return b;
  }
  k::View view(int dy = 0, int dx = 0) const {
    k::View v;
    v.cb = cb;
    v.nblk = nblk;
    v.rs = (int64_t)w * cb;
    v.bs = (int64_t)h * v.rs;
    v.p = d.data() + dy * v.rs + dx * cb;
    return v;
  }
  k::OutView out() { return k::OutView{d.data(), (int64_t)w * cb, (int64_t)h * w * cb}; }
  F32 planar() const {
    F32 r({c, h, w});
    float* o = r.mutable_data();
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int xx = 0; xx < w; ++xx)
          o[((size_t)ch * h + y) * w + xx] = d[(((size_t)(ch / cb) * h + y) * w + xx) * cb + ch % cb];
    return r;
  }
};

const k::Kernels& kern(const std::string& isa) { return k::kernels_for(k::isa_from_name(isa)); }

unet_rt::TensorView tensor(const F32& a) { return unet_rt::TensorView{shape_of(a), a.data()}; }

// conv over inputs [(x_i [C_i, H_i, W_i], dy_i, dx_i)], window origin (dy_i, dx_i) in each input,
// concatenated along channels; w [OC, sum C_i, kh, kw]; output [OC, oh, ow].
F32 conv3x3(py::list inputs, F32 w, F32 b, int oh, int ow, bool relu, const std::string& isa, int ocg,
            std::vector<int> cbs) {
  need_ndim(w, 4, "w");
  const int oc = (int)w.shape(0), ictot = (int)w.shape(1), kh = (int)w.shape(2), kw = (int)w.shape(3);
  if (inputs.size() < 1 || inputs.size() > 2) throw std::invalid_argument("1 or 2 inputs");
  if (ocg != 16 && ocg != 32) throw std::invalid_argument("ocg must be 16 or 32");
  if (b.ndim() != 1 || b.shape(0) != oc) throw std::invalid_argument("b must be [OC]");
  std::vector<Blocked> xs;
  std::vector<std::pair<int, int>> offs;
  int icsum = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto t = inputs[i].cast<py::tuple>();
    F32 x = t[0].cast<F32>();
    need_ndim(x, 3, "x");
    int cb = i < cbs.size() ? cbs[i] : 16;
    int dy = t[1].cast<int>(), dx = t[2].cast<int>();
    if (dy < 0 || dx < 0 || dy + oh + kh - 1 > x.shape(1) || dx + ow + kw - 1 > x.shape(2))
      throw std::invalid_argument("input too small for the output size and offsets");
    xs.push_back(Blocked::from(x, cb));
    offs.push_back({dy, dx});
    icsum += (int)x.shape(0);
  }
  if (icsum != ictot) throw std::invalid_argument("w's input channels do not match the inputs");
  // the executor's own packing (executor/pack.cc)
  std::vector<unet_rt::InDesc> ins;
  for (auto& x : xs) ins.push_back(unet_rt::InDesc{x.c, x.cb, x.nblk});
  const unet_rt::PackedConv pc = unet_rt::pack_conv(tensor(w), tensor(b), ins, ocg);
  const int ng = pc.groups();
  Blocked y(ng * ocg, oh, ow, 16);
  k::ConvArgs a;
  a.nin = (int)xs.size();
  for (int i = 0; i < a.nin; ++i) a.in[i] = xs[i].view(offs[i].first, offs[i].second);
  a.kh = kh;
  a.kw = kw;
  a.w = pc.w.data();
  a.bias = pc.b.data();
  a.ocg = ocg;
  a.ow = ow;
  a.y = y.out();
  a.relu = relu;
  const k::Kernels& kn = kern(isa);
  {
    py::gil_scoped_release nogil;
    for (int g = 0; g < ng; ++g)
      for (int yy = 0; yy < oh; ++yy) kn.conv(a, g, yy);
  }
  y.c = oc;
  return y.planar();
}

// Winograd conv3x3 over inputs [(x_i [C_i, H_i, W_i], dy_i, dx_i)] (cb 16 each), run by the executor's
// own driver (executor/winograd.cc, serially) on its own packing; bands of `band` tiles (0: all) and GEMM
// work units of `nt` tiles exercise the banding and remainders. precision "bf16": the tier's bf16 table.
// raw_taps: weights kept as taps and transformed per band and group (the executor's large layers);
// The kernel table of an ISA tier for a precision ("fp32", or "bf16": the tier's bf16 table).
static const k::Kernels* tier(const std::string& isa, const std::string& precision) {
  if (precision != "fp32" && precision != "bf16") throw std::invalid_argument("precision must be 'fp32' or 'bf16'");
  const k::Kernels* kn = &kern(isa);
  if (precision == "bf16") {
    std::string why;
    kn = k::bf16_kernels_for(kn->isa, &why);
    if (!kn) throw std::invalid_argument(why);
  }
  return kn;
}

// private_band > 0: the driver's private bands of that many tiles (the executor's small layers).
F32 conv3x3_winograd(py::list inputs, F32 w, F32 b, int oh, int ow, bool relu, const std::string& isa, int ocg,
                     int band, int nt, const std::string& precision, bool raw_taps, int private_band, int kc_blocks) {
  need_ndim(w, 4, "w");
  const int oc = (int)w.shape(0), ictot = (int)w.shape(1);
  if (w.shape(2) != 3 || w.shape(3) != 3) throw std::invalid_argument("w must be [OC, IC, 3, 3]");
  if (inputs.size() < 1 || inputs.size() > 2) throw std::invalid_argument("1 or 2 inputs");
  if (ocg != 16 && ocg != 32) throw std::invalid_argument("ocg must be 16 or 32");
  if (b.ndim() != 1 || b.shape(0) != oc) throw std::invalid_argument("b must be [OC]");
  if (nt < 1) throw std::invalid_argument("nt must be >= 1");
  const k::Kernels* kn = tier(isa, precision);
  std::vector<Blocked> xs;
  std::vector<std::pair<int, int>> offs;
  std::vector<unet_rt::InDesc> ins;
  int icsum = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto t = inputs[i].cast<py::tuple>();
    F32 x = t[0].cast<F32>();
    need_ndim(x, 3, "x");
    int dy = t[1].cast<int>(), dx = t[2].cast<int>();
    if (dy < 0 || dx < 0 || dy + oh + 2 > x.shape(1) || dx + ow + 2 > x.shape(2))
      throw std::invalid_argument("input too small for the output size and offsets");
    xs.push_back(Blocked::from(x, 16));
    offs.push_back({dy, dx});
    ins.push_back(unet_rt::InDesc{xs.back().c, 16, xs.back().nblk});
    icsum += (int)x.shape(0);
  }
  if (icsum != ictot) throw std::invalid_argument("w's input channels do not match the inputs");
  const unet_rt::PackedConv pc = unet_rt::pack_wino(tensor(w), tensor(b), ins, ocg, *kn, raw_taps);
  const int ng = pc.groups();
  Blocked y(ng * ocg, oh, ow, 16);
  k::WinoArgs a;
  a.nin = (int)xs.size();
  a.icb = 0;
  for (int i = 0; i < a.nin; ++i) {
    a.in[i] = xs[i].view(offs[i].first, offs[i].second);
    a.icb += xs[i].nblk;
  }
  a.ocb = ng * ocg / 16;
  a.u = pc.u();
  a.bias = pc.b.data();
  a.ocg = ocg;
  a.oh = oh;
  a.ow = ow;
  a.th = (oh + 3) / 4;
  a.tw = (ow + 3) / 4;
  a.y = y.out();
  a.relu = relu;
  a.kc_blocks = kc_blocks < 0 ? unet_rt::wino_kc_blocks(ocg) : kc_blocks;
  unet_rt::WinoSchedule sched;
  sched.band = band > 0 ? band : (int64_t)a.th * a.tw;
  sched.gemm_nt = nt;
  sched.in_nt = 3;
  sched.out_nt = 5;
  sched.raw = pc.raw();
  sched.private_band = private_band;
  unet_rt::AlignedVector<float> v(unet_rt::wino_v_bytes(a.icb, sched.band, kn->bf16) / 4 + 1),
      m(k::wino_m_floats(a.ocb, sched.band));
  {
    py::gil_scoped_release nogil;
    unet_rt::run_winograd(*kn, a, sched, v.data(), m.data(), [](int64_t n, const std::function<void(int64_t)>& fn) {
      for (int64_t i = 0; i < n; ++i) fn(i);
    });
  }
  y.c = oc;
  return y.planar();
}

F32 upconv2x2(F32 x, F32 w, F32 b, const std::string& isa, int ocg, const std::string& precision) {
  need_ndim(x, 3, "x");
  need_ndim(w, 4, "w");
  const int ic = (int)w.shape(0), oc = (int)w.shape(1);
  if (x.shape(0) != ic || w.shape(2) != 2 || w.shape(3) != 2) throw std::invalid_argument("w must be [IC, OC, 2, 2]");
  if (b.ndim() != 1 || b.shape(0) != oc) throw std::invalid_argument("b must be [OC]");
  if (ocg != 16 && ocg != 32) throw std::invalid_argument("ocg must be 16 or 32");
  Blocked xb = Blocked::from(x, 16);
  const k::Kernels* kn = tier(isa, precision);
  const unet_rt::PackedUp pu = unet_rt::pack_up(tensor(w), tensor(b), ocg, kn->bf16);  // the executor's packing
  const int ng = (int)(pu.b.size() / ocg);
  Blocked y(ng * ocg, 2 * xb.h, 2 * xb.w, 16);
  k::UpArgs a;
  a.in = xb.view();
  a.w = pu.w.data();
  a.w16 = pu.w16.data();
  a.bias = pu.b.data();
  a.ocg = ocg;
  a.iw = xb.w;
  a.y = y.out();
  {
    py::gil_scoped_release nogil;
    for (int g = 0; g < ng; ++g)
      for (int iy = 0; iy < xb.h; ++iy) kn->up(a, g, iy);
  }
  y.c = oc;
  return y.planar();
}

F32 pool2x2(F32 x, const std::string& isa) {
  need_ndim(x, 3, "x");
  Blocked xb = Blocked::from(x, 16);
  Blocked y(xb.c, xb.h / 2, xb.w / 2, 16);
  k::PoolArgs a;
  a.in = xb.view();
  a.ow = y.w;
  a.y = y.out();
  const k::Kernels& kn = kern(isa);
  for (int blk = 0; blk < y.nblk; ++blk)
    for (int oy = 0; oy < y.h; ++oy) kn.pool(a, blk, oy);
  return y.planar();
}

F32 head1x1(F32 x, F32 w, F32 b, bool probabilities, const std::string& isa) {
  need_ndim(x, 3, "x");
  const int c = (int)x.shape(0);
  if (!(w.ndim() == 2 || w.ndim() == 4) || w.shape(1) != c)
    throw std::invalid_argument("w must be [K, C] or [K, C, 1, 1]");
  const int kk = (int)w.shape(0);
  if (b.ndim() != 1 || b.shape(0) != kk) throw std::invalid_argument("b must be [K]");
  Blocked xb = Blocked::from(x, 16);
  const int c16 = xb.nblk * 16;
  std::vector<float> pw((size_t)kk * c16, 0.0f);
  for (int i = 0; i < kk; ++i)
    for (int j = 0; j < c; ++j) pw[(size_t)i * c16 + j] = w.data()[(size_t)i * c + j];
  F32 out({kk, xb.h, xb.w});
  k::HeadArgs a;
  a.in = xb.view();
  a.w = pw.data();
  a.bias = b.data();
  a.k = kk;
  a.ow = xb.w;
  a.out = out.mutable_data();
  a.out_cs = (int64_t)xb.h * xb.w;
  a.out_rs = xb.w;
  a.softmax = probabilities;
  const k::Kernels& kn = kern(isa);
  for (int oy = 0; oy < xb.h; ++oy) kn.head(a, oy);
  return out;
}

// The executor on a dict architecture and a dict of numpy weights.
class PyNetwork {
 public:
  PyNetwork(py::dict arch, py::dict weights, int threads, const std::string& isa, py::object winograd,
            const std::string& precision) {
    if (precision != "fp32" && precision != "bf16") throw std::invalid_argument("precision must be 'fp32' or 'bf16'");
    unet_rt::Arch a;
    a.in_channels = arch["in_channels"].cast<int>();
    a.classes = arch["classes"].cast<int>();
    a.depth = arch["depth"].cast<int>();
    a.base = arch["base"].cast<int>();
    std::string pad = arch.contains("padding") ? arch["padding"].cast<std::string>() : "valid";
    if (pad != "valid" && pad != "same") throw std::invalid_argument("padding must be 'valid' or 'same'");
    a.same_padding = pad == "same";
    unet_rt::Weights ws;
    for (auto item : weights) {
      F32 arr = item.second.cast<F32>();
      keep_.push_back(arr);
      ws[item.first.cast<std::string>()] = unet_rt::TensorView{shape_of(arr), arr.data()};
    }
    isa_ = k::isa_name(k::isa_from_name(isa));
    unet_rt::g_network_isa_override = isa_;
    unet_rt::g_network_winograd_override = winograd.is_none() ? -1 : (winograd.cast<bool>() ? 1 : 0);
    try {
      net_ = std::make_unique<unet_rt::Network>(
          a, ws, threads, precision == "bf16" ? unet_rt::Precision::BF16 : unet_rt::Precision::F32);
    } catch (...) {
      unet_rt::g_network_isa_override.clear();
      unet_rt::g_network_winograd_override = -1;
      throw;
    }
    unet_rt::g_network_isa_override.clear();
    unet_rt::g_network_winograd_override = -1;
    keep_.clear();  // weights are repacked: the arrays may go
  }
  F32 forward(F32 x, bool probabilities) {
    need_ndim(x, 3, "x");
    if (x.shape(0) != net_->arch().in_channels)
      throw std::invalid_argument("x has " + std::to_string(x.shape(0)) + " channels, the network expects " +
                                  std::to_string(net_->arch().in_channels));
    const int h = (int)x.shape(1), w = (int)x.shape(2);
    const int oh = net_->output_size(h), ow = net_->output_size(w);
    F32 out({net_->arch().classes, oh, ow});
    unet_rt::OutputView ov{out.mutable_data(), (int64_t)oh * ow, ow};
    {
      py::gil_scoped_release nogil;
      net_->forward(x.data(), h, w, ov,
                    probabilities ? unet_rt::HeadOutput::Probabilities : unet_rt::HeadOutput::Logits);
    }
    return out;
  }
  unet_rt::Network& net() { return *net_; }
  std::string isa_;

 private:
  std::vector<F32> keep_;
  std::unique_ptr<unet_rt::Network> net_;
};

}  // namespace

PYBIND11_MODULE(_kernels, km) {
  km.doc() = "test access to the CPU executor and kernels (not shipped in the wheel)";
  km.def("available_isas", &k::available_isas, "ISAs this CPU runs, 'ref' first.");
  km.def(
      "bf16_kernels",
      [](const std::string& isa) -> py::object {
        std::string why;
        const k::Kernels* b = k::bf16_kernels_for(k::isa_from_name(isa), &why);
        if (!b) return py::none();
        return py::str(b->name);
      },
      py::arg("isa") = "auto", "Name of the bf16 table of this ISA tier on this CPU, or None.");
  km.def("cache_sizes_from_cpuid", [] {  // the CPUID reading alone, to compare with the OS's (tests)
    const unet_rt::platform::CacheSizes c = unet_rt::platform::cache_sizes_from_cpuid();
    return py::make_tuple(c.l1d, c.l2, c.l3);
  });
  km.def("best_isa", [] { return std::string(k::isa_name(k::best_isa())); });
  km.def(
      "peak_gflops",
      [](int threads, double seconds, bool bf16) {
        py::gil_scoped_release nogil;
        return k::peak_gflops(threads, seconds, bf16);
      },
      py::arg("threads") = 0, py::arg("seconds") = 0.2, py::arg("bf16") = false,
      "Measured fp32 FMA throughput (GFLOP/s) on `threads` threads with the widest ISA (bf16: vdpbf16ps, 0 without).");
  km.def(
      "conv3x3", &conv3x3, py::arg("inputs"), py::arg("w"), py::arg("b"), py::arg("oh"), py::arg("ow"),
      py::arg("relu") = true, py::arg("isa") = "auto", py::arg("ocg") = 16, py::arg("cbs") = std::vector<int>{},
      "conv over [(x [C,H,W], dy, dx), ...] concatenated along channels -> [OC, oh, ow]; cbs: block size per input.");
  km.def("conv3x3_winograd", &conv3x3_winograd, py::arg("inputs"), py::arg("w"), py::arg("b"), py::arg("oh"),
         py::arg("ow"), py::arg("relu") = true, py::arg("isa") = "auto", py::arg("ocg") = 16, py::arg("band") = 0,
         py::arg("nt") = 12, py::arg("precision") = "fp32", py::arg("raw_taps") = false, py::arg("private_band") = 0,
         py::arg("kc_blocks") = 0,
         "Winograd F(4x4,3x3) conv3x3 (+bias, ReLU) over [(x [C,H,W], dy, dx), ...] -> [OC, oh, ow]; kc_blocks: "
         "input blocks per GEMM pass (0: all, -1: the executor's choice for this CPU's L1).");
  km.def("upconv2x2", &upconv2x2, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("isa") = "auto",
         py::arg("ocg") = 16, py::arg("precision") = "fp32");
  km.def("pool2x2", &pool2x2, py::arg("x"), py::arg("isa") = "auto");
  km.def("head1x1", &head1x1, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("probabilities") = false,
         py::arg("isa") = "auto");
  py::class_<PyNetwork>(km, "Network")
      .def(py::init<py::dict, py::dict, int, const std::string&, py::object, const std::string&>(), py::arg("arch"),
           py::arg("weights"), py::arg("threads") = 0, py::arg("isa") = "auto", py::arg("winograd") = py::none(),
           py::arg("precision") = "fp32",
           "winograd: None = default (on unless UNET_RT_WINOGRAD=0), True/False to force; precision 'fp32' | 'bf16'")
      .def_property_readonly(
          "precision",
          [](PyNetwork& n) { return std::string(n.net().precision() == unet_rt::Precision::BF16 ? "bf16" : "fp32"); })
      .def_property_readonly("precision_note", [](PyNetwork& n) { return n.net().precision_note(); })
      .def_property_readonly("kernel", [](PyNetwork& n) { return n.net().kernel_name(); })
      .def_property_readonly("weight_bytes", [](PyNetwork& n) { return n.net().weight_bytes(); })
      .def("set_profile", [](PyNetwork& n, bool on) { n.net().set_profile(on); })
      .def(
          "profile", [](PyNetwork& n) { return profile_rows(n.net().last_profile()); },
          "Rows of the last forward()'s profile (after set_profile(True)): layer, phase, seconds, flops, bytes.")
      .def("forward", &PyNetwork::forward, py::arg("x"), py::arg("probabilities") = false,
           "x: [C, h, w] float32 -> [K, oh, ow] logits (or softmax probabilities)")
      .def("output_size", [](PyNetwork& n, int s) { return n.net().output_size(s); })
      .def("workspace_bytes", [](PyNetwork& n, int h, int w) { return n.net().workspace_bytes(h, w); })
      .def_property_readonly("threads", [](PyNetwork& n) { return n.net().threads(); })
      .def_property_readonly("isa", [](PyNetwork& n) { return n.isa_; });
}
