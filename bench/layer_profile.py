"""Where the time goes on the 512x512 workload (README: Speed; docs/speed.md): the paper network (random
He weights, seed 0, as in test_cpu.py) through `unet_rt.Engine(..., profile=True)` on a 512x512 image
(one 700 tile), 2 threads, fp32 and bf16; one warm-up call, then the profile of the median of
`rounds` calls, summed per phase kind and listed per layer.

    python bench/layer_profile.py [rounds] > profile.md
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _workloads import PAPER, THREADS  # noqa: E402


def _kind(phase: str) -> str:
    for prefix, name in (("conv3x3_wino_gemm", "Winograd GEMM"), ("conv3x3_wino_in", "Winograd input transform"),
                         ("conv3x3_wino_out", "Winograd output transform (+bias, ReLU)"), ("upconv2x2", "up-conv 2x2"),
                         ("conv3x3_direct", "first conv (direct)"), ("pool2x2", "max-pool"), ("head", "head 1x1"),
                         ("reorder", "input reorder (scalar)")):
        if phase.startswith(prefix):
            return name
    return phase


def _paper_model(path: str) -> None:
    import torch

    from unet_rt.train.model import UNet
    from unet_rt.format import model_file

    torch.manual_seed(0)
    net = UNet(**{k: PAPER[k] for k in ("in_channels", "classes", "depth", "base", "padding")}).eval()
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    model_file.save(path, model_file.ModelFile("weights", dict(PAPER), {"mean": [0.0], "std": [1.0]},
                                               ["background", "cell"], weights, {"source": "bench: random He weights"}))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rounds = int(argv[0]) if argv else 3
    from unet_rt import Engine

    img = np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "paper.plan")
        _paper_model(path)
        out = []
        for precision in ("fp32", "bf16"):
            eng = Engine(path, threads=THREADS, precision=precision, profile=True)
            eng.predict(img)                           # warm-up (plan, arena)
            eng.profile()
            runs = []
            for _ in range(rounds):
                t = time.perf_counter()
                eng.predict(img)
                runs.append((time.perf_counter() - t, eng.profile()))
            wall, rows = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            total = sum(r["ms"] for r in rows)
            kinds: OrderedDict = OrderedDict()
            for r in rows:
                k = kinds.setdefault(_kind(r["phase"]), [0.0, 0.0, set()])
                k[0] += r["ms"]
                k[1] += r["gflops"] * r["ms"] / 1e3
                k[2].add(r["phase"])
            info = eng.info
            out.append(f"**{precision}** (`{info['kernel']}`; {info['threads']} threads): {1e3 * wall:.0f} ms per "
                       f"512x512 image (median of {rounds}), {total:.0f} ms in the profiled ops\n")
            out.append("| phase | ms | share | GFLOP/s (arithmetic done) | kernels |")
            out.append("|---|---|---|---|---|")
            for name, (ms, gf, phases) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
                out.append(f"| {name} | {ms:.1f} | {100 * ms / total:.1f}% | {gf / ms * 1e3:.0f} | "
                           f"{', '.join(sorted(phases))} |")
            out.append("")
            top = sorted(rows, key=lambda r: -r["ms"])[:6]
            out.append("Largest rows: " + "; ".join(f"{r['layer']} {r['phase']} {r['ms']:.1f} ms ({r['gflops']:.0f} "
                                                     f"GFLOP/s)" for r in top) + "\n")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"CPU: {cpu}; load average {os.getloadavg()[0]:.1f} at the end\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
