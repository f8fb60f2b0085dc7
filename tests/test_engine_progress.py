"""Engine(progress=...) and per-call progress=: tiles over a whole call (frames x TTA passes), on
top of the native per-tile hook; cancellation; the CLI's per-tile bar."""
import subprocess
import sys

import numpy as np
import pytest

import unet_rt
from unet_rt import _core


def test_progress_counts_tiles_over_frames_and_tta(model, rng):
    calls = []
    eng = unet_rt.Engine(model, threads=1, tile=60, progress=lambda d, t: calls.append((d, t)))
    tiles = eng._native.plan(100, 100)["tiles"]
    assert tiles > 1
    img = rng.integers(0, 255, (100, 100)).astype(np.uint8)
    out = eng.segment(img)
    assert calls[0] == (0, tiles) and calls[-1] == (tiles, tiles)
    assert np.array_equal(out, unet_rt.Engine(model, threads=1, tile=60).segment(img))  # same result
    for tta, stack, passes in ((True, 1, 8), (False, 3, 3), (True, 2, 16)):
        calls.clear()
        x = np.stack([img] * stack) if stack > 1 else img
        eng.predict(x, tta=tta)
        done = [d for d, _ in calls]
        assert {t for _, t in calls} == {passes * tiles}
        assert done == sorted(done) and done[-1] == passes * tiles
        assert len(set(done)) == passes * tiles + 1  # every tile reported once


def test_per_call_progress_overrides_and_cancels(model, rng):
    default, mine = [], []
    eng = unet_rt.Engine(model, threads=1, tile=60, progress=lambda d, t: default.append(d))
    img = rng.integers(0, 255, (100, 100)).astype(np.uint8)
    eng.segment(img, progress=lambda d, t: mine.append(d))
    assert mine and not default
    with pytest.raises(_core.Cancelled):
        eng.predict(img, tta=True, progress=lambda d, t: d < 3)
    with pytest.raises(TypeError, match="callable"):
        unet_rt.Engine(model, progress=5)
    assert eng.segment(img).shape == (100, 100)  # usable after a cancel


def test_cli_shows_a_tile_bar_for_one_long_image(model, tmp_path):
    from unet_rt.io.images import write_image

    write_image(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (400, 400)).astype(np.uint8))
    r = subprocess.run([sys.executable, "-m", "unet_rt", "segment", str(tmp_path / "a.png"), "-m", str(model),
                        "-o", str(tmp_path / "o.png"), "--tta", "--tile", "60", "--threads", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "tile" in r.stderr and "a.png" in r.stderr  # tqdm: "a.png:  40%|... 120/304 [...tile/s]"


def test_instances_reports_progress_like_segment(model, rng):
    """Engine.instances ran its tiled pass silently on the native path (the CLI's bar stayed empty):
    it now reports the same tiles as segment, can be cancelled, and counts TTA passes and frames."""
    img = rng.integers(0, 255, (100, 100)).astype(np.uint8)
    eng = unet_rt.Engine(model, threads=1, tile=60)
    seg, inst = [], []
    eng.segment(img, progress=lambda d, t: seg.append((d, t)))
    out = eng.instances(img, progress=lambda d, t: inst.append((d, t)))
    tiles = seg[-1][1]
    assert tiles > 1 and inst == seg == [(d, tiles) for d in range(tiles + 1)]
    np.testing.assert_array_equal(out, unet_rt.Engine(model, threads=1, tile=60).instances(img))  # same result
    with pytest.raises(_core.Cancelled):
        eng.instances(img, progress=lambda d, t: d < 1)
    calls = []
    eng.instances(np.stack([img, img]), tta=True, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {16 * tiles} and done == sorted(done) and done[-1] == 16 * tiles


def test_cli_shows_a_tile_bar_for_instances(model, tmp_path, monkeypatch):
    from unet_rt.cli import main, segment
    from unet_rt.io.images import write_image

    seen = []
    monkeypatch.setattr(segment._tile_bar, "progress", lambda self, d, t: seen.append((d, t)))
    write_image(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (100, 100)).astype(np.uint8))
    assert main(["segment", str(tmp_path / "a.png"), "-m", str(model), "-o", str(tmp_path / "o.tif"),
                     "--instances", "--tile", "60", "--threads", "1", "--quiet"]) == 0
    tiles = unet_rt.Engine(model, tile=60)._native.plan(100, 100)["tiles"]
    assert seen == [(d, tiles) for d in range(tiles + 1)]  # the bar is fed every tile
