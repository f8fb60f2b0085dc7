"""Segmentation metrics (numpy only): pixel error, IoU, Dice, Rand error.

``rand_error`` is the adapted Rand error of the ISBI 2012 challenge, computed as
``skimage.metrics.adapted_rand_error(true, test, ignore_labels=(0,))`` does (tests check that they
agree): 1 - F-score of pair-counting precision and recall, ground-truth background (label 0,
e.g. membranes) ignored.
"""
from __future__ import annotations

import numpy as np


def pixel_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of pixels whose class differs."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {true.shape}")
    return float(np.count_nonzero(pred != true)) / max(pred.size, 1)


def iou(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t)) / union if union else 1.0


def dice(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    s = np.count_nonzero(p) + np.count_nonzero(t)
    return 2.0 * np.count_nonzero(p & t) / s if s else 1.0


def connected_components(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a 2-D boolean mask: labels 1..n, 0 outside (numpy only).

    Min-label propagation over the 4 neighbours with pointer jumping (labels are pixel indices, so
    ``lab = lab[lab]`` follows each pixel's label to its own label), then relabelling to 1..n.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError("connected_components needs a 2-D mask")
    h, w = m.shape
    n = h * w
    big = n
    lab = np.where(m.ravel(), np.arange(n), big)
    ext = np.append(lab, big)  # ext[big] = big
    down = (m[:-1, :] & m[1:, :]).ravel()  # pairs (i, i + w)
    right = (m[:, :-1] & m[:, 1:])
    ia = np.flatnonzero(down)
    ib = ia + w
    r = np.flatnonzero(right.ravel())
    ja = (r // (w - 1)) * w + r % (w - 1) if w > 1 else np.zeros(0, int)
    jb = ja + 1
    a = np.concatenate([ia, ja])
    b = np.concatenate([ib, jb])
    while True:
        lab = ext[:n]
        mn = np.minimum(lab[a], lab[b])
        new = lab.copy()
        np.minimum.at(new, a, mn)
        np.minimum.at(new, b, mn)
        ext = np.append(new, big)
        # pointer jumping: a label is a pixel index; follow it to that pixel's label
        for _ in range(4):
            ext[:n] = np.where(ext[:n] < big, ext[np.minimum(ext[:n], big)], big)
        if np.array_equal(ext[:n], lab):
            break
    lab = ext[:n]
    out = np.zeros(n, np.int32)
    fg = lab < big
    _, inv = np.unique(lab[fg], return_inverse=True)
    out[fg] = inv + 1
    return out.reshape(h, w)


def rand_error(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """Adapted Rand error between two label images (instances); true label 0 is ignored."""
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
    """All metrics for one image: class maps in, cells = connected components of class ``fg``."""
    true_inst = connected_components(np.asarray(true_classes) == fg)
    pred_inst = connected_components(np.asarray(pred_classes) == fg)
    return {
        "pixel_error": pixel_error(pred_classes, true_classes),
        "iou": iou(pred_classes, true_classes, fg),
        "dice": dice(pred_classes, true_classes, fg),
        "rand_error": rand_error(true_inst, pred_inst),
    }
