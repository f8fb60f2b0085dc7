"""The napari plugin, headless: the npe2 manifest validates and its commands import; the reader
returns layer data with pixel sizes as scale; the widget's function segments without a display.
napari itself is not installed by `make test` (its Qt stack is heavy); npe2 is."""
import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

import unet_rt  # noqa: E402
from unet_rt.napari import plugin as _napari  # noqa: E402


def test_manifest_validates_and_imports():
    pm = npe2.PluginManifest.from_distribution("unet-rt")
    pm.validate_imports()                           # every python_name resolves
    assert [w.display_name for w in pm.contributions.widgets] == ["Segment with unet-rt"]
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
    assert np.array_equal(layers[1][0], lab) and layers[1][1]["scale"] == (1.0, 0.2, 0.2)


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
