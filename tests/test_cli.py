"""The unet-rt command line, run as a user would (subprocess), on shipped samples and tmp files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_rt.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
torch = pytest.importorskip("torch")


def cli(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "unet_rt", *map(str, args)], capture_output=True, text=True, cwd=ROOT / "tests")
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_unet):
    p = tmp_path_factory.mktemp("cli") / "m.plan"
    save_unet(p, mean=120.0, names=["membrane", "cell"])
    return p


def test_help_explains():
    out = cli("--help").stdout
    for cmd in ("segment", "info", "evaluate", "compile", "train", "export"):
        assert cmd in out
    assert "overlap-tile" in cli("segment", "--help").stdout


def test_segment_png_tiff_and_stack(model, tmp_path, rng):
    import unet_rt

    eng = unet_rt.Engine(model)
    img8 = read_image(SAMPLES / "image" / "25.png")[:100, :130]
    write_image(tmp_path / "in" / "a.png", img8)
    img16 = (rng.integers(0, 60000, (70, 50))).astype(np.uint16)
    write_image(tmp_path / "in" / "b.tif", img16)
    stack = rng.integers(0, 255, (3, 40, 45)).astype(np.uint8)
    write_image(tmp_path / "in" / "c.tif", stack)
    r = cli("segment", tmp_path / "in", "-m", model, "-o", tmp_path / "out", "--overlay")
    assert "segmented 3 image(s)" in r.stdout
    assert np.array_equal(read_image(tmp_path / "out" / "a.png"), eng.segment(img8))
    assert np.array_equal(read_image(tmp_path / "out" / "b.png"), eng.segment(img16))
    assert np.array_equal(read_image(tmp_path / "out" / "c.tif"), eng.segment(stack))
    ov = read_image(tmp_path / "out" / "a-overlay.png")
    assert ov.shape == (100, 130, 3)
    # single file, probabilities as TIFF
    cli("segment", tmp_path / "in" / "b.tif", "-m", model, "-o", tmp_path / "p.tif", "--probabilities")
    p = read_image(tmp_path / "p.tif")
    assert p.shape == (2, 70, 50) and p.dtype == np.float32
    assert np.allclose(p, eng.predict(img16), atol=1e-6)


def test_segment_errors_write_nothing(model, tmp_path):
    r = cli("segment", tmp_path / "missing.png", "-m", model, "-o", tmp_path / "o.png", ok=False)
    assert r.returncode == 2 and "no such input" in r.stderr
    (tmp_path / "bad.plan").write_bytes(b"garbage!" * 10)
    write_image(tmp_path / "x.png", np.zeros((20, 20), np.uint8))
    r = cli("segment", tmp_path / "x.png", "-m", tmp_path / "bad.plan", "-o", tmp_path / "o.png", ok=False)
    assert r.returncode == 2 and "error" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_info(model):
    out = cli("info", model).stdout
    assert "depth" in out and "membrane" in out and "halo" in out


def test_evaluate_model_and_otsu_baseline(model):
    out = cli("evaluate", "--data", SAMPLES, "-m", model, "--per-image").stdout
    for name in ("V_rand", "V_info", "Rand error", "pixel error", "warping error", "adapted Rand error", "29.png"):
        assert name in out
    out = cli("evaluate", "--data", SAMPLES, "--baseline", "otsu", "--json", "--no-warping", "--slices", "25-29").stdout
    import json

    d = json.loads(out)
    assert d["names"] == [f"{n}.png" for n in range(25, 30)] and len(d["challenge"]["images"]) == 5  # the test slices
    assert 0 < d["decision"]["mean"]["pixel_error"] < 1 and 0 < d["challenge"]["v_rand"] < 1
    assert "warping_error" not in d["challenge"]


def test_otsu_threshold_against_skimage(rng):
    filters = pytest.importorskip("skimage.filters")
    from unet_rt.cli import otsu_threshold

    img = read_image(SAMPLES / "image" / "25.png")
    ours, ref = otsu_threshold(img), filters.threshold_otsu(img)
    assert abs(ours - ref) <= 1.0  # both histogram-based: within one 8-bit bin


def test_segment_zarr_stack(model, tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    import unet_rt

    stack = rng.integers(0, 5000, (2, 40, 50)).astype(np.uint16)
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=stack.shape, dtype="uint16")
    z[:] = stack
    cli("segment", tmp_path / "s.zarr", "-m", model, "-o", tmp_path / "out")
    assert np.array_equal(read_image(tmp_path / "out" / "s.tif"), unet_rt.Engine(model).segment(stack))
