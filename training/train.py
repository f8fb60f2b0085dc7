"""Train a U-Net as in Ronneberger et al. (2015): one large tile per step, pixel-wise softmax +
cross-entropy weighted by the border weight map, SGD with momentum 0.99, elastic deformation.

    python -m training.train --data DIR --out runs/isbi --steps 6000          # or: unet-rt train ...
    python -m training.train --out runs/isbi --resume                          # continue a killed run

``DIR`` holds ``image/`` and ``label/`` (PNG or TIFF, single images or stacks, 8/16-bit). The run
directory gets ``checkpoint.safetensors`` + ``checkpoint.json`` (written atomically every
``--ckpt-every`` steps), ``metrics.csv``, ``metrics.png`` and, at the end, ``model.plan`` (the
runtime model file of the checkpoint with the best validation Rand error).
"""
from __future__ import annotations

import argparse
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

from unet_rt import metrics, model_file
from unet_rt.geometry import halo, is_valid_input, output_size

from . import data as D
from .model import UNet, to_model_file

# ---------------------------------------------------------------------------------------------
# arguments


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory with image/ and label/ (required unless --resume)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics, model.plan)")
    p.add_argument("--train-slices", default=None, help="slices to train on, e.g. '0-22' (default: all but --val-slices)")
    p.add_argument("--val-slices", default="", help="slices for validation / checkpoint choice, e.g. '23-24'")
    p.add_argument("--base", type=int, default=32, help="width of the first level (paper: 64)")
    p.add_argument("--depth", type=int, default=4, help="number of max-pools (paper: 4)")
    p.add_argument("--padding", choices=["valid", "same"], default="valid", help="paper: valid")
    p.add_argument("--tile", type=int, default=572, help="input tile size (valid: 572, 588, ...)")
    p.add_argument("--steps", type=int, default=6000,
                   help="SGD steps (one tile each); with --resume: the new total (the cosine schedule follows it)")
    p.add_argument("--lr", type=float, default=0.002,
                   help="peak learning rate (0.01 made this normalisation-free network collapse to one class)")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps, then cosine decay")
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--w0", type=float, default=10.0, help="border weight w0")
    p.add_argument("--sigma", type=float, default=5.0, help="border weight sigma (px)")
    p.add_argument("--elastic", type=float, default=10.0, help="std of the 3x3 grid displacements (px)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.*")
    p.add_argument("--class-names", default="membrane,cell")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after this step with a checkpoint, as if interrupted (continue with --resume)")
    p.add_argument("--no-progress", action="store_true")
    return p


# ---------------------------------------------------------------------------------------------
# checkpoints: safetensors (model + momentum buffers) + JSON (config, step, best), both atomic


def save_checkpoint(out: Path, net, opt, state: dict) -> None:
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, p in enumerate(net.parameters()):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.contiguous()
    model_file.atomic_write(out / "checkpoint.safetensors", st_save(tensors))
    model_file.atomic_write(out / "checkpoint.json", json.dumps(state, indent=1).encode())


def load_checkpoint(out: Path, net, opt) -> dict:
    from safetensors.torch import load_file

    state = json.loads((out / "checkpoint.json").read_text())
    t = load_file(str(out / "checkpoint.safetensors"))
    net.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    for i, p in enumerate(net.parameters()):
        if f"momentum.{i}" in t:
            opt.state[p]["momentum_buffer"] = t[f"momentum.{i}"].clone()
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


def validate(net, val: list[D.Sample], norm: dict, arch: dict) -> dict:
    net.eval()
    rows = []
    for s in val:
        logits = predict_whole(net, D.normalize(s.image, norm), arch["depth"], arch["padding"])
        logp = torch.log_softmax(torch.from_numpy(logits), 0)
        loss = float(-(logp.gather(0, torch.from_numpy(s.classes.astype(np.int64))[None])[0]
                       * torch.from_numpy(s.weights)).mean())
        m = metrics.evaluate(logits.argmax(0), s.classes)
        m["loss"] = loss
        rows.append(m)
    net.train()
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# ---------------------------------------------------------------------------------------------
# plot


def plot_metrics(csv_path: Path, png_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
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
        for key in ("val_pixel_error", "val_rand_error"):
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


CSV_FIELDS = ["step", "loss", "lr", "seconds", "val_loss", "val_pixel_error", "val_rand_error", "val_iou"]


def lr_at(step: int, cfg: dict) -> float:
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    t = (step - cfg["warmup"]) / max(cfg["steps"] - cfg["warmup"], 1)
    return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.resume:
        if not (out / "checkpoint.json").exists():
            sys.exit(f"--resume: no checkpoint in {out}")
        cfg = json.loads((out / "checkpoint.json").read_text())["config"]
        if "--steps" in (argv if argv is not None else sys.argv):  # lengthen or shorten the schedule
            cfg["steps"] = args.steps
    else:
        if args.data is None:
            sys.exit("--data is required (unless --resume)")
        if (out / "checkpoint.json").exists():
            sys.exit(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        cfg = {k: v for k, v in vars(args).items() if k not in ("resume", "out", "no_progress", "stop_at")}
        cfg["data"] = str(Path(args.data).resolve())
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    # ---- data
    n_all = len(D.load_pairs(cfg["data"]))
    val_ids = D.parse_slices(cfg["val_slices"])
    train_ids = D.parse_slices(cfg["train_slices"]) if cfg["train_slices"] else [i for i in range(n_all) if i not in val_ids]
    if set(train_ids) & set(val_ids):
        sys.exit("train and validation slices overlap")
    pairs = D.load_pairs(cfg["data"])
    train = [D.make_sample(*pairs[i], w0=cfg["w0"], sigma=cfg["sigma"]) for i in train_ids]
    val = [D.make_sample(*pairs[i], w0=cfg["w0"], sigma=cfg["sigma"]) for i in val_ids]
    norm = cfg.get("normalization") or D.normalization(train)
    cfg["normalization"] = norm
    arch = dict(in_channels=1 if train[0].image.ndim == 2 else train[0].image.shape[-1], classes=2,
                depth=cfg["depth"], base=cfg["base"], padding=cfg["padding"])
    sampler = D.TileSampler(train, norm, cfg["tile"], cfg["depth"], cfg["padding"], cfg["elastic"])

    # ---- model, optimiser
    torch.manual_seed(cfg["seed"])
    net = UNet(**arch)
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    state = {"config": cfg, "step": 0, "best": None, "elapsed": 0.0}
    if args.resume:
        state = load_checkpoint(out, net, opt)
        state["config"] = cfg
        print(f"resumed {out} at step {state['step']}")
    csv_path = out / "metrics.csv"
    if not csv_path.exists() or not args.resume:
        with open(csv_path, "w", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS).writeheader()
    else:  # drop rows logged after the checkpoint we resume from
        rows = [r for r in csv.DictReader(open(csv_path)) if int(r["step"]) <= state["step"]]
        with open(csv_path, "w", newline="") as f:
            wr = csv.DictWriter(f, CSV_FIELDS); wr.writeheader(); wr.writerows(rows)

    from tqdm import tqdm

    bar = tqdm(total=cfg["steps"], initial=state["step"], disable=args.no_progress, unit="step", dynamic_ncols=True)
    t0, pending = time.time(), []
    net.train()
    while state["step"] < cfg["steps"]:
        step = state["step"]
        rng = np.random.default_rng([cfg["seed"], step])      # per-step stream: repeatable, resumable
        torch.manual_seed(cfg["seed"] * 1_000_003 + step)     # dropout
        x, y, w = sampler(rng)                                 # (C, I, I), (O, O), (O, O)
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = net(torch.from_numpy(x)[None])                # (1, K, O, O)
        ce = F.cross_entropy(logits, torch.from_numpy(y)[None], reduction="none")  # (1, O, O)
        loss = (ce * torch.from_numpy(w)[None]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            sys.exit(f"loss became {loss.item()} at step {step}: lower --lr")
        state["step"] = step + 1
        row = {"step": step + 1, "loss": f"{loss.item():.5f}", "lr": f"{lr:.3g}",
               "seconds": f"{state['elapsed'] + time.time() - t0:.1f}"}
        if val and (state["step"] % cfg["val_every"] == 0 or state["step"] == cfg["steps"]):
            v = validate(net, val, norm, arch)
            row.update(val_loss=f"{v['loss']:.5f}", val_pixel_error=f"{v['pixel_error']:.5f}",
                       val_rand_error=f"{v['adapted_rand_error']:.5f}", val_iou=f"{v['iou']:.5f}")
            if state["best"] is None or v["adapted_rand_error"] < state["best"]["adapted_rand_error"]:
                state["best"] = {"step": state["step"], **v}
                model_file.save(out / "best.plan", to_model_file(net, norm, cfg["class_names"].split(","),
                                                                   _provenance(cfg, state)))
            bar.write(f"step {state['step']}: val loss {v['loss']:.4f} pixel error {v['pixel_error']:.4f} "
                      f"adapted Rand error {v['adapted_rand_error']:.4f}")
        pending.append(row)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2g}")
        bar.update(1)
        if state["step"] % cfg["ckpt_every"] == 0 or state["step"] == cfg["steps"]:
            state["elapsed"] += time.time() - t0
            t0 = time.time()
            save_checkpoint(out, net, opt, state)
            with open(csv_path, "a", newline="") as f:
                csv.DictWriter(f, CSV_FIELDS).writerows(pending)
            pending = []
            plot_metrics(csv_path, out / "metrics.png")
            if args.stop_at is not None and state["step"] >= args.stop_at:
                bar.close()
                print(f"stopped at step {state['step']} (--stop-at); continue with --resume")
                return 0
    bar.close()
    if state["best"] is None:  # no validation slices: the last weights
        model_file.save(out / "model.plan", to_model_file(net, norm, cfg["class_names"].split(","), _provenance(cfg, state)))
    else:
        model_file.atomic_write(out / "model.plan", (out / "best.plan").read_bytes())
    print(f"done: {state['step']} steps in {state['elapsed'] / 60:.1f} min; model: {out / 'model.plan'}"
          + (f" (best validation adapted Rand error {state['best']['adapted_rand_error']:.4f} at step {state['best']['step']})" if state["best"] else ""))
    return 0


def _provenance(cfg: dict, state: dict) -> dict:
    return {"trainer": "unet-rt training.train", "step": state["step"], "data": Path(cfg["data"]).name,
            "train_slices": cfg["train_slices"], "val_slices": cfg["val_slices"], "tile": cfg["tile"],
            "lr": cfg["lr"], "momentum": cfg["momentum"], "seed": cfg["seed"],
            "date": time.strftime("%Y-%m-%d")}


if __name__ == "__main__":
    sys.exit(main())
