"""The native engine _core.Engine (reader + executor + tiler + normalisation) against the PyTorch
reference U-Net (training/) and MONAI, its input checks, thread safety and memory."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from unet_rt.format import model_file
from unet_rt.format.geometry import halo

_core = pytest.importorskip("unet_rt._core")
torch = pytest.importorskip("torch")
from unet_rt.train.model import UNet, to_model_file  # noqa: E402
from unet_rt.train.train import predict_whole  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_model(path, cin=1, classes=2, depth=2, base=4, padding="valid", seed=0, mean=None, std=None):
    torch.manual_seed(seed)
    net = UNet(cin, classes, depth=depth, base=base, padding=padding, dropout=0).eval()
    norm = {"mean": mean or [100.0 + 10 * c for c in range(cin)], "std": std or [50.0 + c for c in range(cin)]}
    model_file.save(path, to_model_file(net, norm, [f"class{k}" for k in range(classes)], {"seed": seed}))
    return net.double(), norm


def normalise(img, norm):
    m = np.float32(norm["mean"])[:, None, None]
    s = np.float32(norm["std"])[:, None, None]
    return (img.astype(np.float32) - m) / s


def whole_pass_logits(net, x, depth):
    """PyTorch float64, one pass over the whole mirror-padded image (the overlap-tile definition)."""
    return predict_whole(net, x.astype(np.float64), depth, "valid")


@pytest.fixture(scope="module")
def valid_model(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "valid.plan"
    net, norm = make_model(p, cin=2, classes=3, depth=2, base=4)
    return str(p), net, norm


U = 2.0**-24


def _tol(ref, depth=2, base=4):
    """fp32 executor vs float64 reference: the error model of tests/test_network.py (each of the L
    layers adds ~u*sqrt(9*Cmax) relative to the output scale; SAFETY 8). The executor's Winograd
    convolutions stay within it. A wrong crop, tile origin or normalisation gives errors of order
    max|ref| and fails by orders of magnitude."""
    layers = 5 * depth + 3
    cmax = 2 * base * 2**depth
    return 8.0 * layers * U * np.sqrt(9 * cmax) * float(np.abs(ref).max())


@pytest.mark.parametrize("shape", [(1, 1), (13, 97), (150, 170), (64, 301)])
def test_predict_matches_pytorch(valid_model, shape):
    path, net, norm = valid_model
    e = _core.Engine(path, threads=2)
    img = np.random.default_rng(0).integers(0, 255, (2, *shape)).astype(np.uint8)
    ref = whole_pass_logits(net, normalise(img, norm), 2)
    logits = e.predict(img, logits=True)
    assert logits.shape == (3, *shape) and logits.dtype == np.float32
    tol = _tol(ref)
    assert np.abs(logits - ref).max() <= tol
    probs = e.predict(img)
    refp = torch.softmax(torch.from_numpy(ref), 0).numpy()
    assert np.abs(probs - refp).max() <= tol  # the softmax is 1-Lipschitz in the max norm
    labels = e.segment(img)
    assert labels.dtype == np.uint8 and labels.shape == shape
    # argmax of the reference, except where the top two reference logits are within the tolerance
    top2 = np.sort(ref, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 2 * tol
    np.testing.assert_array_equal(labels[clear], ref.argmax(0)[clear])


def test_tiled_equals_whole_with_the_executor(valid_model):
    path, net, norm = valid_model
    img = np.random.default_rng(1).integers(0, 255, (2, 200, 230)).astype(np.uint8)
    whole = _core.Engine(path, tile=0, threads=2)
    assert whole.plan(200, 230)["tiles"] == 1
    tiled = _core.Engine(path, tile=60, threads=2)
    assert tiled.plan(200, 230)["tiles"] > 20
    a, b = whole.predict(img, logits=True), tiled.predict(img, logits=True)
    # Each output pixel sees the same inputs in both (the tiler's geometry is exact: test_tiler.py
    # shows equality to 1 ulp with a float64 PyTorch tile function). The executor's rounding may
    # depend on the tile's shape (Winograd blocks, remainders), so each side is within the error
    # model of the float64 whole pass, and they are within twice that of each other.
    ref = whole_pass_logits(net, normalise(img, norm), 2)
    tol = _tol(ref)
    assert np.abs(a - ref).max() <= tol and np.abs(b - ref).max() <= tol
    assert np.abs(a - b).max() <= 2 * tol
    la, lb = whole.segment(img), tiled.segment(img)
    top2 = np.sort(ref, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 4 * tol
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(la[clear], lb[clear])


def test_input_dtypes_and_layouts(valid_model):
    path, net, norm = valid_model
    e = _core.Engine(path)
    u8 = np.random.default_rng(2).integers(0, 255, (2, 40, 50)).astype(np.uint8)
    p = e.predict(u8)
    np.testing.assert_array_equal(e.predict(u8.astype(np.uint16)), p)
    np.testing.assert_array_equal(e.predict(u8.astype(np.float32)), p)
    hwc = np.ascontiguousarray(u8.transpose(1, 2, 0))
    np.testing.assert_array_equal(e.predict(hwc.transpose(2, 0, 1)), p)  # strided view, no copy


def test_info(valid_model):
    path, net, norm = valid_model
    e = _core.Engine(path, threads=1, tile=76, memory_budget_mb=100)
    i = e.info
    assert i["arch"] == {"in_channels": 2, "classes": 3, "depth": 2, "base": 4, "padding": "valid"}
    assert i["classes"] == 3 and i["class_names"] == ["class0", "class1", "class2"]
    np.testing.assert_array_equal(np.float32(i["normalization"]["mean"]), np.float32(norm["mean"]))
    assert i["halo"] == halo(2) and i["tile"] == 76 and i["threads"] == 1 and i["memory_budget_mb"] == 100
    assert i["isa"] in ("ref", "avx2", "avx512", "neon")


def test_memory_budget_limits_the_tile(tmp_path):
    p = tmp_path / "paper.plan"
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    tensors = {k: np.zeros(s, np.float32) for k, s in model_file.expected_shapes(arch).items()}
    model_file.save(p, model_file.ModelFile("weights", arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"], tensors))
    big = _core.Engine(str(p), memory_budget_mb=4096).plan(2048, 2048)
    default = _core.Engine(str(p)).plan(2048, 2048)
    small = _core.Engine(str(p), memory_budget_mb=200).plan(2048, 2048)
    side = lambda pl: max(pl["y"]["in_size"]) * max(pl["x"]["in_size"])  # noqa: E731
    assert side(small) < side(default) <= side(big)
    assert big["total_input_area"] <= default["total_input_area"] <= small["total_input_area"]
    assert _core.Engine(str(p)).plan(512, 512)["y"]["in_size"] == [700]


def test_same_padded_network_matches_monai(tmp_path):
    monai = pytest.importorskip("monai.inferers")
    p = tmp_path / "same.plan"
    net, norm = make_model(p, cin=1, classes=2, depth=2, base=4, padding="same", seed=3)
    img = np.random.default_rng(3).integers(0, 255, (1, 70, 90)).astype(np.uint8)
    e = _core.Engine(str(p), tile=32)
    out = e.predict(img, logits=True)
    x = torch.from_numpy(normalise(img, norm).astype(np.float64))[None]
    with torch.no_grad():
        ref = monai.sliding_window_inference(x, (32, 32), 1, net, overlap=0.25, mode="constant")[0].numpy()
    tol = _tol(ref)
    assert np.abs(out - ref).max() <= tol
    probs = e.predict(img)
    assert np.abs(probs - torch.softmax(torch.from_numpy(ref), 0).numpy()).max() <= tol
    g = _core.Engine(str(p), tile=48, overlap=0.5, blend="gaussian")
    assert g.info["overlap"] == 0.5 and g.info["blend"] == "gaussian"
    with torch.no_grad():
        ref = monai.sliding_window_inference(x, (48, 48), 1, net, overlap=0.5, mode="gaussian")[0].numpy()
    assert np.abs(g.predict(img, logits=True) - ref).max() <= _tol(ref)
    with pytest.raises(ValueError, match="overlap"):
        _core.Engine(str(p), overlap=1.0)


def test_many_threads_on_one_engine(valid_model):
    path, net, norm = valid_model
    e = _core.Engine(path, threads=2)
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 255, (2, 30 + 7 * i, 41 + 3 * i)).astype(np.uint8) for i in range(6)]
    serial = [(e.predict(im), e.segment(im)) for im in imgs]
    errors, results = [], {}

    def work(t):
        try:
            for r in range(3):
                i = (t + r) % len(imgs)
                results[(t, r)] = (i, e.predict(imgs[i]), e.segment(imgs[i]))
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 18
    for i, p, s in results.values():
        np.testing.assert_array_equal(p, serial[i][0])
        np.testing.assert_array_equal(s, serial[i][1])


@pytest.mark.parametrize("img, match", [
    (np.zeros((40, 40), np.uint8), "3-D"),
    (np.zeros((1, 40, 40), np.uint8), "1 channels, the model expects 2"),
    (np.zeros((3, 40, 40), np.uint8), "3 channels"),
    (np.zeros((2, 40, 40), np.int64), "dtype"),
    (np.zeros((2, 40, 40), np.float64), "dtype"),
    (np.zeros((2, 0, 40), np.uint8), "empty"),
    (np.full((2, 40, 40), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 40, 40), -np.inf, np.float32), "NaN or Inf"),
])
def test_bad_images(valid_model, img, match):
    e = _core.Engine(valid_model[0])
    for f in (e.predict, e.segment):
        with pytest.raises(ValueError, match=match):
            f(img)


def test_bad_model_files(tmp_path, valid_model):
    with pytest.raises(FileNotFoundError):
        _core.Engine(str(tmp_path / "missing.plan"))
    corrupt = tmp_path / "corrupt.plan"
    corrupt.write_bytes(Path(valid_model[0]).read_bytes()[:500])
    with pytest.raises(_core.ModelFileError):
        _core.Engine(str(corrupt))
    with pytest.raises(ValueError, match="not a valid input size"):
        _core.Engine(valid_model[0], tile=61)
    with pytest.raises(ValueError):
        _core.Engine(valid_model[0], threads=-1)


MEM = textwrap.dedent(r'''
    import sys
    import numpy as np
    from unet_rt import _core
    from _rss import peak_rss  # tests/_rss.py: VmHWM, not ru_maxrss (inherited across exec)
    path, n, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    e = _core.Engine(path, memory_budget_mb=budget)
    img = np.random.default_rng(0).integers(0, 255, (1, n, n)).astype(np.uint8)
    e.predict(np.zeros((1, 8, 8), np.uint8))
    before = peak_rss()
    out = e.predict(img)
    peak = peak_rss()
    pl = e.plan(n, n)
    print(peak - before - out.nbytes, pl["tiles"], max(pl["y"]["in_size"]), max(pl["x"]["in_size"]), peak - out.nbytes)
''')


def test_peak_memory_beyond_the_output(tmp_path):
    p = tmp_path / "small.plan"
    make_model(p, cin=1, classes=2, depth=3, base=4)
    extra = {}
    for n in (1024, 2048):
        r = subprocess.run([sys.executable, "-c", MEM, str(p), str(n), "64"], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}, cwd=str(Path(__file__).resolve().parent))
        assert r.returncode == 0, r.stderr
        extra[n] = int(r.stdout.split()[0])
    # The tiles' working memory is held to the 64 MB budget (+ the input tile and scratch output);
    # nothing else grows with the image.
    assert extra[2048] < 128 * 2**20, extra
    assert abs(extra[2048] - extra[1024]) < 32 * 2**20, extra


@pytest.mark.slow
def test_paper_network_2048_peak_memory(paper_net_file):
    """The paper network on a 2048 x 2048 image with the default budget: the whole process (Python,
    numpy, the executor's weights, tiles) peaks within 1 GB beyond the output (~1 min on 2 cores).
    The largest layers keep their 3x3 taps (UNET_RT_WINOGRAD_RAW_MB, docs/speed.md: Memory: 237 MB
    of weights), which leaves room for a larger budget than the 384 MB the fully transformed weights
    (463 MB) allowed: fewer, larger tiles (8 instead of 15)."""
    p = paper_net_file
    r = subprocess.run([sys.executable, "-c", MEM, str(p), "2048", "0"], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}, cwd=str(Path(__file__).resolve().parent))
    assert r.returncode == 0, r.stderr
    beyond_output, tiles = int(r.stdout.split()[-1]), int(r.stdout.split()[1])
    assert beyond_output < 2**30, f"peak RSS beyond the output: {beyond_output / 2**20:.0f} MB"
    assert tiles < 15, r.stdout
    from unet_rt import _core

    e = _core.Engine(str(p))
    assert e.info["weight_mb"] < 250 and e.info["memory_budget_mb"] > 384, e.info
    print(f"fp32 2048x2048: {e.info['weight_mb']:.0f} MB weights, budget {e.info['memory_budget_mb']} MB, {tiles} tiles, "
          f"peak RSS beyond the output {beyond_output / 2**20:.0f} MB")
