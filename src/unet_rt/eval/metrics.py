"""Segmentation metrics (numpy only), one module per concern, all re-exported here: ``labels`` (label
images as objects), ``classmap`` (a decision's per-image metrics), ``rand`` (Rand and information
scores, border thinning), ``warping`` (the warping error), ``challenge`` (the ISBI 2012 protocol) and
``report`` (what ``unet-rt evaluate`` prints).

Two families, kept apart because they answer different questions: **the ISBI 2012 challenge
protocol** (Arganda-Carreras et al., 2015), which scores a probability map p(cell) per slice by the
best threshold for the stack: V_rand, V_info, the Rand error, the pixel error (1 - maximal pixel
F-score; the U-Net paper's figure) and the warping error (``challenge_scores``; definitions in
:mod:`unet_rt.eval.challenge`); and **per-image metrics of a decision** (a class map, e.g.
``Engine.segment``): ``wrong_pixel_fraction`` (not the challenge's ``pixel_error``), ``iou``,
``dice`` and ``adapted_rand_error`` (``evaluate``; :mod:`unet_rt.eval.classmap`).
"""
from __future__ import annotations
from __future__ import annotations

import warnings

from unet_rt.eval.challenge import CHALLENGE_THRESHOLDS, PROTOCOL, WARPING_THRESHOLDS, challenge_scores
from unet_rt.eval.classmap import adapted_rand_error, dice, evaluate, iou, wrong_pixel_fraction
from unet_rt.eval.labels import connected_components, instances_of
from unet_rt.eval.rand import SplitMerge, info_scores, rand_scores, thin_boundaries
from unet_rt.eval.report import evaluate_stack, format_report
from unet_rt.eval.warping import WarpingResult, is_simple, warp, warping_error

__all__ = ["CHALLENGE_THRESHOLDS", "WARPING_THRESHOLDS", "PROTOCOL", "challenge_scores", "adapted_rand_error", "dice",
           "evaluate", "iou", "wrong_pixel_fraction", "connected_components", "instances_of", "SplitMerge",
           "info_scores", "rand_scores", "thin_boundaries", "evaluate_stack", "format_report", "WarpingResult",
           "is_simple", "warp", "warping_error"]


def pixel_error(pred, true) -> float:
    """Deprecated name of :func:`wrong_pixel_fraction` (the challenge's "pixel error" is another quantity)."""
    warnings.warn("unet_rt.eval.metrics.pixel_error is deprecated: it is wrong_pixel_fraction (the challenge's "
                  "pixel error, 1 - max pixel F-score, is another quantity)", DeprecationWarning, stacklevel=2)
    return wrong_pixel_fraction(pred, true)
