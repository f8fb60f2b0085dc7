// Reader of the unet-rt model file (src/unet_rt/format/model_file.py; docs/architecture.md, "File format"): a safetensors container
// (8-byte little-endian header length, JSON header, raw little-endian tensors) whose
// __metadata__ holds format, format_version, kind, arch, normalization, class_names, provenance.
//
// Every field is validated; nothing outside the file's bytes is ever read. Errors throw
// ModelError (a std::invalid_argument) with a message that names the file and the problem, or
// IoError (file missing / unreadable).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "postprocess/decision.h"
#include "core/types.h"

namespace unet_rt {

class ModelError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class IoError : public std::runtime_error {
 public:
  IoError(const std::string& msg, int err) : std::runtime_error(msg), errno_(err) {}
  int error_number() const { return errno_; }

 private:
  int errno_;
};

struct Normalization {
  std::vector<float> mean, std;    // per input channel; the network sees (x - mean) / std
  std::vector<float> percentiles;  // empty, or [lo, hi]: per-image percentile normalisation first (normalize.h)
};

struct ModelInfo {
  std::string kind;  // "weights", or "tensorrt" when the reader is asked for a TensorRT container
  int format_version = 0;
  Arch arch;
  Normalization normalization;
  std::vector<std::string> class_names;
  std::string provenance_json;                  // the raw JSON text of the provenance metadata ("{}" if absent)
  Decision decision;                            // the "decision" metadata (decision.h); absent: default_decision
  std::map<std::string, std::string> metadata;  // every __metadata__ entry as stored (validated above)
};

class ModelFile {
 public:
  // Opens and validates a model file: a regular file, read whole into memory this object owns.
  static std::unique_ptr<ModelFile> open(const std::string& path);
  // The same from bytes in memory (copied); `name` is used in error messages. With
  // `tensorrt_container`, a "tensorrt" container (metadata as a weights file's, one U8 tensor "engine":
  // a serialized TensorRT engine, which this reader does not look into) is accepted too: the Python
  // tensorrt backend runs it, and this is its validator.
  static std::unique_ptr<ModelFile> from_bytes(const void* data, size_t size, const std::string& name = "<memory>",
                                               bool tensorrt_container = false);
  ~ModelFile();
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;

  const ModelInfo& info() const { return info_; }
  // Views into the file's bytes (or into aligned copies for misaligned tensors); valid while this
  // ModelFile lives.
  const Weights& weights() const { return weights_; }

 private:
  ModelFile() = default;
  void parse(const std::string& name, bool tensorrt_container = false);

  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> owned_;  // the file's bytes
  std::vector<std::unique_ptr<float[]>> aligned_copies_;
  ModelInfo info_;
  Weights weights_;
};

}  // namespace unet_rt
