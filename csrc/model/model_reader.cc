// Model file reader: see model_reader.h. Validation mirrors src/unet_rt/format/model_file.py.
#include "model/model_reader.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <string_view>

#include "core/json.h"
#include "core/platform.h"
#include "runtime/normalize.h"

// Little-endian hosts only (x86, aarch64, and every target MSVC has, which defines no __BYTE_ORDER__).
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model file reader assumes a little-endian host"
#endif

namespace unet_rt {

namespace {

constexpr uint64_t kMaxHeader = 100ull * 1024 * 1024;  // as src/unet_rt/format/model_file.py MAX_HEADER
constexpr int64_t kMaxDim = int64_t(1) << 20;

[[noreturn]] void fail(const std::string& name, const std::string& msg) { throw ModelError(name + ": " + msg); }

int dtype_size(const std::string& dt) {
  static const std::map<std::string, int> sizes = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
                                                   {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
                                                   {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = sizes.find(dt);
  return it == sizes.end() ? 0 : it->second;
}

json::Value parse_meta_json(const std::string& name, const std::string& key, const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::JsonError& e) {
    fail(name, "bad '" + key + "' metadata: " + e.what());
  }
}

int get_int(const std::string& name, const json::Value& obj, const char* key, int lo, int64_t hi) {
  const json::Value* v = obj.find(key);
  if (!v) fail(name, std::string("'arch' metadata has no '") + key + "'");
  int64_t x;
  try {
    x = v->as_int64(key);
  } catch (const json::JsonError& e) {
    fail(name, std::string("bad 'arch' metadata: ") + e.what());
  }
  if (x < lo || x > hi)
    fail(name, std::string("bad 'arch' metadata: ") + key + " = " + std::to_string(x) + " is outside [" +
                   std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int(x);
}

}  // namespace

ModelFile::~ModelFile() = default;

// Read into memory this object owns, not mmap: a file rewritten in place while it is read then
// gives a parse error (or a stale but valid model), never SIGBUS. The OS calls are platform.h's
// (a FIFO is refused without waiting for a writer).
std::unique_ptr<ModelFile> ModelFile::open(const std::string& path) {
  std::unique_ptr<ModelFile> m(new ModelFile());
  using platform::ReadStatus;
  const platform::ReadResult r = platform::read_file(path, m->owned_);
  const std::string why = r.err ? std::string(" (") + std::strerror(r.err) + ")" : std::string();
  switch (r.status) {
    case ReadStatus::Ok: break;
    case ReadStatus::NotFound: throw IoError("model file not found: " + path + why, r.err);
    case ReadStatus::CannotOpen: throw IoError("cannot open model file: " + path + why, r.err);
    case ReadStatus::CannotStat: throw IoError("cannot stat model file " + path + why, r.err);
    case ReadStatus::Directory: throw IoError("not a regular file: " + path + " (a directory)", r.err);
    case ReadStatus::Fifo: throw IoError("not a regular file: " + path + " (a FIFO)", r.err);
    case ReadStatus::NotRegular: throw IoError("not a regular file: " + path, r.err);
    case ReadStatus::OutOfMemory: throw IoError("cannot read model file " + path + ": out of memory", r.err);
    case ReadStatus::CannotRead: throw IoError("cannot read model file " + path + why, r.err);
  }
  m->bytes_ = m->owned_.data();
  m->size_ = m->owned_.size();
  m->parse(path);
  return m;
}

std::unique_ptr<ModelFile> ModelFile::from_bytes(const void* data, size_t size, const std::string& name,
                                                 bool tensorrt_container) {
  std::unique_ptr<ModelFile> m(new ModelFile());
  m->owned_.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
  m->bytes_ = m->owned_.data();
  m->size_ = size;
  m->parse(name, tensorrt_container);
  return m;
}

void ModelFile::parse(const std::string& name, bool tensorrt_container) {
  // ---- container ---------------------------------------------------------------------------------
  if (size_ < 8) fail(name, "file too short (" + std::to_string(size_) + " bytes) to be a model file");
  uint64_t n = 0;
  std::memcpy(&n, bytes_, 8);
  if (n > kMaxHeader) {
    std::string_view head(reinterpret_cast<const char*>(bytes_), 8);
    if (head.find("ptrt") != std::string_view::npos || head.find("ftrt") != std::string_view::npos)
      fail(name,
           "this is a bare TensorRT plan: TensorRT models are run by the Python tensorrt backend "
           "(unet_rt.Engine(path, backend='tensorrt')), not by the native CPU runtime");
    fail(name, "not a unet-rt model file (bad header length " + std::to_string(n) + ")");
  }
  if (n > size_ - 8)
    fail(name, "truncated file: header of " + std::to_string(n) + " bytes but only " + std::to_string(size_ - 8) +
                   " bytes follow the length");
  json::Value root;
  try {
    root = json::parse(std::string_view(reinterpret_cast<const char*>(bytes_ + 8), size_t(n)));
  } catch (const json::JsonError& e) {
    fail(name, std::string("corrupt header: ") + e.what());
  }
  if (!root.is_object()) fail(name, "corrupt header: the JSON header is not an object");
  if (bytes_[8] != '{')  // as the safetensors library
    fail(name, "corrupt header: the JSON header does not start with '{'");
  const uint8_t* data = bytes_ + 8 + n;
  const uint64_t data_len = size_ - 8 - n;

  // ---- metadata ----------------------------------------------------------------------------------
  const json::Value* meta = root.find("__metadata__");
  if (!meta || !meta->is_object() || !meta->find("format"))
    fail(name, "a safetensors file, but not a unet-rt model (no format='unet-rt' metadata)");
  std::map<std::string, std::string> md;
  for (const auto& kv : meta->object) {
    if (!kv.second.is_string()) fail(name, "corrupt header: metadata value '" + kv.first + "' is not a string");
    md[kv.first] = kv.second.text;
  }
  if (md["format"] != "unet-rt")
    fail(name, "a safetensors file, but not a unet-rt model (format='" + md["format"] + "')");
  info_.kind = md.count("kind") ? md["kind"] : "weights";
  const bool trt = info_.kind == "tensorrt" && tensorrt_container;
  if (info_.kind == "tensorrt" && !trt)
    fail(name,
         "this model file holds a TensorRT engine: TensorRT models are run by the Python tensorrt "
         "backend (unet_rt.Engine(path, backend='tensorrt')), not by the native CPU runtime");
  if (info_.kind != "weights" && !trt) fail(name, "unknown model kind '" + info_.kind + "'");
  {
    auto it = md.find("format_version");
    if (it == md.end()) fail(name, "no format_version metadata");
    if (it->second != "1") fail(name, "format version " + it->second + ", this unet-rt reads version 1");
    info_.format_version = 1;
  }
  // arch
  if (!md.count("arch")) fail(name, "no 'arch' metadata");
  {
    json::Value a = parse_meta_json(name, "arch", md["arch"]);
    if (!a.is_object()) fail(name, "bad 'arch' metadata: not an object");
    Arch arch;
    arch.in_channels = get_int(name, a, "in_channels", 1, kMaxDim);
    arch.classes = get_int(name, a, "classes", 1, kMaxDim);
    arch.depth = get_int(name, a, "depth", 1, 8);
    arch.base = get_int(name, a, "base", 1, kMaxDim >> arch.depth);
    const json::Value* pad = a.find("padding");
    std::string padding = "valid";
    if (pad) {
      if (!pad->is_string()) fail(name, "bad 'arch' metadata: padding must be a string");
      padding = pad->text;
    }
    if (padding != "valid" && padding != "same")
      fail(name, "arch padding must be 'valid' or 'same', got '" + padding + "'");
    arch.same_padding = padding == "same";
    info_.arch = arch;
  }
  const Arch& arch = info_.arch;
  // normalization
  if (!md.count("normalization")) fail(name, "no 'normalization' metadata");
  {
    json::Value nv = parse_meta_json(name, "normalization", md["normalization"]);
    const json::Value* mean = nv.find("mean");
    const json::Value* sd = nv.find("std");
    auto bad = [&]() {
      fail(name, "normalization needs " + std::to_string(arch.in_channels) +
                     " finite means and positive finite stds (one per input channel), got " + md["normalization"]);
    };
    if (!mean || !sd || !mean->is_array() || !sd->is_array()) bad();
    if (mean->array.size() != size_t(arch.in_channels) || sd->array.size() != size_t(arch.in_channels)) bad();
    for (int c = 0; c < arch.in_channels; ++c) {
      const json::Value &m = mean->array[size_t(c)], &s = sd->array[size_t(c)];
      if (!m.is_number() || !s.is_number()) bad();
      float mf = float(m.number), sf = float(s.number);
      if (!std::isfinite(mf) || !std::isfinite(sf) || !(sf > 0.0f)) bad();
      info_.normalization.mean.push_back(mf);
      info_.normalization.std.push_back(sf);
    }
    try {
      parse_normalization_extras(nv, arch.in_channels, info_.normalization);
    } catch (const std::invalid_argument& e) {
      fail(name, e.what());
    }
  }
  // decision (optional; absent: argmax)
  info_.decision = default_decision(arch.classes);
  if (md.count("decision")) {
    json::Value dv = parse_meta_json(name, "decision", md["decision"]);
    try {
      info_.decision = parse_decision(dv, arch.classes);
    } catch (const std::invalid_argument& e) {
      fail(name, e.what());
    }
  }
  // class names (optional; empty -> class0, class1, ...)
  if (md.count("class_names")) {
    json::Value cn = parse_meta_json(name, "class_names", md["class_names"]);
    if (!cn.is_array()) fail(name, "bad 'class_names' metadata: not a list");
    for (const auto& v : cn.array) {
      if (!v.is_string()) fail(name, "bad 'class_names' metadata: names must be strings");
      info_.class_names.push_back(v.text);
    }
    if (!info_.class_names.empty() && info_.class_names.size() != size_t(arch.classes))
      fail(name,
           std::to_string(info_.class_names.size()) + " class names for " + std::to_string(arch.classes) + " classes");
  }
  if (info_.class_names.empty())
    for (int k = 0; k < arch.classes; ++k) info_.class_names.push_back("class" + std::to_string(k));
  info_.provenance_json = "{}";
  if (md.count("provenance")) {
    parse_meta_json(name, "provenance", md["provenance"]);
    info_.provenance_json = md["provenance"];
  }

  // ---- tensors -----------------------------------------------------------------------------------
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& kv : root.object) {
    if (kv.first == "__metadata__") continue;
    const std::string& tn = kv.first;
    const json::Value& t = kv.second;
    if (!t.is_object()) fail(name, "corrupt header: tensor '" + tn + "' is not an object");
    for (const auto& f : t.object)
      if (f.first != "dtype" && f.first != "shape" && f.first != "data_offsets")
        fail(name, "corrupt header: tensor '" + tn + "' has an unknown field '" + f.first + "'");
    const json::Value* dt = t.find("dtype");
    const json::Value* sh = t.find("shape");
    const json::Value* off = t.find("data_offsets");
    if (!dt || !sh || !off || !dt->is_string() || !sh->is_array() || !off->is_array() || off->array.size() != 2)
      fail(name, "corrupt header: tensor '" + tn + "' needs dtype, shape and data_offsets [begin, end]");
    int esize = dtype_size(dt->text);
    if (!esize) fail(name, "tensor '" + tn + "' has an unknown dtype '" + dt->text + "'");
    Entry e;
    e.name = tn;
    uint64_t numel = 1;
    bool overflow = false;
    try {
      for (const auto& d : sh->array) {
        int64_t v = d.as_int64("a shape dimension");
        if (v < 0) fail(name, "tensor '" + tn + "' has a negative dimension");
        e.shape.push_back(v);
        if (v && numel > (uint64_t(1) << 62) / uint64_t(v)) overflow = true;
        numel *= uint64_t(v);
      }
      int64_t b = off->array[0].as_int64("data_offsets"), en = off->array[1].as_int64("data_offsets");
      if (b < 0 || en < b) fail(name, "tensor '" + tn + "' has invalid data_offsets");
      e.begin = uint64_t(b);
      e.end = uint64_t(en);
    } catch (const json::JsonError& err) {
      fail(name, "corrupt header: tensor '" + tn + "': " + err.what());
    }
    uint64_t nbytes = 0;
    if (overflow || platform::mul_overflow(numel, uint64_t(esize), &nbytes))
      fail(name, "tensor '" + tn + "' has an absurd shape " + shape_str(e.shape));
    if (e.end > data_len)
      fail(name, "tensor '" + tn + "' data [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     ") lies beyond the end of the file (" + std::to_string(data_len) + " data bytes): truncated?");
    if (e.end - e.begin != nbytes)
      fail(name, "tensor '" + tn + "' holds " + std::to_string(e.end - e.begin) + " bytes but its shape " +
                     shape_str(e.shape) + " and dtype " + dt->text + " need " + std::to_string(nbytes));
    if (trt && (tn != "engine" || dt->text != "U8" || e.shape.size() != 1))
      fail(name, "a tensorrt model file holds one tensor 'engine' (U8, 1-D), not '" + tn + "' (" + dt->text + ")");
    if (!trt && dt->text != "F32") fail(name, "tensor '" + tn + "' has dtype " + dt->text + ", expected F32");
    entries.push_back(std::move(e));
  }
  {
    std::vector<const Entry*> sorted;
    for (const auto& e : entries) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i]->begin < sorted[i - 1]->end)
        fail(name, "tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap in the file");
    // As the safetensors format (and its Python library, which loads what this reader accepts):
    // the tensors cover the data exactly, without holes or trailing bytes.
    uint64_t at = 0;
    for (const Entry* e : sorted) {
      if (e->begin != at)
        fail(name, "corrupt file: " + std::to_string(e->begin - at) + " unused bytes before tensor '" + e->name + "'");
      at = e->end;
    }
    if (at != data_len) fail(name, "corrupt file: " + std::to_string(data_len - at) + " bytes after the last tensor");
  }
  info_.metadata = md;
  if (trt) {
    if (entries.size() != 1) fail(name, "a tensorrt model file needs an 'engine' uint8 tensor");
    return;
  }
  const auto want = expected_weight_shapes(arch);
  for (const auto& e : entries) {
    auto w = want.find(e.name);
    if (w == want.end()) fail(name, "weights do not match the architecture: unexpected tensor '" + e.name + "'");
    if (e.shape != w->second)
      fail(name, "tensor " + e.name + " has shape " + shape_str(e.shape) + ", expected " + shape_str(w->second));
  }
  for (const auto& w : want) {
    bool found = false;
    for (const auto& e : entries) found = found || e.name == w.first;
    if (!found) fail(name, "weights do not match the architecture: missing tensor '" + w.first + "'");
  }
  for (const auto& e : entries) {
    const uint8_t* p = data + e.begin;
    size_t count = size_t((e.end - e.begin) / 4);
    const float* f;
    if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
      f = reinterpret_cast<const float*>(p);
    } else {
      std::unique_ptr<float[]> copy(new float[count ? count : 1]);
      std::memcpy(copy.get(), p, count * 4);
      f = copy.get();
      aligned_copies_.push_back(std::move(copy));
    }
    for (size_t i = 0; i < count; ++i)
      if (!std::isfinite(f[i])) fail(name, "tensor " + e.name + " holds NaN or Inf");
    weights_[e.name] = TensorView{e.shape, f};
  }
}

}  // namespace unet_rt
