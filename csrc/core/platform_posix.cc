// The POSIX side of platform.h: Linux (tested), macOS (unverified: no Mac here) and other POSIX
// systems. platform_win32.cc is the Windows side; exactly one of the two compiles to code.
#include "core/platform.h"

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#if defined(__linux__)
#include <sys/mman.h>
#include <sys/syscall.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

namespace unet_rt::platform {

ReadResult read_file(const std::string& path, std::vector<uint8_t>& out) {
  out.clear();
  // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused as not a regular file).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    return {err == ENOENT ? ReadStatus::NotFound : ReadStatus::CannotOpen, err};
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return {ReadStatus::CannotStat, errno};
  if (S_ISDIR(st.st_mode)) return {ReadStatus::Directory, EISDIR};
  if (S_ISFIFO(st.st_mode)) return {ReadStatus::Fifo, EINVAL};
  if (!S_ISREG(st.st_mode)) return {ReadStatus::NotRegular, EINVAL};
  const size_t size = size_t(st.st_size);
  try {
    out.resize(size);
  } catch (const std::bad_alloc&) {
    return {ReadStatus::OutOfMemory, ENOMEM};
  }
  size_t got = 0;
  while (got < size) {
    const ssize_t r = ::pread(fd, out.data() + got, size - got, off_t(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return {ReadStatus::CannotRead, errno};
    if (r == 0) break;  // shrank while being read
    got += size_t(r);
  }
  out.resize(got);
  return {};
}

void* alloc_aligned(size_t bytes, size_t align) {
  void* p = nullptr;
  const size_t size = bytes ? (bytes + align - 1) / align * align : align;
  return posix_memalign(&p, align, size) == 0 ? p : nullptr;
}

void free_aligned(void* p) { std::free(p); }

void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#else
  (void)p, (void)bytes;
#endif
}

long process_id() { return long(::getpid()); }

bool request_amx_permission(std::string* why) {
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__)) && defined(SYS_arch_prctl)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    if (why) *why = "the OS refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)";
    return false;
  }
  return true;
#else
  if (why) *why = "AMX tile data is requested on Linux only (arch_prctl)";
  return false;
#endif
}

namespace {

#if defined(__linux__)
// "48K", "1280K", "54M" -> bytes; 0 if unreadable.
int64_t sysfs_size(const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (...) {
    return 0;
  }
  const char unit = used < text.size() ? text[used] : '\0';
  return unit == 'K' ? v << 10 : unit == 'M' ? v << 20 : unit == 'G' ? v << 30 : v;
}

CacheSizes from_sysfs() {
  CacheSizes s;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_f(dir + "level"), type_f(dir + "type"), size_f(dir + "size");
    if (!level_f || !type_f || !size_f) break;
    int level = 0;
    std::string type, size;
    level_f >> level;
    type_f >> type;
    size_f >> size;
    if (type != "Data" && type != "Unified") continue;
    const int64_t bytes = sysfs_size(size);
    if (level == 1 && !s.l1d) s.l1d = bytes;
    if (level == 2 && !s.l2) s.l2 = bytes;
    if (level == 3 && !s.l3) s.l3 = bytes;
  }
  if (s.l1d || s.l2 || s.l3) s.source = "sysfs";
  return s;
}
#endif

#if defined(__APPLE__)
int64_t sysctl_int(const char* name) {
  int64_t v = 0;
  size_t n = sizeof v;
  return sysctlbyname(name, &v, &n, nullptr, 0) == 0 ? v : 0;
}

CacheSizes from_sysctl() {  // unverified (no Mac here); Apple Silicon reports the performance cores' caches
  CacheSizes s;
  s.l1d = sysctl_int("hw.perflevel0.l1dcachesize");
  if (!s.l1d) s.l1d = sysctl_int("hw.l1dcachesize");
  s.l2 = sysctl_int("hw.perflevel0.l2cachesize");
  if (!s.l2) s.l2 = sysctl_int("hw.l2cachesize");
  s.l3 = sysctl_int("hw.l3cachesize");
  if (s.l1d || s.l2 || s.l3) s.source = "sysctl";
  return s;
}
#endif

}  // namespace

CacheSizes cache_sizes_from_os() {
#if defined(__linux__)
  return from_sysfs();
#elif defined(__APPLE__)
  return from_sysctl();
#else
  return CacheSizes();
#endif
}

}  // namespace unet_rt::platform

#endif  // !_WIN32
