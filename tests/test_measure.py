"""unet_rt.measure / write_measurements / write_rois and `unet-rt segment --measure --rois`: checked
against scikit-image's regionprops computed here and by reading the ROIs back with roifile."""
import csv
import subprocess
import sys

import numpy as np
import pytest

skimage_measure = pytest.importorskip("skimage.measure")
roifile = pytest.importorskip("roifile")

import unet_rt  # noqa: E402


def _objects():
    lab = np.zeros((60, 80), np.int32)
    lab[5:20, 10:30] = 1                                  # a rectangle
    yy, xx = np.mgrid[0:60, 0:80]
    lab[(yy - 40) ** 2 + (xx - 50) ** 2 <= 12 ** 2] = 2   # a disc
    lab[45:55, 5:9] = 7                                   # a thin bar, label 7 (gaps in the numbering)
    img = (np.arange(60 * 80).reshape(60, 80) % 251).astype(np.uint8)
    return lab, img


def test_measure_matches_regionprops_and_units():
    lab, img = _objects()
    t = unet_rt.measure(lab, img, pixel_size={"Y": (0.5, "micrometer"), "X": (0.25, "micrometer")})
    assert list(t["label"]) == [1, 2, 7]
    for r in skimage_measure.regionprops(lab, intensity_image=img):
        i = list(t["label"]).index(r.label)
        assert t["area"][i] == r.area == np.count_nonzero(lab == r.label)
        assert (t["centroid_y"][i], t["centroid_x"][i]) == pytest.approx(r.centroid)
        assert (t["bbox_y0"][i], t["bbox_x0"][i], t["bbox_y1"][i], t["bbox_x1"][i]) == r.bbox
        assert t["intensity_mean"][i] == pytest.approx(img[lab == r.label].mean())
        assert t["intensity_min"][i] == img[lab == r.label].min() and t["intensity_max"][i] == img[lab == r.label].max()
        assert t["eccentricity"][i] == pytest.approx(r.eccentricity) and t["solidity"][i] == pytest.approx(r.solidity)
        assert t["area_um2"][i] == pytest.approx(r.area * 0.125)
        assert t["centroid_y_um"][i] == pytest.approx(r.centroid[0] * 0.5)
        assert t["centroid_x_um"][i] == pytest.approx(r.centroid[1] * 0.25)
    assert t["area"][0] == 15 * 20 and t["solidity"][0] == pytest.approx(1.0)
    # no pixel size (or one that is unusable): pixels only; no image: no intensities
    for px in (None, {"Y": (0.0, "micrometer"), "X": (0.2, "micrometer")}, {"Y": (float("nan"), None), "X": (1, None)}):
        assert not any(k.endswith("um2") or k.endswith("unit2") for k in unet_rt.measure(lab, img, px))
    assert "intensity_mean" not in unet_rt.measure(lab)


def test_measure_stacks_and_errors():
    lab, img = _objects()
    t = unet_rt.measure(np.stack([lab, lab[::-1]]), np.stack([img, img]))
    assert list(t["frame"]) == [0, 0, 0, 1, 1, 1] and list(t["label"]) == [1, 2, 7, 1, 2, 7]
    with pytest.raises(ValueError, match="integer"):
        unet_rt.measure(lab.astype(np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        unet_rt.measure(lab, img[:10])


def test_csv_round_trip(tmp_path):
    lab, img = _objects()
    t = unet_rt.measure(lab, img)
    unet_rt.write_measurements(t, tmp_path / "m.csv", image_name="a.png")
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [int(r["label"]) for r in rows] == [1, 2, 7] and rows[0]["image"] == "a.png"
    assert float(rows[1]["eccentricity"]) == pytest.approx(t["eccentricity"][1])


def test_rois_read_back_with_roifile(tmp_path):
    from skimage.draw import polygon2mask

    lab, _ = _objects()
    unet_rt.write_rois(lab, tmp_path / "r.zip")
    back = roifile.roiread(tmp_path / "r.zip")
    assert [r.name for r in back] == ["1", "2", "7"]
    for r in back:
        k = int(r.name)
        assert r.roitype == roifile.ROI_TYPE.POLYGON
        xy = r.coordinates()                                   # ImageJ x, y
        # rasterise the polygon at pixel centres (x + 0.5, y + 0.5): the object's pixels
        mask = polygon2mask(lab.shape, np.stack([xy[:, 1] - 0.5, xy[:, 0] - 0.5], 1))
        obj = lab == k
        inter = np.count_nonzero(mask & obj)
        assert inter / np.count_nonzero(mask | obj) > 0.8, k
        ys, xs = np.nonzero(obj)                               # bounding box within half a pixel
        assert xy[:, 0].min() >= xs.min() and xy[:, 0].max() <= xs.max() + 1
        assert xy[:, 1].min() >= ys.min() and xy[:, 1].max() <= ys.max() + 1
    # a stack: positions are ImageJ's 1-based frames; nothing left behind when the name is wrong
    unet_rt.write_rois(np.stack([lab, lab]), tmp_path / "s.zip")
    assert [(r.name, r.position) for r in roifile.roiread(tmp_path / "s.zip")][3] == ("t2-1", 2)
    with pytest.raises(ValueError, match=".zip"):
        unet_rt.write_rois(lab, tmp_path / "r.roi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zip", "s.zip"]


def test_cli_segment_measure_and_rois(tmp_path):
    pytest.importorskip("unet_rt._core")
    tifffile = pytest.importorskip("tifffile")
    from pathlib import Path

    from PIL import Image

    sample = Path(__file__).resolve().parents[1] / "data" / "samples" / "image" / "25.png"
    img = np.asarray(Image.open(sample))[:160, :180]
    tifffile.imwrite(tmp_path / "a.tif", img, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "um"})
    unet = [sys.executable, "-m", "unet_rt"]
    r = subprocess.run(unet + ["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "lab.tif"),
                               "--instances", "--measure", str(tmp_path / "m.csv"),
                               "--rois", str(tmp_path / "r.zip"), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inst = tifffile.imread(tmp_path / "lab.tif")
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    ref = unet_rt.measure(inst, img, {"Y": (0.5, "micrometer"), "X": (0.5, "micrometer")})
    assert len(rows) == len(ref["label"]) > 5                          # the cells of an ISBI crop
    assert [int(x["label"]) for x in rows] == list(ref["label"]) and rows[0]["image"] == "a.tif"
    assert [float(x["area_um2"]) for x in rows] == pytest.approx(list(ref["area"] * 0.25))
    assert [float(x["intensity_mean"]) for x in rows] == pytest.approx(list(ref["intensity_mean"]))
    assert [r.name for r in roifile.roiread(tmp_path / "r.zip")] == [x["label"] for x in rows]
    # without --instances: refused before anything is written
    r = subprocess.run(unet + ["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "x.tif"),
                               "--measure", str(tmp_path / "y.csv")], capture_output=True, text=True)
    assert r.returncode == 2 and "--instances" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.csv").exists()


def test_missing_measure_extra_is_named(tmp_path):
    """Without scikit-image (or roifile) --measure/--rois stop with the extra's name, before any
    segmentation is written; importing unet_rt does not import either."""
    code = ("import sys\n"
            "for m in ['skimage', 'roifile']: sys.modules[m] = None\n"
            "import unet_rt\n"
            "from unet_rt.cli import main\n"
            f"sys.exit(main(['segment', {str(tmp_path / 'in.png')!r}, '-o', {str(tmp_path / 'o.tif')!r}, "
            f"'--instances', '--rois', {str(tmp_path / 'r.zip')!r}]))\n")
    from unet_rt.io.images import write_image

    write_image(tmp_path / "in.png", np.zeros((40, 40), np.uint8))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'unet-rt[measure]'" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
