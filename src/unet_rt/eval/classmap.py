"""Metrics of a decision (a class map, e.g. ``Engine.segment``) against the true class map, per image:
``wrong_pixel_fraction`` (the fraction of pixels whose class differs), ``iou``, ``dice`` and
``adapted_rand_error`` (as ``skimage.metrics.adapted_rand_error`` with ground-truth label 0 ignored)
between the connected components of the cell class; ``evaluate`` returns them for one image. numpy only.
"""
from __future__ import annotations

import numpy as np

from unet_rt.eval.labels import connected_components


__all__ = ["wrong_pixel_fraction", "iou", "dice", "adapted_rand_error", "evaluate"]


def wrong_pixel_fraction(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of pixels whose class differs (of a decision, e.g. ``Engine.segment``'s class map).

    Not the challenge's ``pixel_error`` (1 - maximal pixel F-score, :mod:`unet_rt.eval.challenge`)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {true.shape}")
    return float(np.count_nonzero(pred != true)) / max(pred.size, 1)


def iou(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    """Intersection over union of class ``cls`` (1.0 when neither image has it)."""
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t)) / union if union else 1.0


def dice(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of class ``cls`` (1.0 when neither image has it)."""
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    s = np.count_nonzero(p) + np.count_nonzero(t)
    return 2.0 * np.count_nonzero(p & t) / s if s else 1.0


def adapted_rand_error(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """Adapted Rand error between two label images, true label 0 ignored.

    Computed as ``skimage.metrics.adapted_rand_error(true, test, ignore_labels=(0,))`` does (the
    tests check that they agree): over the pixels with a true label, with n_ij the contingency
    table, a_i and b_j its row and column sums and n the pixel count, precision
    P = (sum n_ij^2 - n) / (sum b_j^2 - n), recall R = (sum n_ij^2 - n) / (sum a_i^2 - n), and the
    error is 1 - 2PR / (P + R). Test label 0 is an ordinary segment here. This is *not* the
    challenge's Rand error (see ``rand_scores``).
    """
    t = np.asarray(true_seg).ravel()
    s = np.asarray(test_seg).ravel()
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: {np.shape(true_seg)} vs {np.shape(test_seg)}")
    keep = t != 0
    t, s = t[keep].astype(np.int64), s[keep].astype(np.int64)
    if t.size == 0:
        return 0.0
    _, ti = np.unique(t, return_inverse=True)
    _, si = np.unique(s, return_inverse=True)
    pair = ti * (si.max() + 1) + si
    _, nij = np.unique(pair, return_counts=True)
    a = np.bincount(ti).astype(np.float64)
    b = np.bincount(si).astype(np.float64)
    nij = nij.astype(np.float64)
    sum_p = (nij**2).sum() - t.size
    sum_a = (a**2).sum() - t.size
    sum_b = (b**2).sum() - t.size
    precision = sum_p / sum_b if sum_b else 1.0
    recall = sum_p / sum_a if sum_a else 1.0
    if precision + recall == 0:
        return 1.0
    return float(1.0 - 2.0 * precision * recall / (precision + recall))


def evaluate(pred_classes: np.ndarray, true_classes: np.ndarray, fg: int = 1) -> dict:
    """Metrics of one decision (class map) against the true class map; cells = 4-connected
    components of class ``fg``: wrong_pixel_fraction, iou, dice, adapted_rand_error."""
    true_inst = connected_components(np.asarray(true_classes) == fg)
    pred_inst = connected_components(np.asarray(pred_classes) == fg)
    return {
        "wrong_pixel_fraction": wrong_pixel_fraction(pred_classes, true_classes),
        "iou": iou(pred_classes, true_classes, fg),
        "dice": dice(pred_classes, true_classes, fg),
        "adapted_rand_error": adapted_rand_error(true_inst, pred_inst),
    }
