"""Replays tests/corpus/open_image/ (the seeds of tests/fuzz/fuzz_open_image.py, its findings and
the inputs `make fuzz-images` kept) through the target's own check: open_image returns a
well-formed image or raises ValueError, in bounded memory. The campaign itself is `make fuzz-images`
(atheris, docs/fuzzing.md)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "open_image"
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

pytest.importorskip("tifffile")
import fuzz_open_image  # noqa: E402


def test_seeds_are_valid_images(tmp_path):
    pytest.importorskip("ome_zarr")
    from unet_rt.io.images import open_image

    for name, data in fuzz_open_image.seeds().items():
        d = tmp_path / name
        d.mkdir()
        img = open_image(fuzz_open_image.materialise(data, d))
        assert img.data.size > 0 and len(img.axes) == img.data.ndim, name


def test_corpus_replays_cleanly():
    files = sorted(CORPUS.iterdir())
    assert len(files) >= 10
    for f in files:
        fuzz_open_image.one_input(f.read_bytes())  # raises on a finding
