"""Per-tile progress and cancellation of the native tiler (_core.Engine.predict/segment and
_core.tile_predict with progress=callable(done, total) -> bool|None)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

_core = pytest.importorskip("unet_rt._core")


@pytest.fixture(scope="module")
def model(model):  # conftest's small model, as the str the native calls take
    return str(model)


def _image(h=200, w=150, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (1, h, w), dtype=np.uint8)


@pytest.mark.parametrize("method", ["predict", "segment"])
def test_progress_counts_every_tile(model, method):
    eng = _core.Engine(model, threads=1, tile=60)  # depth 2: 60 -> 44 output, stride 40
    img = _image()
    total = eng.plan(200, 150)["tiles"]
    assert total > 4
    calls = []
    out = getattr(eng, method)(img, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(d, total) for d in range(total + 1)]
    ref = getattr(eng, method)(img)
    np.testing.assert_array_equal(out, ref)  # the hook does not change the result


def test_progress_on_the_calling_thread_with_the_gil(model):
    eng = _core.Engine(model, threads=2, tile=60)
    seen = []
    # threading.get_ident needs the GIL and reports the thread the callback runs on
    eng.segment(_image(), progress=lambda d, t: seen.append(threading.get_ident()))
    assert set(seen) == {threading.get_ident()}


@pytest.mark.parametrize("method", ["predict", "segment"])
@pytest.mark.parametrize("stop_at", [0, 3])
def test_false_cancels(model, method, stop_at):
    eng = _core.Engine(model, threads=1, tile=60)
    total = eng.plan(200, 150)["tiles"]
    calls = []

    def cb(done, tot):
        calls.append(done)
        return done < stop_at  # False at done == stop_at

    with pytest.raises(_core.Cancelled, match=f"after {stop_at} of {total} tiles"):
        getattr(eng, method)(_image(), progress=cb)
    assert calls == list(range(stop_at + 1))  # no tile after the cancel
    assert issubclass(_core.Cancelled, RuntimeError)
    # the engine is fine afterwards
    assert getattr(eng, method)(_image()).shape[-2:] == (200, 150)


def test_truthy_and_none_continue(model):
    eng = _core.Engine(model, threads=1, tile=60)
    for ret in (None, True, 1, "yes"):
        eng.segment(_image(), progress=lambda d, t, r=ret: r)


def test_callback_exception_reaches_caller(model):
    eng = _core.Engine(model, threads=1, tile=60)

    def cb(done, total):
        if done == 2:
            raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        eng.predict(_image(), progress=cb)


def test_not_callable_is_an_error(model):
    eng = _core.Engine(model, threads=1)
    with pytest.raises(ValueError, match="progress must be callable"):
        eng.segment(_image(), progress=3)


def test_tile_predict_progress_and_cancel():
    img = _image(100, 90)
    # a same-padded depth-1 "network": identity-shaped windows of 32 (overlap 0.25 -> stride 24)
    fn = lambda x: np.stack([x[0], -x[0]]).astype(np.float32)  # noqa: E731
    calls = []
    _core.tile_predict(img, [0.0], [1.0], 1, True, 2, fn, tile=32, output="logits",
                       progress=lambda d, t: calls.append((d, t)))
    total = _core.plan_tiles(100, 90, depth=1, same_padding=True, tile=32)["tiles"]
    assert total > 4 and calls == [(d, total) for d in range(total + 1)]
    with pytest.raises(_core.Cancelled):
        _core.tile_predict(img, [0.0], [1.0], 1, True, 2, fn, tile=32, progress=lambda d, t: d < 5)


def test_cancel_from_another_thread(model):
    """A GUI's cancel button: another thread sets a flag, the callback returns False."""
    eng = _core.Engine(model, threads=1, tile=60)
    stop = threading.Event()
    seen = []

    def cb(done, total):
        seen.append(done)
        if done == 1:
            threading.Thread(target=stop.set).start()
            stop.wait(10)
        return not stop.is_set()

    with pytest.raises(_core.Cancelled):
        eng.segment(_image(), progress=cb)
    assert seen == [0, 1]
