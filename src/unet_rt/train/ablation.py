"""Does a recipe converge on data it was not tuned on? Short runs on synthetic data sets, each
scored on held-out images against an Otsu threshold.

    python -m unet_rt.train.ablation --kinds bacteria nuclei sparse --steps 300 --out runs/ablation
    python -m unet_rt.train.ablation --kinds nuclei --recipe paper --steps 300 --out runs/ablation-paper
    make ablation                      # both recipes on the three kinds, --check on the default

For every kind (``unet_rt.train.synthetic``): 6 training, 2 validation and 4 test images of 256²;
``unet_rt.train.train`` with the given recipe and extra options; then, on the test images, through the
runtime (``unet_rt.Engine``, the C++ core): the foreground F1 (Dice) of ``Engine.segment`` and the
adapted Rand error of ``Engine.instances`` (with the decision calibrated on the validation images
at the end of training), beside the same two figures for Otsu's threshold (instances: its
connected components) taken with the better of the two polarities (bright or dark objects: the
baseline gets every benefit).
Prints one table row per kind and writes ``OUT/ablation.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from unet_rt.train import synthetic
from unet_rt.train.data import instances_of

SPLIT = dict(train="0-5", val="6-7", test=range(8, 12))


def otsu_masks(img: np.ndarray) -> list[np.ndarray]:
    """Both polarities of the Otsu threshold of ``unet-rt evaluate --baseline otsu``."""
    from unet_rt.eval.baseline import otsu_threshold

    t = otsu_threshold(img)
    return [img > t, img <= t]


def score(pred_fg: np.ndarray, pred_instances: np.ndarray, label: np.ndarray) -> dict:
    from unet_rt.eval import metrics

    true = instances_of(label)
    return {"f1": metrics.dice(pred_fg.astype(np.uint8), (true > 0).astype(np.uint8)),
            "rand_error": metrics.adapted_rand_error(true, pred_instances)}


def run_kind(kind: str, out: Path, steps: int, recipe: str, extra: list[str], base: int, tile: int,
             threads: int) -> dict:
    from unet_rt import Engine
    from unet_rt.eval import metrics

    from unet_rt.train import train
    from unet_rt.train.data import load_pairs

    data = synthetic.write_dataset(kind, out / f"data-{kind}", images=12)
    run = out / f"run-{kind}"
    t0 = time.time()
    args = ["--data", str(data), "--out", str(run), "--train-slices", SPLIT["train"], "--val-slices", SPLIT["val"],
            "--recipe", recipe, "--steps", str(steps), "--base", str(base), "--tile", str(tile),
            "--warmup", str(max(steps // 10, 1)), "--val-every", str(max(steps // 6, 1)),
            "--ckpt-every", str(max(steps // 6, 1)), "--threads", str(threads), "--no-progress", *extra]
    if (run / "checkpoint.json").exists():
        args.append("--resume")
    rc = train.main(args)
    minutes = (time.time() - t0) / 60
    pairs = load_pairs(data)
    eng = Engine(run / "model.plan", threads=threads)
    ours, otsu = [], []
    for i in SPLIT["test"]:
        _, img, lab = pairs[i]
        ours.append(score(eng.segment(img) > 0, eng.instances(img), lab))
        otsu.append(max((score(m, metrics.connected_components(m), lab) for m in otsu_masks(img)),
                        key=lambda r: r["f1"]))
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    best = json.loads((run / "checkpoint.json").read_text()).get("best") or {}
    return {"kind": kind, "recipe": recipe, "extra": " ".join(extra), "steps": steps, "minutes": round(minutes, 2),
            "train_rc": rc, "val_f1_error": best.get("f1_error"),
            "f1": mean(ours, "f1"), "rand_error": mean(ours, "rand_error"),
            "otsu_f1": mean(otsu, "f1"), "otsu_rand_error": mean(otsu, "rand_error")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unet_rt.train.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=synthetic.KINDS, default=list(synthetic.KINDS))
    p.add_argument("--out", required=True, help="directory for the data, the runs and ablation.json")
    p.add_argument("--recipe", default="default", help="training recipe (python -m unet_rt.train.train --help)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--base", type=int, default=8)
    p.add_argument("--tile", type=int, default=380, help="input tile (380 -> 196 output)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless every run beats Otsu in both F1 and adapted Rand error")
    a, extra = p.parse_known_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| kind | recipe | extra options | steps | minutes | test F1 | test adapted Rand error | Otsu F1 | Otsu adapted Rand error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in a.kinds:
        r = run_kind(kind, out, a.steps, a.recipe, extra, a.base, a.tile, a.threads)
        rows.append(r)
        print(f"| {kind} | {r['recipe']} | {r['extra'] or '-'} | {r['steps']} | {r['minutes']:.1f} | {r['f1']:.3f} | "
              f"{r['rand_error']:.3f} | {r['otsu_f1']:.3f} | {r['otsu_rand_error']:.3f} |", flush=True)
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    losers = [r["kind"] for r in rows if not (r["f1"] > r["otsu_f1"] and r["rand_error"] < r["otsu_rand_error"])]
    if a.check and losers:
        print(f"did not beat Otsu on: {', '.join(losers)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
