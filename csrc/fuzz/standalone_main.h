// Without libFuzzer (gcc, or the replay drivers make test builds): main() runs
// LLVMFuzzerTestOneInput once on each file named on the command line. Include at the end of a target.
#pragma once
#ifdef UNET_RT_FUZZ_STANDALONE
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

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
