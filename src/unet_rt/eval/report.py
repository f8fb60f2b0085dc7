"""What ``unet-rt evaluate`` computes and prints: the challenge's scores of the probability maps
(:mod:`unet_rt.eval.challenge`) and the decision's per-image metrics (:mod:`unet_rt.eval.classmap`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from unet_rt.eval.challenge import WARPING_THRESHOLDS, challenge_scores
from unet_rt.eval.classmap import adapted_rand_error, evaluate
from unet_rt.eval.labels import instances_of


__all__ = ["evaluate_stack", "format_report"]


def evaluate_stack(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                   decisions: Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
                   warping: bool = True, progress: Callable[[int, int], None] | None = None,
                   instances: Sequence[np.ndarray] | None = None) -> dict:
    """Everything ``unet-rt evaluate`` reports, for a stack of images.

    ``probabilities``: p(cell) per image; ``truths``: label images (> 0 = cell); ``decisions``: the
    class maps actually returned to a user (e.g. ``Engine.segment``; 1 = cell), default p > 0.5.
    Returns ``{"challenge": challenge_scores(...), "decision": {"mean": {...}, "images": [...]},
    "names": [...]}``, where the decision metrics are those of ``evaluate`` (the fraction of wrong
    pixels, adapted Rand error, IoU, Dice). ``warping=False`` skips the warping
    error (the costly part). ``instances``: the user's instance label images (``Engine.instances``);
    then the decision's adapted Rand error is theirs (against the true cells), not that of the
    class map's connected components (reported "instances": true).
    """
    probabilities, truths = list(probabilities), list(truths)
    if decisions is None:
        decisions = [(np.asarray(p) > 0.5).astype(np.uint8) for p in probabilities]
    decisions = list(decisions)
    if len(decisions) != len(truths):
        raise ValueError(f"need one decision per truth, got {len(decisions)} and {len(truths)}")
    names = list(names) if names is not None else [str(i) for i in range(len(truths))]
    challenge = challenge_scores(probabilities, truths,
                                 warping_thresholds=WARPING_THRESHOLDS if warping else None, progress=progress)
    rows = [evaluate(np.asarray(d), (np.asarray(t) > 0).astype(np.uint8)) for d, t in zip(decisions, truths)]
    if instances is not None:
        for r, t, inst in zip(rows, truths, instances):
            r["adapted_rand_error"] = adapted_rand_error(instances_of(t), np.asarray(inst))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {"names": names, "challenge": challenge, "decision": {"mean": mean, "images": rows},
            "instances": instances is not None}


def format_report(report: dict, per_image: bool = False) -> list[str]:
    """The lines ``unet-rt evaluate`` prints for an ``evaluate_stack`` report."""
    c, d = report["challenge"], report["decision"]
    lines = [f"{c['protocol']}; {c['n_images']} images:",
             f"  V_rand (thinned)          {c['v_rand']:.4f}  (split {c['v_rand_split']:.4f}, merge "
             f"{c['v_rand_merge']:.4f}; t = {c['v_rand_threshold']:.1f})",
             f"  V_info (thinned)          {c['v_info']:.4f}  (split {c['v_info_split']:.4f}, merge "
             f"{c['v_info_merge']:.4f}; t = {c['v_info_threshold']:.1f})",
             f"  Rand error                {c['rand_error']:.4f}  (1 - max foreground-restricted Rand F-score, "
             f"no thinning; t = {c['rand_error_threshold']:.1f})",
             f"  pixel error               {c['pixel_error']:.4f}  (1 - max pixel F-score; "
             f"t = {c['pixel_error_threshold']:.1f})"]
    if "warping_error" in c:
        lines.append(f"  warping error             {c['warping_error']:.6f}  ({c['warping_splits']} split + "
                     f"{c['warping_mergers']} merger pixels; t = {c['warping_error_threshold']:.1f})")
    m = d["mean"]
    lines += ["At the decision (the class map a user gets), mean over images:",
              f"  wrong pixels {m['wrong_pixel_fraction']:.4f} (fraction of pixels)  adapted Rand error "
              f"{m['adapted_rand_error']:.4f}{' (of Engine.instances)' if report.get('instances') else ''}  IoU {m['iou']:.4f}  Dice {m['dice']:.4f}"]
    if per_image:
        lines.append("Per image (challenge scores at the stack's thresholds; decision metrics):")
        for name, ci, di in zip(report["names"], c["images"], d["images"]):
            warp_txt = f"  warping {ci['warping_error']:.6f}" if "warping_error" in ci else ""
            lines.append(f"  {name:>12}  V_rand {ci['v_rand']:.4f}  V_info {ci['v_info']:.4f}  Rand error "
                         f"{ci['rand_error']:.4f}  pixel error {ci['pixel_error']:.4f}{warp_txt} | wrong pixels "
                         f"{di['wrong_pixel_fraction']:.4f}  adapted Rand {di['adapted_rand_error']:.4f}")
    return lines
