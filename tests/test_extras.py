"""Honest install: without an optional extra, the feature stops with an error naming the extra
(simulated by blocking the module: ``sys.modules[name] = None`` makes its import fail), and the
runtime's CPU path never imports torch."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_rt.io.images import write_image

ROOT = Path(__file__).resolve().parents[1]


def run_blocked(blocked, *args):
    code = ("import sys\n"
            f"for m in {list(blocked)!r}: sys.modules[m] = None\n"
            "from unet_rt.cli import main\n"
            f"rc = main({[str(a) for a in args]!r})\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None, 'torch was imported'\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_runtime_path_without_torch_or_extras(tmp_path):
    r = run_blocked(["torch", "zarr", "onnx", "bioimageio"], "segment", ROOT / "data/samples/image/25.png",
                    "-o", tmp_path / "o.png", "--tile", "572", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.png").is_file()


def test_zarr_input_names_the_extra(tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=(20, 20), dtype="uint8")
    z[:] = 1
    r = run_blocked(["zarr", "ome_zarr"], "segment", tmp_path / "a.zarr", "-o", tmp_path / "o.tif")
    assert r.returncode == 1 and "pip install 'unet-rt[zarr]'" in r.stderr and "Traceback" not in r.stderr


def test_onnx_and_bioimageio_name_their_extras(tmp_path):
    m = ROOT / "src/unet_rt/models/isbi2012-unet16.plan"
    r = run_blocked(["onnx"], "compile", m, "--target", "onnx", "--tile", "572", "-o", tmp_path / "m.onnx")
    assert r.returncode == 2 and "pip install 'unet-rt[onnx]'" in r.stderr
    r = run_blocked(["bioimageio"], "compile", m, "--target", "bioimageio", "--tile", "572", "-o", tmp_path / "m.zip")
    assert r.returncode == 2 and "pip install 'unet-rt[bioimageio]'" in r.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.zip").exists()


def test_train_names_its_extra(tmp_path):
    write_image(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    r = run_blocked(["torch"], "train", "--help")
    assert r.returncode == 2 and "pip install 'unet-rt[train]'" in r.stderr and "Traceback" not in r.stderr
    r = run_blocked(["torch"], "--help")                     # the other commands do not need it
    assert r.returncode == 0 and "segment" in r.stdout
