// Large working buffers on transparent huge pages where the OS allows it (THP "madvise" mode):
// the Winograd phases touch dozens of planes per tile (36 transform positions), which on 4 KB
// pages costs a TLB miss per access (docs/speed.md).
#pragma once
#include <cstddef>
#include <memory>

namespace unet_rt {

// 64-byte aligned; from 2 MB up, 2 MB aligned and advised as huge pages (platform.h). Free with
// free_buffer (BufferFree as a unique_ptr deleter). Throws std::bad_alloc.
void* alloc_buffer(size_t bytes);
void free_buffer(void* p);
struct BufferFree {
  void operator()(void* p) const { free_buffer(p); }
};

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
