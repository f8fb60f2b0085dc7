// libFuzzer target for the model file reader (not run by the tests; tests/test_model_reader.py
// fuzzes through Python). Build with -DUNET_RT_FUZZ=ON:
//   clang: libFuzzer + ASan/UBSan  ->  build/fuzz/fuzz_model_reader -max_total_time=60 CORPUS_DIR
//   gcc:   ASan/UBSan with a small driver running every file given on the command line once.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include "src/model_reader.h"

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

#ifdef UNET_RT_FUZZ_STANDALONE
int main(int argc, char** argv) {
  int n = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    ++n;
  }
  std::printf("ran %d inputs\n", n);
  return 0;
}
#endif
