# Cross-compiling for 64-bit ARM Linux with Debian's GNU cross toolchain (apt-get install
# g++-aarch64-linux-gnu); the binaries run on an aarch64 machine or under qemu-user
# (qemu-aarch64 -L /usr/aarch64-linux-gnu PROGRAM). `make test-aarch64` uses this file:
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# try_run and the like: run target programs under qemu where it is installed
find_program(UNET_RT_QEMU_AARCH64 qemu-aarch64)
if(UNET_RT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${UNET_RT_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
