"""Calibration (unet_rt.eval.calibrate, unet-rt calibrate): the chosen decision is the grid's optimum
(checked by brute force with scikit-image's watershed and adapted Rand error), it is written into
the model file atomically, and the CLI's calibrate / segment --instances / evaluate --instances work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unet_rt
from unet_rt.eval import metrics
from unet_rt.format import model_file
from unet_rt.eval.calibrate import calibrate, calibrate_file, write_decision
from unet_rt.io.images import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
SAMPLES = ROOT / "data" / "samples"
skmetrics = pytest.importorskip("skimage.metrics")
from test_instances import reference  # noqa: E402  (scipy + skimage watershed)

CROP = (slice(0, 144), slice(0, 160))
SMALL = {"threshold": [0.1, 0.2, 0.3, 0.5, 0.7], "threshold_refine": 0,
         "mask_threshold": [0.05, 0.3], "marker_threshold": [None, 0.8],
         "min_marker_size": [10], "min_size": [0], "refine": 0}


@pytest.fixture(scope="module")
def val():
    imgs = [read_image(SAMPLES / "image" / f"{n}.png")[CROP] for n in (23, 24)]
    labs = [read_image(SAMPLES / "label" / f"{n}.png")[CROP] for n in (23, 24)]
    return imgs, labs


@pytest.mark.parametrize("dense", [False, True])
def test_calibration_finds_the_grid_optimum(val, dense):
    imgs, labs = val
    d = calibrate(SHIPPED, imgs, labs, grid=SMALL, dense=dense, progress=False)
    eng = unet_rt.Engine(SHIPPED)
    probs = [eng.predict(i)[1] for i in imgs]
    fgs = [lb > 0 for lb in labs]
    px = {t: np.mean([np.mean((p > t) != fg) for p, fg in zip(probs, fgs)]) for t in SMALL["threshold"]}
    assert d["threshold"] == min(px, key=px.get)
    assert d["calibration"]["wrong_pixel_fraction"] == pytest.approx(px[d["threshold"]], abs=1e-6)
    assert d["calibration"]["wrong_pixel_fraction"] < d["calibration"]["wrong_pixel_fraction_argmax"]

    t = d["threshold"]

    def rand(mask_t, marker_t):  # independent: scipy/skimage watershed, skimage's adapted Rand error
        errs = []
        mask_t = t if mask_t is None else mask_t  # None: the segmentation's foreground
        for p, fg in zip(probs, fgs):
            pred = reference(p, mask_t, mask_t if marker_t is None else marker_t, 10, 0)
            errs.append(skmetrics.adapted_rand_error(metrics.connected_components(fg), pred, ignore_labels=(0,))[0])
        return float(np.mean(errs))

    table = {(a, b): rand(a, b) for a in [None] + SMALL["mask_threshold"] for b in SMALL["marker_threshold"]
             if (a is None or dense or a > t) and (b is None or b > (t if a is None else a))}
    assert any(a is not None and a < t for a, _ in table) == dense  # the case tells the modes apart
    best = min(table, key=table.get)
    inst = d["instances"]
    assert (inst.get("mask_threshold"), inst.get("marker_threshold")) == best, table
    assert d["calibration"]["rand_error"] == pytest.approx(table[best], abs=1e-6)
    assert inst["min_marker_size"] == 10 and inst["min_size"] == 0


def test_instance_labels_calibrate_like_binary_masks(val):
    imgs, labs = val
    inst_labels = [metrics.connected_components(lb > 0) * 3 for lb in labs]  # instance images (ids 3, 6, ...)
    a = calibrate(SHIPPED, imgs, labs, grid=SMALL, progress=False)
    b = calibrate(SHIPPED, imgs, inst_labels, grid=SMALL, progress=False)
    a.pop("calibration"), b.pop("calibration")
    assert a == b


def test_write_decision_is_atomic_and_validated(tmp_path, val):
    imgs, labs = val
    src = tmp_path / "m.plan"
    src.write_bytes(SHIPPED.read_bytes())
    d = calibrate(SHIPPED, imgs, labs, grid=SMALL, progress=False)
    out = tmp_path / "calibrated.plan"
    write_decision(src, d, out)
    assert src.read_bytes() == SHIPPED.read_bytes() and model_file.load(out).decision == d
    eng = unet_rt.Engine(out)
    np.testing.assert_array_equal(eng.segment(imgs[0]), (eng.predict(imgs[0])[1] > d["threshold"]).astype(np.uint8))
    with pytest.raises(model_file.ModelFileError, match="threshold"):
        write_decision(src, dict(d, threshold=2.0))
    assert src.read_bytes() == SHIPPED.read_bytes()  # nothing half-written
    write_decision(src, d)  # in place
    assert model_file.load(src).decision == d and len(list(tmp_path.iterdir())) == 2


def cli(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "unet_rt", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT / "tests")
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_cli_calibrate_segment_instances_evaluate(tmp_path, val, monkeypatch, capsys):
    from unet_rt.eval import calibrate as cal_module
    from unet_rt.cli import main

    imgs, labs = val
    data = tmp_path / "data"
    for n, im, lb in zip((7, 8), imgs, labs):
        write_image(data / "image" / f"{n}.png", im)
        write_image(data / "label" / f"{n}.png", lb)
    write_image(data / "image" / "9.png", imgs[0][::-1])  # not selected by --slices
    write_image(data / "label" / "9.png", labs[0][::-1])
    model = tmp_path / "m.plan"
    model.write_bytes(SHIPPED.read_bytes())
    monkeypatch.setattr(cal_module, "DEFAULT_GRID", SMALL)  # the command in-process, on the small grid
    assert main(["calibrate", str(model), "--data", str(data), "--slices", "7-8", "-q"]) == 0  # no -o: print only
    r = capsys.readouterr()
    d = json.loads(r.out)
    assert "not written" in r.err and model.read_bytes() == SHIPPED.read_bytes()
    assert d["calibration"]["names"] == ["7", "8"] and d["calibration"]["slices"] == "7-8"
    assert d == dict(calibrate(SHIPPED, imgs, labs, grid=SMALL, progress=False), calibration=d["calibration"])
    out = tmp_path / "cal.plan"
    assert main(["calibrate", str(model), "--data", str(data), "--slices", "7-8", "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert model_file.load(out).decision == d
    assert main(["calibrate", str(model), "--data", str(data), "--slices", "20-21"]) == 2
    assert "no slice 20-21" in capsys.readouterr().err
    info = cli("info", out).stdout
    assert "decision" in info and f"'threshold': {d['threshold']}" in info
    # segment --instances writes the Engine's instances (uint16 PNG)
    cli("segment", data / "image" / "7.png", "-m", out, "--instances", "-o", tmp_path / "inst.png", "-q")
    got = read_image(tmp_path / "inst.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, unet_rt.Engine(out).instances(imgs[0]))
    cli("segment", data / "image" / "7.png", "-m", out, "--threshold", "0.6", "--raw", "-o", tmp_path / "t.png", "-q")
    np.testing.assert_array_equal(read_image(tmp_path / "t.png"), unet_rt.Engine(out).segment(imgs[0], threshold=0.6))
    ev = json.loads(cli("evaluate", "--data", data, "--slices", "9", "-m", out, "--instances", "--json",
                        "--no-warping").stdout)
    assert ev["names"] == ["9"] and ev["instances"]
    true = metrics.connected_components(labs[0][::-1] > 0)
    want = metrics.adapted_rand_error(true, unet_rt.Engine(out).instances(imgs[0][::-1]))
    assert ev["decision"]["images"][0]["adapted_rand_error"] == pytest.approx(want)


def test_calibrate_file_records_the_data(tmp_path):
    model = tmp_path / "m.plan"
    model.write_bytes(SHIPPED.read_bytes())
    with pytest.raises(FileNotFoundError, match="image/ and label/"):
        calibrate_file(model, tmp_path)


def test_one_slices_rule_for_evaluate_calibrate_and_train(tmp_path):
    """unet_rt.io.dataset: numbered files by number; otherwise positions, a stack's pages one slice each."""
    from unet_rt.io.dataset import load_pairs, slice_indices

    rng = np.random.default_rng(0)
    im = rng.integers(0, 255, (3, 20, 24), dtype=np.uint8)
    lb = (im > 128).astype(np.uint8) * 255
    write_image(tmp_path / "a" / "image" / "vol.tif", im, axes="ZYX")
    write_image(tmp_path / "a" / "label" / "vol.tif", lb, axes="ZYX")
    write_image(tmp_path / "a" / "image" / "x.png", im[0])
    write_image(tmp_path / "a" / "label" / "x.png", lb[0])
    names = [n for n, _, _ in load_pairs(tmp_path / "a")]
    assert names == ["vol[0]", "vol[1]", "vol[2]", "x"]  # natural order, a stack's pages one slice each
    got = load_pairs(tmp_path / "a", "1-2")
    assert [n for n, _, _ in got] == ["vol[1]", "vol[2]"] and np.array_equal(got[0][1], im[1])
    with pytest.raises(ValueError, match="no slice 4"):
        load_pairs(tmp_path / "a", "3-4")
    assert slice_indices(["23", "24", "25"], "24-25") == [1, 2]
    assert slice_indices(["23", "24[0]", "24[1]"], "24") == [1, 2]
    with pytest.raises(ValueError, match="not a number"):
        slice_indices(["0"], "a-b")
