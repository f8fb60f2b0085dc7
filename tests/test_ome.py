"""OME in and out, checked with the field's own readers: OME-TIFF / ImageJ TIFF through tifffile,
OME-Zarr (NGFF 0.5) through ome-zarr-py's Reader; pixel sizes, channel names, levels, labels."""
from pathlib import Path

import numpy as np
import pytest

import unet_rt
from test_cli import cli  # the CLI in a subprocess, as a user runs it
from unet_rt.io.images import open_image, read_image

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_unet):
    p = tmp_path_factory.mktemp("ome") / "m.plan"
    save_unet(p, names=["membrane", "cell"])
    return p


def ome_pixels(path):
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        ome = tifffile.xml2dict(tf.ome_metadata)["OME"]
        return ome["Image"]["Pixels"], tf.series[0].axes


def test_ome_tiff_in_and_out_keeps_pixel_size(model, tmp_path, rng):
    img = rng.integers(0, 4000, (3, 40, 50)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.ome.tif", img, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5})
    im = open_image(tmp_path / "a.ome.tif")
    assert im.kind == "ome-tiff" and im.axes == "ZYX"
    assert im.pixel_size["X"] == (0.25, "micrometer") and im.pixel_size["Z"] == (1.5, "micrometer")
    cli("segment", tmp_path / "a.ome.tif", "-m", model, "-o", tmp_path / "out", "--raw")
    out = tmp_path / "out" / "a.ome.tif"                    # the input's name and format
    pix, axes = ome_pixels(out)
    assert axes == "ZYX"
    assert float(pix["PhysicalSizeX"]) == 0.25 and float(pix["PhysicalSizeZ"]) == 1.5
    assert np.array_equal(tifffile.imread(out), unet_rt.Engine(model).segment(img))
    # probabilities: K planes named by the model's classes
    cli("segment", tmp_path / "a.ome.tif", "-m", model, "-o", tmp_path / "p.ome.tif", "--probabilities")
    pix, axes = ome_pixels(tmp_path / "p.ome.tif")
    assert axes == "ZCYX" and [c["Name"] for c in pix["Channel"]] == ["membrane", "cell"]


def test_imagej_tiff_keeps_pixel_size(model, tmp_path, rng):
    img = rng.integers(0, 255, (40, 50)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"unit": "um"})
    im = open_image(tmp_path / "ij.tif")
    assert im.kind == "imagej-tiff" and im.pixel_size["X"][1] == "micrometer"
    assert im.pixel_size["X"][0] == pytest.approx(0.2)
    cli("segment", tmp_path / "ij.tif", "-m", model, "-o", tmp_path / "o.tif")
    with tifffile.TiffFile(tmp_path / "o.tif") as tf:        # was XResolution=(1, 1): size lost
        assert tf.is_imagej and tf.imagej_metadata["unit"] == "um"
        num, den = tf.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.2, rel=1e-6)


@pytest.fixture
def ome_zarr_image(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    from ome_zarr.writer import write_image

    img = rng.integers(0, 255, (2, 64, 80)).astype(np.uint8)
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    write_image(img, root, axes="zyx", scale_factors=[2], scale={"z": 2.0, "y": 0.5, "x": 0.5},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    return tmp_path / "img.zarr", img


def test_read_ome_zarr_levels_and_pixel_sizes(ome_zarr_image):
    path, img = ome_zarr_image
    im = open_image(path)
    assert im.kind == "ome-zarr" and im.axes == "ZYX" and np.array_equal(im.data, img)
    assert im.pixel_size == {"Z": (2.0, "micrometer"), "Y": (0.5, "micrometer"), "X": (0.5, "micrometer")}
    im1 = open_image(path, level=1)
    assert im1.data.shape == (2, 32, 40) and im1.pixel_size["X"] == (1.0, "micrometer")
    level0 = sorted(p.name for p in path.iterdir() if p.is_dir())[0]   # "s0" in NGFF 0.5, "0" in 0.4
    im0 = open_image(path / level0)                          # one level given directly: axes from the group
    assert im0.axes == "ZYX" and np.array_equal(im0.data, img)
    with pytest.raises(ValueError, match="level 5"):
        open_image(path, level=5)


def test_ome_zarr_labels_beside_the_image(model, ome_zarr_image, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    path, img = ome_zarr_image
    eng = unet_rt.Engine(model)
    before = open_image(path).data.copy()
    cli("segment", path, "-m", model, "-o", path)                    # adds labels/unet-rt to the input
    nodes = list(Reader(parse_url(str(path)))())
    labels = [n for n in nodes if n.load(Label)]
    assert len(labels) == 1
    lab = np.asarray(labels[0].data[0])
    assert np.array_equal(lab, eng.segment(img))                    # raw class ids (NGFF labels)
    assert labels[0].metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 0.5, 0.5]
    assert np.array_equal(open_image(path).data, before)             # the image is untouched
    r = cli("segment", path, "-m", model, "-o", path, ok=False)       # the label exists now
    assert r.returncode == 1 and "labels/unet-rt" in r.stderr
    # level 1: labels at that level's pixel size
    cli("segment", path, "-m", model, "-o", path, "--level", "1", "--label-name", "coarse")
    coarse = zarr_labels(path, "coarse")
    assert coarse[0].shape == (2, 32, 40) and coarse[1][0][0]["scale"] == [2.0, 1.0, 1.0]


def zarr_labels(path, name):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    for n in Reader(parse_url(str(Path(path) / "labels" / name)))():
        return np.asarray(n.data[0]), n.metadata["coordinateTransformations"]


def test_png_to_a_new_ome_zarr(model, tmp_path):
    pytest.importorskip("ome_zarr")
    src = Path(__file__).resolve().parents[1] / "data" / "samples" / "image" / "27.png"
    cli("segment", src, "-m", model, "-o", tmp_path / "n.ome.zarr")
    im = open_image(tmp_path / "n.ome.zarr")
    assert im.axes == "YX" and np.array_equal(im.data, read_image(src))
    lab, _ = zarr_labels(tmp_path / "n.ome.zarr", "unet-rt")
    assert np.array_equal(lab, unet_rt.Engine(model).segment(read_image(src)))
