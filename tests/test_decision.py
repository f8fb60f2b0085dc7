"""The model's decision and normalisation records: metadata validated alike by the Python and C++
readers, Engine.segment applying the stored threshold (every path), per-image percentile
normalisation in the native core, and the warning on inputs far outside the training range."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import unet_rt
from unet_rt import _core
from unet_rt.format import model_file
from unet_rt.engine import range_warning
from unet_rt.io.images import read_image
from _model_bytes import build, metadata, random_tensors, tiny_arch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
IMG = read_image(ROOT / "data" / "samples" / "image" / "23.png")[:64, :80]


def both_reject(tmp_path, meta: dict, match: str, arch=None):
    """The Python and the native reader reject the same metadata with the same message."""
    arch = arch or tiny_arch()
    b = build(random_tensors(arch), metadata(arch, **meta))
    with pytest.raises(_core.ModelFileError, match=match):
        _core.read_model_bytes(b)
    p = tmp_path / "m.plan"
    p.write_bytes(b)
    with pytest.raises(model_file.ModelFileError, match=match):
        model_file.load(p)


D = {"foreground_class": 1, "threshold": 0.25,
     "instances": {"mask_threshold": 0.1, "marker_threshold": 0.8, "min_marker_size": 10, "min_size": 3},
     "calibration": {"data": "x", "rand_error": 0.1}}


@pytest.mark.parametrize("dec, match", [
    ([], "not an object"),
    ({"threshold": 0.5}, "no foreground_class"),
    ({"foreground_class": 2}, "foreground_class 2 of a 2-class model"),
    ({"foreground_class": 1.0}, "foreground_class must be an integer"),
    ({"foreground_class": True}, "foreground_class must be an integer"),
    ({"foreground_class": -1}, "foreground_class must be an integer >= 0"),
    ({"foreground_class": 1, "threshold": 1.0}, r"threshold must be a number in \(0, 1\)"),
    ({"foreground_class": 1, "threshold": 0}, r"threshold must be a number in \(0, 1\)"),
    ({"foreground_class": 1, "threshold": "0.5"}, "threshold must be a number"),
    ({"foreground_class": 1, "treshold": 0.5}, "unknown key 'treshold'"),
    ({"foreground_class": 1, "other": None}, "unknown key 'other'"),
    ({"foreground_class": 1, "instances": 3}, "instances must be an object"),
    ({"foreground_class": 1, "instances": {"marker_threshold": 2}}, "marker_threshold must be a number"),
    ({"foreground_class": 1, "instances": {"mask_threshold": -0.1}}, "mask_threshold must be a number"),
    ({"foreground_class": 1, "instances": {"min_marker_size": 0}}, "min_marker_size must be an integer >= 1"),
    ({"foreground_class": 1, "instances": {"min_size": -1}}, "min_size must be an integer >= 0"),
    ({"foreground_class": 1, "instances": {"min_size": 2.5}}, "min_size must be an integer"),
    ({"foreground_class": 1, "instances": {"seeds": 1}}, "unknown instances key 'seeds'"),
])
def test_bad_decisions_rejected_alike(tmp_path, dec, match):
    both_reject(tmp_path, {"decision": json.dumps(dec)}, "bad 'decision' metadata: " + match)


def test_threshold_needs_two_classes(tmp_path):
    both_reject(tmp_path, {"decision": json.dumps({"foreground_class": 0, "threshold": 0.5})},
                "at least 2 classes", arch=tiny_arch(classes=1))


@pytest.mark.parametrize("extra, match", [
    ({"percentiles": [99.8, 1]}, "percentiles must satisfy"),
    ({"percentiles": [1, 101]}, "percentiles must satisfy"),
    ({"percentiles": [1]}, r"percentiles must be \[low, high\]"),
    ({"percentiles": "1,99"}, r"percentiles must be \[low, high\]"),
    ({"pecentiles": [1, 99]}, "unknown key 'pecentiles'"),
    ({"train_range": [1, 2]}, "train_range must be an object"),
    ({"train_range": {"low": [0.0], "high": [1.0]}}, "train_range needs percentiles"),
    ({"train_range": {"percentiles": [1, 99], "low": [0.0], "high": [1.0, 2.0]}}, "train_range high needs 1"),
    ({"train_range": {"percentiles": [1, 99], "low": [5.0], "high": [1.0]}}, "train_range low must be <= high"),
    ({"train_range": {"percentiles": [1, 99], "low": ["a"], "high": [1.0]}}, "train_range low must be finite"),
    ({"train_range": {"percentiles": [1, 99], "low": [0.0], "high": [1.0], "mid": [0.5]}}, "unknown train_range key"),
])
def test_bad_normalization_records_rejected_alike(tmp_path, extra, match):
    both_reject(tmp_path, {"normalization": json.dumps({"mean": [1.5], "std": [2.0], **extra})},
                "bad 'normalization' metadata: " + match)


def test_decision_and_records_round_trip(tmp_path, save_unet):
    p = tmp_path / "m.plan"
    save_unet(p)
    mf = model_file.load(p)
    assert mf.decision == {}  # old files: no decision
    assert _core.read_model(str(p))["decision"] == {"foreground_class": 1, "threshold": None, "instances": {
        "mask_threshold": None, "marker_threshold": None, "min_marker_size": 1, "min_size": 0}}
    mf.decision = D
    mf.normalization = dict(mf.normalization, percentiles=[1, 99.8],
                            train_range={"percentiles": [1, 99], "low": [3.0], "high": [250.0]})
    model_file.save(p, mf)
    back = model_file.load(p)
    assert back.decision == D and back.normalization["percentiles"] == [1.0, 99.8]
    native = _core.read_model(str(p))
    assert native["decision"]["threshold"] == pytest.approx(0.25)
    assert native["decision"]["instances"] == pytest.approx(
        {"mask_threshold": 0.1, "marker_threshold": 0.8, "min_marker_size": 10, "min_size": 3})
    assert native["normalization"]["percentiles"] == pytest.approx([1, 99.8])
    info = unet_rt.Engine(p).info
    assert info["decision"] == D and info["normalization"]["train_range"]["high"] == [250.0]


# ---- Engine.segment applies the decision ---------------------------------------------------------

def with_decision(tmp_path, dec, src=SHIPPED, name="d.plan") -> Path:
    mf = model_file.load(src)
    mf.decision = dec
    out = tmp_path / name
    model_file.save(out, mf)
    return out


def test_segment_uses_the_stored_threshold_and_the_override(tmp_path):
    plain = unet_rt.Engine(with_decision(tmp_path, None, name="plain.plan"))  # the shipped weights, no decision
    p = plain.predict(IMG)
    np.testing.assert_array_equal(plain.segment(IMG), p.argmax(0))  # no decision: argmax
    eng = unet_rt.Engine(with_decision(tmp_path, {"foreground_class": 1, "threshold": 0.2}))
    seg = eng.segment(IMG)
    assert np.mean(seg != p.argmax(0)) > 0.02  # the threshold matters on this model
    np.testing.assert_array_equal(seg, (p[1] > 0.2).astype(np.uint8))
    np.testing.assert_array_equal(eng.segment(IMG, threshold=0.7), (p[1] > 0.7).astype(np.uint8))
    np.testing.assert_array_equal(plain.segment(IMG, threshold=0.2), seg)  # an override needs no stored decision
    pt = eng.predict(IMG, tta=True)
    np.testing.assert_array_equal(eng.segment(IMG, tta=True), (pt[1] > 0.2).astype(np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        eng.segment(IMG, threshold=1.5)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_three_classes_threshold_on_one(tmp_path, save_unet, padding):
    """Label 2 where p2 > t, else the argmax of classes 0 and 1 (valid nets decide from logits per tile,
    same nets from blended logits; both against numpy on the probabilities)."""
    src = tmp_path / "k3.plan"
    save_unet(src, classes=3, depth=2, base=4)
    if padding == "same":
        mf = model_file.load(src)
        mf.arch["padding"] = "same"
        model_file.save(src, mf)
    eng = unet_rt.Engine(with_decision(tmp_path, {"foreground_class": 2, "threshold": 0.3}, src=src))
    img = (np.random.default_rng(0).random((48, 56)) * 255).astype(np.uint8)
    p = eng.predict(img)
    want = np.where(p[2] > 0.3, 2, np.where(p[1] > p[0], 1, 0))
    got = eng.segment(img)
    near = np.abs(p[2] - 0.3) < 1e-5  # float rounding of logits vs probabilities
    assert np.mean(want == 2) > 0.05 and np.mean(want == 2) < 0.95
    np.testing.assert_array_equal(got[~near], want[~near])
    np.testing.assert_array_equal(_core.decide_labels(p, json.dumps(eng.decision)), want)


# ---- percentile normalisation ----------------------------------------------------------------------

def identity_fn(x):
    """A 'network' of a same-padded depth-1 net returning its (normalised) input as logits."""
    return np.concatenate([x, -x]).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentile_normalisation_in_the_tiler(rng, dtype):
    c, h, w = 2, 37, 45
    hi = {np.uint8: 255, np.uint16: 65535, np.float32: 1000.0}[dtype]
    img = (rng.random((h, w, c)) ** 2 * hi).astype(dtype)
    chw = np.moveaxis(img, -1, 0)  # a strided (HWC) view: the channel-stride path
    mean, std, q = [0.5, -1.0], [2.0, 0.25], [2.0, 99.5]
    out = _core.tile_predict(chw, mean, std, depth=1, same_padding=True, classes=2 * c, fn=identity_fn,
                             output="logits", percentiles=q)
    x = chw.astype(np.float64)
    lo, hi_ = np.percentile(x, q, axis=(1, 2))
    want = ((x - lo[:, None, None]) / (hi_ - lo)[:, None, None] - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out[:c], want, rtol=1e-5, atol=1e-5)
    plain = _core.tile_predict(chw, mean, std, depth=1, same_padding=True, classes=2 * c, fn=identity_fn,
                               output="logits")
    np.testing.assert_allclose(plain[:c], (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None], rtol=1e-5)


def test_percentile_normalisation_makes_the_bit_depth_irrelevant(tmp_path):
    mf = model_file.load(SHIPPED)
    # the shipped model saw (x - 125.2) / 43.5 of 8-bit data, about ((x/255 - 0.49) / 0.17)
    mf.normalization = {"mean": [0.49], "std": [0.17], "percentiles": [0.0, 100.0]}
    p = tmp_path / "pct.plan"
    model_file.save(p, mf)
    eng = unet_rt.Engine(p)
    img8 = IMG
    ref = eng.predict(img8)
    np.testing.assert_allclose(eng.predict(img8.astype(np.uint16) * 257), ref, atol=1e-4)
    np.testing.assert_allclose(eng.predict(img8.astype(np.float32) / 255 - 3.0), ref, atol=1e-4)
    lo, hi = float(img8.min()), float(img8.max())
    scaled = ((img8.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
    mf.normalization = {"mean": [0.49], "std": [0.17]}
    q = tmp_path / "plain.plan"
    model_file.save(q, mf)
    np.testing.assert_allclose(unet_rt.Engine(q).predict(scaled), ref, atol=1e-4)
    const = eng.predict(np.full((40, 40), 7, np.uint16))  # P_hi == P_lo: scale 1, no division by zero
    assert np.isfinite(const).all()


# ---- the range warning -----------------------------------------------------------------------------

def test_warns_once_on_inputs_far_outside_the_training_range():
    eng = unet_rt.Engine(SHIPPED)  # mean/std only: training range taken as mean -/+ 2.33 std
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eng.segment(IMG)  # 8-bit, as trained: silent
        eng.segment((IMG * 0.6 + 40).astype(np.uint8))  # dimmer, lower contrast: still silent
    for bad in (np.stack([IMG, IMG, IMG]).astype(np.uint16) * 257, IMG.astype(np.float32) / 255):
        with pytest.warns(RuntimeWarning, match="far outside the range the model was trained on") as rec:
            eng.segment(bad)
        assert len(rec) == 1


def test_range_warning_rules():
    norm = {"mean": [100.0], "std": [30.0], "train_range": {"percentiles": [1, 99], "low": [20.0], "high": [220.0]}}
    frame = lambda lo, hi: np.linspace(lo, hi, 1000, dtype=np.float32).reshape(1, 20, 50)  # noqa: E731
    assert range_warning([frame(0, 255)], norm) is None
    assert range_warning([frame(-300, 500)], norm) is None            # within the training range +- 2 spans
    assert "P1..P99" in range_warning([frame(0, 4095)], norm)         # 12-bit data on an 8-bit model
    assert range_warning([frame(100, 110)], norm) is not None         # span < 1/10 of the training span
    assert range_warning([frame(0, 4095)], dict(norm, percentiles=[1, 99])) is None  # normalised per image


def test_percentile_range_float32_cannot_scale_is_an_error(tmp_path):
    # A percentile-normalised model on an image whose percentile range is far narrower than its
    # values: (x - lo) / (hi - lo) overflows float32. The Engine refuses with a message (it used to
    # run the network on ~1e38 inputs and return a meaningless map); unet_rt.scale does the same.
    mf = model_file.load(SHIPPED)
    mf.normalization = {"mean": [0.0], "std": [1.0], "percentiles": [1, 99]}
    p = tmp_path / "pct.plan"
    model_file.save(p, mf)
    img = np.zeros((64, 64), np.float32)
    img[::2] = 1e-42                      # p1 = 0, p99 = 1e-42 (subnormal)
    img[0, 0] = 1.0                       # (1 - 0) / 1e-42 = 1e42: not a float32
    with pytest.raises(ValueError, match="float32 cannot scale"):
        unet_rt.Engine(p).segment(img)
    ok = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    assert unet_rt.Engine(p).segment(ok).shape == (64, 64)
