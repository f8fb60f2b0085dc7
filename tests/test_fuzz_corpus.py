"""Replays the fuzz corpus (tests/corpus/, kept by `make fuzz` / `make fuzz-merge`) through the fuzz
targets built as plain drivers (csrc/fuzz/*.cc with UNET_RT_FUZZ_STANDALONE, no sanitizers): every
input must run to completion with the targets' own checks (labels in range, every output pixel
written and finite, progress in order, tensors readable). The sanitizer campaign is `make fuzz`."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "capi-test"
CORPUS = ROOT / "tests" / "corpus"

if shutil.which("cmake") is None:  # pragma: no cover
    pytest.skip("cmake is needed", allow_module_level=True)


@pytest.fixture(scope="module")
def drivers():
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_PYTHON=OFF",
                    "-DUNET_RT_SHARED=ON", "-DUNET_RT_C_TESTS=ON"], check=True, capture_output=True, timeout=300)
    r = subprocess.run(["nice", "cmake", "--build", BUILD, "-j", "2", "--target", "fuzz_model_reader_replay",
                        "fuzz_image_replay", "fuzz_tiler_replay"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return BUILD


@pytest.mark.parametrize("target", ["model_reader", "image", "tiler"])
def test_corpus_replays_cleanly(drivers, target):
    files = sorted((CORPUS / target).iterdir())
    assert len(files) >= 10
    r = subprocess.run([drivers / f"fuzz_{target}_replay", *files], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"ran {len(files)} inputs" in r.stdout
