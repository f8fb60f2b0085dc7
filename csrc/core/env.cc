// The executor's environment variables: see env.h.
#include "core/env.h"

#include <cstdlib>

namespace unet_rt {

EnvOptions read_env() {
  EnvOptions e;
  if (const char* v = std::getenv("UNET_RT_ISA")) e.isa = v;
  if (const char* v = std::getenv("UNET_RT_PROFILE")) e.profile = std::string(v) == "1";
  if (const char* v = std::getenv("UNET_RT_WINOGRAD")) e.winograd = std::string(v) != "0";
  if (const char* v = std::getenv("UNET_RT_WINOGRAD_MAX_CHANNELS")) e.wino_max_channels = std::atoll(v);
  if (const char* v = std::getenv("UNET_RT_WINOGRAD_RAW_MB")) e.wino_raw_mb = std::atof(v);
  if (const char* v = std::getenv("UNET_RT_WINOGRAD_PRIVATE_KB")) e.wino_private_kb = std::atof(v);
  if (const char* v = std::getenv("UNET_RT_WINOGRAD_KC_BLOCKS")) e.wino_kc_blocks = std::atoi(v);
  return e;
}

}  // namespace unet_rt
