// The environment variables that tune the executor (docs/speed.md), read in this one place into one
// struct. read_env() reads them afresh on each call: an engine built after a variable changes sees the
// new value (the executor reads them when a Network is built, the engine's info when it reports).
#pragma once
#include <optional>
#include <string>

namespace unet_rt {

struct EnvOptions {
  std::string isa;                             // UNET_RT_ISA: ref | avx2 | avx512 | auto ("" when unset: auto)
  std::optional<bool> profile;                 // UNET_RT_PROFILE: "1" prints each tile's profile rows
  bool winograd = true;                        // UNET_RT_WINOGRAD: "0" runs every conv direct
  std::optional<long long> wino_max_channels;  // UNET_RT_WINOGRAD_MAX_CHANNELS: larger convs run direct
  std::optional<double> wino_raw_mb;           // UNET_RT_WINOGRAD_RAW_MB: larger transformed weights keep taps
  std::optional<double> wino_private_kb;       // UNET_RT_WINOGRAD_PRIVATE_KB: V + M of a private band
  std::optional<int> wino_kc_blocks;           // UNET_RT_WINOGRAD_KC_BLOCKS: input blocks per GEMM pass (0: all)
};

EnvOptions read_env();

}  // namespace unet_rt
