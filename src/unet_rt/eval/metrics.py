"""Segmentation metrics (numpy only), one module per concern, all re-exported here: ``labels`` (label
images as objects), ``classmap`` (a decision's per-image metrics), ``rand`` (Rand and information
scores, border thinning), ``warping`` (the warping error), ``challenge`` (the ISBI 2012 protocol) and
``report`` (what ``unet-rt evaluate`` prints).

Two families, kept apart because they answer different questions:

**The ISBI 2012 challenge protocol** (Arganda-Carreras et al., 2015, "Crowdsourcing the creation of
image segmentation algorithms for connectomics", Front. Neuroanat. 9:142; the challenge's Fiji
scripts, Trainable Weka Segmentation ``trainableSegmentation.metrics``). A submission is a
*probability map* per slice, p(cell) in [0, 1] (cells white, membranes black, as the training
labels); it is binarised at the thresholds 0.0, 0.1, ..., 1.0 (a pixel is cell when p > t) and each
score is the *best* over those thresholds, one threshold for the whole stack:

- ``V_rand`` (thinned): foreground-restricted Rand F-score after border thinning (``rand_scores``
  on ``thin_boundaries``), mean over slices; the current leader board's figure.
- ``V_info`` (thinned): the information-theoretic analogue (``info_scores``), mean over slices.
- ``rand_error``: 1 - maximal F-score of the foreground-restricted Rand index of the 4-connected
  components, *without* thinning, counts pooled over slices. This is the challenge's original
  (2012-2015) "Rand error", the one of the U-Net paper's Table 1 (0.0382).
- ``pixel_error``: 1 - maximal F-score of pixel similarity (cell = positive), counts pooled over
  slices; the U-Net paper's "pixel error" (0.0611). Not the fraction of wrong pixels.
- ``warping_error``: the "minimum splits and mergers warping error" (Jain et al., CVPR 2010, as the
  challenge scored it): the ground truth is warped toward the binarised proposal by flipping simple
  points only; the mismatches left are topological errors, and the pixels among them that split or
  merge objects, divided by the number of pixels, is the error (minimum over thresholds 0.0-0.9;
  the U-Net paper's 0.000353).

``challenge_scores`` computes all five for a stack.

**Per-image metrics of a decision** (a class map, e.g. ``Engine.segment``): ``wrong_pixel_fraction``
(the fraction of pixels whose class differs; not the challenge's ``pixel_error``), ``iou``, ``dice`` and ``adapted_rand_error`` (as
``skimage.metrics.adapted_rand_error`` with ground-truth label 0 ignored) between the connected
components of the cell class; ``evaluate`` returns them for one image.
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
