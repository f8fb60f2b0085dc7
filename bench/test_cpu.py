"""CPU benchmarks: ours beside PyTorch, ONNX Runtime and OpenVINO (both precisions), interleaved.

    pytest bench/ --benchmark-only --benchmark-json=bench.json && python bench/report.py bench.json

Workloads (paper network, 1 in / 2 classes / base 64 / depth 4, random He weights, 2 threads each):
    tile572     one 572x572 tile -> 388x388 logits
    image512    a 512x512 image = one 700 tile (mirror-padded) -> 512x512 logits
    image2048   a 2048x2048 image, 2x2 tiles of 1212 (output stride 1024) -> 2048x2048 logits
GFLOP/s in extra_info is effective: direct-convolution FLOPs of every tile run / time (ours uses
Winograd for the 3x3 convs, so this can exceed the measured FMA peak).
Interleaving: pytest-benchmark times ours in pedantic mode; before each of ours' rounds, the setup
hook runs every peer once (rotating their order) and a 0.1 s FMA peak probe, timed here. So every
runner sees the same machine state within a round; the medians and ratios go to extra_info.
Image workloads: ours through the native Engine (tiler + executor) when the core has it, peers
through the same grid via _core.tile_predict; without those (older core), everything through the
simple grid below (mirror pad, tiles at a stride that is a multiple of 2^depth, output in place).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from _workloads import PAPER, THREADS, paper_flops

HALO = 92


def _grid(h: int, w: int, tile: int):
    out = tile - 2 * HALO
    stride = out // 16 * 16
    def starts(n):
        k = 1 if n <= out else 1 + math.ceil((n - out) / stride)
        return [i * stride for i in range(k)]
    return starts(h), starts(w), out


def grid_predict(img: np.ndarray, tile: int, fn) -> np.ndarray:
    """Overlap-tile prediction of a valid U-Net: the same grid for every runner."""
    from unet_rt import _core

    if hasattr(_core, "tile_predict"):
        return _core.tile_predict(img, [0.0] * img.shape[0], [1.0] * img.shape[0], PAPER["depth"], False,
                                  PAPER["classes"], fn, tile=tile, output="logits")
    c, h, w = img.shape
    ys, xs, out = _grid(h, w, tile)
    pad_y, pad_x = ys[-1] + out - h + HALO, xs[-1] + out - w + HALO
    padded = np.pad(img, ((0, 0), (HALO, pad_y), (HALO, pad_x)), mode="reflect")
    res = np.empty((PAPER["classes"], h, w), np.float32)
    for y0 in ys:
        for x0 in xs:
            t = fn(np.ascontiguousarray(padded[:, y0:y0 + tile, x0:x0 + tile]))
            hh, ww = min(out, h - y0), min(out, w - x0)
            res[:, y0:y0 + hh, x0:x0 + ww] = t[:, :hh, :ww]
    return res


def _ours_image(runners, tile):
    from unet_rt import _core

    if hasattr(_core, "Engine"):
        eng = _core.Engine(str(runners.model_path), threads=THREADS, tile=tile)
        runners.notes["ours-image"] = "native Engine (tiler + executor)"
        return lambda img: eng.predict(img, logits=True)
    ours = runners.ours()
    runners.notes["ours-image"] = "executor through the bench grid"
    return lambda img: grid_predict(img, tile, ours)


def _interleaved(benchmark, runners, tile_fns: dict, calls: dict, rounds: int, gflop: float, info: dict):
    from unet_rt._core import _kernels as K

    # Warm-up: each runner once on one tile (builds ORT/OpenVINO sessions, first-touch memory).
    warm = np.random.default_rng(9).standard_normal((PAPER["in_channels"], info["tile"], info["tile"])).astype(np.float32)
    for fn in tile_fns.values():
        fn(warm)
    peers = [n for n in calls if n != "ours"]
    times = {n: [] for n in calls}
    outs: dict = {}
    peaks: list = []
    state = {"round": 0}

    def setup():
        r = state["round"]
        state["round"] += 1
        k = r % max(1, len(peers))
        for n in peers[k:] + peers[:k]:
            t0 = time.perf_counter()
            outs[n] = calls[n]()
            times[n].append(time.perf_counter() - t0)
        peaks.append(K.peak_gflops(THREADS, 0.1))

    def ours():
        t0 = time.perf_counter()
        outs["ours"] = calls["ours"]()
        times["ours"].append(time.perf_counter() - t0)

    benchmark.pedantic(ours, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    med = {n: float(np.median(v)) for n, v in times.items()}
    peak = float(np.median(peaks))
    ei = benchmark.extra_info
    ei.update(info)
    ei.update(threads=THREADS, rounds=rounds, gflop=gflop / 1e9, peak_gflops=peak,
              ours_s=med["ours"], ours_gflops=gflop / med["ours"] / 1e9,
              ours_efficiency=gflop / med["ours"] / 1e9 / peak)
    ref = outs.get("torch")
    for n in peers:
        ei[f"{n}_s"] = med[n]
        ei[f"{n}_gflops"] = gflop / med[n] / 1e9
        ei[f"ratio_ours_over_{n}"] = med["ours"] / med[n]     # < 1: ours is faster
        ei[f"speedup_vs_{n}"] = med[n] / med["ours"]
    if ref is not None:
        scale = float(np.abs(ref).max())
        for n, y in outs.items():
            if n != "torch":
                ei[f"maxerr_rel_{n}_vs_torch"] = float(np.abs(y - ref).max()) / scale
    ei["runners"] = dict(runners.notes)
    ei["times"] = {n: v for n, v in times.items()}
    assert outs["ours"].shape == ref.shape if ref is not None else True


@pytest.mark.benchmark(group="tile572")
def test_tile572(benchmark, runners, rounds):
    tile = 572
    x = np.random.default_rng(0).standard_normal((1, tile, tile)).astype(np.float32)
    fns = runners.all(tile)
    calls = {n: (lambda f=f: f(x)) for n, f in fns.items()}
    _interleaved(benchmark, runners, fns, calls, rounds, paper_flops(tile, tile),
                 dict(workload="paper net, one 572 tile", tile=tile, tiles=1, image=[572, 572]))
    runners.drop(tile)


@pytest.mark.parametrize("size,tile", [(512, 700), (2048, 1212)], ids=["image512", "image2048"])
def test_image(benchmark, runners, rounds, size, tile):
    benchmark.group = f"image{size}"
    img = np.random.default_rng(1).standard_normal((1, size, size)).astype(np.float32)
    fns = runners.all(tile)
    calls = {n: (lambda f=f: grid_predict(img, tile, f)) for n, f in fns.items() if n != "ours"}
    calls["ours"] = (lambda g=_ours_image(runners, tile): g(img))
    from unet_rt import _core

    if hasattr(_core, "plan_tiles"):   # the native tiler's grid (what Engine and tile_predict run)
        n_tiles = int(_core.plan_tiles(size, size, depth=PAPER["depth"], same_padding=False, tile=tile)["tiles"])
    else:
        ys, xs, _ = _grid(size, size, tile)
        n_tiles = len(ys) * len(xs)
    r = rounds if size <= 1024 else max(1, rounds // 3)
    _interleaved(benchmark, runners, fns, calls, r, n_tiles * paper_flops(tile, tile),
                 dict(workload=f"paper net, {size}x{size} image ({n_tiles} tile(s) of {tile})", tile=tile,
                      tiles=n_tiles, image=[size, size]))
    runners.drop(tile)
