"""Instances: the native marker-controlled watershed (csrc/src/instances.cc) against
scikit-image's watershed, hand cases, determinism, tile seams, and the C API's unet_rt_instances."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import unet_rt
from unet_rt import _core
from unet_rt.eval import metrics
from unet_rt.format import model_file
from unet_rt.io.images import read_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
SAMPLES = ROOT / "data" / "samples"

ndi = pytest.importorskip("scipy.ndimage")
segmentation = pytest.importorskip("skimage.segmentation")


def decision(t=None, mask=None, marker=None, min_marker=1, min_size=0, fg=1) -> dict:
    inst = {"min_marker_size": min_marker, "min_size": min_size}
    if mask is not None:
        inst["mask_threshold"] = mask
    if marker is not None:
        inst["marker_threshold"] = marker
    d = {"foreground_class": fg, "instances": inst}
    if t is not None:
        d["threshold"] = t
    return d


def two_class(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float32)
    return np.stack([1 - p, p])


def reference(p, mask_t, marker_t, min_marker, min_size):
    """The same watershed from scipy + scikit-image (not our code): markers = 4-connected components
    of p > marker_t within the mask, small ones dropped; skimage.segmentation.watershed(-p)."""
    mask = p > mask_t
    markers, n = ndi.label(mask & (p > marker_t))  # default structure: 4-connectivity
    sizes = np.bincount(markers.ravel(), minlength=n + 1)
    keep = sizes >= min_marker
    keep[0] = False
    markers = np.where(keep[markers], markers, 0)
    out = segmentation.watershed(-p.astype(np.float64), markers, mask=mask)
    sizes = np.bincount(out.ravel())
    small = sizes < min_size
    small[0] = True
    out[small[out]] = 0
    return segmentation.relabel_sequential(out)[0]


def smooth_field(rng, shape, sigma):
    """A continuous random probability map (no plateaus: ties have probability ~0)."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (1 / (1 + np.exp(-f / f.std() * 2))).astype(np.float32)


@pytest.mark.parametrize("seed,shape,sigma,mask_t,marker_t,min_marker,min_size", [
    (0, (96, 128), 3.0, 0.4, 0.8, 1, 0),
    (1, (128, 96), 4.0, 0.3, 0.7, 20, 0),
    (2, (160, 160), 2.5, 0.5, 0.9, 5, 30),
    (3, (64, 200), 5.0, 0.05, 0.6, 1, 10),
])
def test_matches_skimage_watershed(rng, seed, shape, sigma, mask_t, marker_t, min_marker, min_size):
    p = smooth_field(np.random.default_rng(seed), shape, sigma)
    ref = reference(p, mask_t, marker_t, min_marker, min_size)
    got = _core.instances(two_class(p), json.dumps(decision(mask=mask_t, marker=marker_t, min_marker=min_marker,
                                                               min_size=min_size)))
    assert got.dtype == np.int32 and ref.max() >= 3, "the case must have several objects"
    np.testing.assert_array_equal(got, ref)  # same numbering too: raster order of the first marker pixel


def test_matches_skimage_on_the_shipped_models_probabilities():
    p = unet_rt.Engine(SHIPPED).predict(read_image(SAMPLES / "image" / "23.png")[:200, :256])
    got = _core.instances(p, json.dumps(decision(mask=0.1, marker=0.8, min_marker=10, min_size=5)))
    ref = reference(p[1], 0.1, 0.8, 10, 5)
    assert ref.max() > 10
    np.testing.assert_array_equal(got, ref)


def test_hand_case_saddle_and_tie_breaking():
    # two peaks (markers at 0.95 and 0.97) and a saddle at 0.6; the 0.9 pixels beside the saddle tie:
    # the 0.97 marker pops first and pushes its 0.9 neighbours first, so it floods the saddle.
    p = np.array([[0.9, 0.95, 0.9, 0.6, 0.9, 0.97, 0.9]], np.float32)
    got = _core.instances(two_class(p), json.dumps(decision(mask=0.5, marker=0.93)))
    np.testing.assert_array_equal(got, [[1, 1, 1, 2, 2, 2, 2]])
    # the mask stops the flood; an unmarked foreground piece stays background (as skimage)
    p = np.array([[0.95, 0.7, 0.2, 0.7, 0.7]], np.float32)
    got = _core.instances(two_class(p), json.dumps(decision(mask=0.5, marker=0.9)))
    np.testing.assert_array_equal(got, [[1, 1, 0, 0, 0]])


def test_hand_case_sizes_and_renumbering():
    p = np.full((5, 9), 0.1, np.float32)
    p[1:4, 0:3] = 0.95   # 9-pixel marker -> object 1
    p[2, 5] = 0.95       # 1-pixel marker
    p[1:4, 4:7] = np.maximum(p[1:4, 4:7], 0.7)
    p[4, 8] = 0.99       # 1-pixel object
    d = decision(mask=0.5, marker=0.9)
    np.testing.assert_array_equal(np.unique(_core.instances(two_class(p), json.dumps(d))), [0, 1, 2, 3])
    got = _core.instances(two_class(p), json.dumps(decision(mask=0.5, marker=0.9, min_marker=2)))
    assert set(np.unique(got)) == {0, 1} and (got == 1).sum() == 9  # small markers dropped
    got = _core.instances(two_class(p), json.dumps(decision(mask=0.5, marker=0.9, min_size=2)))
    # the 9-pixel region stays 1, the 9-pixel flooded middle object is renumbered 2, the dot is gone
    assert set(np.unique(got)) == {0, 1, 2} and (got == 2).sum() == 9 and got[4, 8] == 0


def test_no_markers_gives_background():
    p = np.full((8, 8), 0.6, np.float32)
    assert not _core.instances(two_class(p), json.dumps(decision(mask=0.5, marker=0.9))).any()


def test_default_is_connected_components_of_the_segmentation(rng):
    p = smooth_field(rng, (80, 90), 3.0)
    probs = two_class(p)
    got = _core.instances(probs)  # no decision: argmax foreground, markers = the mask
    np.testing.assert_array_equal(got, metrics.connected_components(probs.argmax(0) == 1))
    d = {"foreground_class": 1, "threshold": 0.3}  # no instance block: the segmentation's mask
    got = _core.instances(probs, json.dumps(d))
    np.testing.assert_array_equal(got, metrics.connected_components(p > 0.3))


def test_deterministic_and_validated(rng):
    p = two_class(smooth_field(rng, (64, 64), 2.0))
    d = json.dumps(decision(mask=0.3, marker=0.7))
    a, b = _core.instances(p, d), _core.instances(p.copy(), d)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="lie in"):
        _core.instances(p * 2, d)
    with pytest.raises(ValueError, match="marker_threshold"):
        _core.instances(p, json.dumps(decision(marker=1.5)))
    with pytest.raises(ValueError, match="foreground_class"):
        _core.instances(p, json.dumps(decision(fg=2)))


def _calibrated(tmp_path, dec) -> Path:
    mf = model_file.load(SHIPPED)
    mf.decision = dec
    out = tmp_path / "calibrated.plan"
    model_file.save(out, mf)
    return out


DEC = decision(t=0.15, mask=0.1, marker=0.8, min_marker=10, min_size=0)


def test_no_object_is_cut_at_a_tile_seam(tmp_path):
    """Several tiles wide (forced 316 tiles, output 132): equal to the one-tile result, and objects
    cross the seams."""
    path = _calibrated(tmp_path, DEC)
    img = read_image(SAMPLES / "image" / "24.png")[:160, :420]
    tiled = unet_rt.Engine(path, tile=316)
    plan = tiled._native.plan(*img.shape)
    assert plan["tiles"] >= 8 and len(plan["x"]["out_start"]) >= 4
    got = tiled.instances(img)
    whole = unet_rt.Engine(path)  # automatic: one (rectangular) tile covers the image
    assert whole._native.plan(*img.shape)["tiles"] == 1
    ref = whole.instances(img)
    assert got.max() > 10
    assert np.mean(got == ref) > 0.999  # tiled and whole probabilities agree to float rounding
    crossing = 0
    for x in plan["x"]["out_start"][1:]:
        a, b = got[:, x - 1], got[:, x]
        crossing += len(set(a[(a > 0) & (a == b)]))
    assert crossing >= 5, "the test image should have objects spanning the seams"
    # and the Python path (probabilities, then the same core function) agrees exactly
    np.testing.assert_array_equal(got, _core.instances(tiled.predict(img), json.dumps(DEC)))


def test_engine_instances_stack_and_tta(tmp_path):
    eng = unet_rt.Engine(_calibrated(tmp_path, DEC))
    img = read_image(SAMPLES / "image" / "23.png")[:100, :120]
    one = eng.instances(img)
    stack = eng.instances(np.stack([img, img]))
    assert stack.shape == (2, 100, 120) and stack.dtype == np.int32
    np.testing.assert_array_equal(stack[1], one)
    tta = eng.instances(img, tta=True)
    assert tta.shape == one.shape and tta.max() > 0
    other = eng.instances(img, decision=decision(mask=0.1, marker=0.95))
    assert not np.array_equal(other, one)


def test_instance_markers_are_the_watersheds_seeds():
    # the markers the core floods from (what unet_rt.scale numbers objects by): 4-connected components
    # of (mask and p > marker threshold), small ones dropped, numbered in raster order (scipy's label)
    from scipy import ndimage

    from unet_rt import _core

    rng = np.random.default_rng(3)
    p1 = ndimage.gaussian_filter(rng.random((90, 110)), 3).astype(np.float32)
    p1 = (p1 - p1.min()) / (p1.max() - p1.min())
    probs = np.ascontiguousarray(np.stack([1 - p1, p1]), np.float32)
    d = {"foreground_class": 1, "instances": {"mask_threshold": 0.3, "marker_threshold": 0.6, "min_marker_size": 20}}
    got = _core.instance_markers(probs, json.dumps(d))
    comp, _ = ndimage.label((probs[1] > np.float32(0.3)) & (probs[1] > np.float32(0.6)))
    keep = np.bincount(comp.ravel()) >= 20
    keep[0] = False
    ref = np.where(keep[comp], np.cumsum(keep)[comp], 0)
    assert ref.max() >= 3 and (np.bincount(comp.ravel())[1:] < 20).any()  # several markers, some dropped
    np.testing.assert_array_equal(got, ref)
    # the watershed keeps each marker's label on its pixels
    inst = _core.instances(probs, json.dumps(d))
    np.testing.assert_array_equal(inst[got > 0], got[got > 0])
