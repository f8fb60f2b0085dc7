"""CPU benchmarks: ours (fp32 and bf16) beside PyTorch, ONNX Runtime and OpenVINO (f32 and default),
each runner its own pytest-benchmark benchmark (so --benchmark-compare, --benchmark-group-by and
the other standard options work):

    pytest bench/ --benchmark-only --benchmark-json=bench.json && python bench/report.py bench.json

Workloads (paper network, 1 in / 2 classes / base 64 / depth 4, random He weights, 2 threads each;
UNET_RT_BENCH_WORKLOADS=tile572,image512 picks some):
    tile572     one 572x572 tile -> 388x388 logits
    image512    a 512x512 image = one 700 tile (mirror-padded) -> 512x512 logits
    image2048   a 2048x2048 image, 2x2 tiles of 1212 (output stride 1024) -> 2048x2048 logits
Runners: ours-fp32 / ours-bf16 through the user path (native Engine: tiler + executor; tile572 through
the executor alone); the peers through the same overlap-tile grid (_core.tile_predict).

Before timing, each benchmark runs its runner once (the warm-up: sessions built, memory touched) and
asserts parity with PyTorch fp32 on that output: max |y - ref| / max |ref| <= 1e-3 for fp32 runners,
<= 0.25 for bf16 ones (ours-bf16; OpenVINO default where it reports bf16). The error goes to
extra_info. test_cpu times each runner in a block of rounds (pytest-benchmark's own table, one
benchmark per runner); test_interleaved then times every runner of a workload round by round, the
starting runner rotating each round, so that a change in the machine's load hits all runners alike:
the README's ratios come from it (extra_info: per-runner medians and ratios; report.py).
GFLOP/s: "effective" = direct-convolution FLOPs / time (comparable across runners); for ours also
the arithmetic actually done (Winograd-domain GEMM multiplies, _workloads.ours_flops) against the
measured peak of that arithmetic (fp32 FMA; for bf16 vdpbf16ps, or AMX tdpbf16ps where the bf16 GEMM
is AMX's), measured just before the rounds.
"""
from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from _workloads import IMAGES, THREADS, grid_predict, grid_tiles, image_input, ours_flops, paper_flops

RUNNERS = ["ours-fp32", "ours-bf16", "torch", "ort", "ov-f32", "ov-default"]
WORKLOADS = {"tile572": (572, 572), **IMAGES}
SELECTED = [w for w in os.environ.get("UNET_RT_BENCH_WORKLOADS", ",".join(WORKLOADS)).split(",") if w]
FP32_TOL, BF16_TOL = 1e-3, 0.25


def _tiles(size: int, tile: int) -> int:
    return grid_tiles(size, tile)


def _input(workload: str) -> np.ndarray:
    return image_input(WORKLOADS[workload][0])


@pytest.fixture(scope="session")
def reference(runners):
    """PyTorch fp32 logits per workload (computed once; the parity reference)."""
    cache: dict = {}

    def get(workload):
        if workload not in cache:
            size, tile = WORKLOADS[workload]
            f = runners.torch()
            x = _input(workload)
            cache[workload] = f(x) if workload == "tile572" else grid_predict(x, tile, f)
        return cache[workload]
    return get


def _runner(runners, name: str, workload: str):
    """-> (callable(x) -> logits, precision)"""
    size, tile = WORKLOADS[workload]
    if name.startswith("ours"):
        prec = name.split("-")[1]
        if workload == "tile572":
            f = runners.ours(prec)
            return f, runners.notes[name].split("precision ")[1].split(",")[0]
        from unet_rt import _core

        eng = _core.Engine(str(runners.model_path), threads=THREADS, tile=tile, precision=prec)
        runners.notes[name] = (f"unet_rt native Engine (tiler + executor), isa {eng.info['isa']}, precision "
                               f"{eng.info['precision']}, kernel {eng.info['kernel']}, {THREADS} threads")
        return (lambda x: eng.predict(x, logits=True)), eng.info["precision"]
    make = {"torch": runners.torch, "ort": lambda: runners.ort(tile),
            "ov-f32": lambda: runners.openvino(tile, True), "ov-default": lambda: runners.openvino(tile, False)}[name]
    f = make()
    note = runners.notes.get(name, "").lower()
    prec = "bf16" if name == "ov-default" and ("bf16" in note or "bfloat16" in note) else "fp32"
    return (f if workload == "tile572" else (lambda x: grid_predict(x, tile, f))), prec


def _warm_up_and_check(name: str, fn, prec: str, x: np.ndarray, ref: np.ndarray) -> float:
    """One call (the warm-up), asserted at parity with PyTorch fp32; -> max |y - ref| / max |ref|."""
    y = fn(x)
    err = float(np.abs(y - ref).max()) / float(np.abs(ref).max())
    tol = BF16_TOL if prec == "bf16" else FP32_TOL
    assert y.shape == ref.shape and err <= tol, f"{name}: max rel. error {err:.3g} vs PyTorch > {tol}"
    return err


@pytest.mark.parametrize("workload,runner", [(w, r) for w in WORKLOADS for r in RUNNERS],
                         ids=[f"{w}-{r}" for w in WORKLOADS for r in RUNNERS])
def test_cpu(benchmark, runners, reference, rounds, workload, runner):
    if workload not in SELECTED:
        pytest.skip(f"workload {workload} not in UNET_RT_BENCH_WORKLOADS")
    from unet_rt import _kernels as K

    benchmark.group = workload
    size, tile = WORKLOADS[workload]
    fn, prec = _runner(runners, runner, workload)
    x = _input(workload)
    err = _warm_up_and_check(runner, fn, prec, x, reference(workload))
    n_tiles = 1 if workload == "tile572" else _tiles(size, tile)
    peak32 = K.peak_gflops(THREADS, 0.2)
    peak16 = K.peak_gflops(THREADS, 0.2, bf16=True)
    r = rounds if size <= 1024 else max(1, rounds // 3)
    benchmark.pedantic(fn, args=(x,), rounds=r, iterations=1, warmup_rounds=0)
    med = benchmark.stats.stats.median
    ei = benchmark.extra_info
    ei.update(workload=workload, runner=runner, precision=prec, tile=tile, tiles=n_tiles, image=[size, size],
              threads=THREADS, rounds=r, maxerr_rel_vs_torch=err, note=runners.notes.get(runner, ""),
              cpu=platform.processor() or platform.machine(),
              effective_gflops=n_tiles * paper_flops(tile, tile) / med / 1e9, peak_fp32_gflops=peak32,
              peak_bf16_gflops=peak16)
    if runner.startswith("ours"):
        done = n_tiles * ours_flops(tile, tile)
        peak = peak16 if prec == "bf16" and peak16 > 0 else peak32
        ei.update(gflops_done=done / med / 1e9, peak_gflops=peak, pct_of_peak=100 * done / med / 1e9 / peak)


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_interleaved(benchmark, runners, reference, rounds, workload):
    """All runners of one workload, interleaved round by round (rotating order); ratios to ours."""
    import time

    if workload not in SELECTED:
        pytest.skip(f"workload {workload} not in UNET_RT_BENCH_WORKLOADS")
    benchmark.group = f"{workload}-interleaved"
    size, tile = WORKLOADS[workload]
    x, ref = _input(workload), reference(workload)
    fns, precs, errs = {}, {}, {}
    for name in RUNNERS:                          # build, warm up, parity: as test_cpu
        try:
            fns[name], precs[name] = _runner(runners, name, workload)
        except pytest.skip.Exception as e:       # a peer that is not installed
            errs[name] = f"skipped: {e}"
            continue
        errs[name] = _warm_up_and_check(name, fns[name], precs[name], x, ref)
    names = list(fns)
    times: dict = {n: [] for n in names}
    cycle = {"i": 0}

    def one_round():
        i = cycle["i"]
        cycle["i"] += 1
        for n in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            fns[n](x)
            times[n].append(time.perf_counter() - t)

    r = rounds if size <= 1024 else max(1, rounds // 3)
    benchmark.pedantic(one_round, rounds=r, iterations=1, warmup_rounds=0)
    med = {n: float(np.median(v)) for n, v in times.items()}
    n_tiles = 1 if workload == "tile572" else _tiles(size, tile)
    benchmark.extra_info.update(
        workload=workload, interleaved=True, tile=tile, tiles=n_tiles, image=[size, size], threads=THREADS, rounds=r,
        cpu=platform.processor() or platform.machine(), median=med, precision=precs, maxerr_rel_vs_torch=errs,
        times=times, notes={n: runners.notes.get(n, "") for n in names},
        effective_gflops={n: n_tiles * paper_flops(tile, tile) / m / 1e9 for n, m in med.items()},
        ratio_to_ours_fp32={n: m / med["ours-fp32"] for n, m in med.items()} if "ours-fp32" in med else {},
        ratio_to_ours_bf16={n: m / med["ours-bf16"] for n, m in med.items()} if "ours-bf16" in med else {})
    runners.drop(tile)
