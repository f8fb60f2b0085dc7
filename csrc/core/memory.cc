// See memory.h.
#include "core/memory.h"

#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace unet_rt {

void* alloc_buffer(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= kHuge;
  const size_t align = huge ? kHuge : 64, size = (bytes + align - 1) / align * align;
  void* p = nullptr;
  if (posix_memalign(&p, align, size ? size : align) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#endif
  return p;
}

}  // namespace unet_rt
