# Compiler flags of the x86 ISA files (csrc/kernels/<family>/<isa>.cc), per compiler:
#   UNET_RT_X86_FLAGS_<isa>   for isa in avx2, avx512, avx512bf16, amxbf16
# GCC and Clang (MinGW-w64 included): -m flags. MSVC: /arch, to its documentation ("/arch (x64)":
# /arch:AVX2 enables AVX2 (FMA and F16C code generation with it), /arch:AVX512 enables AVX512F/CD/BW/
# DQ/VL); MSVC has no /arch for AVX512-BF16 or AMX and compiles their intrinsics under /arch:AVX512.
# The MSVC lines are unverified (no MSVC here). Only the files themselves get these flags: the
# binary runs on any x86-64 and kernels/dispatch.cc picks the tier at run time.
if(MSVC AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  set(UNET_RT_X86_FLAGS_avx2 "/arch:AVX2")
  set(UNET_RT_X86_FLAGS_avx512 "/arch:AVX512")
  set(UNET_RT_X86_FLAGS_avx512bf16 "/arch:AVX512")
  set(UNET_RT_X86_FLAGS_amxbf16 "/arch:AVX512")
else()
  set(UNET_RT_X86_FLAGS_avx2 -mavx2 -mfma -mf16c)
  set(UNET_RT_X86_FLAGS_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c)
  set(UNET_RT_X86_FLAGS_avx512bf16 ${UNET_RT_X86_FLAGS_avx512} -mavx512bf16)
  set(UNET_RT_X86_FLAGS_amxbf16 ${UNET_RT_X86_FLAGS_avx512bf16} -mamx-tile -mamx-bf16)
  if(MINGW)
    # The Win64 ABI keeps the stack 16-byte aligned and GCC cannot realign it for 32/64-byte spills
    # (GCC bug 54412): have the assembler turn aligned vector moves into unaligned ones (binutils >= 2.38).
    foreach(isa avx2 avx512 avx512bf16 amxbf16)
      list(APPEND UNET_RT_X86_FLAGS_${isa} -Wa,-muse-unaligned-vector-move)
    endforeach()
  endif()
endif()
