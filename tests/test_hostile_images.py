"""Hostile images and metadata (issue 20, rows 9-12 and 17): invalid pixel sizes are dropped with a
warning where metadata enters (open_image) and where it leaves (the writers); declared sizes are
checked against the file's real data before anything is allocated; malformed zarr metadata and
corrupt chunks end in a clear ValueError; the OME-Zarr writer leaves nothing half-written.
Every crafted file is built here, small on disk. Checked with the field's own readers (tifffile,
zarr, ome-zarr) and with strict JSON (Python's json without NaN/Infinity)."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from test_cli import cli  # the CLI in a subprocess, as a user runs it
from unet_rt.io import images
from unet_rt.io.images import MetadataWarning, open_image, open_zarr_input, write_image, write_ome_zarr

tifffile = pytest.importorskip("tifffile")
ROOT = Path(__file__).resolve().parents[1]
BAD_SIZES = [float("nan"), float("inf"), -0.5, 0.0, -0.0, 1e-320]


def strict_json(text: str):
    def no(tok):
        raise ValueError(f"not JSON: {tok}")
    return json.loads(text, parse_constant=no)


def tree(path: Path) -> dict:
    """Every file under path with its bytes (what 'unchanged' means for a zarr)."""
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def zarr_meta_files(path: Path):
    return [f for f in path.rglob("*") if f.name in ("zarr.json", ".zattrs", ".zarray", ".zgroup")]


def assert_valid_scales(path: Path):
    """Every zarr metadata file is strict JSON and every NGFF scale is finite and positive."""
    for f in zarr_meta_files(path):
        d = strict_json(f.read_text())

        def walk(o, f=f):
            if isinstance(o, dict):
                if o.get("type") == "scale":
                    assert all(math.isfinite(x) and x > 0 for x in o["scale"]), (f, o)
                for v in o.values():
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(d)


def ome_zarr_with_scale(path: Path, x_scale, rng=None, zarr_format=3):
    """A 2-D OME-Zarr image whose X scale is x_scale (written as a JSON token, NaN/Infinity included)."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    from ome_zarr.writer import write_image as ngff_write_image

    img = (np.arange(48 * 56) % 200).astype(np.uint8).reshape(48, 56)
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    ngff_write_image(img, root, axes="yx", scale_factors=[], scale={"y": 0.5, "x": 0.5},
                     axes_units={"y": "micrometer", "x": "micrometer"})
    meta = path / ("zarr.json" if zarr_format == 3 else ".zattrs")
    d = json.loads(meta.read_text())
    ms = (d["attributes"]["ome"] if zarr_format == 3 else d)["multiscales"][0]
    ms["datasets"][0]["coordinateTransformations"][0]["scale"][1] = x_scale
    meta.write_text(json.dumps(d))  # NaN -> NaN, inf -> Infinity: what a hostile writer leaves
    return img


# ---- rows 9 and 10: pixel sizes in --------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_SIZES)
def test_bad_zarr_scale_is_dropped_on_read(tmp_path, bad):
    ome_zarr_with_scale(tmp_path / "a.zarr", bad)
    with pytest.warns(MetadataWarning, match="not a finite positive number"):
        im = open_image(tmp_path / "a.zarr")
    assert "X" not in im.pixel_size and im.pixel_size["Y"] == (0.5, "micrometer")
    assert all(math.isfinite(s) and s > 0 for s in im.ngff["scale"])


@pytest.mark.parametrize("bad", ["nan", "inf", "-0.5", "0.0", "abc"])
def test_bad_ome_tiff_physical_size_is_dropped_on_read(tmp_path, bad):
    p = tmp_path / "a.ome.tif"
    tifffile.imwrite(p, np.zeros((2, 16, 16), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.0})
    with tifffile.TiffFile(p) as tf:
        xml = tf.ome_metadata.replace('PhysicalSizeX="0.25"', f'PhysicalSizeX="{bad}"')
    tifffile.imwrite(p, np.zeros((2, 16, 16), np.uint8), description=xml, metadata=None)
    with pytest.warns(MetadataWarning):
        im = open_image(p)
    assert im.kind == "ome-tiff" and "X" not in im.pixel_size and im.pixel_size["Y"] == (0.25, "micrometer")


def test_bad_imagej_spacing_is_dropped_on_read(tmp_path):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, np.zeros((2, 16, 16), np.uint8), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": float("inf"), "unit": "um"})
    with pytest.warns(MetadataWarning, match="Z="):
        im = open_image(p)
    assert "Z" not in im.pixel_size and im.pixel_size["X"] == (0.5, "micrometer")


def test_bad_scale_to_a_new_zarr_and_to_the_input(model, tmp_path, bad=float("nan")):
    # Before: exit 1 after writing the image and an empty labels/unet-rt; a rerun was refused; with
    # -o = the input, the input gained the empty group and the napari reader could no longer open it.
    src = tmp_path / "a.zarr"
    ome_zarr_with_scale(src, bad)
    r = cli("segment", src, "-m", model, "-o", tmp_path / "new.zarr", "-q")
    assert "not a finite positive number" in r.stderr
    lab = open_image(tmp_path / "new.zarr" / "labels" / "unet-rt")
    assert lab.data.shape == (48, 56)
    assert_valid_scales(tmp_path / "new.zarr")
    r = cli("segment", src, "-m", model, "-o", src, "-q")                # labels beside the input
    assert_valid_scales(src / "labels")
    assert np.array_equal(open_image(src / "labels" / "unet-rt").data, lab.data)
    assert open_image(src).data.shape == (48, 56)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


# ---- row 10: pixel sizes out -------------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_SIZES)
def test_writers_never_write_invalid_pixel_sizes(tmp_path, bad):
    arr = np.zeros((2, 16, 16), np.uint8)
    px = {"X": (bad, "micrometer"), "Y": (0.5, "micrometer"), "Z": (bad, "micrometer")}
    with pytest.warns(MetadataWarning):
        write_image(tmp_path / "o.ome.tif", arr, axes="ZYX", pixel_size=px)
    with tifffile.TiffFile(tmp_path / "o.ome.tif") as tf:
        pix = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    assert "PhysicalSizeX" not in pix and "PhysicalSizeZ" not in pix and float(pix["PhysicalSizeY"]) == 0.5
    with pytest.warns(MetadataWarning):
        write_image(tmp_path / "ij.tif", arr, axes="ZYX", pixel_size={**px, "X": (0.5, "micrometer")})
    with tifffile.TiffFile(tmp_path / "ij.tif") as tf:
        assert tf.is_imagej and "spacing" not in tf.imagej_metadata
    pytest.importorskip("ome_zarr")
    img = images.ImageData(arr, "ZYX", px)
    with pytest.warns(MetadataWarning):
        write_ome_zarr(tmp_path / "o.zarr", {"l": arr}, image=img, axes="ZYX")
    assert_valid_scales(tmp_path / "o.zarr")


def test_inf_zero_sizes_through_the_cli_write_valid_ome_xml(model, tmp_path):
    # Before: exit 0 with PhysicalSizeX="inf", spacing=inf, Infinity tokens in zarr.json.
    src = tmp_path / "a.ome.tif"
    tifffile.imwrite(src, np.zeros((2, 24, 24), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.0})
    with tifffile.TiffFile(src) as tf:
        xml = tf.ome_metadata.replace('PhysicalSizeX="0.25"', 'PhysicalSizeX="inf"').replace(
            'PhysicalSizeZ="1.0"', 'PhysicalSizeZ="0.0"')
    tifffile.imwrite(src, np.zeros((2, 24, 24), np.uint8), description=xml, metadata=None)
    cli("segment", src, "-m", model, "-o", tmp_path / "o.ome.tif", "-q")   # (-o .zarr: the test above)
    with tifffile.TiffFile(tmp_path / "o.ome.tif") as tf:
        pix = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]["Pixels"]
    assert "PhysicalSizeX" not in pix and "PhysicalSizeZ" not in pix and float(pix["PhysicalSizeY"]) == 0.25


# ---- row 9: nothing half-written -----------------------------------------------------------------

def test_zarr_writer_failure_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("ome_zarr")
    import ome_zarr.writer

    src = tmp_path / "in.zarr"
    ome_zarr_with_scale(src, 0.5)
    before = tree(src)
    img = open_image(src)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ome_zarr.writer, "write_labels", boom)
    with pytest.raises(OSError, match="disk full"):
        write_ome_zarr(tmp_path / "new.zarr", {"unet-rt": img.data}, image=img)
    with pytest.raises(OSError, match="disk full"):
        write_ome_zarr(src, {"unet-rt": img.data})
    assert not (tmp_path / "new.zarr").exists() and tree(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]      # no temporary left
    monkeypatch.undo()
    write_ome_zarr(tmp_path / "new.zarr", {"unet-rt": img.data}, image=img)  # a rerun is not refused
    write_ome_zarr(src, {"unet-rt": img.data})
    write_ome_zarr(src, {"second": img.data})                                # beside an existing label
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    for p in (tmp_path / "new.zarr", src):
        nodes = list(Reader(parse_url(str(p)))())
        assert len(nodes) >= 2
    assert sorted(open_image(src / "labels" / n).data.shape == (48, 56) for n in ("unet-rt", "second")) == [True] * 2
    lg = json.loads((src / "labels" / "zarr.json").read_text())["attributes"]["ome"]["labels"]
    assert lg == ["unet-rt", "second"]


# ---- row 11: declared sizes against the file ------------------------------------------------------

def ome_tiff_declaring(path: Path, **sizes):
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), ome=True, metadata={"axes": "YX"})
    with tifffile.TiffFile(path) as tf:
        xml = tf.ome_metadata
    for k, v in sizes.items():
        xml = xml.replace(f'{k}="{64 if k in ("SizeX", "SizeY") else 1}"', f'{k}="{v}"', 1)
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), description=xml, metadata=None)


def run_bounded(code: str, timeout=60):
    """Python in a subprocess that prints its peak RSS and the wall time since it set t0 last."""
    prog = "import time, sys; sys.path.insert(0, %r); t0 = time.monotonic()\n" % str(ROOT / "tests") + \
        textwrap.dedent(code) + "\nfrom _rss import peak_rss; print('PEAK', peak_rss(), time.monotonic() - t0)\n"
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    peak, secs = r.stdout.split("PEAK")[-1].split()
    return r.stdout, int(peak), float(secs)


def open_image_bounded(p, timeout=60):
    """open_image(p) in a subprocess: its output ("ERR <message>" for a ValueError), peak RSS, seconds."""
    return run_bounded(f"""
        from unet_rt.io.images import open_image
        t0 = time.monotonic()
        try:
            open_image({str(p)!r})
        except ValueError as e:
            print("ERR", e)
        """, timeout=timeout)


@pytest.mark.parametrize("sizes", [dict(SizeX=10 ** 9, SizeY=10 ** 9), dict(SizeT=100000)])
def test_ome_tiff_declaring_huge_sizes(tmp_path, sizes):
    # Before: MemoryError tracebacks (SizeT=100000 on one page allocated 24.4 GiB).
    p = tmp_path / "big.ome.tif"
    ome_tiff_declaring(p, **sizes)
    assert p.stat().st_size < 300_000
    out, peak, secs = open_image_bounded(p)
    assert "ERR" in out and ("declares" in out), out
    assert peak < 1 << 30 and secs < 10, (peak, secs)


# ---- row 12: zarr ------------------------------------------------------------------------------

def plain_zarr(path: Path, zarr_format=3):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(path), shape=(40, 40), chunks=(20, 20), dtype="uint8", zarr_format=zarr_format)
    z[...] = (np.arange(1600) % 250).astype(np.uint8).reshape(40, 40)
    return path


def edit_json(f: Path, fn):
    d = json.loads(f.read_text())
    fn(d)
    f.write_text(json.dumps(d))


def _chunk0(d):
    d["chunk_grid"]["configuration"]["chunk_shape"] = [0, 20]


def _huge(d):
    d["shape"] = [10 ** 12, 10 ** 12]


def _corrupt(p: Path):
    for f in p.rglob("*"):
        if f.is_file() and f.name not in ("zarr.json",):
            f.write_bytes(b"\x28\xb5\x2f\xfd garbage, not a zstd frame" * 3)


def hostile_zarrs(tmp_path: Path) -> dict:
    """name -> (path, what the message must say)."""
    out = {}
    p = plain_zarr(tmp_path / "chunk0.zarr")
    edit_json(p / "zarr.json", _chunk0)
    out["chunk0"] = (p, "chunk shape")
    p = plain_zarr(tmp_path / "corrupt.zarr")
    _corrupt(p)
    out["corrupt"] = (p, "cannot be decoded")
    p = plain_zarr(tmp_path / "huge.zarr")
    edit_json(p / "zarr.json", _huge)
    out["huge"] = (p, "declares")
    p = tmp_path / "msstr.zarr"
    ome_zarr_with_scale(p, 0.5)
    edit_json(p / "zarr.json", lambda d: d["attributes"]["ome"].__setitem__("multiscales", "a string"))
    out["multiscales-string"] = (p, "multiscales")
    p = tmp_path / "abs.zarr"
    ome_zarr_with_scale(p, 0.5)
    edit_json(p / "zarr.json", lambda d: d["attributes"]["ome"]["multiscales"][0]["datasets"][0].__setitem__(
        "path", str(p / "s0")))
    out["absolute-path"] = (p, "not a relative path")
    p = tmp_path / "dotdot.zarr"
    ome_zarr_with_scale(p, 0.5)
    edit_json(p / "zarr.json", lambda d: d["attributes"]["ome"]["multiscales"][0]["datasets"][0].__setitem__(
        "path", "../abs.zarr/s0"))
    out["dotdot-path"] = (p, "not a relative path")
    p = tmp_path / "omehuge.zarr"
    ome_zarr_with_scale(p, 0.5)
    level = next(d for d in p.iterdir() if d.is_dir())
    edit_json(level / "zarr.json", _huge)
    out["ome-level-huge"] = (p, "declares")
    return out


def test_hostile_zarrs_give_clear_errors(tmp_path):
    pytest.importorskip("ome_zarr")
    for name, (p, msg) in hostile_zarrs(tmp_path).items():
        with pytest.raises(ValueError, match=msg) as e:
            open_image(p)
        assert str(p) in str(e.value), name
        if name in ("huge", "absolute-path", "dotdot-path", "multiscales-string", "ome-level-huge"):
            with pytest.raises(ValueError, match=msg):    # what --workers opens
                open_zarr_input(p)


def test_hostile_zarrs_bounded(tmp_path):
    pytest.importorskip("ome_zarr")
    zs = hostile_zarrs(tmp_path)
    out, peak, secs = run_bounded(f"""
        from unet_rt.io.images import open_image, open_zarr_input
        t0 = time.monotonic()
        for p in {[str(p) for p, _ in zs.values()]!r}:
            for f in (open_image, open_zarr_input):
                try:
                    f(p)
                except ValueError as e:
                    print("ERR", e)
        """)
    assert out.count("ERR") == 2 * len(zs) - 1, out       # the corrupt chunk is read by the workers, later
    assert peak < 1 << 30 and secs < 10, (peak, secs)


def test_workers_on_a_huge_zarr_is_a_clear_error(model, tmp_path):
    pytest.importorskip("distributed")
    p = plain_zarr(tmp_path / "huge.zarr")
    edit_json(p / "zarr.json", _huge)
    r = cli("segment", p, "-m", model, "-o", tmp_path / "out.zarr", "--workers", "1", "-q", ok=False)
    assert r.returncode == 2 and "declares" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_valid_sparse_zarr_still_reads(tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=(4000, 4000), chunks=(500, 500), dtype="uint8")
    z[:10, :10] = 7     # one stored chunk, 63 of fill value: 16 MB declared, under ALWAYS_READABLE
    im = open_image(tmp_path / "s.zarr")
    assert im.data.shape == (4000, 4000) and im.data[0, 0] == 7 and im.data.sum() == 700


# ---- row 17 --------------------------------------------------------------------------------------

def test_info_on_a_directory_or_fifo(tmp_path):
    fifo = tmp_path / "m.plan"
    os.mkfifo(fifo)
    for p in (tmp_path, fifo):
        r = cli("info", p, ok=False)
        assert r.returncode == 2 and "not a regular file" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"unet-rt: error: {p}: not a regular file")


# ---- fuzzing findings (tests/fuzz/fuzz_open_image.py) -------------------------------------------

def test_fuzz_findings(tmp_path):
    # A 756-byte TIFF whose chain of image directories revisits one offset: tifffile walked it without
    # end (over 3 million pages in 100 s). A TIFF whose series has no pixels: a 1-D empty array with
    # axes "" came back.
    corpus = ROOT / "tests" / "corpus" / "open_image"
    # A 504-byte TIFF declaring 16,777,228 rows in strips of 12 with one strip held: tifffile visited
    # all 1.4 million strips in Python (33 s).
    for name, msg in (("finding-tiff-ifd-loop", "loops"), ("finding-tiff-empty-series", "no pixels"),
                      ("finding-imagej-images", "strips or tiles")):
        p = tmp_path / (name + ".tif")
        p.write_bytes((corpus / name).read_bytes()[2:])
        out, peak, secs = open_image_bounded(p)
        assert "ERR" in out and msg in out, out
        assert peak < 1 << 30 and secs < 10, (peak, secs)
