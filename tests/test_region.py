"""A region of a frame through the core's tiler with the whole frame's tiles (``_core.Engine.run_region``,
``_core.tile_predict_region``, ``_core.frame_reads``): what ``unet_rt.scale`` runs per block. The
region's result must equal those pixels of the whole frame's, bit for bit, from a buffer holding only
the frame pixels the region's tiles read."""
import numpy as np
import pytest

import unet_rt
from unet_rt import _core

TILE = 60  # depth-2 valid sizes: 44 + multiples of 4 (halo 20, output 20, stride 20)
H, W = 157, 203
# whole frame, inside, on no tile or pooling grid, at each edge, one pixel, a frame smaller than the halo
REGIONS = [(0, H, 0, W), (13, 71, 29, 150), (100, H, 180, W), (0, 1, 0, 1), (77, 78, 202, 203), (5, 150, 0, 40)]


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_unet):
    p = tmp_path_factory.mktemp("m") / "m.plan"
    save_unet(p, depth=2, base=4, classes=3, seed=3)
    return p


@pytest.fixture(scope="module")
def same_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from unet_rt.format import model_file
    from unet_rt.train.model import UNet, to_model_file

    torch.manual_seed(3)
    net = UNet(1, 3, depth=2, base=4, padding="same", dropout=0).eval()
    p = tmp_path_factory.mktemp("s") / "same.plan"
    model_file.save(p, to_model_file(net, {"mean": [100.0], "std": [40.0]}, ["a", "b", "c"]))
    return p


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(7).integers(0, 200, size=(H, W), dtype=np.uint16)


def _held(frame, region, same, tile):
    y0, y1, x0, x1 = _core.frame_reads((frame.shape[0], frame.shape[1]), region, 2, same, tile)
    return frame[None, y0:y1, x0:x1], (y0, x0)


@pytest.mark.parametrize("same,tile", [(False, TILE), (True, 48)])
def test_region_equals_whole_frame_bit_for_bit(model, same_model, frame, same, tile):
    m = same_model if same else model
    eng = unet_rt.Engine(m, tile=tile, threads=1)
    probs, labels = eng.predict(frame), eng.segment(frame)
    for region in REGIONS:
        y0, y1, x0, x1 = region
        pixels, origin = _held(frame, region, same, tile)
        assert pixels.shape[1] <= H and pixels.shape[2] <= W
        p = eng._native.run_region(pixels, origin, (H, W), region)
        np.testing.assert_array_equal(p, probs[:, y0:y1, x0:x1])
        lab = eng._native.run_region(pixels, origin, (H, W), region, output="labels")
        np.testing.assert_array_equal(lab, labels[y0:y1, x0:x1])
        # the same through a Python tile function (the GPU backends' path)
        q = _core.tile_predict_region(pixels, origin, (H, W), region, [100.0], [40.0], 2, same, 3,
                                      lambda t: eng._native.forward_tile(t), tile=tile)
        whole = _core.tile_predict(frame[None], [100.0], [40.0], 2, same, 3, lambda t: eng._native.forward_tile(t),
                                   tile=tile)
        np.testing.assert_array_equal(q, whole[:, y0:y1, x0:x1])


def test_region_reads_only_its_context(model, frame):
    # an interior region reads its tiles' inputs only: far less than the frame
    y0, y1, x0, x1 = _core.frame_reads((H, W), (60, 80, 100, 120), 2, False, TILE)
    assert (y0, y1, x0, x1) == (40, 100, 80, 140)  # the tiles at 60 and 100 of the whole-frame pass (stride 20)


def test_region_refuses_a_buffer_that_misses_what_tiles_read(model, frame):
    eng = unet_rt.Engine(model, tile=TILE, threads=1)
    region = (13, 71, 29, 150)
    pixels, (oy, ox) = _held(frame, region, False, TILE)
    with pytest.raises(ValueError, match="outside the part of the frame the buffer holds"):
        eng._native.run_region(pixels[:, 1:], (oy + 1, ox), (H, W), region)
    with pytest.raises(ValueError, match="not inside the pixels given"):
        eng._native.run_region(pixels, (oy, ox), (H, W), (13, H, 29, 150))
    with pytest.raises(ValueError, match="region must be"):
        eng._native.run_region(pixels, (oy, ox), (H, W), (13, 13, 29, 150))
    with pytest.raises(ValueError, match="no percentile normalisation"):
        eng._native.run_region(pixels, (oy, ox), (H, W), region, percentiles=[(0.0, 1.0)])


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 40001])
def test_percentile_from_ranks_is_numpys_linear(n):
    v = np.sort(np.random.default_rng(n).normal(size=n))
    for q in (0.0, 1.0, 37.3, 50.0, 99.8, 100.0):
        k, k1 = _core.percentile_ranks(n, q)
        assert 0 <= k <= k1 <= min(k + 1, n - 1)
        got = _core.percentile_from_ranks(n, q, float(v[k]), float(v[k1]))
        np.testing.assert_allclose(got, np.percentile(v, q), rtol=1e-12, atol=1e-15)


def test_engine_region_through_a_python_tile_function(model, frame):
    # the GPU backends' branch of Engine._region (what unet_rt.scale runs with backend='triton'), here
    # with the CPU network as the Python tile function: equal to the same engine's whole-frame results
    eng = unet_rt.Engine(model, tile=TILE, threads=1)
    native = eng._native
    eng._native, eng._fn = None, lambda t: native.forward_tile(t)
    probs, labels = eng.predict(frame), eng.segment(frame)
    for region in REGIONS[1:3]:
        y0, y1, x0, x1 = region
        pixels, origin = _held(frame, region, False, TILE)
        np.testing.assert_array_equal(eng._region(pixels, origin, (H, W), region, "probabilities"),
                                      probs[:, y0:y1, x0:x1])
        np.testing.assert_array_equal(eng._region(pixels, origin, (H, W), region, "labels"), labels[y0:y1, x0:x1])
