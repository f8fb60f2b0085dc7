"""The paper's pixel-wise loss weight (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

w_c balances the class frequencies; d1 and d2 are the distances to the nearest and the
second-nearest cell. The border term is applied on background pixels (the separating
membranes/gaps between cells), where it matters.

d1 and d2 are computed without one full-image distance transform per cell: each cell's exact
Euclidean distance transform is taken only inside its bounding box grown by ``radius`` pixels and
folded into running (smallest, second-smallest) arrays. Cells farther than ``radius`` from a pixel
are treated as infinitely far; the border term such a pixel would get is at most
``w0 * exp(-radius**2 / (2 sigma**2))`` (1e-21 for the defaults), so the result is exact to that bound.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def instances_from_mask(mask: np.ndarray) -> np.ndarray:
    """Instance labels (0 = background, 1..n) from a binary cell mask: its 4-connected components.

    Cells touching diagonally across a one-pixel membrane stay separate, as ISBI's labels intend.
    """
    lab, _ = ndimage.label(np.asarray(mask) > 0)
    return lab.astype(np.int32)


def separate_touching(instances: np.ndarray) -> np.ndarray:
    """Instance labels with a one-pixel background border wherever two instances touch.

    The paper's labels separate touching cells by background, and the border term of the weight
    map is what teaches the network to draw those gaps. Instance masks from other tools often let
    objects touch: every pixel with an 8-neighbour of another (non-zero) instance becomes
    background. Only the larger label of a touching pair loses its pixels, so one-pixel-thin
    objects survive on one side.
    """
    inst = np.asarray(instances).astype(np.int32)
    h, w = inst.shape
    p = np.pad(inst, 1)
    kill = np.zeros((h, w), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            nb = p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            kill |= (nb > 0) & (inst > nb)
    return np.where(kill, 0, inst)


def class_weights(fg: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """w_c: each class weighted by the inverse of its frequency, so the mean weight is 1.

    ``known``: the annotated pixels (sparse annotations); frequencies are counted over them only
    and every other pixel gets weight 0."""
    fg = fg.astype(bool)
    known = np.ones(fg.shape, bool) if known is None else np.asarray(known, bool)
    n = int(np.count_nonzero(known))
    out = np.zeros(fg.shape, np.float32)
    for cls in (False, True):
        sel = (fg == cls) & known
        cnt = int(np.count_nonzero(sel))
        out[sel] = n / (2.0 * cnt) if cnt else 0.0
    return out


def border_distances(instances: np.ndarray, radius: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): distance of every pixel to its nearest and second-nearest cell (inf if none)."""
    inst = np.asarray(instances)
    h, w = inst.shape
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = np.full((h, w), np.inf, np.float32)
    for idx, sl in enumerate(ndimage.find_objects(inst), start=1):
        if sl is None:
            continue
        y0, y1 = max(sl[0].start - radius, 0), min(sl[0].stop + radius, h)
        x0, x1 = max(sl[1].start - radius, 0), min(sl[1].stop + radius, w)
        crop = inst[y0:y1, x0:x1] == idx
        # exact: every pixel of the cell lies inside the crop
        d = ndimage.distance_transform_edt(~crop).astype(np.float32)
        a, b = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        closer = d < a
        b[:] = np.where(closer, a, np.minimum(b, d))
        a[:] = np.where(closer, d, a)
    return d1, d2


def dataset_class_weights(foreground_masks, max_ratio: float | None = None,
                          known_masks=None) -> tuple[float, float]:
    """(w_background, w_cell) balancing the class frequencies over a whole training set.

    ``foreground_masks``: the cell mask of every training image. Each class gets the
    inverse of its frequency over all pixels, scaled so the mean weight is 1 (as ``class_weights``
    does per image). ``max_ratio`` caps the larger weight at that many times the smaller: on sparse
    data (2% foreground) the uncapped ratio is 49, which lets a few foreground pixels dominate
    every step. ``known_masks``: the annotated pixels of each image (None: all), over which the
    frequencies are counted (sparse annotations).
    """
    known_masks = [None] * len(foreground_masks) if known_masks is None else known_masks
    n = float(sum(m.size if k is None else np.count_nonzero(k) for m, k in zip(foreground_masks, known_masks)))
    fg = float(sum(np.count_nonzero(m if k is None else (np.asarray(m) > 0) & k)
                   for m, k in zip(foreground_masks, known_masks))) / max(n, 1.0)
    fg = min(max(fg, 1e-6), 1 - 1e-6)
    wb, wf = 1.0 / (2.0 * (1 - fg)), 1.0 / (2.0 * fg)
    if max_ratio is not None:
        if wf > max_ratio * wb:
            wf = max_ratio * wb
        elif wb > max_ratio * wf:
            wb = max_ratio * wf
        s = (1 - fg) * wb + fg * wf  # mean weight 1 again
        wb, wf = wb / s, wf / s
    return wb, wf


def weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, radius: int = 50,
               instances: bool | None = None, class_weight: tuple[float, float] | None = None,
               known: np.ndarray | None = None) -> np.ndarray:
    """The loss weight map for one label image.

    ``labels``: an instance label image (0 = background, cells 1..n; pass instances=True), or a
    binary mask (ISBI: 255 = cell, 0 = membrane) whose connected components are the cells.
    By default an image with values other than {0, max} is taken as instances.
    ``class_weight``: (w_background, w_cell) for w_c, e.g. over the training set
    (``dataset_class_weights``); default: balanced within this image (``class_weights``).
    ``known``: the annotated pixels of a sparsely annotated image (None: all). Every other pixel
    gets weight 0, is no cell for the distances d1, d2 (its label must be 0) and gets no border
    term: the weight of an annotated pixel is what it would be in the annotated pixels alone.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"weight_map needs a 2-D label image, got shape {labels.shape}")
    if instances is None:
        instances = len(np.unique(labels)) > 2
    inst = labels.astype(np.int32) if instances else instances_from_mask(labels)
    if known is not None:
        known = np.asarray(known, bool)
        if known.shape != inst.shape:
            raise ValueError(f"known mask {known.shape} and labels {inst.shape} differ in size")
        if np.any(inst[~known]):
            raise ValueError("unannotated pixels must have label 0 (they are not cells)")
    fg = inst > 0
    if class_weight is None:
        w = class_weights(fg, known)
    else:
        w = np.where(fg, np.float32(class_weight[1]), np.float32(class_weight[0])).astype(np.float32)
    d1, d2 = border_distances(inst, radius)
    with np.errstate(invalid="ignore", over="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    border[~np.isfinite(border)] = 0.0
    w += np.where(fg, 0.0, border).astype(np.float32)
    if known is not None:
        w[~known] = 0.0
    return w
