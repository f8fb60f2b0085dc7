"""Label images as objects: the one rule that turns a label image into instances, used by evaluation,
calibration and the trainer alike.

A label image is either a **binary mask** (at most two values, e.g. ISBI's 0 = membrane, 255 = cell):
its cells are the 4-connected components of the pixels > 0; or an **instance image** (0 = background,
1..n objects): its values are the instances as they stand. numpy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["connected_components", "instances_of", "is_mask"]


def is_mask(label: np.ndarray) -> bool:
    """Whether a label image is a binary mask (at most two distinct values)."""
    return len(np.unique(np.asarray(label))) <= 2


def instances_of(label: np.ndarray) -> np.ndarray:
    """Instances (int64; 0 = background, 1..n) of a 2-D label image: the 4-connected components of the
    pixels > 0 of a binary mask, else the instance image's own values."""
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D images, got shape {lab.shape}")
    if is_mask(lab):
        return connected_components(lab > 0).astype(np.int64)
    return lab.astype(np.int64)


def connected_components(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Connected components of a 2-D boolean mask: int32 labels 1..n in raster order of their first
    pixel, 0 outside. ``connectivity`` 4 (edge neighbours) or 8 (also diagonal). numpy only.

    Horizontal runs are labelled first; runs that touch across rows (vertically, or also diagonally
    for 8) are joined by a vectorised union-find (hook the larger root under the smaller, then
    compress paths fully) until no edge joins two roots.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError("connected_components needs a 2-D mask")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    h, w = m.shape
    out = np.zeros((h, w), np.int32)
    if not m.any():
        return out
    flat = m.ravel()
    start = flat.copy()
    start[1:] &= ~flat[:-1]
    start[::w] = flat[::w]  # a run starts at a row's first pixel
    run = np.cumsum(start) - 1  # run index of each foreground pixel
    nruns = int(np.count_nonzero(start))
    a_list, b_list = [], []
    pairs = [(m[:-1, :] & m[1:, :], 0, w)]  # (valid pair mask over the upper pixel, column shift, flat offset)
    if connectivity == 8:
        pairs += [(m[:-1, :-1] & m[1:, 1:], 1, w + 1), (m[:-1, 1:] & m[1:, :-1], -1, w - 1)]
    for valid, shift, off in pairs:
        r, c = np.nonzero(valid)
        if shift < 0:
            c = c + 1
        top = r * w + c
        ra, rb = run[top], run[top + off]
        step = np.ones(ra.size, bool)  # one edge per pair of touching runs (they come in raster order)
        step[1:] = (ra[1:] != ra[:-1]) | (rb[1:] != rb[:-1])
        a_list.append(ra[step])
        b_list.append(rb[step])
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    parent = np.arange(nruns)
    while a.size:
        pa, pb = parent[a], parent[b]
        diff = pa != pb
        if not diff.any():
            break
        a, b, pa, pb = a[diff], b[diff], pa[diff], pb[diff]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:  # full path compression: every run points at its root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    is_root = parent == np.arange(nruns)  # roots are the smallest run ids of their components: raster order
    root_label = np.cumsum(is_root)[parent]
    out.ravel()[flat] = root_label[run[flat]]
    return out
