// The platform layer: every call into the operating system, and every compiler-specific way of
// reading the CPU, sits behind these few functions. The rest of the core is standard C++17.
//
//   platform_posix.cc   Linux, macOS and other POSIX systems (open/fstat/pread, posix_memalign +
//                       THP madvise, getpid, sysfs/sysctl cache sizes, arch_prctl for AMX on Linux)
//   platform_win32.cc   Windows (CreateFileW/ReadFile, _aligned_malloc, GetCurrentProcessId,
//                       GetLogicalProcessorInformation); built with MinGW-w64 here, MSVC unverified
//   platform_cpu.cc     x86 CPUID + XGETBV (GCC/Clang <cpuid.h> and MSVC <intrin.h> spellings),
//                       shared by both; on other architectures every x86 feature reads false
//
// The thread pool neither names nor pins its threads: there is no thread naming or affinity to port.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace unet_rt::platform {

// ---- files ----------------------------------------------------------------------------------------
// A whole regular file read into memory the caller owns (never mapped: a file rewritten while it is
// read then gives a parse error, never SIGBUS or an access violation). A FIFO is refused without
// waiting for a writer.
enum class ReadStatus { Ok, NotFound, CannotOpen, CannotStat, Directory, Fifo, NotRegular, CannotRead, OutOfMemory };
struct ReadResult {
  ReadStatus status = ReadStatus::Ok;
  int err = 0;  // an errno value (on Windows translated from the system error), 0 when Ok
};
// Paths are UTF-8 (on Windows converted to UTF-16 for the wide API). If the file shrinks while it is
// read, `out` holds what was there.
ReadResult read_file(const std::string& path, std::vector<uint8_t>& out);

// ---- memory ---------------------------------------------------------------------------------------
// `bytes` rounded up to a multiple of `align` (a power of two, >= sizeof(void*)); nullptr when out of
// memory. Free with free_aligned (on Windows std::free would be wrong).
void* alloc_aligned(size_t bytes, size_t align);
void free_aligned(void* p);
// Ask for transparent huge pages on [p, p + bytes) (Linux THP "madvise" mode); advice only, and a
// no-op elsewhere (Windows large pages need the SeLockMemoryPrivilege that applications do not hold).
void advise_huge_pages(void* p, size_t bytes);

// ---- processes ------------------------------------------------------------------------------------
// The calling process's id (the thread pool compares it to notice a fork() child).
long process_id();

// ---- CPU ------------------------------------------------------------------------------------------
// x86 features the CPU has AND the OS saves the state of (XCR0 via XGETBV: AVX needs the YMM state,
// AVX-512 the opmask/ZMM state, AMX the tile state). All false on other architectures.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512bf16 = false;
  bool amx_tile = false, amx_bf16 = false;  // CPU and XCR0; Linux still needs request_amx_permission()
};
const CpuFeatures& cpu_features();  // read once per process

// Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), once, before the first tile instruction. Other
// systems: false, with the reason in *why.
bool request_amx_permission(std::string* why);

// Data/unified cache sizes in bytes as the OS (or the CPU) reports them for one core; 0 = unknown.
// l3 is the whole shared cache the core sits behind.
struct CacheSizes {
  int64_t l1d = 0, l2 = 0, l3 = 0;
  std::string source;  // "sysfs", "cpuid", "sysctl", "GetLogicalProcessorInformation" or "unknown"
};
const CacheSizes& cache_sizes();      // read once per process: the OS first, CPUID where the OS says nothing
CacheSizes cache_sizes_from_cpuid();  // CPUID leaf 4 (Intel) / 0x8000001D (AMD); zeros off x86
CacheSizes cache_sizes_from_os();     // sysfs / sysctl / GetLogicalProcessorInformation; source "" if none

// ---- checked arithmetic (no __builtin_*_overflow in the portable parts) --------------------------
template <class T>
bool mul_overflow(T a, T b, T* r) {
  static_assert(std::is_unsigned<T>::value, "unsigned only");
  *r = T(a * b);
  return a != 0 && *r / a != b;
}
template <class T>
bool add_overflow(T a, T b, T* r) {
  static_assert(std::is_unsigned<T>::value, "unsigned only");
  *r = T(a + b);
  return *r < a;
}

}  // namespace unet_rt::platform
