"""The C API's unet_rt_instances and unet_rt_segment apply the model file's decision as the Python Engine does
(libunet_rt built and installed by test_cpp_example's fixture, called through ctypes)."""
from __future__ import annotations

import ctypes

import numpy as np

import unet_rt
from test_cpp_example import installed  # noqa: F401  (builds and installs libunet_rt once)
from test_instances import DEC, SAMPLES, _calibrated
from unet_rt.io.images import read_image


def test_c_api_instances_and_decision(installed, tmp_path):  # noqa: F811
    lib = ctypes.CDLL(str(next(installed.glob("lib*/libunet_rt.so"))))
    path = _calibrated(tmp_path, DEC)
    eng = unet_rt.Engine(path)
    img = np.ascontiguousarray(read_image(SAMPLES / "image" / "25.png")[:90, :150])
    h, w = img.shape
    e = ctypes.c_void_p()
    lib.unet_rt_last_error.restype = ctypes.c_char_p
    assert lib.unet_rt_engine_create(str(path).encode(), None, ctypes.byref(e)) == 0, lib.unet_rt_last_error()
    try:
        labels = np.zeros((h, w), np.int32)
        n = ctypes.c_int64(-1)
        st = lib.unet_rt_instances(e, img.ctypes.data_as(ctypes.c_void_p), 0, 0, 1, h, w,
                                   labels.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(labels.size), ctypes.byref(n))
        assert st == 0, lib.unet_rt_last_error()
        np.testing.assert_array_equal(labels, eng.instances(img))
        assert n.value == labels.max() > 0
        seg = np.zeros((h, w), np.uint8)
        st = lib.unet_rt_segment(e, img.ctypes.data_as(ctypes.c_void_p), 0, 0, 1, h, w,
                                 seg.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(seg.size), 0)
        assert st == 0
        np.testing.assert_array_equal(seg, eng.segment(img))  # the stored threshold, not argmax
        assert not np.array_equal(seg, eng.predict(img).argmax(0))
        st = lib.unet_rt_instances(e, img.ctypes.data_as(ctypes.c_void_p), 0, 0, 1, h, w,
                                   labels.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(labels.size - 1), None)
        assert st == 1 and b"labels buffer" in lib.unet_rt_last_error()
    finally:
        lib.unet_rt_engine_destroy(e)
