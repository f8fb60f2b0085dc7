"""Fine-tuning vs training from scratch, with few and partly annotated images (issue 19's numbers).

    python -m unet_rt.train.finetune_ablation --out runs/ft-ablation                 # the full grid (hours)
    python -m unet_rt.train.finetune_ablation --out runs/ft-quick --kinds nuclei --images 2 \\
        --fractions 1.0 --minutes 1 --conditions shipped,finetune                     # a 1-minute check
    make finetune-ablation                                                            # the full grid

For every kind (``--kinds``: the synthetic sets of ``unet_rt.train.synthetic``, images 8-11 the test
images; ``isbi``: ``--isbi-data``, training slices 0..N-1, test slices 25-29 as in the project's
split), every number of training images (``--images``, the first N) and every fraction of annotated
objects (``--fractions``: a random subset of each image's objects keeps its label, the others are
``--unannotated ignore``: marked with the ignore label, or ``zero``: left at 0 as a user who draws
only some objects leaves them, which the trainer's ``--partial D``, passed through, can then
ignore away from the drawn ones; background stays annotated), each condition:

* ``shipped``  - the shipped model as it is (no training; the floor fine-tuning starts from);
* ``finetune`` - ``unet-rt train --init`` the shipped model (recipe ``finetune``) for ``--minutes``;
* ``scratch``  - ``unet-rt train`` from random weights (recipe ``default``) for ``--scratch-minutes``.

Runs stop on wall time (the trainer's progress callback), not on a step count, so conditions compare
at equal (or the stated) time; the last weights are exported and scored through ``unet_rt.Engine``
on the test images: foreground F1 (Dice) and the adapted Rand error of the connected components.
One table row per run, ``OUT/finetune-ablation.json`` with every number and the minutes each took.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from unet_rt.train import synthetic

TEST = {"synthetic": range(8, 12), "isbi": range(25, 30)}
IGNORE = 65535
ISBI_DATA = Path("data/isbi2012")


def example(kind: str, i: int, isbi: Path = ISBI_DATA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label image, instances) of example i: a synthetic image and its instance labels, or
    ISBI slice i, its binary mask (255 = cell) and the mask's connected components."""
    from unet_rt.eval.labels import instances_of
    from unet_rt.io.images import read_image

    if kind == "isbi":
        lab = read_image(isbi / "label" / f"{i}.png")
        return read_image(isbi / "image" / f"{i}.png"), lab, instances_of(lab)
    img, inst = synthetic.make(kind, (256, 256), i)
    return img, inst.astype(np.uint16), inst


def write_partial(kind: str, root: Path, n_images: int, fraction: float, seed: int = 0,
                  unannotated: str = "ignore", isbi: Path = ISBI_DATA) -> Path:
    """root/image, root/label: training images 0..n-1 with ``fraction`` of their objects labelled,
    the others IGNORE (``unannotated="ignore"``) or 0 (``"zero"``); plus the test images fully
    labelled under root/test."""
    from unet_rt.io.images import write_image

    if unannotated not in ("ignore", "zero"):
        raise ValueError(f"unannotated must be 'ignore' or 'zero', got {unannotated!r}")
    rng = np.random.default_rng([seed, int(fraction * 1000), n_images])
    for i in range(n_images):
        img, lab, inst = example(kind, i, isbi)
        lab = lab.astype(np.uint16)
        ids = np.unique(inst[inst > 0])
        keep = rng.permutation(ids)[:max(1, int(round(fraction * ids.size)))] if ids.size else ids
        lab[(inst > 0) & ~np.isin(inst, keep)] = IGNORE if unannotated == "ignore" else 0
        write_image(root / "image" / f"{i}.tif", img)
        write_image(root / "label" / f"{i}.tif", lab)
    for i in TEST["isbi" if kind == "isbi" else "synthetic"]:
        img, lab, _ = example(kind, i, isbi)
        write_image(root / "test" / "image" / f"{i}.tif", img)
        write_image(root / "test" / "label" / f"{i}.tif", lab)
    return root


def score(model: Path, root: Path, threads: int) -> dict:
    from unet_rt import Engine
    from unet_rt.eval import metrics
    from unet_rt.eval.labels import instances_of
    from unet_rt.io.images import read_image

    eng = Engine(model, threads=threads or None)
    f1, rand = [], []
    for name in sorted((root / "test" / "image").iterdir()):
        img, inst = read_image(name), instances_of(read_image(root / "test" / "label" / name.name))
        fg = eng.segment(img) == int(eng.decision.get("foreground_class", 1))
        f1.append(metrics.dice(fg.astype(np.uint8), (inst > 0).astype(np.uint8)))
        rand.append(metrics.adapted_rand_error(inst, metrics.connected_components(fg)))
    return {"f1": float(np.mean(f1)), "rand_error": float(np.mean(rand))}


def train_for(data: Path, run: Path, minutes: float, extra: list[str], threads: int) -> tuple[Path, int]:
    """Train until ``minutes`` of wall time have passed (or the recipe's steps are done); the last
    weights as ``run/last.plan``; returns (model, steps)."""
    from unet_rt.train import train
    from unet_rt.train.export import export_run

    t0 = time.time()
    done = {"step": 0}

    def progress(step, total):
        done["step"] = step
        return time.time() - t0 < minutes * 60

    rc = train.main(["--data", str(data), "--out", str(run), "--val-slices", "", "--ignore-label", str(IGNORE),
                     "--threads", str(threads), "--no-progress", "--ckpt-every", "1000000", *extra], progress=progress)
    if rc not in (0, 130):
        raise SystemExit(f"training {run} failed with status {rc}")
    return export_run(run, run / "last.plan", last=True), done["step"]


def main(argv=None) -> int:
    from unet_rt.napari.plugin import SHIPPED_MODEL

    p = argparse.ArgumentParser(prog="python -m unet_rt.train.finetune_ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--kinds", nargs="+", choices=[*synthetic.KINDS, "isbi"], default=list(synthetic.KINDS))
    p.add_argument("--isbi-data", default=str(ISBI_DATA), help="the ISBI 2012 folder (image/, label/) for --kinds isbi")
    p.add_argument("--unannotated", choices=["ignore", "zero"], default="ignore",
                   help="the objects left out of the annotation: marked with the ignore label, or left at 0 "
                        "(then pass --partial D to the trainer to ignore pixels far from drawn objects)")
    p.add_argument("--images", nargs="+", type=int, default=[1, 2, 5])
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.3, 1.0])
    p.add_argument("--conditions", default="shipped,finetune,scratch")
    p.add_argument("--minutes", type=float, default=5.0, help="wall time of a fine-tuning run")
    p.add_argument("--scratch-minutes", type=float, default=30.0, help="wall time of a run from scratch")
    p.add_argument("--init", default=str(SHIPPED_MODEL), help="the model fine-tuning starts from")
    p.add_argument("--tile", type=int, default=380)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the annotated subset of objects and of every training run (--seed of the trainer)")
    p.add_argument("--renormalize", action="store_true",
                   help="fine-tuning re-estimates the input normalisation on the training images (for data "
                        "whose intensities differ from the model's, e.g. the 16-bit synthetic sets)")
    a, extra = p.parse_known_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    conds = a.conditions.split(",")
    ft_extra = ["--renormalize"] if a.renormalize else []  # fine-tuning runs only (scratch refuses it)
    rows = []
    tag = "-".join([a.unannotated, f"s{a.seed}", *(x.lstrip("-") for x in extra)])  # run folders differ by their options
    seed = ["--seed", str(a.seed)]
    print("| kind | images | annotated | unannotated | seed | condition | extra | steps | minutes | test F1 | test adapted Rand |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in a.kinds:
        for n in a.images:
            for frac in a.fractions:
                data = write_partial(kind, out / f"data-{kind}-{n}-{frac:g}-{a.unannotated}-s{a.seed}", n, frac,
                                     a.seed, a.unannotated, Path(a.isbi_data))
                for c in conds:
                    t0 = time.time()
                    steps = 0
                    if c == "shipped":
                        model = Path(a.init)
                    elif c == "finetune":
                        model, steps = train_for(data, out / f"run-{kind}-{n}-{frac:g}-{tag}-finetune", a.minutes,
                                                 ["--init", a.init, "--tile", str(a.tile), "--steps", "100000",
                                                  *seed, *ft_extra, *extra], a.threads)
                    elif c == "scratch":
                        model, steps = train_for(data, out / f"run-{kind}-{n}-{frac:g}-{tag}-scratch", a.scratch_minutes,
                                                 ["--base", "16", "--tile", str(a.tile), "--steps", "100000",
                                                  "--warmup", "50", *seed, *extra], a.threads)
                    else:
                        raise SystemExit(f"unknown condition {c!r}")
                    args = (ft_extra if c == "finetune" else []) + extra
                    r = {"kind": kind, "images": n, "annotated": frac, "unannotated": a.unannotated, "seed": a.seed,
                         "condition": c, "extra": " ".join(args),
                         "steps": steps, "minutes": round((time.time() - t0) / 60, 2), **score(model, data, a.threads)}
                    rows.append(r)
                    print(f"| {kind} | {n} | {frac:g} | {a.unannotated} | {a.seed} | {c} | {r['extra'] or '-'} | {steps} | "
                          f"{r['minutes']:.1f} | {r['f1']:.3f} | {r['rand_error']:.3f} |", flush=True)
                    (out / "finetune-ablation.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
