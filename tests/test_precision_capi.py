"""The C API's precision option (unet_rt_options.precision, unet_rt_info.precision), through ctypes on
the libunet_rt that test_cpp_example's fixture builds and installs. The structs below mirror
csrc/include/unet_rt/unet_rt.h; keep them in step with it."""
from __future__ import annotations

import ctypes

import numpy as np

import unet_rt
from test_bf16 import SAMPLES, SHIPPED, SIMD_BF16
from test_cpp_example import installed  # noqa: F401  (builds and installs libunet_rt once)
from unet_rt.io.images import read_image


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("threads", ctypes.c_int), ("tile", ctypes.c_int), ("memory_budget_mb", ctypes.c_int),
                ("overlap", ctypes.c_float), ("gaussian_blend", ctypes.c_int), ("precision", ctypes.c_int)]


class Info(ctypes.Structure):
    _fields_ = ([("struct_size", ctypes.c_size_t)]
                + [(n, ctypes.c_int) for n in ("in_channels", "classes", "depth", "base", "same_padding", "halo",
                                               "tile", "threads", "memory_budget_mb")]
                + [("isa", ctypes.c_char * 16), ("precision", ctypes.c_int)])


def test_c_api_precision(installed):  # noqa: F811
    lib = ctypes.CDLL(str(next(installed.glob("lib*/libunet_rt.so"))))
    lib.unet_rt_last_error.restype = ctypes.c_char_p
    img = np.ascontiguousarray(read_image(SAMPLES[0])[:200, :200])
    h, w = img.shape
    out = {}
    for prec in (0, 1):
        opt = Options()
        lib.unet_rt_options_init(ctypes.byref(opt))
        assert opt.precision == 0
        opt.precision, opt.threads = prec, 2
        e = ctypes.c_void_p()
        assert lib.unet_rt_engine_create(str(SHIPPED).encode(), ctypes.byref(opt), ctypes.byref(e)) == 0, \
            lib.unet_rt_last_error()
        try:
            info = Info()
            info.struct_size = ctypes.sizeof(Info)
            assert lib.unet_rt_engine_info(e, ctypes.byref(info)) == 0
            assert info.precision == (prec if SIMD_BF16 else 0)
            seg = np.zeros((h, w), np.uint8)
            assert lib.unet_rt_segment(e, img.ctypes.data_as(ctypes.c_void_p), 0, 0, 1, h, w,
                                       seg.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(seg.size), 0) == 0
            out[prec] = seg
        finally:
            lib.unet_rt_engine_destroy(e)
    np.testing.assert_array_equal(out[1], unet_rt.Engine(SHIPPED, precision="bf16").segment(img))
    assert (out[0] == out[1]).mean() >= 0.995
    opt = Options()
    lib.unet_rt_options_init(ctypes.byref(opt))
    opt.precision = 7
    e = ctypes.c_void_p()
    assert lib.unet_rt_engine_create(str(SHIPPED).encode(), ctypes.byref(opt), ctypes.byref(e)) != 0
    assert b"precision" in lib.unet_rt_last_error() and not e.value
