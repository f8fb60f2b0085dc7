"""The overlap-tile tiler (csrc/runtime/tiler.cc) through _core.tile_predict / _core.plan_tiles.

References: numpy's np.pad(mode="reflect") for mirror extrapolation, a PyTorch U-Net (training/)
run once on the whole mirror-padded image for valid networks, MONAI's sliding_window_inference for
same-padded networks, predictors whose output is known exactly (MONAI's tests use x + 1).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unet_rt.format.geometry import halo, is_valid_input, output_size

_core = pytest.importorskip("unet_rt._core")
ROOT = Path(__file__).resolve().parents[1]


def normalise(img, mean, std):
    # what the tiler must compute, written with numpy float32 arithmetic: (x - mean) / std
    return (img.astype(np.float32) - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]


def crop_plus_one(depth):
    """A valid-'network' with exactly known output: each tile's centre (the output region) + 1."""
    h = halo(depth)
    calls = []

    def fn(t):
        c, th, tw = t.shape
        oh, ow = output_size(th, depth), output_size(tw, depth)
        calls.append((th, tw))
        return t[:, h:h + oh, h:h + ow] + np.float32(1)
    fn.calls = calls
    return fn


# ---- mirror extrapolation -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 13])
@pytest.mark.parametrize("pad", [0, 1, 4, 12, 40])  # 40 > n: repeated reflection
def test_reflect_index_matches_numpy(n, pad):
    a = np.arange(n)
    ref = np.pad(a, pad, mode="reflect")
    got = a[[_core.reflect_index(i, n) for i in range(-pad, n + pad)]]
    np.testing.assert_array_equal(got, ref)


def test_reflect_index_single_pixel():
    assert {_core.reflect_index(i, 1) for i in range(-50, 50)} == {0}


# ---- valid networks: exact predictor ------------------------------------------------------------

SHAPES = [(1, 1), (13, 997), (5, 3), (300, 300), (129, 77), (700, 701)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_valid_exact_predictor_auto_tile(shape, dtype):
    rng = np.random.default_rng(0)
    img = (rng.random((2, *shape)) * (200 if dtype == np.uint8 else 60000 if dtype == np.uint16 else 5)).astype(dtype)
    mean, std = [3.0, 100.5], [2.0, 7.25]
    fn = crop_plus_one(2)
    out = _core.tile_predict(img, mean, std, depth=2, same_padding=False, classes=2, fn=fn, output="logits",
                             max_tile=128)
    # Error model: the same IEEE float32 operations on both sides -> bit-for-bit equal.
    np.testing.assert_array_equal(out, normalise(img, mean, std) + np.float32(1))
    assert out.dtype == np.float32 and out.shape == (2, *shape)


@pytest.mark.parametrize("shape", [(1, 1), (13, 997), (1000, 577)])
def test_valid_exact_predictor_fixed_tile_depth4(shape):
    img = np.random.default_rng(1).integers(0, 255, (1, *shape)).astype(np.uint8)
    fn = crop_plus_one(4)
    out = _core.tile_predict(img, [10.0], [20.0], depth=4, same_padding=False, classes=1, fn=fn, tile=572,
                             output="logits")
    np.testing.assert_array_equal(out, normalise(img, [10.0], [20.0]) + np.float32(1))
    assert set(fn.calls) == {(572, 572)}  # a fixed tile: every tile has exactly that size (TensorRT)


def test_tiles_see_the_mirror_extrapolated_image():
    # A tile function that checks its input against np.pad(reflect) of the normalised image.
    img = np.random.default_rng(2).random((1, 9, 23)).astype(np.float32)
    depth, h = 2, halo(2)
    big = np.pad(normalise(img, [0.0], [1.0]), ((0, 0), (400, 400), (400, 400)), mode="reflect")
    plan = _core.plan_tiles(9, 23, depth=2, tile=60)
    seen = []

    def fn(t):
        # find the tile's origin among the plan's tiles by matching content
        for sy in plan["y"]["out_start"]:
            for sx in plan["x"]["out_start"]:
                ref = big[:, 400 + sy - h:400 + sy - h + t.shape[1], 400 + sx - h:400 + sx - h + t.shape[2]]
                if np.array_equal(ref, t):
                    seen.append((sy, sx))
                    return np.zeros((1, output_size(t.shape[1], depth), output_size(t.shape[2], depth)), np.float32)
        raise AssertionError("tile does not match the mirror-extrapolated image")

    _core.tile_predict(img, [0.0], [1.0], depth=2, same_padding=False, classes=1, fn=fn, tile=60)
    assert sorted(seen) == sorted((y, x) for y in plan["y"]["out_start"] for x in plan["x"]["out_start"])


# ---- valid networks: tiled == one whole-image pass (PyTorch reference U-Net) --------------------

def _torch_unet(depth, base, cin, classes, padding="valid", seed=0):
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet

    torch.manual_seed(seed)
    return UNet(cin, classes, depth=depth, base=base, padding=padding, dropout=0).double().eval()


def _whole_pass(net, x, depth):
    """One pass over the whole image, mirror-padded by the halo and up to a valid size."""
    from unet_rt.train.train import predict_whole

    return predict_whole(net, x.astype(np.float64), depth, "valid").astype(np.float32)


@pytest.mark.parametrize("shape, tile", [((150, 170), 60), ((150, 170), 76), ((150, 170), 0), ((1, 1), 0),
                                         ((13, 97), 60)])
def test_valid_tiled_equals_whole_image_pass(shape, tile):
    import torch

    depth = 2
    net = _torch_unet(depth, 2, 1, 3)
    img = np.random.default_rng(3).integers(0, 4000, (1, *shape)).astype(np.uint16)
    mean, std = [2000.0], [1000.0]

    def fn(t):
        with torch.no_grad():
            return net(torch.from_numpy(t.astype(np.float64))[None])[0].numpy().astype(np.float32)

    out = _core.tile_predict(img, mean, std, depth=depth, same_padding=False, classes=3, fn=fn, tile=tile,
                             output="logits", max_tile=100)
    ref = _whole_pass(net, normalise(img, mean, std), depth)
    # Error model: float64 network (relative rounding ~1e-15) cast to float32 on both sides: at most
    # one float32 ulp apart (|logits| < 8 here -> 1e-6).
    assert np.abs(ref).max() < 8
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    if tile == 60:
        plan = _core.plan_tiles(*shape, depth=2, tile=60)
        assert plan["tiles"] > 4  # really tiled


def test_stride_by_output_size_would_not_equal_whole_pass():
    """Why tiles sit on the pooling grid: for depth 4 the output size O is 4 mod 16, and a tile
    shifted by O sees another max-pool phase than the whole-image pass: its output differs. Shifted
    by O rounded down to a multiple of 16 (what the tiler does) it is the same."""
    import torch

    depth, t = 4, 236
    net = _torch_unet(depth, 1, 1, 1, seed=5)
    o = output_size(t, depth)
    assert o == 52 and o % 16 == 4
    x = np.random.default_rng(4).standard_normal((1, 300, 188))
    with torch.no_grad():
        whole = net(torch.from_numpy(x)[None])[0].numpy()           # output rows [h, 300 - h)
        def tile_at(s):
            return net(torch.from_numpy(x[:, s:s + t])[None])[0].numpy()  # output rows [s + h, s + h + o)
        by_o, aligned = tile_at(o), tile_at(o // 16 * 16)
    assert not np.allclose(whole[:, o:2 * o], by_o, rtol=0, atol=1e-6)
    s = o // 16 * 16
    np.testing.assert_allclose(whole[:, s:s + o], aligned, rtol=0, atol=1e-12)


# ---- planning -----------------------------------------------------------------------------------

def test_512_image_is_one_700_tile():
    p = _core.plan_tiles(512, 512, depth=4)
    assert p["tiles"] == 1 and p["y"]["in_size"] == [700] and p["x"]["in_size"] == [700]
    fixed = _core.plan_tiles(512, 512, depth=4, tile=572)
    assert fixed["tiles"] == 4 and p["total_input_area"] < fixed["total_input_area"]


@pytest.mark.parametrize("shape", [(1, 1), (13, 997), (512, 512), (1000, 1000), (2048, 2048), (389, 777)])
@pytest.mark.parametrize("depth", [2, 4])
def test_plan_covers_on_the_grid_and_minimises_work(shape, depth):
    cap = 1024
    p = _core.plan_tiles(*shape, depth=depth, max_tile=cap)
    for axis, n in zip("yx", shape):
        a = p[axis]
        assert all(s % 2**depth == 0 for s in a["out_start"])          # on the pooling grid
        assert all(output_size(i, depth) == o for i, o in zip(a["in_size"], a["out_size"]))
        covered = np.zeros(n, bool)
        for s, o in zip(a["out_start"], a["out_size"]):
            covered[s:s + o] = True
        assert covered.all()
        assert max(a["in_size"]) <= cap
    # never more work than any fixed tile size within the cap (brute force over all of them)
    best_fixed = min(_core.plan_tiles(*shape, depth=depth, tile=t)["total_input_area"]
                     for t in range(1, cap + 1) if is_valid_input(t, depth) and output_size(t, depth) >= 2**depth)
    assert p["total_input_area"] <= best_fixed


def test_bad_tile_sizes():
    with pytest.raises(ValueError, match="not a valid input size"):
        _core.plan_tiles(100, 100, depth=4, tile=500)
    with pytest.raises(ValueError, match="multiple of 16"):
        _core.plan_tiles(100, 100, depth=4, same_padding=True, tile=100)
    with pytest.raises(ValueError, match="empty"):
        _core.plan_tiles(0, 100)


# ---- same networks: MONAI sliding window --------------------------------------------------------

def _window_fn_numpy(t):
    # depends on the position inside the window -> overlapping windows disagree and blending matters
    c, h, w = t.shape
    ry = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    rx = np.linspace(0, 2, w, dtype=np.float32)[None, :]
    return np.stack([t[0] * np.float32(2) + ry, np.sin(t[-1]) - rx * t[0]]).astype(np.float32)


def _window_fn_torch(x):
    import torch

    return torch.from_numpy(np.stack([_window_fn_numpy(xi) for xi in x.numpy()]))


@pytest.mark.parametrize("shape, roi, overlap, mode", [
    ((100, 130), 32, 0.25, "constant"),
    ((100, 130), 48, 0.5, "gaussian"),
    ((64, 64), 64, 0.25, "gaussian"),
    ((50, 200), 64, 0.25, "constant"),   # smaller than the window along y: padded (reflect)
    ((50, 200), 64, 0.4, "gaussian"),
    ((97, 33), 16, 0.75, "gaussian"),
])
def test_same_matches_monai(shape, roi, overlap, mode):
    torch = pytest.importorskip("torch")
    monai = pytest.importorskip("monai.inferers")
    img = np.random.default_rng(6).random((2, *shape)).astype(np.float32) * 10
    mean, std = [5.0, 4.0], [2.0, 3.0]
    out = _core.tile_predict(img, mean, std, depth=4, same_padding=True, classes=2, fn=_window_fn_numpy, tile=roi,
                             overlap=overlap, blend=mode, output="logits")
    x = torch.from_numpy(normalise(img, mean, std))[None]
    ref = monai.sliding_window_inference(x, (roi, roi), 1, _window_fn_torch, overlap=overlap, mode=mode,
                                         padding_mode="reflect")[0].numpy()
    # Error model: same float32 weighted sums in the same window order; the gaussian weights may
    # differ by an ulp (exp); values are O(10): 1e-5 absolute.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (13, 997), (100, 37)])
@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_same_exact_predictor(shape, blend):
    img = np.random.default_rng(7).random((1, *shape)).astype(np.float32)
    out = _core.tile_predict(img, [0.5], [0.25], depth=3, same_padding=True, classes=1,
                             fn=lambda t: t + np.float32(1), overlap=0.5, blend=blend, output="logits", max_tile=64)
    # sum_i w_i (x + 1) / sum_i w_i: a few float32 roundings of values ~3 -> 1e-6 relative.
    np.testing.assert_allclose(out, normalise(img, [0.5], [0.25]) + 1, rtol=2e-6, atol=0)


def test_probabilities_are_softmax_of_logits():
    from scipy.special import softmax

    img = np.random.default_rng(8).random((2, 40, 50)).astype(np.float32)
    h2 = halo(2)
    cases = [
        dict(depth=2, same_padding=False, fn=lambda t: _window_fn_numpy(t)[:, h2:-h2, h2:-h2]),
        dict(depth=3, same_padding=True, fn=_window_fn_numpy),
    ]
    for kw in cases:
        logits = _core.tile_predict(img, [0, 0], [1, 1], classes=2, max_tile=64, output="logits", **kw)
        probs = _core.tile_predict(img, [0, 0], [1, 1], classes=2, max_tile=64, output="probabilities", **kw)
        # float32 softmax (exp, sum of 2, divide) vs float64: a few ulps of values <= 1
        np.testing.assert_allclose(probs, softmax(logits.astype(np.float64), axis=0), rtol=0, atol=1e-6)


# ---- bad input ----------------------------------------------------------------------------------

def _tp(img, **kw):
    args = dict(mean=[0.0], std=[1.0], depth=2, same_padding=False, classes=1, fn=crop_plus_one(2))
    args.update(kw)
    return _core.tile_predict(img, **args)


@pytest.mark.parametrize("img, match", [
    (np.zeros((10, 10), np.float32), "3-D"),
    (np.zeros((1, 1, 10, 10), np.float32), "3-D"),
    (np.zeros((1, 10, 10), np.float64), "dtype"),
    (np.zeros((1, 10, 10), np.int32), "dtype"),
    (np.zeros((2, 10, 10), np.float32), "one value per image channel"),
    (np.zeros((1, 0, 10), np.float32), "empty"),
    (np.full((1, 10, 10), np.nan, np.float32), "NaN or Inf"),
    (np.full((1, 10, 10), np.inf, np.float32), "NaN or Inf"),
])
def test_bad_images(img, match):
    with pytest.raises(ValueError, match=match):
        _tp(img)


def test_bad_tile_function_results():
    img = np.zeros((1, 20, 20), np.float32)
    with pytest.raises(ValueError, match="returned shape"):
        _tp(img, fn=lambda t: np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ZeroDivisionError):
        _tp(img, fn=lambda t: 1 / 0)
    with pytest.raises(ValueError, match="output must be"):
        _tp(img, output="labels")
    with pytest.raises(ValueError, match="std"):
        _tp(img, std=[0.0])


def test_non_contiguous_views():
    hwc = np.random.default_rng(9).integers(0, 255, (30, 40, 2)).astype(np.uint8)
    chw = hwc.transpose(2, 0, 1)  # a strided view, no copy
    fn = lambda t: t[:, 20:-20, 20:-20] * np.float32(3)  # noqa: E731  (depth 2: halo 20)
    a = _core.tile_predict(chw, [1, 2], [3, 4], depth=2, same_padding=False, classes=2, fn=fn, output="logits")
    b = _core.tile_predict(np.ascontiguousarray(chw), [1, 2], [3, 4], depth=2, same_padding=False, classes=2, fn=fn,
                           output="logits")
    np.testing.assert_array_equal(a, b)
    c = _core.tile_predict(chw[:, ::-1, ::2], [1, 2], [3, 4], depth=2, same_padding=False, classes=2, fn=fn,
                           output="logits")
    np.testing.assert_array_equal(c, normalise(chw[:, ::-1, ::2], [1, 2], [3, 4]) * 3)


# ---- memory -------------------------------------------------------------------------------------

MEM = textwrap.dedent(r'''
    import sys
    import numpy as np
    from unet_rt import _core
    from _rss import peak_rss  # tests/_rss.py: VmHWM, not ru_maxrss (inherited across exec)
    n = int(sys.argv[1])
    img = np.full((1, n, n), 7, np.uint8)  # resident pages (np.zeros would map the zero page)
    fn = lambda t: t[:, 92:-92, 92:-92].copy()
    _core.tile_predict(np.zeros((1, 8, 8), np.uint8), [0.0], [1.0], 4, False, 2 - 1, fn, output="logits")
    before = peak_rss()
    out = _core.tile_predict(img, [0.0], [1.0], 4, False, 1, fn, output="logits")
    peak = peak_rss()
    print(peak - before - out.nbytes)  # the image is already resident in `before`
''')


def test_memory_does_not_grow_with_the_image_beyond_the_output():
    extra = {}
    for n in (1024, 2048):
        r = subprocess.run([sys.executable, "-c", MEM, str(n)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}, cwd=str(Path(__file__).resolve().parent))
        assert r.returncode == 0, r.stderr
        extra[n] = int(r.stdout)
    # Beyond the image and the output, the tiler holds one tile (<= 1024^2 floats in and out here,
    # ~8 MB) plus the Python callback's copies: far below 64 MB, and the same for both sizes.
    assert extra[2048] < 64 * 2**20, extra
    assert extra[2048] - extra[1024] < 16 * 2**20, extra
