"""The napari plugin without a viewer: the npe2 manifest validates and its commands import; the
reader returns layer data with pixel sizes as scale (and the regressions of issue 20, row 13); the
widget's function segments without a display. The widgets inside a real viewer:
tests/test_napari_viewer.py."""
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

import unet_rt  # noqa: E402
from unet_rt.napari import plugin as _napari  # noqa: E402


def test_manifest_validates_and_imports():
    pm = npe2.PluginManifest.from_distribution("unet-rt")
    pm.validate_imports()                           # every python_name resolves
    assert [w.display_name for w in pm.contributions.widgets] == ["Segment with unet-rt", "Fine-tune with unet-rt"]
    assert "*.zarr" in pm.contributions.readers[0].filename_patterns


def test_reader_layers_with_scale(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    img = rng.integers(0, 4000, (3, 30, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.ome.tif", img, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.0})
    fn = _napari.get_reader(str(tmp_path / "a.ome.tif"))
    [(data, kw, kind)] = fn(str(tmp_path / "a.ome.tif"))
    assert kind == "image" and np.array_equal(data, img) and kw["scale"] == (1.0, 0.2, 0.2)
    assert _napari.get_reader(str(tmp_path / "x.txt")) is None
    pytest.importorskip("ome_zarr")
    from unet_rt.io.images import open_image, write_ome_zarr

    lab = (img > 2000).astype(np.uint8)
    write_ome_zarr(tmp_path / "o.zarr", {"unet-rt": lab}, image=open_image(tmp_path / "a.ome.tif"), axes="ZYX")
    layers = _napari.get_reader(str(tmp_path / "o.zarr"))(str(tmp_path / "o.zarr"))
    assert [k for _, _, k in layers] == ["image", "labels"]
    lab_data = layers[1][0][0] if isinstance(layers[1][0], list) else layers[1][0]   # level 0 of a multiscale
    assert np.array_equal(np.asarray(lab_data), lab) and layers[1][1]["scale"] == (1.0, 0.2, 0.2)


def test_widget_function_runs_headless(tmp_path, rng, save_unet):
    save_unet(tmp_path / "m.plan")
    img = rng.integers(0, 255, (50, 60)).astype(np.uint8)
    eng = unet_rt.Engine(tmp_path / "m.plan")
    out = _napari.segment_with_unet_rt(img, model=tmp_path / "m.plan", tile=0, tta=False)
    assert np.array_equal(out, eng.segment(img))
    rgb = np.repeat(img[..., None], 3, axis=-1)           # an RGB layer: converted to grey
    assert np.array_equal(_napari.segment_with_unet_rt(rgb, model=tmp_path / "m.plan"), eng.segment(img))
    stack = np.stack([img, img[::-1]])
    assert _napari.segment_with_unet_rt(stack, model=tmp_path / "m.plan", tta=True).shape == (2, 50, 60)


# ---------------------------------------------------------------------------------------------- issue 20, row 13
def _ngff_group(path, arrays, scale, axes=("y", "x")):
    """A hand-written NGFF multiscale group (zarr v2, NGFF 0.4) with the given levels and scale."""
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    for i, a in enumerate(arrays):
        g.create_array(str(i), shape=a.shape, dtype=a.dtype)[...] = a
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space"} for n in axes],
                               "datasets": [{"path": str(i), "coordinateTransformations":
                                             [{"type": "scale", "scale": [v * 2 ** i for v in scale]}]}
                                            for i in range(len(arrays))]}]
    return g


def test_reader_labels_written_by_the_dask_path_are_the_labels(tmp_path):
    """Row 13: labels written by `segment X.zarr -o X.zarr --workers 1` showed the raw image."""
    pytest.importorskip("ome_zarr")
    pytest.importorskip("dask.distributed")
    import subprocess
    import sys

    zarr = pytest.importorskip("zarr")
    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    img = np.asarray(Image.open(root / "data" / "samples" / "image" / "25.png"))[:128, :128]
    _ngff_group(tmp_path / "x.zarr", [img], [0.2, 0.2])
    r = subprocess.run([sys.executable, "-m", "unet_rt", "segment", str(tmp_path / "x.zarr"), "-o",
                        str(tmp_path / "x.zarr"), "--workers", "1", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    written = np.asarray(zarr.open_group(str(tmp_path / "x.zarr" / "labels" / "unet-rt"), mode="r")["0"])
    layers = _napari.read_layers(str(tmp_path / "x.zarr"))
    assert [(k, kw["name"]) for _, kw, k in layers] == [("image", "x"), ("labels", "unet-rt")]
    assert np.array_equal(np.asarray(layers[1][0]), written) and not np.array_equal(written, img)
    assert layers[0][1]["scale"] == layers[1][1]["scale"] == (0.2, 0.2)


def test_reader_skips_labels_outside_the_image(tmp_path):
    """Row 13: a symlink in labels/ to a zarr elsewhere was followed."""
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    g = _ngff_group(tmp_path / "a.zarr", [img], [1.0, 1.0])
    lab = g.create_group("labels")
    _ngff_group(tmp_path / "a.zarr" / "labels" / "mine", [(img > 30).astype(np.uint8)], [1.0, 1.0])
    _ngff_group(tmp_path / "elsewhere.zarr", [np.full((8, 8), 7, np.uint8)], [1.0, 1.0])
    (tmp_path / "a.zarr" / "labels" / "theirs").symlink_to(tmp_path / "elsewhere.zarr", target_is_directory=True)
    lab.attrs["labels"] = ["mine", "theirs"]
    layers = _napari.read_layers(str(tmp_path / "a.zarr"))
    assert [kw["name"] for _, kw, _ in layers] == ["a", "mine"]


def test_reader_scale_fits_the_data_and_is_positive(tmp_path):
    """Row 13: a scale whose length differs from the data's rank, and NaN/0/negative sizes."""
    img = np.zeros((6, 9), np.uint16)
    g = _ngff_group(tmp_path / "s.zarr", [img], [1.0, 0.5, 0.25])
    g.attrs["multiscales"] = [dict(g.attrs["multiscales"][0], axes=[{"name": "y", "type": "space"},
                                                                    {"name": "x", "type": "space"}])]
    [(_, kw, _)] = _napari.read_layers(str(tmp_path / "s.zarr"))
    assert kw["scale"] == (0.5, 0.25)
    _ngff_group(tmp_path / "bad.zarr", [img], [float("nan"), -1.0])
    with pytest.warns(UserWarning, match="not finite positive"):
        [(_, kw, _)] = _napari.read_layers(str(tmp_path / "bad.zarr"))
    assert kw.get("scale", (1.0, 1.0)) == (1.0, 1.0)
    with pytest.warns(UserWarning):
        assert _napari.clean_scale([0.0, 2.0], 3) == (1.0, 1.0, 2.0)
    assert _napari.clean_scale([3.0, 1.0, 2.0], 2) == (1.0, 2.0)


def test_reader_opens_levels_lazily(tmp_path):
    """Row 13: whole levels were loaded eagerly; several levels are one multiscale layer."""
    img = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    _ngff_group(tmp_path / "m.zarr", [img, img[::2, ::2]], [0.5, 0.5])
    [(data, kw, kind)] = _napari.read_layers(str(tmp_path / "m.zarr"))
    assert kind == "image" and kw["multiscale"] is True and kw["scale"] == (0.5, 0.5)
    assert isinstance(data, list) and len(data) == 2 and not any(isinstance(d, np.ndarray) for d in data)
    assert np.array_equal(np.asarray(data[0]), img) and data[1].shape == (16, 16)
