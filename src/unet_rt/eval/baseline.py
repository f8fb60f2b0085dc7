"""The baseline ``unet-rt evaluate --baseline otsu`` scores: a global Otsu threshold (numpy)."""
from __future__ import annotations

import numpy as np

__all__ = ["otsu_threshold", "otsu_segment"]


def otsu_threshold(img: np.ndarray) -> float:
    """Otsu's threshold (numpy): maximises the between-class variance of the histogram."""
    x = np.asarray(img, np.float64).ravel()
    hist, edges = np.histogram(x, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[np.argmax(between)])


def otsu_segment(img: np.ndarray) -> np.ndarray:
    """Baseline: pixels brighter than Otsu's threshold are cells (class 1)."""
    return (np.asarray(img) > otsu_threshold(img)).astype(np.uint8)
