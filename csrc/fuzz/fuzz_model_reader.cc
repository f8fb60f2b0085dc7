// libFuzzer target for the model file reader: `make fuzz` (docs/fuzzing.md) runs it with ASan +
// UBSan; make test replays tests/corpus/model_reader/ through it (tests/test_fuzz_corpus.py).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include "model/model_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto m = unet_rt::ModelFile::from_bytes(data, size, "fuzz");
    // touch every tensor's bytes: an out-of-range view would be caught by ASan here
    volatile float sink = 0;
    for (const auto& kv : m->weights()) {
      size_t n = 1;
      for (auto d : kv.second.shape) n *= size_t(d);
      for (size_t i = 0; i < n; ++i) sink = sink + kv.second.data[i];
    }
  } catch (const unet_rt::ModelError&) {
  }
  return 0;
}

#include "standalone_main.h"
