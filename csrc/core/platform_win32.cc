// The Windows side of platform.h (platform_posix.cc is the other). Built and run here with MinGW-w64
// under Wine (make test-windows); written to the Win32 documentation for MSVC, which cannot run here.
#include "core/platform.h"

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <new>

#if defined(__MINGW32__)
// MinGW-w64's GCC keeps thread_local variables in emulated TLS (libgcc's emutls) and libstdc++ runs
// their destructors (__cxa_thread_atexit) from a winpthreads key destructor; winpthreads runs those in
// the order the keys were created. Emutls creates its key at the first thread_local access, which
// comes before the first destructor registration creates libstdc++'s: at thread exit the variables'
// storage was then freed before their destructors ran (a use-after-free in every pool thread with a
// Scratch buffer; Wine with WINEDEBUG=warn+heap crashes on it each time). Registering a no-op
// destructor while the library loads, before any thread_local is touched, creates libstdc++'s key
// first, so destructors run while the storage is still there.
extern "C" int __cxa_thread_atexit(void (*dtor)(void*), void* obj, void* dso);
namespace {
void no_op(void*) {}
[[maybe_unused]] const int kThreadAtexitKeyFirst = __cxa_thread_atexit(no_op, nullptr, nullptr);
}  // namespace
#endif

namespace unet_rt::platform {

namespace {

int errno_of(DWORD e) {
  switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH: return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION: return EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return ENOMEM;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_NO_UNICODE_TRANSLATION: return EINVAL;
    case ERROR_FILENAME_EXCED_RANGE: return ENAMETOOLONG;
    default: return EIO;
  }
}

// UTF-8 -> UTF-16 for the wide API; false if the path is not valid UTF-8.
bool widen(const std::string& s, std::wstring& w) {
  if (s.empty()) return false;
  const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), int(s.size()), nullptr, 0);
  if (n <= 0) return false;
  w.assign(size_t(n), L'\0');
  return MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), int(s.size()), &w[0], n) == n;
}

}  // namespace

ReadResult read_file(const std::string& path, std::vector<uint8_t>& out) {
  out.clear();
  std::wstring wpath;
  if (!widen(path, wpath)) return {ReadStatus::NotFound, ENOENT};
  // FILE_FLAG_BACKUP_SEMANTICS opens a directory too, so that it is reported as one; the share modes
  // let others write or delete the file while it is read (as on POSIX).
  HANDLE h = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                         OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    const int err = errno_of(GetLastError());
    return {err == ENOENT ? ReadStatus::NotFound : ReadStatus::CannotOpen, err};
  }
  struct Closer {
    HANDLE h;
    ~Closer() { CloseHandle(h); }
  } closer{h};
  const DWORD type = GetFileType(h);
  if (type == FILE_TYPE_PIPE) return {ReadStatus::Fifo, EINVAL};
  if (type != FILE_TYPE_DISK) return {ReadStatus::NotRegular, EINVAL};
  BY_HANDLE_FILE_INFORMATION info;
  if (!GetFileInformationByHandle(h, &info)) return {ReadStatus::CannotStat, errno_of(GetLastError())};
  if (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) return {ReadStatus::Directory, EISDIR};
  const uint64_t size64 = (uint64_t(info.nFileSizeHigh) << 32) | info.nFileSizeLow;
  if (size64 > uint64_t(SIZE_MAX)) return {ReadStatus::OutOfMemory, ENOMEM};
  const size_t size = size_t(size64);
  try {
    out.resize(size);
  } catch (const std::bad_alloc&) {
    return {ReadStatus::OutOfMemory, ENOMEM};
  }
  size_t got = 0;
  while (got < size) {
    const DWORD want = DWORD(std::min<size_t>(size - got, size_t(1) << 30));
    DWORD r = 0;
    if (!ReadFile(h, out.data() + got, want, &r, nullptr)) return {ReadStatus::CannotRead, errno_of(GetLastError())};
    if (r == 0) break;  // shrank while being read
    got += r;
  }
  out.resize(got);
  return {};
}

void* alloc_aligned(size_t bytes, size_t align) {
  const size_t size = bytes ? (bytes + align - 1) / align * align : align;
  return _aligned_malloc(size, align);
}

void free_aligned(void* p) { _aligned_free(p); }

void advise_huge_pages(void*, size_t) {}  // large pages need SeLockMemoryPrivilege: not asked for

long process_id() { return long(GetCurrentProcessId()); }

bool request_amx_permission(std::string* why) {
  if (why) *why = "AMX tile data is requested on Linux only (arch_prctl)";
  return false;
}

CacheSizes cache_sizes_from_os() {
  CacheSizes s;
  DWORD len = 0;
  GetLogicalProcessorInformation(nullptr, &len);
  std::vector<SYSTEM_LOGICAL_PROCESSOR_INFORMATION> v(len / sizeof(SYSTEM_LOGICAL_PROCESSOR_INFORMATION) + 1);
  len = DWORD(v.size() * sizeof(SYSTEM_LOGICAL_PROCESSOR_INFORMATION));
  if (len && GetLogicalProcessorInformation(v.data(), &len)) {
    v.resize(len / sizeof(SYSTEM_LOGICAL_PROCESSOR_INFORMATION));
    for (const auto& e : v) {
      if (e.Relationship != RelationCache) continue;
      const CACHE_DESCRIPTOR& c = e.Cache;
      if (c.Type != CacheData && c.Type != CacheUnified) continue;
      if (c.Level == 1 && !s.l1d) s.l1d = int64_t(c.Size);
      if (c.Level == 2 && !s.l2) s.l2 = int64_t(c.Size);
      if (c.Level == 3 && !s.l3) s.l3 = int64_t(c.Size);
    }
    if (s.l1d || s.l2 || s.l3) s.source = "GetLogicalProcessorInformation";
  }
  return s;
}

}  // namespace unet_rt::platform

#endif  // _WIN32
