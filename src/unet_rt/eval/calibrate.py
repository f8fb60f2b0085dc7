"""Calibrate a model's decision on validation data and store it in the model file.

A loss weighted toward the boundary class shifts the probability at which argmax flips, so the
decision is a property of the trained model (docs/decision.md): the foreground threshold that
minimises the fraction of wrong pixels, and the instance parameters (foreground mask and marker thresholds,
minimum marker and object sizes) that minimise the adapted Rand error of ``Engine.instances``
(objects within the segmentation's foreground),
chosen by a small grid search on validation images only (one cached probability map per image),
then written into the model file's ``decision`` metadata (``unet_rt.format.model_file``)::

    from unet_rt.eval.calibrate import calibrate, write_decision
    decision = calibrate("model.plan", images, labels)   # validation images and labels
    write_decision("model.plan", decision)               # atomic, in place (or output=...)

Labels follow the trainer's conventions (``src/unet_rt/train/data.py``): a binary mask whose connected
components (4-connected) are the cells, or an instance image (0 = background, 1..n cells); either
way class 1 (the model's foreground class) = label > 0. Numpy only (no torch, no scipy).
"""
from __future__ import annotations

import datetime
import itertools
import json

import numpy as np

from unet_rt.eval.classmap import adapted_rand_error
from unet_rt.eval.labels import instances_of
from unet_rt.format import model_file

__all__ = ["calibrate", "write_decision", "calibrate_file", "DEFAULT_GRID"]

# The search space. Thresholds are on p(foreground). "marker_threshold": None means no marker
# threshold (markers = the mask: instances are its connected components).
DEFAULT_GRID = {
    "threshold": [round(t, 3) for t in np.arange(0.02, 0.981, 0.02)],
    "threshold_refine": 0.005,  # second pass: steps of this size around the best coarse value
    "mask_threshold": [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # dense=False: those above the threshold
    "marker_threshold": [None, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99],
    "min_marker_size": [1, 5, 10, 25, 50, 100],
    "min_size": [0, 10, 25, 50, 100],
    "refine": 0.05,  # last pass: mask and marker thresholds +- this around the best
}
_START_SIZES = {"min_marker_size": 10, "min_size": 0}


def _targets(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground mask, instances) of a binary mask or an instance label image."""
    inst = instances_of(label)
    return np.asarray(label) > 0, inst


def _decision(fg_class: int, threshold, inst: dict | None = None) -> dict:
    d = {"foreground_class": fg_class, "threshold": threshold}
    if inst:
        d["instances"] = {k: v for k, v in inst.items() if v is not None}
    return d


def calibrate(model, images, labels, *, grid: dict | None = None, tta: bool = False, dense: bool = False,
              progress: bool = True, record: dict | None = None, known=None, **engine_kwargs) -> dict:
    """Choose a model's decision on validation images; returns the ``decision`` metadata dict.

    Parameters
    ----------
    model : model file path (or an ``unet_rt.Engine``).
    images, labels : validation images (as ``Engine.predict`` takes them) and their labels (binary
        masks or instance images, see the module doc). Never the test images.
    grid : overrides of ``DEFAULT_GRID`` entries.
    tta : calibrate on test-time-augmented probabilities (then use ``tta=True`` at inference too).
    dense : let the objects extend beyond the segmentation's foreground (mask thresholds below the
        threshold): a partition of the tissue for densely packed cells (EM). The adapted Rand error
        ignores true background, so it never penalises objects that bloat into it: keep the default
        (objects within the segmentation) for sparse objects (bacteria, nuclei).
    record : extra entries for the decision's ``calibration`` record (e.g. the data and slices).
    known : per image, the mask of its annotated pixels (sparse annotations; None: all). The
        pixel errors count only those; the unannotated pixels must have label 0 (no true object,
        so the adapted Rand error, which ignores true label 0, leaves them out too).

    The threshold minimises the mean pixel error (foreground vs the rest); the instance parameters
    minimise the mean adapted Rand error (``unet_rt.eval.classmap.adapted_rand_error``) of the watershed
    instances, searched by stages: mask x marker thresholds at moderate sizes, then the sizes, then
    the thresholds again +- ``refine``. Ties keep the earlier candidate.
    """
    from tqdm import tqdm

    from unet_rt import _core
    from unet_rt.engine import Engine

    g = dict(DEFAULT_GRID, **(grid or {}))
    eng = model if isinstance(model, Engine) else Engine(model, **engine_kwargs)
    images, labels = list(images), list(labels)
    if not images or len(images) != len(labels):
        raise ValueError(f"need the same non-zero number of images and labels, got {len(images)} and {len(labels)}")
    if eng.classes < 2:
        raise ValueError("calibration needs a model with at least 2 classes")
    fg_class = int(eng.decision.get("foreground_class", 1))
    known = [None] * len(images) if known is None else list(known)
    if len(known) != len(images):
        raise ValueError(f"need one known mask (or None) per image, got {len(known)} for {len(images)} images")
    probs, targets = [], []
    for img, lab in zip(tqdm(images, desc="calibrate: predict", unit="img", disable=not progress), labels):
        p = eng.predict(img, tta=tta)
        if p.ndim != 3:
            raise ValueError(f"calibration takes single images (H x W [x C]), got a stack of shape {np.shape(img)}")
        fg, inst = _targets(lab)
        if fg.shape != p.shape[1:]:
            raise ValueError(f"image {p.shape[1:]} and label {fg.shape} differ in size")
        probs.append(np.ascontiguousarray(p, np.float32))
        targets.append((fg, inst))
    sel = [np.ones(fg.shape, bool) if k is None else np.asarray(k, bool) for k, (fg, _) in zip(known, targets)]
    if any(np.any(fg[~k]) for k, (fg, _) in zip(sel, targets)):
        raise ValueError("unannotated pixels (outside known) must have label 0")

    def wrong_pixels(t) -> float:
        dj = json.dumps(_decision(fg_class, t))
        return float(np.mean([np.mean(((_core.decide_labels(p, dj) == fg_class) != fg)[k])
                              for p, (fg, _), k in zip(probs, targets, sel)]))

    def rand(inst: dict) -> float:
        dj = json.dumps(_decision(fg_class, best_t, inst))
        return float(np.mean([adapted_rand_error(ti, _core.instances(p, dj)) for p, (_, ti) in zip(probs, targets)]))

    def argmin(cands, f, desc):
        best, best_v = None, np.inf
        for c in tqdm(cands, desc=desc, leave=False, disable=not progress):
            v = f(c)
            if v < best_v:
                best, best_v = c, v
        return best, best_v

    # ---- foreground threshold: coarse grid, then a fine one around the best ----
    best_t, _ = argmin(g["threshold"], wrong_pixels, "calibrate: threshold")
    step = g["threshold_refine"]
    if step:
        fine = [round(best_t + k * step, 4) for k in range(-4, 5) if 0 < best_t + k * step < 1]
        best_t, _ = argmin(fine, wrong_pixels, "calibrate: threshold (fine)")
    px_err, px_argmax = wrong_pixels(best_t), float(np.mean([np.mean(((p.argmax(0) == fg_class) != fg)[k])
                                                           for p, (fg, _), k in zip(probs, targets, sel)]))

    # ---- instance parameters, by stages. Unless dense, the objects lie within the segmentation's
    # foreground (mask None = the segmentation, or a higher mask threshold). ----
    def pairs(masks, markers):
        return [{"mask_threshold": a, "marker_threshold": b} for a, b in itertools.product(masks, markers)
                if (a is None or dense or a > best_t) and (b is None or b > (best_t if a is None else a))]

    inst, _ = argmin([dict(c, **_START_SIZES) for c in pairs([None] + g["mask_threshold"], g["marker_threshold"])],
                     rand, "calibrate: mask x marker")
    inst, _ = argmin([dict(inst, min_marker_size=a, min_size=b)
                      for a, b in itertools.product(g["min_marker_size"], g["min_size"])], rand, "calibrate: sizes")
    r = g["refine"]
    if r:
        def around(x):
            return [None] if x is None else sorted({min(max(round(x + k * r, 4), 0.005), 0.995) for k in (-1, 0, 1)})

        masks = around(inst["mask_threshold"]) + ([None] if inst["mask_threshold"] is not None else [])

        cands = [dict(inst, **c) for c in pairs(masks, around(inst["marker_threshold"]))]
        inst, _ = argmin(cands, rand, "calibrate: refine")
    rand_best = rand(inst)
    rand_cc = rand({})  # connected components of the segmentation at the calibrated threshold
    rec = {"wrong_pixel_fraction": round(px_err, 6), "wrong_pixel_fraction_argmax": round(px_argmax, 6),
           "rand_error": round(rand_best, 6), "rand_error_connected_components": round(rand_cc, 6),
           "images": len(probs), "tta": bool(tta), "dense": bool(dense), "date": datetime.date.today().isoformat(),
           "method": "grid search on validation images (unet_rt.eval.calibrate)"}
    rec.update(record or {})
    d = _decision(fg_class, best_t, inst)
    d["calibration"] = rec
    return d


def write_decision(model_path, decision: dict, output=None) -> None:
    """Store ``decision`` in a model file (validated), atomically: in place, or as ``output``."""
    mf = model_file.load(model_path)
    if mf.kind == "tensorrt-bare":
        raise model_file.ModelFileError(f"{model_path}: a bare TensorRT plan has no metadata to hold a decision")
    mf.decision = dict(decision)
    model_file.save(output or model_path, mf)  # validates the decision


def calibrate_file(model_path, data, slices: str | None = None, output=None, write: bool = True, **kw) -> dict:
    """``calibrate`` on ``data``/image + label (``slices``: :mod:`unet_rt.io.dataset`'s rule), then
    ``write_decision`` (unless not ``write``)."""
    from unet_rt.io.dataset import load_pairs

    pairs = load_pairs(data, slices)
    rec = {"data": str(data), "slices": slices or "all", "names": [n for n, _, _ in pairs]}
    d = calibrate(model_path, [im for _, im, _ in pairs], [lb for _, _, lb in pairs], record=rec, **kw)
    if write:
        write_decision(model_path, d, output)
    return d
