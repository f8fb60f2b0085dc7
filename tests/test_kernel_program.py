"""The C++ kernel test program (tests/c/kernel_test.cc): every kernel family of every ISA tier this CPU
runs against float64 references, natively here and under qemu-aarch64 by `make test-aarch64` (where
the neon tier runs); and the CMake configuration per target architecture: ISA files are compiled only
for their architecture (x86 flags for x86 files on x86, ref + neon on aarch64)."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "capi-test"   # shared with test_cpp_example / test_robust: incremental
TOOLCHAIN = ROOT / "cmake" / "toolchains" / "aarch64-linux-gnu.cmake"

if shutil.which("cmake") is None:  # pragma: no cover
    pytest.skip("cmake is needed", allow_module_level=True)

K = pytest.importorskip("unet_rt._kernels")


def test_kernel_program_native():
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_PYTHON=OFF",
                    "-DUNET_RT_SHARED=ON", "-DUNET_RT_C_TESTS=ON"], check=True, capture_output=True, timeout=300)
    r = subprocess.run(["nice", "cmake", "--build", BUILD, "-j", "2", "--target", "kernel_test"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([BUILD / "kernel_test"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "\n".join(ln for ln in r.stdout.splitlines() if not ln.startswith("ok "))[-4000:]
    # the same tiers as the Python bindings see, every one exercised
    isas = K.available_isas()
    assert f"kernel_test: ISAs {' '.join(isas)}; best {K.best_isa()}" in r.stdout
    for isa in isas:
        assert f"conv3x3_winograd[{isa}]" in r.stdout and f"upconv2x2[{isa}]" in r.stdout
    done = r.stdout.strip().splitlines()[-1]
    assert done.startswith("kernel_test: ") and done.endswith(" passed, 0 failed") and int(done.split()[1]) > 200


def _configure(tmp_path, *extra):
    b = tmp_path / "b"
    r = subprocess.run(["cmake", "-S", ROOT, "-B", b, "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_SHARED=OFF",
                        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *extra], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cmds = json.loads((b / "compile_commands.json").read_text())
    return r.stdout, {Path(c["file"]).relative_to(ROOT / "csrc" / "kernels").as_posix(): c["command"]
                      for c in cmds if "/csrc/kernels/" in c["file"]}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks the x86-64 kernel files")
def test_cmake_kernels_for_x86_64(tmp_path):
    out, files = _configure(tmp_path)
    assert "unet_rt: kernels for x86" in out
    assert "conv3x3/avx512.cc" in files and "-mavx512f" in files["conv3x3/avx512.cc"]
    assert "-mavx2" in files["conv3x3/avx2.cc"] and "-mavx" not in files["conv3x3/ref.cc"]
    assert not [f for f in files if f.endswith("/neon.cc")]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="no aarch64 cross compiler (make test-aarch64 installs g++-aarch64-linux-gnu)")
def test_cmake_configures_aarch64(tmp_path):
    """The issue's first failure: x86 flags given to every file named avx*, whatever the target."""
    out, files = _configure(tmp_path, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}")
    assert "unet_rt: kernels for aarch64" in out
    fams = {"conv3x3", "upconv2x2", "pool2x2", "head1x1", "peak"}
    assert {f.split("/")[0] for f in files if f.endswith("/neon.cc")} == fams
    assert not [f for f in files if "avx" in f or "amx" in f]
    assert not [f for f, c in files.items() if " -mavx" in c or " -mamx" in c or " -mf16c" in c]
    # and the cross compiler takes the NEON file as configured
    r = subprocess.run(["nice", "cmake", "--build", tmp_path / "b", "--target", "csrc/kernels/pool2x2/neon.cc.o"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
