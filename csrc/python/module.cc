// The unet_rt._core Python module. Bindings only: the logic lives in the core (csrc/core, model, executor, runtime, postprocess) and csrc/kernels.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "executor/winograd.h"
#include "core/platform.h"
#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "core/geometry.h"
#include "model/model_reader.h"
#include "runtime/normalize.h"
#include "runtime/tiler.h"
#include "python/decision.h"
#include "python/profile_rows.h"

namespace py = pybind11;
using namespace unet_rt;

namespace unet_rt {
const char* version();  // version.cc
}

namespace {

// platform::cache_sizes() (bytes; 0 = unknown) and where they were read
py::dict cache_dict() {
  const platform::CacheSizes& c = platform::cache_sizes();
  py::dict d;
  d["l1d"] = c.l1d;
  d["l2"] = c.l2;
  d["l3"] = c.l3;
  d["source"] = c.source;
  return d;
}

py::dict arch_dict(const Arch& a) {
  py::dict d;
  d["in_channels"] = a.in_channels;
  d["classes"] = a.classes;
  d["depth"] = a.depth;
  d["base"] = a.base;
  d["padding"] = a.same_padding ? "same" : "valid";
  return d;
}

py::dict model_dict(const ModelFile& mf) {
  const ModelInfo& i = mf.info();
  py::dict d;
  d["kind"] = i.kind;
  d["format_version"] = i.format_version;
  d["arch"] = arch_dict(i.arch);
  py::dict norm;
  norm["mean"] = i.normalization.mean;
  norm["std"] = i.normalization.std;
  if (!i.normalization.percentiles.empty()) norm["percentiles"] = i.normalization.percentiles;
  d["normalization"] = norm;
  d["class_names"] = i.class_names;
  d["provenance"] = i.provenance_json;
  d["decision"] = decision_dict(i.decision);
  d["metadata"] = i.metadata;
  py::dict shapes;
  for (const auto& kv : mf.weights()) shapes[py::str(kv.first)] = py::tuple(py::cast(kv.second.shape));
  d["tensors"] = shapes;
  return d;
}

// A [C, H, W] uint8 / uint16 / float32 array as an ImageView (any strides; no copy).
ImageView image_view(const py::array& a) {
  if (a.ndim() != 3)
    throw std::invalid_argument("image must be a 3-D array [channels, height, width], got " + std::to_string(a.ndim()) +
                                "-D");
  ImageView v;
  py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<uint8_t>())) v.dtype = DType::U8;
  else if (dt.equal(py::dtype::of<uint16_t>())) v.dtype = DType::U16;
  else if (dt.equal(py::dtype::of<float>())) v.dtype = DType::F32;
  else
    throw std::invalid_argument("image dtype must be uint8, uint16 or float32, got " +
                                std::string(py::str(dt).cast<std::string>()));
  const py::ssize_t item = a.itemsize();
  for (int d = 0; d < 3; ++d)
    if (a.strides(d) % item) throw std::invalid_argument("image strides must be multiples of its item size");
  if (a.shape(0) < 1 || a.shape(1) < 1 || a.shape(2) < 1)
    throw std::invalid_argument("image is empty (shape " + std::to_string(a.shape(0)) + " x " +
                                std::to_string(a.shape(1)) + " x " + std::to_string(a.shape(2)) + ")");
  if (a.shape(1) > (1 << 30) || a.shape(2) > (1 << 30) || a.shape(0) > (1 << 20))
    throw std::invalid_argument("image too large");
  v.data = a.data();
  v.channels = int(a.shape(0));
  v.height = int(a.shape(1));
  v.width = int(a.shape(2));
  v.channel_stride = a.strides(0) / item;
  v.row_stride = a.strides(1) / item;
  v.col_stride = a.strides(2) / item;
  return v;
}

Blend parse_blend(const std::string& s) {
  if (s == "constant") return Blend::Constant;
  if (s == "gaussian") return Blend::Gaussian;
  throw std::invalid_argument("blend must be 'constant' or 'gaussian', got '" + s + "'");
}

py::dict plan_dict(const TileGrid& p) {
  auto axis = [](const AxisGrid& a) {
    py::dict d;
    d["out_start"] = a.out_start;
    d["in_size"] = a.in_size;
    d["out_size"] = a.out_size;
    return d;
  };
  py::dict d;
  d["y"] = axis(p.y);
  d["x"] = axis(p.x);
  d["halo"] = p.halo;
  d["pad"] = py::make_tuple(p.pad_y, p.pad_x);
  d["tiles"] = p.tiles();
  d["total_input_area"] = p.y.total_input() * p.x.total_input();
  return d;
}

// A Python progress callable (or None) as a ProgressFn, called before the first tile and after
// each one. The callable is borrowed (it must outlive the run: the caller's argument does) and the
// GIL is taken only around the call, so the lambda can be copied with the GIL released. None or
// True from the callable continues; False cancels. With or without a callable, pending signals are
// checked there first (PyErr_CheckSignals: on the main thread it runs the Python handlers), so
// Ctrl-C during a long call raises KeyboardInterrupt after the tile in flight, not after the call.
ProgressFn progress_fn(const py::object& cb) {
  if (!cb.is_none() && !PyCallable_Check(cb.ptr()))
    throw std::invalid_argument("progress must be callable(done, total) or None");
  const py::object* p = cb.is_none() ? nullptr : &cb;
  return [p](size_t done, size_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!p) return true;
    py::object r = (*p)(done, total);
    return r.ptr() != Py_False;
  };
}

// A Python tile function fn(float32 [C, h, w]) -> float32 [classes, oh, ow] as a TileFn (the GIL is
// taken around the call). `fn` is borrowed: it must outlive the run.
TileFn python_tile_fn(const py::function& fn, int channels, int classes, int depth, bool same_padding) {
  const py::function* f = &fn;
  return [f, channels, classes, depth, same_padding](const float* in, int h, int w, const OutputView& o) {
    py::gil_scoped_acquire gil;
    py::array_t<float> x({py::ssize_t(channels), py::ssize_t(h), py::ssize_t(w)});
    std::memcpy(x.mutable_data(), in, size_t(channels) * size_t(h) * size_t(w) * sizeof(float));
    py::object r = (*f)(x);
    auto y = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(r);
    if (!y) throw std::invalid_argument("the tile function must return a float32 array");
    const int oh = same_padding ? h : output_size(h, depth, false),
              ow = same_padding ? w : output_size(w, depth, false);
    if (y.ndim() != 3 || y.shape(0) != classes || y.shape(1) != oh || y.shape(2) != ow)
      throw std::invalid_argument(
          "the tile function returned shape " + std::string(py::str(py::getattr(r, "shape", py::str("?")))) +
          ", expected (" + std::to_string(classes) + ", " + std::to_string(oh) + ", " + std::to_string(ow) + ")");
    const float* src = y.data();
    for (int k = 0; k < classes; ++k)
      for (int yy = 0; yy < oh; ++yy)
        std::memcpy(o.data + k * o.channel_stride + yy * o.row_stride, src + (size_t(k) * oh + yy) * ow,
                    size_t(ow) * sizeof(float));
  };
}

py::array_t<float> tile_predict_py(const py::array& image, std::vector<float> mean, std::vector<float> std_, int depth,
                                   bool same_padding, int classes, py::function fn, int tile, double overlap,
                                   const std::string& output, const std::string& blend, double sigma_scale,
                                   int max_tile, std::vector<float> percentiles, const py::object& progress) {
  ImageView v = image_view(image);
  TileGeometry g{v.channels, classes, depth, same_padding};
  if (mean.size() != size_t(v.channels) || std_.size() != size_t(v.channels))
    throw std::invalid_argument("mean and std need one value per image channel (" + std::to_string(v.channels) + ")");
  if (classes < 1 || classes > 65536) throw std::invalid_argument("classes must be in [1, 65536]");
  TileOptions opt;
  opt.tile = tile;
  opt.max_tile = tile > 0 ? 0 : (max_tile > 0 ? max_tile : 1024);
  opt.overlap = overlap;
  opt.blend = parse_blend(blend);
  opt.sigma_scale = sigma_scale;
  opt.progress = progress_fn(progress);
  TileOutput out;
  if (output == "probabilities") out.kind = OutputKind::Probabilities;
  else if (output == "logits") out.kind = OutputKind::Logits;
  else throw std::invalid_argument("output must be 'probabilities' or 'logits', got '" + output + "'");
  py::array_t<float> result({py::ssize_t(classes), py::ssize_t(v.height), py::ssize_t(v.width)});
  out.scores = result.mutable_data();
  TileFn tf = python_tile_fn(fn, v.channels, classes, depth, same_padding);
  {
    py::gil_scoped_release release;
    std::vector<float> m, s;
    effective_normalization(v, mean, std_, percentiles, m, s);
    tile_predict(v, m, s, g, tf, opt, out);
  }
  return result;
}

// ---- regions of a frame (unet_rt.scale): the whole frame's tiles over a region, from a buffer that
// holds only the frame pixels they read (tiler.h: TileOptions::frame_plan, frame_reads).

using Pair = std::array<int, 2>;
using Box = std::array<int, 4>;  // y0, y1, x0, x1

// `pixels` [C, h, w] holds the frame's rows [origin[0], + h) and columns [origin[1], + w); the view is
// `region` (frame coordinates, inside the buffer) of a frame of frame[0] x frame[1] pixels.
ImageView region_view(const py::array& pixels, const Pair& origin, const Pair& frame, const Box& region) {
  ImageView v = image_view(pixels);
  const int y0 = region[0], y1 = region[1], x0 = region[2], x1 = region[3];
  if (frame[0] < 1 || frame[1] < 1) throw std::invalid_argument("the frame is empty");
  if (!(0 <= y0 && y0 < y1 && y1 <= frame[0] && 0 <= x0 && x0 < x1 && x1 <= frame[1]))
    throw std::invalid_argument(
        "region must be (y0, y1, x0, x1) with 0 <= y0 < y1 <= frame height and "
        "0 <= x0 < x1 <= frame width");
  if (!(origin[0] <= y0 && y1 <= int64_t(origin[0]) + v.height && origin[1] <= x0 &&
        x1 <= int64_t(origin[1]) + v.width))
    throw std::invalid_argument("the region is not inside the pixels given (origin and shape)");
  const int64_t item = int64_t(pixels.itemsize());
  v.data = static_cast<const char*>(pixels.data()) +
           (int64_t(y0 - origin[0]) * v.row_stride + int64_t(x0 - origin[1]) * v.col_stride) * item;
  v.held_y = origin[0], v.held_x = origin[1], v.held_height = v.height, v.held_width = v.width;
  v.height = y1 - y0, v.width = x1 - x0;
  v.frame_y = y0, v.frame_x = x0, v.frame_height = frame[0], v.frame_width = frame[1];
  return v;
}

// Per channel (P_lo, P_hi) of the frame, or None.
FrameRegion frame_region(const py::object& percentiles, int channels) {
  FrameRegion r;
  if (percentiles.is_none()) return r;
  for (const auto& p : percentiles.cast<std::vector<std::array<double, 2>>>()) {
    r.lo.push_back(p[0]);
    r.hi.push_back(p[1]);
  }
  if (r.lo.size() != size_t(channels))
    throw std::invalid_argument("percentiles need one (low, high) pair per input channel (" + std::to_string(channels) +
                                ")");
  return r;
}

py::array run_region_py(const Engine& e, const py::array& pixels, const Pair& origin, const Pair& frame,
                        const Box& region, const std::string& output, const py::object& percentiles,
                        const py::object& progress) {
  const ImageView v = region_view(pixels, origin, frame, region);
  const Arch& a = e.info().arch;
  if (v.channels != a.in_channels)
    throw std::invalid_argument("image has " + std::to_string(v.channels) + " channels, the model expects " +
                                std::to_string(a.in_channels));
  const FrameRegion fr = frame_region(percentiles, a.in_channels);
  ProgressFn pf = progress_fn(progress);
  if (output == "labels") {
    const bool small = a.classes <= 256;
    py::array out = small ? py::array(py::array_t<uint8_t>({py::ssize_t(v.height), py::ssize_t(v.width)}))
                          : py::array(py::array_t<uint16_t>({py::ssize_t(v.height), py::ssize_t(v.width)}));
    void* p = out.mutable_data();
    {
      py::gil_scoped_release release;
      e.segment(v, p, small ? DType::U8 : DType::U16, nullptr, pf, &fr);
    }
    return out;
  }
  if (output != "probabilities" && output != "logits")
    throw std::invalid_argument("output must be 'probabilities', 'logits' or 'labels', got '" + output + "'");
  py::array_t<float> out({py::ssize_t(a.classes), py::ssize_t(v.height), py::ssize_t(v.width)});
  float* p = out.mutable_data();
  {
    py::gil_scoped_release release;
    e.predict(v, p, output == "logits", pf, &fr);
  }
  return std::move(out);
}

py::array_t<float> tile_predict_region_py(const py::array& pixels, const Pair& origin, const Pair& frame,
                                          const Box& region, std::vector<float> mean, std::vector<float> std_,
                                          int depth, bool same_padding, int classes, py::function fn, int tile,
                                          double overlap, const std::string& output, const std::string& blend,
                                          double sigma_scale, const py::object& percentiles) {
  const ImageView v = region_view(pixels, origin, frame, region);
  if (mean.size() != size_t(v.channels) || std_.size() != size_t(v.channels))
    throw std::invalid_argument("mean and std need one value per image channel (" + std::to_string(v.channels) + ")");
  if (classes < 1 || classes > 65536) throw std::invalid_argument("classes must be in [1, 65536]");
  if (tile < 1) throw std::invalid_argument("a region of a frame needs the whole frame's tile size (tile >= 1)");
  TileOptions opt;
  opt.tile = tile;
  opt.overlap = overlap;
  opt.blend = parse_blend(blend);
  opt.sigma_scale = sigma_scale;
  opt.frame_plan = true;
  TileOutput out;
  if (output == "probabilities") out.kind = OutputKind::Probabilities;
  else if (output == "logits") out.kind = OutputKind::Logits;
  else throw std::invalid_argument("output must be 'probabilities' or 'logits', got '" + output + "'");
  const FrameRegion fr = frame_region(percentiles, v.channels);
  py::array_t<float> result({py::ssize_t(classes), py::ssize_t(v.height), py::ssize_t(v.width)});
  out.scores = result.mutable_data();
  const TileGeometry g{v.channels, classes, depth, same_padding};
  TileFn tf = python_tile_fn(fn, v.channels, classes, depth, same_padding);
  {
    py::gil_scoped_release release;
    std::vector<float> m = mean, s = std_;
    if (!fr.lo.empty()) normalization_from_percentiles(v, mean, std_, fr.lo, fr.hi, m, s);
    tile_predict(v, m, s, g, tf, opt, out);
  }
  return result;
}

void bind_regions(py::module_& m) {
  m.def(
      "frame_reads",
      [](const Pair& frame, const Box& region, int depth, bool same_padding, int tile, double overlap) {
        ImageView v;
        v.height = region[1] - region[0], v.width = region[3] - region[2];
        v.frame_y = region[0], v.frame_x = region[2], v.frame_height = frame[0], v.frame_width = frame[1];
        TileOptions opt;
        opt.tile = tile;
        opt.overlap = overlap;
        opt.frame_plan = true;
        const FrameReads r = frame_reads(v, TileGeometry{1, 2, depth, same_padding}, opt);
        return Box{r.y0, r.y1, r.x0, r.x1};
      },
      py::arg("frame"), py::arg("region"), py::arg("depth"), py::arg("same_padding"), py::arg("tile"),
      py::arg("overlap") = 0.25,
      "(y0, y1, x0, x1): the frame rows and columns that the whole frame's tiles (input tile `tile`) over "
      "`region` = (y0, y1, x0, x1) read, mirror extrapolation included: what run_region's pixels must hold.");
  m.def(
      "percentile_ranks",
      [](int64_t n, double q) {
        const PercentileRanks r = percentile_ranks(n, q);
        return py::make_tuple(r.k, r.k1);
      },
      py::arg("n"), py::arg("q"),
      "The two ranks (0-based, sorted order) numpy's linear percentile q of n values reads.");
  m.def("percentile_from_ranks", &percentile_from_ranks, py::arg("n"), py::arg("q"), py::arg("a"), py::arg("b"),
        "numpy's linear percentile q of n values from the values a, b at percentile_ranks(n, q).");
  m.def("tile_predict_region", &tile_predict_region_py, py::arg("pixels"), py::arg("origin"), py::arg("frame"),
        py::arg("region"), py::arg("mean"), py::arg("std"), py::arg("depth"), py::arg("same_padding"),
        py::arg("classes"), py::arg("fn"), py::arg("tile"), py::arg("overlap") = 0.25,
        py::arg("output") = "probabilities", py::arg("blend") = "constant", py::arg("sigma_scale") = 0.125,
        py::arg("percentiles") = py::none(),
        "tile_predict over a region of a frame with the whole frame's tiles (equal to those pixels of "
        "tile_predict(frame) bit for bit): as Engine.run_region, through a Python tile function.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "unet-rt native core";
  m.attr("__version__") = unet_rt::version();
  m.def(
      "output_size",
      [](int size, int depth, bool same_padding) { return unet_rt::output_size(size, depth, same_padding); },
      py::arg("size"), py::arg("depth") = 4, py::arg("same_padding") = false,
      "Output size of a U-Net tile (ValueError if the input size is not valid).");

  static py::exception<ModelError> model_error(m, "ModelFileError", PyExc_ValueError);
  static py::exception<Cancelled> cancelled(m, "Cancelled", PyExc_RuntimeError);
  cancelled.doc() = "A run stopped because its progress callback returned False.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ModelError& e) {
      PyErr_SetString(model_error.ptr(), e.what());
    } catch (const Cancelled& e) {
      PyErr_SetString(cancelled.ptr(), e.what());
    } catch (const NumericError& e) {
      PyErr_SetString(PyExc_FloatingPointError, e.what());
    } catch (const IoError& e) {
      PyErr_SetString(e.error_number() == ENOENT ? PyExc_FileNotFoundError : PyExc_OSError, e.what());
    }
  });

  m.def(
      "cpu_info",
      [] {
        py::dict d;
        d["isa"] = cpu_isa();
        d["available_isas"] = unet_rt::kernels::available_isas();
        d["caches"] = cache_dict();
        // what the executor sizes from them (executor/winograd.h)
        py::dict b;
        b["wino_gemm_pass_channels"] = py::dict(py::arg("ocg16") = 16 * unet_rt::wino_kc_blocks(16),
                                                py::arg("ocg32") = 16 * unet_rt::wino_kc_blocks(32));
        b["wino_private_band_kb"] = unet_rt::wino_private_default_bytes() / 1024;
        d["blocking"] = b;
        return d;
      },
      "This machine as the runtime sees it: the kernels it chooses ('isa'), the tiers it could run, the "
      "cache sizes of one core in bytes as the OS reports them ('caches': l1d, l2, l3, source; 0 = unknown) "
      "and the blocking the executor derives from them ('blocking': input channels per pass of the fp32 "
      "Winograd GEMM, for 16 and 32 output channels per group, from L1; KB of a private band, from L2).");
  m.def(
      "read_model",
      [](const std::string& path) {
        auto mf = ModelFile::open(path);
        return model_dict(*mf);
      },
      py::arg("path"),
      "Read and validate a model file with the native reader; returns its metadata and tensor shapes.");
  m.def(
      "read_model_bytes",
      [](py::bytes data, const std::string& name, bool tensorrt) {
        std::string_view s = data;  // no copy until from_bytes
        std::unique_ptr<ModelFile> mf;
        {
          py::gil_scoped_release release;
          mf = ModelFile::from_bytes(s.data(), s.size(), name, tensorrt);
        }
        return model_dict(*mf);
      },
      py::arg("data"), py::arg("name") = "<memory>", py::arg("tensorrt") = false,
      "read_model on bytes in memory, the one validator of model files (model_file.load reads through it; the "
      "corpus tests replay through it); tensorrt=True also accepts a TensorRT container (kind 'tensorrt').");

  m.def("reflect_index", &reflect_index, py::arg("i"), py::arg("n"));
  m.def(
      "plan_tiles",
      [](int height, int width, int depth, bool same_padding, int tile, int max_tile, double overlap) {
        TileGeometry g{1, 2, depth, same_padding};
        TileOptions opt;
        opt.tile = tile;
        opt.max_tile = max_tile;
        opt.overlap = overlap;
        return plan_dict(plan_tiles(height, width, g, opt));
      },
      py::arg("height"), py::arg("width"), py::arg("depth") = 4, py::arg("same_padding") = false, py::arg("tile") = 0,
      py::arg("max_tile") = 0, py::arg("overlap") = 0.25,
      "The tiling of an image (no memory budget): per axis out_start / in_size / out_size.");

  m.def("tile_predict", &tile_predict_py, py::arg("image"), py::arg("mean"), py::arg("std"), py::arg("depth"),
        py::arg("same_padding"), py::arg("classes"), py::arg("fn"), py::arg("tile") = 0, py::arg("overlap") = 0.25,
        py::arg("output") = "probabilities", py::arg("blend") = "constant", py::arg("sigma_scale") = 0.125,
        py::arg("max_tile") = 0, py::arg("percentiles") = std::vector<float>{}, py::arg("progress") = py::none(),
        R"doc(Overlap-tile inference of image [C, H, W] (uint8, uint16 or float32) through fn.

fn(tile: float32 [C, h, w], normalised (x - mean) / std, mirror-extrapolated) -> float32 logits
[classes, oh, ow] (oh = output size of h for valid nets, = h for same nets). Valid nets: tiles on the
pooling grid, output written in place (equals one whole-image pass). Same nets: MONAI-style sliding
window (tile = roi, overlap, blend 'constant' | 'gaussian'). tile = 0 picks the tile automatically
(capped at max_tile, default 1024). Returns float32 [classes, H, W] probabilities (softmax over
classes) or logits. percentiles [lo, hi]: per-image percentile normalisation before mean/std (the
model file's normalization.percentiles). progress(done, total) is called before the first tile and
after each one; returning False raises Cancelled. The GIL is released except around fn and progress.)doc");

  py::class_<Engine>(m, "Engine", "Native CPU engine: model file + executor + overlap-tile.")
      .def(py::init([](const std::string& path, int threads, int tile, int memory_budget_mb, double overlap,
                       const std::string& blend, const std::string& precision) {
             if (memory_budget_mb < 0) throw std::invalid_argument("memory_budget_mb must be >= 0");
             if (precision != "fp32" && precision != "bf16")
               throw std::invalid_argument("precision must be 'fp32' or 'bf16', got '" + precision + "'");
             EngineOptions o;
             o.threads = threads;
             o.tile = tile;
             o.memory_budget_mb = size_t(memory_budget_mb);
             o.overlap = overlap;
             o.blend = parse_blend(blend);
             o.precision = precision == "bf16" ? Precision::BF16 : Precision::F32;
             py::gil_scoped_release release;
             return std::make_unique<Engine>(path, o);
           }),
           py::arg("path"), py::arg("threads") = 0, py::arg("tile") = 0, py::arg("memory_budget_mb") = 0,
           py::arg("overlap") = 0.25, py::arg("blend") = "constant", py::arg("precision") = "fp32",
           "threads 0: every core; tile 0: automatic (else the input tile size); memory_budget_mb 0: what the weights "
           "leave under 825 MiB, 384-768 MB "
           "per tile; overlap / blend ('constant' | 'gaussian'): same-padded networks only; precision fp32 | bf16 "
           "(bf16 Winograd GEMMs where the CPU has AVX512-BF16, else fp32 with info[precision_note]).")
      .def(
          "predict",
          [](const Engine& e, const py::array& img, bool logits, const py::object& progress) {
            ImageView v = image_view(img);
            const int K = e.info().arch.classes;
            if (v.channels != e.info().arch.in_channels)
              throw std::invalid_argument("image has " + std::to_string(v.channels) + " channels, the model expects " +
                                          std::to_string(e.info().arch.in_channels));
            py::array_t<float> out({py::ssize_t(K), py::ssize_t(v.height), py::ssize_t(v.width)});
            float* p = out.mutable_data();
            ProgressFn pf = progress_fn(progress);
            {
              py::gil_scoped_release release;
              e.predict(v, p, logits, pf);
            }
            return out;
          },
          py::arg("image"), py::arg("logits") = false, py::arg("progress") = py::none(),
          "image [C, H, W] uint8|uint16|float32 -> float32 [classes, H, W] probabilities (or logits).\n"
          "progress(done, total) -> bool|None: called before the first tile and after each one (GIL held only "
          "for the call); returning False raises Cancelled; an exception it raises reaches the caller.")
      .def(
          "segment",
          [](const Engine& e, const py::array& img, const py::object& decision,
             const py::object& progress) -> py::array {
            ImageView v = image_view(img);
            if (v.channels != e.info().arch.in_channels)
              throw std::invalid_argument("image has " + std::to_string(v.channels) + " channels, the model expects " +
                                          std::to_string(e.info().arch.in_channels));
            const bool small = e.info().arch.classes <= 256;
            py::array out = small ? py::array(py::array_t<uint8_t>({py::ssize_t(v.height), py::ssize_t(v.width)}))
                                  : py::array(py::array_t<uint16_t>({py::ssize_t(v.height), py::ssize_t(v.width)}));
            void* p = out.mutable_data();
            const int K = e.info().arch.classes;
            std::unique_ptr<Decision> d;
            if (!decision.is_none())
              d = std::make_unique<Decision>(decision_from_json(decision.cast<std::string>(), K));
            ProgressFn pf = progress_fn(progress);
            {
              py::gil_scoped_release release;
              e.segment(v, p, small ? DType::U8 : DType::U16, d.get(), pf);
            }
            return out;
          },
          py::arg("image"), py::arg("decision") = py::none(), py::arg("progress") = py::none(),
          "image [C, H, W] -> labels [H, W] (uint8 if classes <= 256, else uint16) by the model's decision "
          "(threshold or argmax), or by `decision` (JSON text) when given. progress: as predict.")
      .def(
          "instances",
          [](const Engine& e, const py::array& img, const py::object& decision, const py::object& progress) {
            ImageView v = image_view(img);
            if (v.channels != e.info().arch.in_channels)
              throw std::invalid_argument("image has " + std::to_string(v.channels) + " channels, the model expects " +
                                          std::to_string(e.info().arch.in_channels));
            std::unique_ptr<Decision> d;
            if (!decision.is_none())
              d = std::make_unique<Decision>(decision_from_json(decision.cast<std::string>(), e.info().arch.classes));
            py::array_t<int32_t> out({py::ssize_t(v.height), py::ssize_t(v.width)});
            int32_t* p = out.mutable_data();
            ProgressFn pf = progress_fn(progress);
            {
              py::gil_scoped_release release;
              e.instances(v, p, d.get(), pf);
            }
            return out;
          },
          py::arg("image"), py::arg("decision") = py::none(), py::arg("progress") = py::none(),
          "image [C, H, W] -> instance labels [H, W] int32 (0 = background): marker-controlled watershed on the "
          "whole stitched foreground probability, parameters from the model's decision or `decision` (JSON). "
          "progress: as predict (per tile of the pass before the watershed).")
      .def(
          "plan", [](const Engine& e, int h, int w) { return plan_dict(e.tile_grid(h, w)); }, py::arg("height"),
          py::arg("width"), "The tiling used for an image of this size.")
      .def_property_readonly("info",
                             [](const Engine& e) {
                               const ModelInfo& i = e.info();
                               py::dict d;
                               d["arch"] = arch_dict(i.arch);
                               d["classes"] = i.arch.classes;
                               d["class_names"] = i.class_names;
                               py::dict norm;
                               norm["mean"] = i.normalization.mean;
                               norm["std"] = i.normalization.std;
                               if (!i.normalization.percentiles.empty())
                                 norm["percentiles"] = i.normalization.percentiles;
                               d["normalization"] = norm;
                               d["decision"] = decision_dict(i.decision);
                               d["halo"] = e.halo();
                               d["tile"] = e.tile();
                               d["threads"] = e.threads();
                               d["isa"] = cpu_isa();
                               d["caches"] = cache_dict();
                               d["precision"] = e.precision() == Precision::BF16 ? "bf16" : "fp32";
                               d["kernel"] = e.network().kernel_name();
                               d["weight_mb"] = e.network().weight_bytes() / 1e6;
                               if (!e.network().precision_note().empty())
                                 d["precision_note"] = e.network().precision_note();
                               // bf16 on the vdpbf16ps GEMM: why not AMX (no AMX on this CPU, OS refused, self-check, UNET_RT_AMX=0)
                               if (e.precision() == Precision::BF16 && !unet_rt::kernels::amx_note().empty() &&
                                   e.network().kernel_name().find("_amx") == std::string::npos)
                                 d["amx_note"] = unet_rt::kernels::amx_note();
                               d["memory_budget_mb"] = e.memory_budget_bytes() / (1024 * 1024);
                               d["overlap"] = e.options().overlap;
                               d["blend"] = e.options().blend == Blend::Gaussian ? "gaussian" : "constant";
                               d["provenance"] = i.provenance_json;
                               d["metadata"] = i.metadata;
                               d["cached_plans"] = e.cached_plans();
                               d["arena_bytes"] = e.arena_bytes();
                               return d;
                             })
      .def("set_profile", &Engine::set_profile, py::arg("on"),
           "Record a per-layer, per-phase profile of every tile run (summed per layer and phase).")
      .def(
          "profile",
          [](const Engine& e, bool reset) {
            const auto totals = e.profile();
            if (reset) e.reset_profile();
            return profile_rows(totals);
          },
          py::arg("reset") = true,
          "Profile rows since set_profile(True) or the last reset: layer, phase, seconds, flops (arithmetic done), "
          "bytes moved, summed over every tile run; reset=True starts the next sum.")
      .def(
          "forward_tile",
          [](const Engine& e, const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
             bool probabilities) {
            const Arch& a = e.info().arch;
            if (x.ndim() != 3 || x.shape(0) != a.in_channels)
              throw std::invalid_argument("tile must be float32 [" + std::to_string(a.in_channels) + ", h, w]");
            const int h = int(x.shape(1)), w = int(x.shape(2));
            const int oh = output_size(h, a.depth, a.same_padding), ow = output_size(w, a.depth, a.same_padding);
            py::array_t<float> out({py::ssize_t(a.classes), py::ssize_t(oh), py::ssize_t(ow)});
            OutputView o{out.mutable_data(), int64_t(oh) * ow, ow};
            {
              py::gil_scoped_release release;
              e.forward_tile(x.data(), h, w, o, probabilities);
            }
            return out;
          },
          py::arg("tile"), py::arg("probabilities") = false,
          "One tile, no padding: float32 [C, h, w], normalised -> [classes, oh, ow] logits (or probabilities).")
      .def("run_region", &run_region_py, py::arg("pixels"), py::arg("origin"), py::arg("frame"), py::arg("region"),
           py::arg("output") = "probabilities", py::arg("percentiles") = py::none(), py::arg("progress") = py::none(),
           "The whole frame's tiles over region = (y0, y1, x0, x1) of a frame of frame = (height, width) "
           "pixels: equal to those pixels of predict / segment on the whole frame, bit for bit. pixels "
           "[C, h, w] hold the frame's rows and columns from origin = (y, x) on, at least frame_reads(...). "
           "output: 'probabilities', 'logits' or 'labels' (the model's decision). percentiles: per channel "
           "the frame's (P_lo, P_hi) for models with per-image percentile normalisation.");

  unet_rt_bind_decision(m);
  bind_regions(m);
}
