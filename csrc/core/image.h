// Image types shared by the tiler, the normaliser, the engine and the boundaries (C API, bindings):
// the pixel types and a strided view of an image [C, H, W], possibly a region of a larger frame.
#pragma once
#include <cstdint>

namespace unet_rt {

enum class DType { U8, U16, F32 };

// An image [C, H, W] in memory; strides in elements (any layout: CHW, HWC, ...).
struct ImageView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int channels = 0, height = 0, width = 0;
  int64_t channel_stride = 0, row_stride = 0, col_stride = 1;
  // A region of interest of a larger frame (the C API's ROI): the view's pixel (0, 0) is the frame's
  // (frame_y, frame_x), the frame has frame_height x frame_width pixels with the same strides, and
  // its pixels around the view are the tiles' real context: mirror extrapolation happens only at the
  // frame's edges. frame_height = frame_width = 0 (the default): the view is the whole frame.
  int frame_y = 0, frame_x = 0, frame_height = 0, frame_width = 0;
  // The part of the frame the buffer holds, in frame coordinates: rows [held_y, held_y + held_height)
  // and columns [held_x, held_x + held_width) (a block of a frame too large for memory, unet_rt.scale).
  // The tiler refuses a run whose tiles would read outside it. held_height = 0 (the default): the
  // buffer holds the whole frame.
  int held_y = 0, held_x = 0, held_height = 0, held_width = 0;
};

// Contiguous CHW view.
inline ImageView chw_view(const void* data, DType dt, int c, int h, int w) {
  return ImageView{data, dt, c, h, w, int64_t(h) * w, w, 1};
}

}  // namespace unet_rt
