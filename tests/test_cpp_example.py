"""The C / C++ embedding path: build the shared library, install it as a CMake package into a temp
prefix, build examples/cpp against it with find_package(unet_rt), run it on a small model and
compare its labels with _core.Engine; and run the C API's error-path program (tests/c/)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from unet_rt.format import model_file

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "capi-test"   # reused between runs: incremental rebuilds

_core = pytest.importorskip("unet_rt._core")
torch = pytest.importorskip("torch")
if shutil.which("cmake") is None or shutil.which("c++") is None:  # pragma: no cover
    pytest.skip("cmake and a C++ compiler are needed", allow_module_level=True)


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    jobs = str(min(2, os.cpu_count() or 1))
    run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_PYTHON=OFF",
         "-DUNET_RT_SHARED=ON", "-DUNET_RT_C_TESTS=ON"], timeout=300)
    run(["nice", "cmake", "--build", BUILD, "-j", jobs, "--target", "unet_rt", "c_api_errors", "c_api_acquisition"],
        timeout=600)
    prefix = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", BUILD, "--prefix", prefix], timeout=120)
    return prefix


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from unet_rt.train.model import UNet, to_model_file

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base=4, padding="valid", dropout=0).eval()
    good = d / "good.plan"
    model_file.save(good, to_model_file(net, {"mean": [2048.0], "std": [1200.0]}, ["background", "cell"]))
    corrupt = d / "corrupt.plan"
    corrupt.write_bytes(good.read_bytes()[:-10])
    trt = d / "trt.plan"
    model_file.save(trt, model_file.ModelFile("tensorrt", net.arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"],
                                              {"engine": np.frombuffer(b"ftrt0000", np.uint8)}))
    return {"good": good, "corrupt": corrupt, "trt": trt, "missing": d / "missing.plan"}


def test_installed_package_layout(installed):
    assert (installed / "include" / "unet_rt" / "unet_rt.h").is_file()
    assert (installed / "include" / "unet_rt" / "unet_rt.hpp").is_file()
    cfg = list(installed.glob("lib*/cmake/unet_rt/unet_rtConfig.cmake"))
    assert cfg and (cfg[0].parent / "unet_rtConfigVersion.cmake").is_file()
    lib = list(installed.glob("lib*/libunet_rt.so*"))
    assert lib
    # only the C API is exported from the shared library
    syms = run(["nm", "-D", "--defined-only", lib[0]]).stdout.split("\n")
    names = {s.split()[-1] for s in syms if s.strip() and s.split()[1] in "TtDdBbRrVvWw"}
    exported = {n for n in names if not n.startswith("_") or n.startswith("_Z")}
    assert {"unet_rt_engine_create", "unet_rt_segment", "unet_rt_version"} <= exported
    assert all(n.startswith("unet_rt_") for n in exported), sorted(n for n in exported if not n.startswith("unet_rt_"))


def test_c_api_error_paths(installed, models):
    r = run([BUILD / "c_api_errors", models["good"], models["corrupt"], models["trt"], models["missing"]], timeout=120)
    assert "ALL OK" in r.stdout


def test_c_api_for_acquisition(installed, models):
    """Pitch, ROI, labels + scores in one pass, progress/cancel, warm-up, model from memory, the frame
    queue (bounded, cancel), version, logging hook, info (ISA) and plan: tests/c/c_api_acquisition.c."""
    r = run([BUILD / "c_api_acquisition", models["good"]], timeout=300)
    assert "ALL OK" in r.stdout
    # the ISA and the cache sizes the C API reports are the ones the Python binding reports (platform layer)
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.startswith(("isa ", "caches ")))
    cpu = _core.cpu_info()
    assert lines["isa"] == cpu["isa"]
    assert [int(v) for v in lines["caches"].split()] == [cpu["caches"][k] for k in ("l1d", "l2", "l3")]


def test_example_against_installed_package(installed, models, tmp_path):
    ex = tmp_path / "example-build"
    run(["cmake", "-S", ROOT / "examples" / "cpp", "-B", ex, f"-DCMAKE_PREFIX_PATH={installed}",
         "-DCMAKE_BUILD_TYPE=Release"], timeout=120)
    run(["cmake", "--build", ex, "-j", "2"], timeout=300)
    frames, h, w = 3, 97, 130
    out = tmp_path / "labels.u8"
    # full speed: the camera waits for a free buffer, nothing is dropped
    r = run([ex / "acquisition", models["good"], frames, h, w, out, 2], timeout=300)
    assert sum(line.startswith("frame ") for line in r.stdout.splitlines()) == frames and "ms/frame" in r.stdout
    assert f"{frames} segmented, 0 dropped" in r.stdout and "p99" in r.stdout
    rec = np.fromfile(out, np.uint8).reshape(frames, 4 + h * w)
    idx = rec[:, :4].copy().view("<i4")[:, 0]
    got = rec[:, 4:].reshape(frames, h, w)
    assert list(idx) == list(range(frames))  # in order
    engine = _core.Engine(str(models["good"]), threads=2)
    y, x = np.mgrid[0:h, 0:w]
    for f, labels in zip(idx, got):
        frame = (((7 * x + 13 * y + 101 * int(f)) ^ (x * y)) % 4096).astype(np.uint16)
        np.testing.assert_array_equal(labels, engine.segment(frame[None]))  # read in place through the pitch
    assert set(np.unique(got)) <= {0, 1}
    # a camera far faster than segmentation with 1 frame in flight: frames are dropped, never queued
    # without bound, and the ones segmented are right
    r = run([ex / "acquisition", models["good"], 12, h, w, out, 1, 2000, 1], timeout=300)
    line = next(x for x in r.stdout.splitlines() if x.startswith("12 frames"))
    done, dropped = int(line.split(" segmented")[0].split()[-1]), int(line.split(" dropped")[0].split()[-1])
    assert done + dropped == 12 and dropped > 0 and done >= 1
    rec = np.fromfile(out, np.uint8).reshape(done, 4 + h * w)
    for f, labels in zip(rec[:, :4].copy().view("<i4")[:, 0], rec[:, 4:].reshape(done, h, w)):
        frame = (((7 * x + 13 * y + 101 * int(f)) ^ (x * y)) % 4096).astype(np.uint16)
        np.testing.assert_array_equal(labels, engine.segment(frame[None]))
    # recorded frames instead of the synthetic pattern (FRAMES_IN): frame f is the file's frame f mod 2
    rng = np.random.default_rng(3)
    recorded = rng.integers(0, 4096, (2, h, w), dtype=np.uint16)
    raw = tmp_path / "frames.u16"
    recorded.astype("<u2").tofile(raw)
    r = run([ex / "acquisition", models["good"], 3, h, w, out, 2, 0, 2, raw], timeout=300)
    rec = np.fromfile(out, np.uint8).reshape(3, 4 + h * w)
    for f, labels in zip(rec[:, :4].copy().view("<i4")[:, 0], rec[:, 4:].reshape(3, h, w)):
        np.testing.assert_array_equal(labels, engine.segment(recorded[int(f) % 2][None]))
    short = subprocess.run([str(ex / "acquisition"), str(models["good"]), "1", "8", "8", str(out), "1", "0", "1",
                            str(tmp_path / "missing.u16")], capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "cannot read one 8x8 uint16 frame" in short.stderr
    # a bad model path is reported, not crashed on
    bad = subprocess.run([str(ex / "acquisition"), str(models["corrupt"]), "1", "8", "8"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "unet-rt error 3" in bad.stderr
