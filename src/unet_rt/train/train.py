"""Train a U-Net as in Ronneberger et al. (2015): one large tile per step, pixel-wise softmax +
cross-entropy weighted by the border weight map, elastic deformation.

    python -m unet_rt.train.train --data DIR --out runs/x --steps 3000             # or: unet-rt train ...
    python -m unet_rt.train.train --data DIR --out runs/p --recipe paper           # the paper's recipe
    python -m unet_rt.train.train --out runs/x --resume                             # continue a killed run
    unet-rt train --data DIR --out runs/ft --init model.plan --ignore-label 255     # fine-tune, sparse labels

Two recipes (``--recipe``; any option given explicitly overrides the recipe's value):

* ``default`` - chosen by the ablation in the README to converge on data it was not tuned on:
  BatchNorm after every 3x3 conv (folded into the convs at export, so the model file holds the
  paper's network), Adam, gradient clipping, the weighted loss normalised by the sum of its
  weights, class weights over the training set capped at 10:1, output windows inside the image,
  half of the windows centred on foreground (sparse objects).
* ``paper`` - the paper's: no normalisation, SGD with momentum 0.99, the summed weighted loss,
  class weights over the training set, dropout 0.5 at the end of the contracting path.
* ``finetune`` - the default with ``--init MODEL``: short fine-tuning of a trained model (Adam at a
  tenth of the default's learning rate, 300 steps, 20 warm-up steps, every layer trained; see
  docs/training.md for the small measurement behind it).

Fine-tuning (``--init MODEL``): any unet-rt weights file (the shipped model included; a bioimage.io
package is imported first). The architecture, the input normalisation and the class names come
from the file (``--renormalize`` re-estimates the normalisation on the training images instead;
the log says which). The file holds the paper's network with any BatchNorm already folded into
the convolutions: fine-tuning trains those folded weights as they are, without BatchNorm (``--norm
batch`` is refused). ``--class-names`` that are the file's in another order swap the output
classes; other names are refused.

Sparse annotations (``--ignore-label V``, default off): label pixels equal to V are "not annotated
here". They get zero weight in the loss, count neither as cells nor as background in the border
weight map and the class weights, and are left out of the validation scores, of the checkpoint
choice and of the calibration. ``--partial D``: only some objects are drawn and the rest is left
at 0; a 0 pixel then counts as background only within D pixels of a drawn object (farther ones are
not annotated either). Both can be combined.

Whatever the recipe, a step whose loss or gradient is not finite rolls the run back to its last
checkpoint with half the learning rate instead of ending it (``--max-rollbacks``).

``DIR`` holds ``image/`` and ``label/`` (PNG or TIFF, single images or stacks, 8/16-bit; labels
are binary masks whose connected components are the objects, or instance images whose touching
objects get the paper's one-pixel separating border). The run directory gets
``checkpoint.safetensors`` + ``checkpoint.json`` (written atomically every ``--ckpt-every``
steps), ``metrics.csv``, ``metrics.png``, ``best.plan`` and, at the end, ``model.plan``: the
weights with the best validation score (1 - the best macro F1 over foreground thresholds).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unet_rt.eval import metrics
from unet_rt.format import model_file
from unet_rt.format.geometry import halo, is_valid_input, output_size

from unet_rt.train import data as D
from unet_rt.train.distributed import Dist, check_config, forward_backward
from unet_rt.train.model import UNet, to_model_file

# ---------------------------------------------------------------------------------------------
# arguments


RECIPES = {
    "default": dict(norm="batch", optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=1e-4,
                    loss="normalized", class_weights="dataset", max_class_ratio=10.0, clip=1.0,
                    window="inside", foreground=0.5, dropout=0.0),
    # the paper gives no learning rate; 1.3e-8 on the summed loss of a 388x388 output equals 2e-3
    # on its mean, the highest of 2e-3 / 1e-2 that did not collapse on ISBI
    "paper": dict(norm="none", optimizer="sgd", lr=1.3e-8, momentum=0.99, weight_decay=0.0,
                  loss="sum", class_weights="dataset", max_class_ratio=None, clip=0.0,
                  window="inside", foreground=0.0, dropout=0.5),
    # --init MODEL: a trained network (folded BatchNorm, so norm "none"); docs/training.md
    "finetune": dict(norm="none", optimizer="adam", lr=1e-4, momentum=0.9, weight_decay=1e-4,
                     loss="normalized", class_weights="dataset", max_class_ratio=10.0, clip=1.0,
                     window="inside", foreground=0.5, dropout=0.0, steps=300, warmup=20, freeze="none"),
}
RECIPE_DEFAULTS = dict(steps=3000, warmup=200, freeze="none")   # where a recipe does not set them



def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m unet_rt.train.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory with image/ and label/ (required unless --resume)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics, model.plan)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="set of defaults for the options marked [recipe] (see above; default: finetune "
                        "with --init, else default)")
    p.add_argument("--train-slices", default=None, help="slices to train on, e.g. '0-22' (default: all but --val-slices)")
    p.add_argument("--val-slices", default="", help="slices for validation, checkpoint choice and calibration, e.g. '23-24'")
    p.add_argument("--base", type=int, default=16, help="width of the first level (paper: 64)")
    p.add_argument("--depth", type=int, default=4, help="number of max-pools (paper: 4)")
    p.add_argument("--padding", choices=["valid", "same"], default="valid", help="paper: valid")
    p.add_argument("--tile", type=int, default=572, help="input tile size (valid: 572, 588, ...)")
    r = "[recipe] "
    p.add_argument("--steps", type=int, default=None,
                   help=r + "optimiser steps (one tile each; default 3000, finetune 300); with --resume: the "
                        "new total (the schedule decays from the current learning rate to 0 at the new total)")
    p.add_argument("--norm", choices=["none", "batch"], default=None, help=r + "BatchNorm after each 3x3 conv (folded at export)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None, help=r + "sgd (with --momentum) or adam (AdamW)")
    p.add_argument("--lr", type=float, default=None, help=r + "peak learning rate (warm-up, then cosine decay)")
    p.add_argument("--momentum", type=float, default=None, help=r + "SGD momentum (paper: 0.99)")
    p.add_argument("--weight-decay", type=float, default=None, help=r + "weight decay")
    p.add_argument("--loss", choices=["sum", "mean", "normalized"], default=None,
                   help=r + "reduction of the weighted cross-entropy: sum (paper), mean over pixels, or "
                        "normalized (sum / sum of the weights)")
    p.add_argument("--class-weights", choices=["image", "dataset"], default=None,
                   help=r + "balance class frequencies per image or over the training set")
    p.add_argument("--max-class-ratio", type=float, default=None, help=r + "cap on the class-weight ratio")
    p.add_argument("--clip", type=float, default=None, help=r + "gradient-norm clipping (0: off)")
    p.add_argument("--window", choices=["anywhere", "inside"], default=None,
                   help=r + "output windows anywhere over the image, or inside it")
    p.add_argument("--foreground", type=float, default=None,
                   help=r + "probability of centring a window on a foreground pixel")
    p.add_argument("--dropout", type=float, default=None, help=r + "dropout at the end of the contracting path")
    p.add_argument("--normalize", choices=["dataset", "percentile"], default="dataset",
                   help="input normalisation stored in the model file: (x - mean) / std with the training "
                        "set's statistics in raw units, or per image between its 1st and 99.8th percentiles "
                        "first (robust to another camera's offset or bit depth)")
    p.add_argument("--warmup", type=int, default=None, help=r + "linear warm-up steps, then cosine decay (200; finetune 20)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune: start from this model file (architecture, normalisation and class names "
                        "from it; a bioimage.io package is imported first)")
    p.add_argument("--renormalize", action="store_true",
                   help="with --init: re-estimate the input normalisation on the training images")
    p.add_argument("--freeze", choices=["none", "encoder"], default=None,
                   help=r + "layers kept fixed: none, or the contracting path (encoder)")
    p.add_argument("--ignore-label", type=int, default=None, metavar="V",
                   help="label value of unannotated pixels (sparse annotations, e.g. 255): zero weight in "
                        "the loss, the border weights and the validation scores (default: none)")
    p.add_argument("--partial", type=float, default=None, metavar="D",
                   help="partly drawn labels: only some objects are drawn, the rest is left at 0; a 0 pixel "
                        "is background only within D pixels of a drawn object, farther ones are not "
                        "annotated (like --ignore-label; default: off, every 0 pixel is background)")
    p.add_argument("--w0", type=float, default=10.0, help="border weight w0")
    p.add_argument("--sigma", type=float, default=5.0, help="border weight sigma (px)")
    p.add_argument("--elastic", type=float, default=10.0, help="std of the 3x3 grid displacements (px)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass (CPU speed)")
    p.add_argument("--max-rollbacks", type=int, default=8,
                   help="non-finite losses survived (rollback, half the lr) before giving up")
    p.add_argument("--accumulate", type=int, default=1,
                   help="tiles per optimiser step and process, gradients averaged (torchrun: x the processes)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.*")
    p.add_argument("--class-names", default=None,
                   help="names of class 0 and 1 (default: background,foreground, or the --init model's; "
                        "ISBI: membrane,cell)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after this step with a checkpoint, as if interrupted (continue with --resume)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--progress-lines", action="store_true",
                   help="print 'progress STEP TOTAL' after every step (for front ends such as the napari widget)")
    return p


def resolve_recipe(args: argparse.Namespace) -> dict:
    """The run's configuration: the recipe's values where an option was not given."""
    cfg = {k: v for k, v in vars(args).items() if k not in ("resume", "out", "no_progress", "stop_at", "progress_lines")}
    if cfg.get("recipe") is None:
        cfg["recipe"] = "finetune" if cfg.get("init") else "default"
    for k, v in {**RECIPE_DEFAULTS, **RECIPES[cfg["recipe"]]}.items():
        if cfg.get(k) is None:
            cfg[k] = v
    return cfg


# ---------------------------------------------------------------------------------------------
# checkpoints: safetensors (model + momentum buffers) + JSON (config, step, best), both atomic


def save_checkpoint(out: Path, net, opt, state: dict) -> None:
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, p in enumerate(net.parameters()):  # SGD momentum buffers, Adam moments and step
        for key, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v):
                tensors[f"optim.{i}.{key}"] = v.detach().reshape(v.shape).contiguous()
    model_file.atomic_write(out / "checkpoint.safetensors", st_save(tensors))
    model_file.atomic_write(out / "checkpoint.json", json.dumps(state, indent=1).encode())


def load_checkpoint(out: Path, net, opt) -> dict:
    from safetensors.torch import load_file

    state = json.loads((out / "checkpoint.json").read_text())
    t = load_file(str(out / "checkpoint.safetensors"))
    net.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    for i, p in enumerate(net.parameters()):
        for k, v in t.items():
            if k.startswith(f"optim.{i}."):
                opt.state[p][k[len(f"optim.{i}."):]] = v.clone()
            elif k == f"momentum.{i}":  # checkpoints written before the optimiser choice
                opt.state[p]["momentum_buffer"] = v.clone()
    return state


# ---------------------------------------------------------------------------------------------
# validation: whole-image pass with mirror padding (no tiling needed at 512 x 512)


@torch.no_grad()
def predict_whole(net, image_norm: np.ndarray, depth: int, padding: str) -> np.ndarray:
    """Logits (K, H, W) of one normalised image (C, H, W), mirror-padded to a valid input size."""
    c, h, w = image_norm.shape
    pad = halo(depth, padding)

    def size_for(n):  # smallest valid input whose output covers n pixels
        s = n + 2 * pad
        while not is_valid_input(s, depth, padding) or output_size(s, depth, padding) < n:
            s += 1
        return s

    ih, iw = size_for(h), size_for(w)
    x = np.pad(image_norm, ((0, 0), (pad, ih - h - pad), (pad, iw - w - pad)), mode="reflect")
    y = net(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()
    return y[:, :h, :w]


THRESHOLDS = np.linspace(0.05, 0.95, 19)


def best_f1(prob_fg: list[np.ndarray], classes: list[np.ndarray], known=None) -> tuple[float, float]:
    """(best macro F1 of the two classes over THRESHOLDS on p(foreground), its threshold), pooled
    over the images (over their annotated pixels: ``known`` masks, None = all). Threshold-free, so
    it ranks checkpoints by what a calibrated model will do, and smoother than a Rand error on a
    few slices."""
    known = [None] * len(classes) if known is None else known
    sel = [(p, y) if k is None else (p[k], y[k]) for p, y, k in zip(prob_fg, classes, known)]
    best = (-1.0, 0.5)
    for t in THRESHOLDS:
        tp = fp = fn = tn = 0
        for p, y in sel:
            pr, tr = p > t, y > 0
            tp += np.count_nonzero(pr & tr); fp += np.count_nonzero(pr & ~tr)
            fn += np.count_nonzero(~pr & tr); tn += np.count_nonzero(~pr & ~tr)
        f_fg = 2 * tp / max(2 * tp + fp + fn, 1)
        f_bg = 2 * tn / max(2 * tn + fn + fp, 1)
        best = max(best, ((f_fg + f_bg) / 2, float(t)))
    return best


def evaluate_known(pred: np.ndarray, classes: np.ndarray, known: np.ndarray | None) -> dict:
    """``metrics.evaluate`` over the annotated pixels only (``known``; None: all of them). The
    objects are the connected components of the whole images; the adapted Rand error counts
    only the annotated cells' pixels (unannotated pixels are no true cell)."""
    if known is None:
        return metrics.evaluate(pred, classes)
    fg = 1
    true_inst = metrics.connected_components(np.where(known, classes, 0) == fg)
    pred_inst = metrics.connected_components(pred == fg)
    p, t = pred[known], classes[known]
    return {"wrong_pixel_fraction": metrics.wrong_pixel_fraction(p, t), "iou": metrics.iou(p, t, fg), "dice": metrics.dice(p, t, fg),
            "adapted_rand_error": metrics.adapted_rand_error(true_inst[known], pred_inst[known])}


def validate(net, val: list[D.Sample], norm: dict, arch: dict) -> dict:
    net.eval()
    rows, probs = [], []
    for s in val:
        logits = predict_whole(net, D.normalize(s.image, norm), arch["depth"], arch["padding"])
        logp = torch.log_softmax(torch.from_numpy(logits), 0)
        w = torch.from_numpy(s.weights)
        ce = -logp.gather(0, torch.from_numpy(s.classes.astype(np.int64))[None])[0]
        m = evaluate_known(logits.argmax(0), s.classes, s.known)
        m["loss"] = float((ce * w).sum() / w.sum().clamp_min(1e-12))
        rows.append(m)
        probs.append(logp[1].exp().numpy())
    net.train()
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    f1, t = best_f1(probs, [s.classes for s in val], [s.known for s in val])
    out.update(f1_error=1.0 - f1, threshold=t)
    return out


# ---------------------------------------------------------------------------------------------
# plot


def plot_metrics(csv_path: Path, png_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(open(csv_path)) if r.get("loss")]  # not the rollback events
    if not rows:
        return
    step = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(step, loss, lw=0.5, alpha=0.4, label="train loss (per step)")
    k = min(50, len(loss))
    ax[0].plot(step[k - 1:], np.convolve(loss, np.ones(k) / k, "valid"), label=f"train loss ({k}-step mean)")
    vrows = [r for r in rows if r.get("val_loss")]
    if vrows:
        vs = [int(r["step"]) for r in vrows]
        ax[0].plot(vs, [float(r["val_loss"]) for r in vrows], "o-", label="validation loss")
        for key in ("val_f1_error", "val_pixel_error", "val_rand_error"):
            if all(r.get(key) for r in vrows):
                ax[1].plot(vs, [float(r[key]) for r in vrows], "o-", label=key[4:].replace("_", " "))
    ax[0].set_xlabel("step"); ax[0].set_ylabel("weighted cross-entropy"); ax[0].set_yscale("log"); ax[0].legend()
    ax[1].set_xlabel("step"); ax[1].set_ylabel("error (validation slices)")
    if vrows:
        ax[1].legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)


# ---------------------------------------------------------------------------------------------
# main loop


CSV_FIELDS = ["step", "loss", "lr", "grad_norm", "seconds", "val_loss", "val_pixel_error", "val_rand_error",
              "val_iou", "val_f1_error", "val_threshold", "event"]


def lr_at(step: int, cfg: dict, state: dict | None = None) -> float:
    """Linear warm-up, then cosine decay to 0 at cfg["steps"], times the rollback factor.

    A resumed run whose total changed decays from the learning rate it had reached
    (``state["anchor"]`` = [step, factor, total]) instead of jumping to the new schedule's value.
    """
    state = state or {}
    anchor = state.get("anchor")
    if anchor is not None and step >= anchor[0]:
        s0, f0, total = anchor
        t = (step - s0) / max(total - s0, 1)
        f = f0 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    elif step < cfg["warmup"]:
        f = (step + 1) / cfg["warmup"]
    else:
        t = (step - cfg["warmup"]) / max(cfg["steps"] - cfg["warmup"], 1)
        f = 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return cfg["lr"] * f * state.get("lr_scale", 1.0)


def weighted_loss(logits, y, w, reduction: str):
    """Pixel-wise softmax cross-entropy weighted by w: logits (1, K, O, O), y and w (1, O, O)."""
    ce = F.cross_entropy(logits.float(), y, reduction="none") * w
    if reduction == "sum":
        return ce.sum()
    if reduction == "mean":
        return ce.mean()
    return ce.sum() / w.sum().clamp_min(1e-12)


def make_optimizer(net, cfg: dict):
    if cfg["optimizer"] == "adam":
        return torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def main(argv=None, progress=None) -> int:
    """Train (the command line above). ``progress(step, total)``: called after every step (e.g. by
    the napari widget); returning False stops the run with a checkpoint (continue with --resume)
    and status 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.progress_lines and progress is None:
        def progress(step, total):
            print(f"progress {step} {total}", flush=True)
    out = Path(args.out)
    if args.resume:
        if not (out / "checkpoint.json").exists():
            sys.exit(f"--resume: no checkpoint in {out}")
        cfg = json.loads((out / "checkpoint.json").read_text())["config"]
        old = {**RECIPES["paper"], "loss": "mean", "class_weights": "image", "window": "anywhere",
               "recipe": "paper", "bf16": False, "steps": 3000, "warmup": 200, "freeze": "none",
               "ignore_label": None, "partial": None, "init": None, "class_names": "background,foreground"}
        for k, v in old.items():  # runs written before recipes existed: what the old trainer did
            cfg.setdefault(k, v)
    else:
        if args.data is None:
            sys.exit("--data is required (unless --resume)")
        if (out / "checkpoint.json").exists():
            sys.exit(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        cfg = resolve_recipe(args)
        cfg["data"] = str(Path(args.data).resolve())
        if cfg["ignore_label"] is not None and cfg["ignore_label"] == 0:
            sys.exit("--ignore-label 0: label 0 is the background; choose another value (e.g. 255)")
        if cfg.get("partial") is not None and not cfg["partial"] > 0:
            sys.exit(f"--partial {cfg['partial']}: the distance must be a positive number of pixels")
        init = None
        if cfg.get("init"):
            init = load_init(cfg, argv, out)
        elif args.renormalize:
            sys.exit("--renormalize needs --init (a new model estimates its normalisation anyway)")
        cfg.setdefault("class_names", None)
        cfg["class_names"] = cfg["class_names"] or "background,foreground"
    dist = Dist()  # torchrun: DistributedDataParallel over the processes (src/unet_rt/train/distributed.py)
    check_config(cfg, dist, args.resume)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    # ---- data
    pairs = D.load_pairs(cfg["data"])
    names = [n for n, _, _ in pairs]  # --train-slices / --val-slices: the one rule of unet_rt.io.dataset
    try:
        val_ids = D.slice_indices(names, cfg["val_slices"], cfg["data"]) if cfg["val_slices"] else []
        train_ids = D.slice_indices(names, cfg["train_slices"], cfg["data"]) if cfg["train_slices"] else \
            [i for i in range(len(pairs)) if i not in val_ids]
    except ValueError as e:
        sys.exit(str(e))
    if set(train_ids) & set(val_ids):
        sys.exit("train and validation slices overlap")
    if not train_ids:
        sys.exit("no training slices")
    ign, part = cfg.get("ignore_label"), cfg.get("partial")
    train, cw = D.make_samples([pairs[i] for i in train_ids], cfg["w0"], cfg["sigma"], cfg["class_weights"],
                               cfg["max_class_ratio"], ignore_label=ign, partial=part)
    val = [D.make_sample(*pairs[i], w0=cfg["w0"], sigma=cfg["sigma"], class_weight=cw, ignore_label=ign,
                         partial=part) for i in val_ids]
    if not any(np.count_nonzero(s.weights) for s in train):
        why = [w for w, on in ((f"all are --ignore-label {ign}", ign is not None),
                               (f"--partial {part:g}: no drawn object", part is not None)) if on]
        sys.exit("the training labels have no annotated pixels" + (f" ({' or '.join(why)})" if why else ""))
    norm = cfg.get("normalization") or D.normalization(
        train, [1.0, 99.8] if cfg.get("normalize") == "percentile" else None)
    if not args.resume and cfg.get("init") and cfg.get("renormalize"):
        print(f"--renormalize: input normalisation re-estimated on the training images: "
              f"{ {k: v for k, v in norm.items() if k != 'train_range'} }")
    cfg["normalization"] = norm
    arch = dict(in_channels=1 if train[0].image.ndim == 2 else train[0].image.shape[-1], classes=2,
                depth=cfg["depth"], base=cfg["base"], padding=cfg["padding"])
    if cfg.get("init") and arch["in_channels"] != cfg["init_arch"]["in_channels"]:
        sys.exit(f"--init {cfg['init']}: the model takes {cfg['init_arch']['in_channels']} channel(s), "
                 f"the training images have {arch['in_channels']}")
    if not is_valid_input(cfg["tile"], cfg["depth"], cfg["padding"]):
        ok = [t for t in range(cfg["tile"] - 40, cfg["tile"] + 41) if is_valid_input(t, cfg["depth"], cfg["padding"])]
        sys.exit(f"--tile {cfg['tile']} is not a valid input for depth {cfg['depth']}, {cfg['padding']} padding; "
                 f"valid nearby: {', '.join(map(str, ok[:6]))}")
    sampler = D.TileSampler(train, norm, cfg["tile"], cfg["depth"], cfg["padding"], cfg["elastic"],
                            window=cfg["window"], foreground=cfg["foreground"])

    # ---- model, optimiser
    torch.manual_seed(cfg["seed"])
    net = UNet(**arch, dropout=cfg["dropout"], norm=cfg["norm"])
    if cfg.get("init") and not args.resume:
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in init.items()})
    if cfg.get("freeze") == "encoder":
        for prm in net.enc.parameters():
            prm.requires_grad_(False)
    opt = make_optimizer(net, cfg)
    state = {"config": cfg, "step": 0, "best": None, "elapsed": 0.0, "lr_scale": 1.0, "rollbacks": 0}
    if args.resume:
        state = load_checkpoint(out, net, opt)
        if "--steps" in argv and args.steps != cfg["steps"]:  # a new total: decay from where we are
            state["anchor"] = [state["step"], lr_at(state["step"], cfg, {**state, "lr_scale": 1.0}) / cfg["lr"], args.steps]
            cfg["steps"] = args.steps
        state["config"] = cfg
        print(f"resumed {out} at step {state['step']}")
    model = dist.wrap(net)
    csv_path = out / "metrics.csv"
    if dist.main and (not csv_path.exists() or not args.resume):
        with open(csv_path, "w", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS).writeheader()
    elif dist.main:  # drop rows logged after the checkpoint we resume from
        rows = [r for r in csv.DictReader(open(csv_path)) if int(r["step"]) <= state["step"]]
        with open(csv_path, "w", newline="") as f:
            wr = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore"); wr.writeheader(); wr.writerows(rows)

    from tqdm import tqdm

    # the divergence guard's restore point: the last checkpoint, in memory
    snapshot = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()), copy.deepcopy(state))
    bar = tqdm(total=cfg["steps"], initial=state["step"], disable=args.no_progress or not dist.main, unit="step", dynamic_ncols=True)
    t0, pending = time.time(), []
    net.train()
    while state["step"] < cfg["steps"]:
        step = state["step"]
        lr = lr_at(step, cfg, state)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        # per-step (and per-tile) random streams: repeatable, resumable; the step's mean loss
        loss = forward_backward(model, sampler, weighted_loss, cfg, step, dist)
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip"] if cfg["clip"] > 0 else float("inf"))
        if not (math.isfinite(loss) and math.isfinite(float(gnorm))):
            # ---- divergence guard: back to the last checkpoint, half the learning rate
            if state["rollbacks"] >= args.max_rollbacks:
                bar.close()
                sys.exit(f"loss {loss} at step {step} after {state['rollbacks']} rollbacks: "
                         f"lower --lr (now {lr:.3g}) or check the data")
            net.load_state_dict(snapshot[0]); opt.load_state_dict(snapshot[1])
            rollbacks, scale = state["rollbacks"] + 1, state["lr_scale"] * 0.5
            state = copy.deepcopy(snapshot[2])
            state.update(rollbacks=rollbacks, lr_scale=scale)
            # every pending row came after the snapshot: they are undone, the event is logged
            pending = [{"step": state["step"], "event": f"rollback: non-finite loss at step {step + 1}, lr x{scale:g}"}]
            bar.write(f"step {step + 1}: non-finite loss/gradient; rolled back to step {state['step']}, "
                      f"learning rate x{scale:g}")
            bar.n = state["step"]; bar.refresh()
            continue
        opt.step()
        state["step"] = step + 1
        row = {"step": step + 1, "loss": f"{loss:.5f}", "lr": f"{lr:.3g}", "grad_norm": f"{float(gnorm):.4g}",
               "seconds": f"{state['elapsed'] + time.time() - t0:.1f}"}
        if val and dist.main and (state["step"] % cfg["val_every"] == 0 or state["step"] == cfg["steps"]):
            v = validate(net, val, norm, arch)
            row.update(val_loss=f"{v['loss']:.5f}", val_pixel_error=f"{v['wrong_pixel_fraction']:.5f}",
                       val_rand_error=f"{v['adapted_rand_error']:.5f}", val_iou=f"{v['iou']:.5f}",
                       val_f1_error=f"{v['f1_error']:.5f}", val_threshold=f"{v['threshold']:.2f}")
            if state["best"] is None or v["f1_error"] < state["best"]["f1_error"]:
                state["best"] = {"step": state["step"], **v}
                net.eval()
                model_file.save(out / "best.plan", to_model_file(net, norm, cfg["class_names"].split(","),
                                                                   _provenance(cfg, state)))
                net.train()
            bar.write(f"step {state['step']}: val loss {v['loss']:.4f}, F1 error {v['f1_error']:.4f} "
                      f"(threshold {v['threshold']:.2f}), argmax wrong-pixel fraction {v['wrong_pixel_fraction']:.4f}")
        pending.append(row)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2g}")
        bar.update(1)
        cancelled = progress is not None and progress(state["step"], cfg["steps"]) is False
        if cancelled or state["step"] % cfg["ckpt_every"] == 0 or state["step"] == cfg["steps"]:
            state["elapsed"] += time.time() - t0
            t0 = time.time()
            snapshot = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()), copy.deepcopy(state))
            if dist.main:  # rank 0 writes the one checkpoint
                save_checkpoint(out, net, opt, state)
                with open(csv_path, "a", newline="") as f:
                    csv.DictWriter(f, CSV_FIELDS).writerows(pending)
                plot_metrics(csv_path, out / "metrics.png")
            pending = []
            if cancelled:
                bar.close()
                dist.close()
                print(f"stopped at step {state['step']} (cancelled); continue with --resume")
                return 130
            if args.stop_at is not None and state["step"] >= args.stop_at:
                bar.close()
                dist.close()
                print(f"stopped at step {state['step']} (--stop-at); continue with --resume")
                return 0
    bar.close()
    dist.close()
    if not dist.main:
        return 0
    net.eval()
    if state["best"] is None:  # no validation slices: the last weights
        model_file.save(out / "model.plan", to_model_file(net, norm, cfg["class_names"].split(","), _provenance(cfg, state)))
    else:
        model_file.atomic_write(out / "model.plan", (out / "best.plan").read_bytes())
        _calibrate(out / "model.plan", [pairs[i] for i in val_ids], ign, part)
    print(f"done: {state['step']} steps in {state['elapsed'] / 60:.1f} min; model: {out / 'model.plan'}"
          + (f" (best validation F1 error {state['best']['f1_error']:.4f} at step {state['best']['step']})" if state["best"] else ""))
    return 0


def _calibrate(model_path: Path, val_pairs, ignore_label: int | None = None, partial: float | None = None) -> None:
    """Choose the model's decision (threshold, instance parameters) on the validation slices and
    store it in the model file (``unet_rt.eval.calibrate``, docs/decision.md); on their annotated
    pixels only (``ignore_label``, ``partial``)."""
    try:
        from unet_rt.eval.calibrate import calibrate, write_decision
        ik = [D.instances_known(lb, ignore_label, partial) for _, _, lb in val_pairs]
        rec = {"slices": "validation", "names": [n for n, _, _ in val_pairs]}
        if any(k is not None for _, k in ik):
            rec.update({k: v for k, v in (("ignore_label", ignore_label), ("partial", partial)) if v is not None})
        d = calibrate(model_path, [im for _, im, _ in val_pairs], [i for i, _ in ik], known=[k for _, k in ik],
                      progress=False, record=rec)
    except ImportError as e:  # e.g. run from the source tree, where unet_rt._core is not built
        print(f"warning: {model_path} is not calibrated ({e}); calibrate it with "
              f"`unet-rt calibrate {model_path} --data DIR --slices ...`", file=sys.stderr)
        return
    write_decision(model_path, d)
    inst = d.get("instances", {})
    print(f"calibrated on the validation slices: threshold {d.get('threshold')}, instances {inst}")


def _provenance(cfg: dict, state: dict) -> dict:
    p = {"trainer": "unet-rt unet_rt.train.train", "recipe": cfg.get("recipe", "paper"), "norm": cfg.get("norm", "none"),
         "optimizer": cfg.get("optimizer", "sgd"), "step": state["step"], "data": Path(cfg["data"]).name,
         "train_slices": cfg["train_slices"], "val_slices": cfg["val_slices"], "tile": cfg["tile"],
         "lr": cfg["lr"], "momentum": cfg["momentum"], "seed": cfg["seed"],
         "date": time.strftime("%Y-%m-%d")}
    if cfg.get("init"):
        p["init"] = Path(cfg["init"]).name
    for k in ("ignore_label", "partial"):
        if cfg.get(k) is not None:
            p[k] = cfg[k]
    return p


# ---------------------------------------------------------------------------------------------
# fine-tuning: --init MODEL


def _given(argv, *flags) -> bool:
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def map_classes(file_names: list, wanted: list, fg_class: int = 1) -> list[int]:
    """The file's output class for each of the trainer's classes (0 background, 1 cells).

    ``wanted``: the class names asked for (None: the file's, with its foreground class made
    class 1). The same names in another order are a permutation; other names are refused."""
    file_names = [str(n) for n in file_names]
    if len(file_names) != 2:
        raise ValueError(f"the model has {len(file_names)} classes {file_names}; fine-tuning trains 2 "
                         f"(background, cells)")
    if wanted is None:
        return [1 - fg_class, fg_class]
    if sorted(wanted) != sorted(file_names) or len(set(wanted)) != len(wanted):
        raise ValueError(f"--class-names {','.join(wanted)} differ from the model's classes "
                         f"{','.join(file_names)}: pass the model's names (in the order of your labels: "
                         f"background first) or train from scratch")
    return [file_names.index(n) for n in wanted]


def load_init(cfg: dict, argv: list, out: Path) -> dict:
    """Read ``cfg["init"]`` into cfg (architecture, normalisation, class names, norm) and return
    the weights to start from, their output classes mapped (``map_classes``). Exits with a
    message on a file or option that does not fit."""
    from unet_rt.train.model import load_model_file

    path = Path(cfg["init"])
    if not path.exists():
        sys.exit(f"--init {path}: no such file")
    if path.suffix.lower() == ".zip" or path.name.endswith(".yaml"):  # a bioimage.io package
        try:
            from unet_rt.export.bioimageio import import_package
            out.mkdir(parents=True, exist_ok=True)
            path = import_package(path, out / "init.plan")
        except ImportError as e:
            sys.exit(f"--init {cfg['init']}: importing a bioimage.io package needs the bioimageio extra ({e})")
        except ValueError as e:
            sys.exit(f"--init {cfg['init']}: {e}")
    try:
        net, mf = load_model_file(path)
    except (ValueError, OSError) as e:
        sys.exit(f"--init {path}: {e}")
    a = mf.arch
    for k in ("base", "depth", "padding"):
        if _given(argv, f"--{k}") and cfg[k] != a[k]:
            sys.exit(f"--{k} {cfg[k]} differs from the --init model's {a[k]}: the architecture comes from the file")
        cfg[k] = a[k]
    if cfg["norm"] == "batch":
        sys.exit("--norm batch with --init: the model file holds weights with any BatchNorm folded into the "
                 "convolutions (no statistics to continue from); fine-tuning trains them without BatchNorm")
    cfg["norm"] = "none"
    wanted = cfg["class_names"].split(",") if cfg.get("class_names") else None
    try:
        order = map_classes(mf.class_names, wanted, int(mf.decision.get("foreground_class", 1)))
    except ValueError as e:
        sys.exit(f"--init {path}: {e}")
    names = [str(mf.class_names[i]) for i in order]
    cfg["class_names"] = ",".join(names)
    cfg["init_arch"] = dict(a)
    if not cfg.get("renormalize"):
        cfg["normalization"] = dict(mf.normalization)
    tensors = dict(mf.tensors)
    tensors["head.weight"] = tensors["head.weight"][order]
    tensors["head.bias"] = tensors["head.bias"][order]
    print(f"fine-tuning {path}: architecture {a} from the file; normalisation "
          f"{'re-estimated on the training images (--renormalize)' if cfg.get('renormalize') else 'from the file'}; "
          f"BatchNorm: the file's folded weights are trained as they are, without BatchNorm; classes "
          f"{names}" + ("" if order == [0, 1] else f" (the file's classes {order}, reordered)"))
    return tensors


if __name__ == "__main__":
    sys.exit(main())
