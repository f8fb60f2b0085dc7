"""A/B of an executor knob read from the environment when an engine is built (docs/speed.md: taps,
private bands): the paper network (random He weights, seed 0, as bench/test_cpu.py) through
`_core.Engine.predict` on a SIZE x SIZE image, one engine per value, built in one process, timed in
interleaved rounds; CPU time with --threads 1 (robust to other work on the machine), wall time
otherwise. Prints each value's best time, its ratio to the last value's, the weights and the tiles.

    python bench/env_ab.py fp32 2048 UNET_RT_WINOGRAD_RAW_MB 64 1e9 --threads 1
    python bench/env_ab.py bf16 512 UNET_RT_WINOGRAD_PRIVATE_KB 768 0 --threads 2 --rounds 6
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_profile import _paper_model  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("precision", choices=["fp32", "bf16"])
    ap.add_argument("size", type=int, help="image side (512: one 700 tile)")
    ap.add_argument("var", help="environment variable, e.g. UNET_RT_WINOGRAD_RAW_MB")
    ap.add_argument("values", nargs="+", help="values to compare; ratios are to the last one")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    from unet_rt import _core

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "paper.plan")
        _paper_model(path)
        engines = {}
        for v in a.values:
            os.environ[a.var] = v
            engines[v] = _core.Engine(path, threads=a.threads, precision=a.precision)
        os.environ.pop(a.var)
        img = np.random.default_rng(0).integers(0, 255, (1, a.size, a.size)).astype(np.uint8)
        clock = time.process_time if a.threads == 1 else time.perf_counter
        times = {v: [] for v in engines}
        for e in engines.values():
            e.predict(img)                         # warm-up
        for _ in range(a.rounds):
            for v, e in engines.items():
                t = clock()
                e.predict(img)
                times[v].append(clock() - t)
    base = min(times[a.values[-1]])
    what = "CPU" if a.threads == 1 else "wall"
    for v, e in engines.items():
        print(f"{a.var}={v}: {min(times[v]):.2f} s {what} (x{min(times[v]) / base:.3f}), weights "
              f"{e.info['weight_mb']:.0f} MB, budget {e.info['memory_budget_mb']} MB, "
              f"{e.plan(a.size, a.size)['tiles']} tiles")
    print(f"{a.precision}, {a.size}x{a.size}, {a.threads} thread(s), best of {a.rounds}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
