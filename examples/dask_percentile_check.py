"""Random-image check of ``unet_rt.scale``'s percentile normalisation against the whole-image Engine.

    python examples/dask_percentile_check.py [--trials 40] [--seed 5]

Needs torch (the ``train`` extra) to write a small random-weight model. Each trial draws percentiles
and an image (float32 with +-0, subnormals and ties; float32 over 1e-30..1e30; uint16 with ties;
uint8), runs ``unet_rt.scale.predict`` over small chunks and ``Engine.predict`` on the whole image,
and reports whether they are bit-identical, or which side raised (docs/dask.md).
"""
import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

import unet_rt
from unet_rt.scale import blocks as ud
from unet_rt.format import model_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    import dask.array as da
    import torch
    from unet_rt.train.model import UNet, to_model_file

    torch.manual_seed(3)
    net = UNet(1, 3, depth=2, base=4, dropout=0).eval()
    base = to_model_file(net, {"mean": [100.0], "std": [40.0]}, ["a", "b", "c"])
    rng = np.random.default_rng(a.seed)
    same = differ = raised = 0
    with tempfile.TemporaryDirectory() as d:
        m = Path(d) / "p.plan"
        for trial in range(a.trials):
            lo, hi = (0.0, 100.0) if trial % 5 == 0 else sorted(float(v) for v in rng.uniform(0, 100, 2))
            model_file.save(m, dataclasses.replace(base, normalization={"mean": [0.3], "std": [0.7],
                                                                        "percentiles": [lo, hi]}))
            h, w = (int(v) for v in rng.integers(30, 90, 2))
            kind = trial % 4
            if kind == 0:
                img = rng.choice(np.array([-0.0, 0.0, 1e-42, -1e-42, 3.5, -2.25], np.float32), size=(h, w))
            elif kind == 1:
                img = (rng.standard_normal((h, w)) * 10.0 ** int(rng.integers(-30, 30))).astype(np.float32)
            elif kind == 2:
                img = rng.integers(0, 3, (h, w)).astype(np.uint16) * 30000
            else:
                img = rng.integers(0, 256, (h, w)).astype(np.uint8)
            outcome = []
            for run in (lambda: unet_rt.Engine(m, tile=60).predict(img),
                        lambda: ud.predict(da.from_array(img, chunks=(17, 23)), m, tile=60, block=40)
                        .compute(scheduler="sync")):
                try:
                    outcome.append(run())
                except ValueError as e:
                    outcome.append(e)
            if all(isinstance(o, np.ndarray) for o in outcome):
                ok = np.array_equal(*outcome)
                same += ok
                differ += not ok
                print(f"trial {trial}: {img.dtype} P{lo:.2f}..P{hi:.2f}: {'bit-identical' if ok else 'DIFFERENT'}")
            else:
                raised += 1
                print(f"trial {trial}: {img.dtype} P{lo:.2f}..P{hi:.2f}: Engine "
                      f"{'raised' if isinstance(outcome[0], Exception) else 'ran'}, dask "
                      f"{'raised: ' + str(outcome[1]) if isinstance(outcome[1], Exception) else 'ran'}")
    print(f"{same} bit-identical, {differ} different, {raised} with an error on one side or both")


if __name__ == "__main__":
    main()
