"""The test-only bindings (csrc/python/kernels.cc: each kernel and the bare executor, module
unet_rt._kernels) are not shipped: `make install` builds them beside the package and copies them into
the development venv, but the wheel that pip built and installed does not contain them. The wheel's
contents are read from the installed distribution's RECORD (pip writes one line per file of the
wheel), so no second wheel build is needed."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest

import unet_rt

ROOT = Path(__file__).resolve().parents[1]


def wheel_files() -> list[str]:
    files = importlib.metadata.files("unet-rt")
    assert files, "unet-rt has no RECORD: install it with `make install`"
    return [str(f) for f in files]


def test_the_wheel_has_the_native_core_but_not_the_test_bindings():
    names = wheel_files()
    assert any(re.fullmatch(r"unet_rt/_core\..*\.so", n) for n in names)  # the runtime's module is there
    assert any(n == "unet_rt/engine.py" for n in names)
    shipped = [n for n in names if Path(n).name.startswith("_kernels")]
    assert not shipped, shipped


def test_the_test_bindings_are_a_separate_module_of_the_dev_venv():
    spec = importlib.util.find_spec("unet_rt._kernels")
    if spec is None:  # pragma: no cover
        pytest.fail("unet_rt._kernels is missing: `make install` builds it for the development venv")
    installed = Path(spec.origin).resolve()
    record = {(Path(unet_rt.__file__).resolve().parents[1] / n).resolve() for n in wheel_files()}
    assert installed not in record  # copied in by make install, not installed from the wheel
    from unet_rt import _core, _kernels

    assert not hasattr(_core, "_kernels")
    assert _kernels.available_isas()[0] == "ref"


def test_the_build_installs_only_the_runtime_module():
    """The rule behind the above: CMakeLists.txt installs _core into the wheel, and _kernels nowhere."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    installs = re.findall(r"install\(TARGETS\s+(\w+)", cmake)
    assert "_core" in installs and "_kernels" not in installs


def test_a_wheel_built_now_has_no_test_bindings(tmp_path):
    """`pip wheel .` as a packager runs it (no test-bindings option), in the build directory that
    `make install` keeps (build/py: incremental, seconds)."""
    import subprocess
    import sys
    import zipfile

    if not (ROOT / "build" / "py" / "CMakeCache.txt").is_file():  # pragma: no cover
        pytest.skip("build/py is made by `make install` (a cold wheel build takes minutes)")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = tmp_path.glob("unet_rt-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert [n for n in names if n.endswith(".so")] == [n for n in names if re.fullmatch(r"unet_rt/_core\..*\.so", n)]
    assert any(n.startswith("unet_rt/_core.") for n in names)
    assert not [n for n in names if "_kernels" in n]
    # nor are they compiled into the runtime's module (where they used to be, as _core._kernels)
    core = zipfile.ZipFile(whl).read(next(n for n in names if n.startswith("unet_rt/_core.")))
    assert b"peak_gflops" not in core and b"conv3x3_winograd" not in core
