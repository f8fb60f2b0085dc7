"""bioimage.io packages: our export passes bioimageio.core's own model test (which runs the ONNX
weights with onnxruntime against test tensors made by our native engine), carries the
normalisation, softmax, citation and cover, and imports back to the same model."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")

import unet_rt  # noqa: E402


@pytest.fixture(scope="module")
def package(tmp_path_factory, save_unet):
    d = tmp_path_factory.mktemp("bmz")
    save_unet(d / "m.plan", depth=2, base=4, mean=120.0, std=40.0, names=["membrane", "cell"])
    (d / "tmp").mkdir()
    r = subprocess.run([sys.executable, "-m", "unet_rt", "compile", str(d / "m.plan"), "--target", "bioimageio",
                        "--tile", "60", "-o", str(d / "m.zip")], capture_output=True, text=True,
                       env=dict(os.environ, TMPDIR=str(d / "tmp")))
    assert r.returncode == 0, r.stderr
    return d


def test_export_leaves_no_temporary_files(package, tmp_path):
    """Issue 20 row 17: the export staged its files in $TMPDIR/unet-rt-bioimageio-* and left them
    there; now nothing stays, after a successful export (the fixture's) or a failed one."""
    assert list((package / "tmp").iterdir()) == []
    (tmp_path / "tmp").mkdir()
    (tmp_path / "file").write_text("a file where the output's folder should be")
    r = subprocess.run([sys.executable, "-m", "unet_rt", "compile", str(package / "m.plan"), "--target", "bioimageio",
                        "--tile", "60", "-o", str(tmp_path / "file" / "m.zip")], capture_output=True, text=True,
                       env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_package_passes_bioimageio_core_model_test(package):
    from bioimageio.core import test_model

    summary = test_model(str(package / "m.zip"))
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    assert any("Reproduce test outputs" in d.name and d.status == "passed" for d in summary.details)


def test_package_contents(package):
    from bioimageio.spec import load_model_description

    names = zipfile.ZipFile(package / "m.zip").namelist()
    assert {"rdf.yaml", "weights.onnx", "test_input.npy", "test_output.npy", "cover.png"} <= set(names)
    d = load_model_description(str(package / "m.zip"))
    pre = d.inputs[0].preprocessing
    norm = [p for p in pre if p.id == "fixed_zero_mean_unit_variance"]
    assert norm and norm[0].kwargs.mean == [120.0] and norm[0].kwargs.std == [40.0]
    assert "softmax" in [p.id for p in d.outputs[0].postprocessing]
    assert any("U-Net" in c.text and c.doi == "10.1007/978-3-319-24574-4_28" for c in d.cite)
    assert [str(n) for n in d.outputs[0].axes[1].channel_names] == ["membrane", "cell"]


def test_import_round_trips(package, tmp_path, rng):
    r = subprocess.run([sys.executable, "-m", "unet_rt", "compile", str(package / "m.zip"), "--target", "unet-rt",
                        "-o", str(tmp_path / "back.plan")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = unet_rt.Engine(package / "m.plan"), unet_rt.Engine(tmp_path / "back.plan")
    x = rng.integers(0, 255, (70, 90)).astype(np.uint8)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert b.class_names == ["membrane", "cell"] and b.normalization == a.normalization
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    r = subprocess.run([sys.executable, "-m", "unet_rt", "compile", str(tmp_path / "junk.zip"), "--target", "plan",
                        "-o", str(tmp_path / "j.plan")], capture_output=True, text=True)  # the deprecated name
    assert r.returncode == 2 and "not a bioimage.io model package" in r.stderr and "Traceback" not in r.stderr
    assert "--target plan is deprecated" in r.stderr
    assert not (tmp_path / "j.plan").exists()
