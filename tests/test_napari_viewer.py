"""The napari plugin inside a real headless napari viewer (napari's ``make_napari_viewer`` fixture,
``QT_QPA_PLATFORM=offscreen``): open a sample with the reader, segment through the widget in a
worker thread while the event loop keeps running, cancel, see the Engine's warning, fine-tune
from painted labels. napari's canvas needs OpenGL: without a display, an Xvfb server is started
for this module (``apt-get install xvfb``).

UNET_RT_SCREENSHOTS=1 writes docs/napari-segment.png and docs/napari-finetune.png."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is in the dev extra: pip install -e '.[dev]'")
pytest.importorskip("pytestqt")


_GL_PROBE = ("import sys\n"
             "from qtpy.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext\n"
             "app = QGuiApplication(sys.argv)\n"
             "ctx, surf = QOpenGLContext(), QOffscreenSurface()\n"
             "surf.create()\n"
             "sys.exit(0 if ctx.create() and ctx.makeCurrent(surf) else 1)\n")


def _start_xvfb(xvfb: str):
    """(Xvfb process, display) or None; the display is checked by making an OpenGL context current
    in a separate process (a server that answers before GLX works would fail the tests)."""
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        num = f.readline().strip()
    display = ":" + num.decode() if num else None
    if display:
        env = dict(os.environ, DISPLAY=display)
        if subprocess.run([sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, timeout=120).returncode == 0:
            return proc, display
    proc.kill()
    proc.wait()
    return None


def _display():
    """An X server for napari's OpenGL canvas, set up at import (before any QApplication exists),
    stopped by a watchdog once this test process has ended (Qt holds its connection until then)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if os.environ.get("DISPLAY"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("napari's canvas needs OpenGL through an X server: apt-get install xvfb", allow_module_level=True)
    started = None
    for _ in range(3):
        started = _start_xvfb(xvfb)
        if started:
            break
        time.sleep(1)
    if not started:
        pytest.skip("Xvfb started but gave no OpenGL context (3 tries)", allow_module_level=True)
    proc, os.environ["DISPLAY"] = started
    subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill {proc.pid}"],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_display()

import unet_rt  # noqa: E402
from unet_rt.napari import plugin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "samples" / "image" / "25.png"
SHOTS = os.environ.get("UNET_RT_SCREENSHOTS")


def _shot(viewer, widget, name, title):
    if SHOTS:
        viewer.window.add_dock_widget(widget.container, name=title)
        viewer.window._qt_window.resize(1400, 800)
        viewer.reset_view()
        viewer.screenshot(str(ROOT / "docs" / name), canvas_only=False)


@pytest.fixture
def sample_tif(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from PIL import Image

    img = np.asarray(Image.open(SAMPLE))[:256, :256]
    p = tmp_path / "cells.ome.tif"
    tifffile.imwrite(p, img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    return p, img


def _wait(qtbot, w, timeout=300_000):
    qtbot.waitUntil(lambda: not w.running, timeout=timeout)


def test_segment_in_a_worker_keeps_the_viewer_responsive(make_napari_viewer, qtbot, sample_tif, tmp_path,
                                                        monkeypatch):
    from qtpy.QtCore import QTimer

    path, img = sample_tif
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="unet-rt")
    assert layer.scale.tolist() == [0.5, 0.25]
    w = plugin.SegmentWidget(viewer)
    assert w.image.value is layer
    # the job sleeps 0.5 s on top of the Engine (in the worker thread): a widget that blocked the
    # event loop would let no timer tick while it runs
    real = plugin.run_segmentation

    def slow(*a, **k):
        out = real(*a, **k)
        time.sleep(0.5)
        return out

    monkeypatch.setattr(plugin, "run_segmentation", slow)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(w.running))
    timer.start(10)
    w.start()
    _wait(qtbot, w)
    timer.stop()
    assert sum(ticks) >= 10, "the event loop did not run while the widget segmented"
    lab = viewer.layers["cells labels"]
    expect = unet_rt.Engine(plugin.SHIPPED_MODEL).segment(img)
    np.testing.assert_array_equal(lab.data, expect)
    assert lab.scale.tolist() == [0.5, 0.25] and w.status.value.startswith("done")
    assert w.progress_bar.value == w.progress_bar.max >= 1         # tiles reported
    # the Engine is cached per model and settings
    e1 = plugin.engine_for("", 0, 0)
    assert plugin.engine_for("", 0, 0) is e1 and plugin.engine_for("", 252, 0) is not e1
    w.instances.value = True
    monkeypatch.setattr(plugin, "run_segmentation", real)
    w.start()
    _wait(qtbot, w)
    np.testing.assert_array_equal(viewer.layers["cells labels"].data, unet_rt.Engine(plugin.SHIPPED_MODEL).instances(img))
    _shot(viewer, w, "napari-segment.png", "Segment with unet-rt")


def test_cancel_and_warning(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    big = np.random.default_rng(0).integers(0, 255, (1024, 1024)).astype(np.uint8)
    viewer.add_image(big, name="big")
    w = plugin.SegmentWidget(viewer)
    w.tile.value = 252                                         # many tiles: a long run
    w.start()
    w.cancel()
    _wait(qtbot, w)
    assert w.status.value.startswith("cancel") and "big labels" not in viewer.layers
    # 16-bit data far outside the shipped model's 8-bit training range: the Engine's warning shows
    viewer.add_image((big.astype(np.uint16) * 200 + 20000)[:200, :200], name="bright")
    w.image.value = viewer.layers["bright"]
    w.tile.value = 0
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    w.start()
    _wait(qtbot, w)
    assert "far outside" in w.status.value and "bright labels" in viewer.layers
    assert len(shown) == 1 and "far outside" in shown[0]


def test_finetune_widget_from_painted_labels(make_napari_viewer, qtbot, tmp_path, save_unet):
    from unet_rt.train.data import synthetic_cells

    save_unet(tmp_path / "m.plan", depth=2, base=4, mean=120.0, std=50.0, names=["background", "cell"])
    img, inst, _ = synthetic_cells((96, 96), 12, seed=3)
    painted = np.zeros(inst.shape, np.int32)                  # 0: not annotated
    painted[:, :48] = np.where(inst[:, :48] > 0, inst[:, :48] + 1, 1)   # left half: background 1, cells 2..
    viewer = make_napari_viewer()
    im = viewer.add_image(img, name="cells", scale=(0.3, 0.3))
    viewer.add_labels(painted, name="painted", scale=(0.3, 0.3))
    w = plugin.FinetuneWidget(viewer)
    assert w.image.value is im and w.labels.value.name == "painted"
    w.model.value = str(tmp_path / "m.plan")
    w.steps.value = 3
    w.output.value = str(tmp_path / "ft")
    w.start()
    _wait(qtbot, w)
    assert w.status.value.startswith("done"), w.status.value
    lay = viewer.layers["cells fine-tuned"]
    assert lay.data.shape == img.shape and lay.scale.tolist() == [0.3, 0.3]
    from unet_rt.format import model_file

    mf = model_file.load(w.model_path)
    assert mf.provenance["ignore_label"] == 65535 and mf.provenance["init"] == "m.plan"
    np.testing.assert_array_equal(lay.data, unet_rt.Engine(w.model_path).segment(img))
    assert w.progress_bar.value == w.progress_bar.max == 3
    _shot(viewer, w, "napari-finetune.png", "Fine-tune with unet-rt")


def test_labels_for_training():
    p = np.array([[0, 1, 5], [5, 9, 1]])
    np.testing.assert_array_equal(plugin.labels_for_training(p), [[65535, 0, 1], [1, 2, 0]])
