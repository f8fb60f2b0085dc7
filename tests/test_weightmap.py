"""The border weight map against a brute-force reference (explicit distances to every cell)."""
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")
from unet_rt.train.data import synthetic_cells  # noqa: E402
from unet_rt.train.weightmap import border_distances, class_weights, instances_from_mask, weight_map  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def brute_force(inst, w0=10.0, sigma=5.0):
    """Explicit distances from every pixel to every pixel of every cell."""
    h, w = inst.shape
    yy, xx = np.mgrid[0:h, 0:w]
    ids = [i for i in np.unique(inst) if i != 0]
    dist = np.full((len(ids), h, w), np.inf)
    for k, i in enumerate(ids):
        cy, cx = np.nonzero(inst == i)
        d = np.sqrt((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2).min(-1)
        dist[k] = d
    dist.sort(axis=0)
    d1 = dist[0]
    d2 = dist[1] if len(ids) > 1 else np.full((h, w), np.inf)
    fg = inst > 0
    wc = np.where(fg, fg.size / (2 * fg.sum()), fg.size / (2 * (~fg).sum()))
    with np.errstate(over="ignore", invalid="ignore"):
        border = np.nan_to_num(w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)), nan=0.0, posinf=0.0)
    return d1, d2, wc + np.where(fg, 0, border)


@pytest.mark.parametrize("seed,shape,n", [(0, (40, 48), 8), (1, (33, 29), 5), (2, (50, 50), 15)])
def test_matches_brute_force(seed, shape, n):
    _, inst, _ = synthetic_cells(shape, n, membrane=2, seed=seed)
    d1, d2, ref = brute_force(inst)
    g1, g2 = border_distances(inst, radius=10_000)
    fin = np.isfinite(d2)
    assert np.allclose(g1, d1, atol=1e-4)
    assert np.array_equal(np.isfinite(g2), fin) and np.allclose(g2[fin], d2[fin], atol=1e-4)
    # default radius (50 px): exact up to the documented bound w0*exp(-50^2/50) ~ 1e-21
    assert np.allclose(weight_map(inst, instances=True), ref, rtol=1e-5, atol=1e-6)


def test_binary_mask_input_equals_instances():
    _, inst, mask = synthetic_cells((60, 60), 10, seed=3)
    assert np.allclose(weight_map(mask), weight_map(inst, instances=True))
    assert instances_from_mask(mask).max() == inst.max()


def test_class_weights_balance():
    fg = np.zeros((10, 10), bool)
    fg[:2] = True
    w = class_weights(fg)
    assert np.isclose((w * fg).sum(), (w * ~fg).sum())  # each class carries half the total weight
    assert np.isclose(w.mean(), 1.0)


def test_border_term_peaks_between_touching_cells():
    inst = np.zeros((20, 41), np.int32)
    inst[:, :20] = 1
    inst[:, 21:] = 2                       # a 1-pixel gap at column 20
    w = weight_map(inst, instances=True)
    wc = class_weights(inst > 0)
    assert np.isclose(w[5, 20] - wc[5, 20], 10 * np.exp(-4 / 50), rtol=1e-5)  # d1 = d2 = 1


def test_isbi_slice_under_a_second():
    from unet_rt.io.images import read_image

    path = SAMPLES / "label" / "25.png"  # shipped with the repo
    lab = read_image(path)
    t = time.process_time()  # CPU time: robust to a loaded machine
    w = weight_map(lab)
    dt = time.process_time() - t
    assert w.shape == (512, 512) and np.isfinite(w).all()
    assert dt < 1.0, f"weight map of a 512x512 ISBI label took {dt:.2f} s"


def test_dataset_class_weights():
    from unet_rt.train.weightmap import dataset_class_weights

    _, inst, _ = synthetic_cells((60, 60), 10, seed=4)
    fg = inst > 0
    wb, wf = dataset_class_weights([fg])  # one image: the per-image balance
    w = class_weights(fg)
    assert (wb, wf) == pytest.approx((float(w[~fg][0]), float(w[fg][0])))
    sparse = np.zeros((100, 100), bool)
    sparse[:2] = True                                          # 2% foreground: uncapped ratio 49
    wb, wf = dataset_class_weights([sparse, np.zeros((10, 10), bool)], max_ratio=10)
    fg = 200 / 10100
    assert wf / wb == pytest.approx(10) and (1 - fg) * wb + fg * wf == pytest.approx(1)  # mean weight 1
