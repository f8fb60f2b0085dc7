// See memory.h. The OS calls are platform.h's.
#include "core/memory.h"

#include <new>

#include "core/platform.h"

namespace unet_rt {

void* alloc_buffer(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= kHuge;
  const size_t align = huge ? kHuge : 64;
  void* p = platform::alloc_aligned(bytes, align);
  if (!p) throw std::bad_alloc();
  if (huge) platform::advise_huge_pages(p, (bytes + align - 1) / align * align);
  return p;
}

void free_buffer(void* p) { platform::free_aligned(p); }

}  // namespace unet_rt
