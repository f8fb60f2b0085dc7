// Large working buffers on transparent huge pages where the OS allows it (THP "madvise" mode):
// the Winograd phases touch dozens of planes per tile (36 transform positions), which on 4 KB
// pages costs a TLB miss per access (docs/speed.md).
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

namespace unet_rt {

// 64-byte aligned; from 2 MB up, 2 MB aligned and advised as huge pages (platform.h). Free with
// free_buffer (BufferFree as a unique_ptr deleter). Throws std::bad_alloc.
void* alloc_buffer(size_t bytes);
void free_buffer(void* p);
struct BufferFree {
  void operator()(void* p) const { free_buffer(p); }
};

// std::vector storage from alloc_buffer: 64-byte aligned, so that a kernel's 64-byte vector loads
// and AMX tile rows never straddle two cache lines (std::vector's own storage is only 16-byte
// aligned: glibc's large blocks start 16 bytes into a page). For packed weights (executor/pack.h).
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(alloc_buffer(n * sizeof(T))); }
  void deallocate(T* p, size_t) { free_buffer(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const {
    return false;
  }
};
template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// A growable per-thread (or per-object) scratch buffer of T, reallocated only to grow.
template <class T>
class Scratch {
 public:
  T* get(size_t n) {
    if (n > n_) {
      p_.reset(static_cast<T*>(alloc_buffer(n * sizeof(T))));
      n_ = n;
    }
    return p_.get();
  }

 private:
  std::unique_ptr<T, BufferFree> p_;
  size_t n_ = 0;
};

}  // namespace unet_rt
