"""Metrics against scikit-image and scipy."""
import numpy as np
import pytest
from scipy import ndimage

from training.data import synthetic_cells
from unet_rt import metrics


@pytest.mark.parametrize("seed", range(4))
def test_connected_components_match_scipy(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((70, 53)) > 0.45)
    ours = metrics.connected_components(mask)
    ref, n = ndimage.label(mask)
    assert ours.max() == n
    # same partition: the pairing of labels is one-to-one
    pairs = set(zip(ours[mask].tolist(), ref[mask].tolist()))
    assert len(pairs) == n
    assert np.array_equal(ours == 0, ~mask)


def test_connected_components_edge_cases():
    assert metrics.connected_components(np.zeros((3, 4), bool)).max() == 0
    assert metrics.connected_components(np.ones((1, 1), bool)).max() == 1
    snake = np.zeros((9, 9), bool)
    snake[::2, :] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    assert metrics.connected_components(snake).max() == 1


@pytest.mark.parametrize("seed", range(4))
def test_rand_error_matches_skimage(seed):
    skm = pytest.importorskip("skimage.metrics")
    _, true, _ = synthetic_cells((64, 64), 12, seed=seed)
    _, test, _ = synthetic_cells((64, 64), 9, seed=seed + 10)
    ref = skm.adapted_rand_error(true, test, ignore_labels=(0,))[0]
    assert metrics.rand_error(true, test) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert metrics.rand_error(true, true) == pytest.approx(0.0, abs=1e-12)


def test_pixel_error_iou_dice():
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[0, 1], [0, 1]])
    assert metrics.pixel_error(a, b) == 0.25
    assert metrics.iou(a, b) == pytest.approx(2 / 3)
    assert metrics.dice(a, b) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        metrics.pixel_error(a, b[:1])
