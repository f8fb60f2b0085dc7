"""Shared by the GPU benchmarks (test_triton.py, gpu_check.py): the paper network and the interleaved timer.

Nothing here touches CUDA at import: torch is imported inside the functions that need it, so that
gpu_check.py can say "no torch" / "no GPU" before anything else, and its tests can drive the timer on
the CPU with a wall clock.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

from _workloads import PAPER

ROUNDS = 30
WARMUP = 5


def paper_net(dtype=None, device=None):
    """(torch UNet, its ModelFile): the paper network (depth 4, base 64, 1 -> 2 classes, valid) with
    random He weights, seed 0. With ``device`` / ``dtype`` the net is moved there, channels-last."""
    import torch

    from unet_rt.train.model import UNet, to_model_file

    torch.manual_seed(0)
    net = UNet(PAPER["in_channels"], PAPER["classes"], PAPER["depth"], PAPER["base"], PAPER["padding"]).eval()
    mf = to_model_file(net, {"mean": [0.0], "std": [1.0]}, ["bg", "fg"])
    if device is not None or dtype is not None:
        net = net.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
    return net, mf


def cuda_measure(fn: Callable[[], object]) -> float:
    """Milliseconds of one call of ``fn``, between two CUDA events on the current stream."""
    import torch

    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)


def cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def time_rounds(fns: dict, *, rounds: int, warmup: int, measure: Callable = cuda_measure,
                sync: Callable | None = cuda_sync, deadline: float | None = None,
                clock: Callable[[], float] = time.monotonic) -> tuple[dict, int]:
    """Time every contender of ``fns`` (name -> zero-argument callable) interleaved.

    ``warmup`` rounds first (every contender called alike, untimed), then ``sync()``; then up to
    ``rounds`` rounds, each calling every contender once, the starting contender rotating from round
    to round (so that drift in clocks or load hits all alike). ``measure(fn)`` -> milliseconds.
    Before each timed round, ``clock() >= deadline`` stops it. Returns ({name: [ms, ...]}, rounds done).
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    if sync is not None:
        sync()
    times: dict = {n: [] for n in names}
    done = 0
    for r in range(rounds):
        if deadline is not None and clock() >= deadline:
            break
        k = r % len(names) if names else 0
        for n in names[k:] + names[:k]:
            times[n].append(measure(fns[n]))
        done += 1
    return times, done


def interleaved(fns: dict, rounds: int = ROUNDS, warmup: int = WARMUP, **kw) -> dict:
    """Median milliseconds per contender (``time_rounds`` with CUDA events unless ``measure`` is given)."""
    times, _ = time_rounds(fns, rounds=rounds, warmup=warmup, **kw)
    return {name: statistics.median(t) for name, t in times.items()}
