"""The unet-rt command line, run as a user would (subprocess), on shipped samples and tmp files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_rt.io.images import read_image, write_image

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
    r = cli("segment", tmp_path / "in", "-m", model, "-o", tmp_path / "out", "--overlay", "--raw")
    assert "segmented 3 image(s)" in r.stdout
    assert np.array_equal(read_image(tmp_path / "out" / "a.png"), eng.segment(img8))
    assert np.array_equal(read_image(tmp_path / "out" / "b.tif"), eng.segment(img16))  # TIFF in, TIFF out
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
    assert r.returncode == 2 and "no such input" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.plan").write_bytes(b"garbage!" * 10)
    write_image(tmp_path / "x.png", np.zeros((20, 20), np.uint8))
    r = cli("segment", tmp_path / "x.png", "-m", tmp_path / "bad.plan", "-o", tmp_path / "o.png", ok=False)
    assert r.returncode == 2 and "error" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_info(model):
    out = cli("info", model).stdout
    assert "depth" in out and "membrane" in out and "halo" in out


def test_evaluate_model_and_otsu_baseline(model):
    out = cli("evaluate", "--data", SAMPLES, "-m", model, "--per-image", "--slices", "28-29").stdout
    for name in ("V_rand", "V_info", "Rand error", "pixel error", "warping error", "adapted Rand error", "wrong pixels", "  29 "):
        assert name in out
    out = cli("evaluate", "--data", SAMPLES, "--baseline", "otsu", "--json", "--no-warping", "--slices", "25-29").stdout
    import json

    d = json.loads(out)
    assert d["names"] == [str(n) for n in range(25, 30)] and len(d["challenge"]["images"]) == 5  # the test slices
    assert 0 < d["decision"]["mean"]["wrong_pixel_fraction"] < 1 and 0 < d["challenge"]["v_rand"] < 1
    assert "warping_error" not in d["challenge"]


def test_otsu_threshold_against_skimage(rng):
    filters = pytest.importorskip("skimage.filters")
    from unet_rt.eval.baseline import otsu_threshold

    img = read_image(SAMPLES / "image" / "25.png")
    ours, ref = otsu_threshold(img), filters.threshold_otsu(img)
    assert abs(ours - ref) <= 1.0  # both histogram-based: within one 8-bit bin


def test_segment_zarr_stack(model, tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    import unet_rt

    stack = rng.integers(0, 5000, (2, 40, 50)).astype(np.uint16)
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=stack.shape, dtype="uint16")
    z[:] = stack
    cli("segment", tmp_path / "s.zarr", "-m", model, "-o", tmp_path / "out", "--raw")
    assert np.array_equal(read_image(tmp_path / "out" / "s.tif"), unet_rt.Engine(model).segment(stack))


# ---------------------------------------------------------------------------------------- issue 11
def test_train_through_the_cli():
    r = cli("train", "--help")
    assert "--data" in r.stdout and "--steps" in r.stdout and "--resume" in r.stdout
    # options reach the trainer (argparse.REMAINDER used to drop them: "unrecognized arguments")
    r = cli("train", "--out", "runs-never-made", "--steps", "3", ok=False)
    assert r.returncode != 0 and "--data is required" in r.stderr and "unrecognized" not in r.stderr


def test_rgb_png_to_a_grey_model_is_converted_with_a_message(model, tmp_path, rng):
    from PIL import Image

    import unet_rt
    from unet_rt.io.axes import to_luma

    rgb = rng.integers(0, 255, (60, 70, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    # the luma conversion agrees with Pillow's own RGB -> L
    ref = np.asarray(Image.fromarray(rgb).convert("L"), np.int16)
    assert np.abs(to_luma(rgb, -1).astype(np.int16) - ref).max() <= 1
    r = cli("segment", tmp_path / "rgb.png", "-m", model, "-o", tmp_path / "o.png", "--raw", "--overlay")
    assert "converted RGB to grey" in r.stderr + r.stdout
    eng = unet_rt.Engine(model)
    out = read_image(tmp_path / "o.png")
    assert out.shape == (60, 70)  # not a "stack of 60 frames of 70 x 3"
    assert np.array_equal(out, eng.segment(to_luma(rgb, -1)))
    assert read_image(tmp_path / "o-overlay.png").shape == (60, 70, 3)
    # the library refuses to guess; axes="YXC" converts (with a warning)
    with pytest.raises(ValueError, match="ambiguous"):
        eng.segment(rgb)
    with pytest.warns(UserWarning, match="grey"):
        assert np.array_equal(eng.segment(rgb, axes="YXC"), out)
    assert eng.segment(rgb, axes="ZYX").shape == rgb.shape  # an explicit stack stays a stack


def test_axes_from_metadata_and_explicit(model, tmp_path, rng):
    import tifffile

    import unet_rt

    eng = unet_rt.Engine(model)
    two = rng.integers(0, 4000, (2, 40, 50)).astype(np.uint16)            # C x Y x X
    tifffile.imwrite(tmp_path / "c.ome.tif", two, ome=True, metadata={"axes": "CYX"})
    # a 2-channel image to a 1-channel model: refused, naming --channel (not taken as 2 frames)
    r = cli("segment", tmp_path / "c.ome.tif", "-m", model, "-o", tmp_path / "x.tif", ok=False)
    assert r.returncode == 1 and "--channel" in r.stderr and not (tmp_path / "x.tif").exists()
    cli("segment", tmp_path / "c.ome.tif", "-m", model, "-o", tmp_path / "c1.tif", "--channel", "1", "--raw")
    assert np.array_equal(read_image(tmp_path / "c1.tif"), eng.segment(two[1]))
    # the same array without metadata, named by --axes
    tifffile.imwrite(tmp_path / "bare.tif", np.moveaxis(two, 0, -1), photometric="minisblack", planarconfig="contig")
    cli("segment", tmp_path / "bare.tif", "-m", model, "-o", tmp_path / "b.tif", "--axes", "YXC", "--channel", "0",
        "--raw")
    assert np.array_equal(read_image(tmp_path / "b.tif"), eng.segment(two[0]))
    # ImageJ hyperstack T x Z x Y x X: labels keep both stack axes
    tz = rng.integers(0, 255, (2, 3, 30, 31)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "tz.tif", tz, imagej=True, metadata={"axes": "TZYX"})
    cli("segment", tmp_path / "tz.tif", "-m", model, "-o", tmp_path / "tz-out.tif", "--raw")
    got = read_image(tmp_path / "tz-out.tif")
    assert got.shape == (2, 3, 30, 31) and np.array_equal(got[1, 2], eng.segment(tz[1, 2]))
    r = cli("segment", tmp_path / "tz.tif", "-m", model, "-o", tmp_path / "e.tif", "--axes", "ZYX", ok=False)
    assert r.returncode == 1 and "3 dimensions" in r.stderr
    r = cli("segment", tmp_path / "tz.tif", "-m", model, "-o", tmp_path / "e.tif", "--axes", "YQ", ok=False)
    assert r.returncode == 2 and "unknown letter" in r.stderr


def test_unknown_output_extension_is_an_error(model, tmp_path):
    src = SAMPLES / "image" / "25.png"
    for name in ("t.jpg", "out.v2"):
        r = cli("segment", src, "-m", model, "-o", tmp_path / name, ok=False)
        assert r.returncode == 2 and "unknown output extension" in r.stderr
        assert not (tmp_path / name).exists()
    # a directory whose name has a dot: with a trailing slash
    cli("segment", src, "-m", model, "-o", str(tmp_path / "out.v2") + "/")
    assert (tmp_path / "out.v2" / "25.png").is_file()


def test_labels_visible_by_default_raw_on_request(model, tmp_path):
    import unet_rt

    src = SAMPLES / "image" / "26.png"
    cli("segment", src, "-m", model, "-o", tmp_path / "v.png")
    cli("segment", src, "-m", model, "-o", tmp_path / "r.png", "--raw")
    raw = unet_rt.Engine(model).segment(read_image(src))
    assert np.array_equal(read_image(tmp_path / "r.png"), raw)
    assert np.array_equal(read_image(tmp_path / "v.png"), raw * 255)   # 2 classes: 0 and 255


def test_overlay_for_stacks_and_probabilities(model, tmp_path, rng):
    import unet_rt

    stack = rng.integers(0, 255, (3, 40, 45)).astype(np.uint8)
    write_image(tmp_path / "s.tif", stack)
    cli("segment", tmp_path / "s.tif", "-m", model, "-o", tmp_path / "o" / "", "--overlay")
    ov = read_image(tmp_path / "o" / "s-overlay.tif")
    assert ov.shape == (3, 40, 45, 3) and ov.dtype == np.uint8
    lab = unet_rt.Engine(model).segment(stack)
    tinted = (ov[..., 0] != ov[..., 1])             # class 0 is tinted orange; grey elsewhere
    assert np.array_equal(tinted, lab == 0)
    cli("segment", tmp_path / "s.tif", "-m", model, "-o", tmp_path / "p.tif", "--probabilities", "--overlay")
    assert read_image(tmp_path / "p.tif").shape == (3, 2, 40, 45)
    assert np.array_equal(read_image(tmp_path / "p-overlay.tif"), ov)


# ---------------------------------------------------------------------------------------- issue 12 (CLI)
def test_bad_files_are_reported_and_the_rest_still_run(model, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    img = read_image(SAMPLES / "image" / "25.png")[:64, :64]
    write_image(d / "1.png", img)
    (d / "2.png").write_bytes((d / "1.png").read_bytes()[:200])          # truncated
    (d / "3.tif").write_bytes(b"II*\x00garbage garbage garbage")           # corrupt
    write_image(d / "4.png", img)
    r = cli("segment", d, "-m", model, "-o", tmp_path / "out", ok=False)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "2.png" in r.stderr and "3.tif" in r.stderr and "2 of 4 input(s) failed" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1.png", "4.png"]


def test_unwritable_or_odd_output_is_a_clean_error(model, tmp_path):
    src = SAMPLES / "image" / "25.png"
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "x.png", tmp_path / "afile" / "sub"):
        r = cli("segment", src, "-m", model, "-o", out, ok=False)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "unet-rt: error" in r.stderr
    r = cli("segment", src, src, "-m", model, "-o", tmp_path / "one.png", ok=False)
    assert r.returncode == 2 and "2 inputs" in r.stderr


def test_output_equal_to_input_is_refused(model, tmp_path):
    img = read_image(SAMPLES / "image" / "25.png")[:50, :50]
    write_image(tmp_path / "a.png", img)
    before = (tmp_path / "a.png").read_bytes()
    for out in (tmp_path / "a.png", tmp_path / "." / "a.png", tmp_path):
        r = cli("segment", tmp_path / "a.png", "-m", model, "-o", out, ok=False)
        assert r.returncode == 2 and "overwrite the input" in r.stderr
    assert (tmp_path / "a.png").read_bytes() == before


def test_segment_and_evaluate_default_to_the_shipped_model(tmp_path):
    """Without -m the shipped model is used (the move to src/unet_rt/cli/ had pointed the default at a
    cli/models/ folder that does not exist)."""
    from unet_rt.cli._common import DEFAULT_MODEL

    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.parent.name == "models"
    cli("segment", SAMPLES / "image" / "25.png", "-o", tmp_path / "25.png", "-q")
    assert read_image(tmp_path / "25.png").shape == read_image(SAMPLES / "image" / "25.png").shape
    assert "not installed" not in cli("segment", "--help").stdout


def test_slices_rule_names_what_is_missing(tmp_path):
    """One --slices rule (unet_rt.io.dataset): file numbers for N.png, and a number naming no slice is
    an error that says what the data holds (evaluate used to drop it silently)."""
    r = cli("evaluate", "--data", SAMPLES, "--baseline", "otsu", "--json", "--no-warping", "--slices", "28-31", ok=False)
    assert r.returncode == 2 and "no slice 30-31" in r.stderr and "23-29" in r.stderr
