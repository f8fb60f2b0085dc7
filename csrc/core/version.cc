// The version: pyproject.toml's, through CMake's project(VERSION) (CMakeLists.txt defines it for this file).
#ifndef UNET_RT_VERSION_STRING
#error "UNET_RT_VERSION_STRING is defined by CMakeLists.txt from pyproject.toml's version"
#endif
namespace unet_rt {
const char* version() { return UNET_RT_VERSION_STRING; }
}  // namespace unet_rt
