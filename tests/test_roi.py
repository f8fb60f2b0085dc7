"""The C API's region of interest reads the frame around it (unet_rt.h, unet_rt_image): a U-Net tile
needs `halo` pixels of context beyond the pixels it segments, and the frame's real pixels are that
context; mirror extrapolation happens only at the frame's edges. (It used to mirror at the ROI's own
edges, as if the ROI were the whole image: wrong near the ROI's border.)

What is equal, for a valid (unpadded) network: the probabilities of ROI r of frame F equal the crop
to r of F's whole-frame probabilities up to fp32 rounding (|diff| <= 1e-4: the tiles' shapes differ,
so Winograd block remainders round differently; measured at most 4.7e-5 here, and within 2e-5 with
UNET_RT_WINOGRAD=0), for every ROI position (the ROI is tiled on the frame's 2^depth pooling grid),
and so do the labels wherever the probabilities are not within 1e-3 of the decision boundary. The
ROI segmented without its context differs by more than 0.1 (test_roi_context_matters). The same holds against an explicit reference that never uses the ROI
path: F padded with numpy's reflect mode, cut on the pooling grid with halo + 2^depth pixels of real
context around r, segmented whole by _core.Engine, cropped to r.

libunet_rt is built and installed by test_cpp_example's fixture and called through ctypes."""
from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from _model_bytes import build, metadata, random_tensors, tiny_arch
from test_cpp_example import installed  # noqa: F401  (builds and installs libunet_rt once)
from unet_rt.format import geometry

_core = pytest.importorskip("unet_rt._core")

DEPTH = 2
H, W = 100, 130


class Image(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("data", ctypes.c_void_p), ("dtype", ctypes.c_int),
                ("layout", ctypes.c_int), ("channels", ctypes.c_int), ("height", ctypes.c_int),
                ("width", ctypes.c_int), ("row_pitch", ctypes.c_size_t), ("plane_pitch", ctypes.c_size_t),
                ("data_bytes", ctypes.c_size_t), ("roi_x", ctypes.c_int), ("roi_y", ctypes.c_int),
                ("roi_width", ctypes.c_int), ("roi_height", ctypes.c_int)]


class Output(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("labels", ctypes.c_void_p), ("labels_dtype", ctypes.c_int),
                ("labels_pitch", ctypes.c_size_t), ("labels_bytes", ctypes.c_size_t), ("scores", ctypes.c_void_p),
                ("scores_row_pitch", ctypes.c_size_t), ("scores_plane_pitch", ctypes.c_size_t),
                ("scores_bytes", ctypes.c_size_t), ("logits", ctypes.c_int)]


@pytest.fixture(scope="module")
def capi(installed, tmp_path_factory):  # noqa: F811
    lib = ctypes.CDLL(str(next(installed.glob("lib*/libunet_rt.so"))))
    lib.unet_rt_last_error.restype = ctypes.c_char_p
    # normalised to the frame's range, so that the probabilities vary (p(class 1) from ~0 to 1, std 0.38)
    arch = tiny_arch(depth=DEPTH, base=4)
    data = build(random_tensors(arch, 1), metadata(arch, normalization=json.dumps({"mean": [2000.0], "std": [600.0]})))
    path = tmp_path_factory.mktemp("roi") / "tiny.plan"
    path.write_bytes(data)
    e = ctypes.c_void_p()
    assert lib.unet_rt_engine_create_from_memory(data, ctypes.c_size_t(len(data)), None, ctypes.byref(e)) == 0, \
        lib.unet_rt_last_error()
    yield lib, e, path
    lib.unet_rt_engine_destroy(e)


def frame() -> np.ndarray:
    """A textured 16-bit frame (structure at every scale, so a wrong context shows)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:H, 0:W]
    f = 2000 + 800 * np.sin(x / 5.0) * np.cos(y / 7.0) + 300 * rng.standard_normal((H, W))
    return np.clip(f, 0, 65535).astype(np.uint16)


def run_roi(capi, img: np.ndarray, roi=None):
    """Probabilities [2, rh, rw] and u8 labels [rh, rw] of `roi` = (x, y, w, h) of img, one unet_rt_run."""
    lib, e, _ = capi
    im = Image()
    lib.unet_rt_image_init(ctypes.byref(im), img.ctypes.data_as(ctypes.c_void_p), 1, 0, 1, img.shape[0], img.shape[1])
    im.data_bytes = img.nbytes
    rx, ry, rw, rh = roi if roi else (0, 0, img.shape[1], img.shape[0])
    if roi:
        im.roi_x, im.roi_y, im.roi_width, im.roi_height = roi
    probs = np.full((2, rh, rw), np.nan, np.float32)
    labels = np.full((rh, rw), 255, np.uint8)
    out = Output()
    lib.unet_rt_output_init(ctypes.byref(out))
    out.labels, out.labels_bytes = labels.ctypes.data, labels.nbytes
    out.scores, out.scores_bytes = probs.ctypes.data, probs.nbytes
    assert lib.unet_rt_run(e, ctypes.byref(im), ctypes.byref(out), None) == 0, lib.unet_rt_last_error()
    return probs, labels


ROIS = [  # (x, y, width, height)
    (12, 8, 40, 36),    # on the pooling grid (multiples of 2^depth)
    (7, 5, 41, 37),     # off the grid
    (0, 0, 30, 21),     # at the frame's corner: mirrored there, real pixels on the other sides
    (W - 25, H - 18, 25, 18),
    (61, 43, 1, 1),     # one pixel
    (3, 50, W - 3, 9),  # a strip reaching the right edge
]


def assert_same(got, want):
    gp, gl = got
    wp, wl = want
    np.testing.assert_allclose(gp, wp, rtol=0, atol=1e-4)
    clear = np.abs(wp[1] - 0.5) > 1e-3  # argmax of 2 classes, away from the boundary
    np.testing.assert_array_equal(gl[clear], wl[clear])
    assert clear.mean() > 0.9
    assert 0.2 < (wl == 1).mean() < 0.8 or wl.size == 1


@pytest.mark.parametrize("roi", ROIS)
def test_roi_equals_the_crop_of_the_whole_frame(capi, roi):
    f = frame()
    whole_p, whole_l = run_roi(capi, f)
    rx, ry, rw, rh = roi
    assert_same(run_roi(capi, f, roi), (whole_p[:, ry:ry + rh, rx:rx + rw], whole_l[ry:ry + rh, rx:rx + rw]))


@pytest.mark.parametrize("roi", ROIS)
def test_roi_equals_a_reference_padded_with_the_frames_pixels(capi, roi):
    _, _, path = capi
    eng = _core.Engine(str(path), threads=2)
    g, halo = 2 ** DEPTH, geometry.halo(DEPTH, "valid")
    ext = halo + g  # context kept on each side: more than a valid U-Net's output pixel can see
    f = frame()
    pad = 64        # numpy's reflect: the frame's mirror beyond its edges
    fp = np.pad(f, pad, mode="reflect")
    rx, ry, rw, rh = roi
    y0 = (ry - ext) // g * g  # on the frame's pooling grid
    x0 = (rx - ext) // g * g
    crop = np.ascontiguousarray(fp[y0 + pad:ry + rh + ext + pad, x0 + pad:rx + rw + ext + pad])
    ref_p = eng.predict(crop[None])[:, ry - y0:ry - y0 + rh, rx - x0:rx - x0 + rw]
    ref_l = ref_p.argmax(0).astype(np.uint8)
    assert_same(run_roi(capi, f, roi), (ref_p, ref_l))


def test_roi_context_matters(capi):
    """Guards the test above against a network that cannot see its context: the ROI segmented as a
    whole image of its own (the old behaviour) differs from the crop near the ROI's border."""
    f = frame()
    rx, ry, rw, rh = ROIS[0]
    whole_p, _ = run_roi(capi, f)
    alone_p, _ = run_roi(capi, np.ascontiguousarray(f[ry:ry + rh, rx:rx + rw]))
    assert np.abs(alone_p - whole_p[:, ry:ry + rh, rx:rx + rw]).max() > 0.1


def test_nan_in_the_context_is_refused_and_far_pixels_are_not_read(capi):
    lib = capi[0]
    f = frame().astype(np.float32)
    rx, ry, rw, rh = ROIS[0]
    halo = geometry.halo(DEPTH, "valid")
    far = f.copy()
    far[ry + rh + halo + 40:, :] = np.nan  # beyond any tile's reach: never read
    ok = run_roi_f32(capi, far, ROIS[0])
    assert ok == 0, lib.unet_rt_last_error()
    near = f.copy()
    near[ry - 2, rx + 3] = np.nan           # in the ROI's context
    assert run_roi_f32(capi, near, ROIS[0]) == 1 and b"NaN" in lib.unet_rt_last_error()


def run_roi_f32(capi, img, roi):
    lib, e, _ = capi
    im = Image()
    lib.unet_rt_image_init(ctypes.byref(im), img.ctypes.data_as(ctypes.c_void_p), 2, 0, 1, img.shape[0], img.shape[1])
    im.roi_x, im.roi_y, im.roi_width, im.roi_height = roi
    labels = np.zeros((roi[3], roi[2]), np.uint8)
    out = Output()
    lib.unet_rt_output_init(ctypes.byref(out))
    out.labels, out.labels_bytes = labels.ctypes.data, labels.nbytes
    return lib.unet_rt_run(e, ctypes.byref(im), ctypes.byref(out), None)
