"""Training data: ISBI-style image/label pairs, instance label images, synthetic touching cells,
and the tile sampler (network input tile, labels and weights cropped to the output).

Label conventions: a binary mask (ISBI: 255 = cell, 0 = membrane) whose connected components are
the cells, or an instance label image (0 = background, 1..n cells). Classes: 0 = background /
membrane, 1 = cell. Images keep their bit depth (8- or 16-bit, float); normalisation is
(x - mean) / std with the training set's statistics in raw units, stored in the model file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unet_rt.format.geometry import output_size
from unet_rt.eval.labels import instances_of as _instances, is_mask
from unet_rt.io.dataset import load_pairs, parse_slices, slice_indices  # noqa: F401  (the one loader, re-exported)

from unet_rt.train import augment
from unet_rt.train.weightmap import dataset_class_weights, instances_from_mask, separate_touching, weight_map


@dataclass
class Sample:
    image: np.ndarray      # (H, W) raw values
    classes: np.ndarray    # (H, W) uint8: 0 background, 1 cell
    weights: np.ndarray    # (H, W) float32 loss weights (0 on unannotated pixels)
    name: str = ""
    known: np.ndarray | None = None   # (H, W) bool: the annotated pixels (None: all)


def instances_of(label: np.ndarray) -> np.ndarray:
    """Instances (0 = background, 1..n) of a label image by the one rule (``unet_rt.eval.labels``); an
    instance image's touching objects then get a separating background border (the weight map's gaps)."""
    inst = _instances(label)
    return inst.astype(np.int32) if is_mask(label) else separate_touching(inst)


def split_ignore(label: np.ndarray, ignore_label: int | None,
                 partial: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Sparse annotations: (the label image with its unannotated pixels set to 0, the mask of the
    annotated pixels), or (label, None) when every pixel is annotated.

    Pixels whose label is ``ignore_label`` (``--ignore-label``, e.g. 255) are "not annotated here":
    neither cells nor background. ``partial`` (``--partial D``): only some objects are drawn and
    the rest of the image is left at 0, so a 0 pixel is known background only within D pixels
    (Euclidean) of a drawn object; farther ones are not annotated either (an image with no drawn
    object has no annotated pixel). The rest keeps its convention (binary mask or instances)."""
    label = np.asarray(label)
    known = None
    if ignore_label is not None:
        ign = label == ignore_label
        if ign.any():
            label, known = np.where(ign, 0, label).astype(label.dtype), ~ign
    if partial is not None:
        drawn = label != 0
        near = (ndimage.distance_transform_edt(~drawn) <= partial) if drawn.any() else drawn
        known = near if known is None else known & near
    return label, known


def instances_known(label: np.ndarray, ignore_label: int | None = None,
                    partial: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(instances, annotated mask or None) of a label image that may hold ``ignore_label`` pixels
    or be partly drawn (``partial``): see ``split_ignore``."""
    lab, known = split_ignore(label, ignore_label, partial)
    inst = instances_of(lab)
    if known is not None:
        inst = np.where(known, inst, 0)
    return inst, known


def make_sample(name: str, image: np.ndarray, label: np.ndarray, w0=10.0, sigma=5.0,
                class_weight: tuple[float, float] | None = None, instances: np.ndarray | None = None,
                ignore_label: int | None = None, known: np.ndarray | None = None,
                partial: float | None = None) -> Sample:
    """One training/validation sample; ``instances``: ``instances_of(label)`` if already computed
    (then ``known`` is its annotated mask); ``ignore_label``, ``partial``: see ``split_ignore``."""
    if instances is None:
        inst, known = instances_known(label, ignore_label, partial)
    else:
        inst = instances
    return Sample(np.asarray(image), (inst > 0).astype(np.uint8),
                  weight_map(inst, w0, sigma, instances=True, class_weight=class_weight, known=known), name, known)


def make_samples(pairs, w0=10.0, sigma=5.0, class_weights: str = "image",
                 max_ratio: float | None = None,
                 ignore_label: int | None = None,
                 partial: float | None = None) -> tuple[list[Sample], tuple[float, float] | None]:
    """Samples of (name, image, label) pairs, with w_c balanced per image (``"image"``) or over the
    whole set (``"dataset"``, the paper's choice, optionally capped at ``max_ratio``), counted over
    the annotated pixels (``ignore_label``, ``partial``: see ``split_ignore``).
    Returns (samples, (w_background, w_cell) or None)."""
    if class_weights not in ("image", "dataset"):
        raise ValueError(f"class_weights must be 'image' or 'dataset', got {class_weights!r}")
    ik = [instances_known(lb, ignore_label, partial) for _, _, lb in pairs]
    cw = (dataset_class_weights([i > 0 for i, _ in ik], max_ratio, [k for _, k in ik])
          if class_weights == "dataset" and pairs else None)
    return [make_sample(n, im, lb, w0, sigma, cw, inst, known=k) for (n, im, lb), (inst, k) in zip(pairs, ik)], cw


TRAIN_RANGE_PERCENTILES = [1.0, 99.0]


def _channels(image: np.ndarray) -> np.ndarray:
    """(C, N) float64 pixels of an (H, W) or (H, W, C) image."""
    x = np.asarray(image, np.float64)
    return x.reshape(1, -1) if x.ndim == 2 else x.reshape(-1, x.shape[-1]).T


def _percentile_scale(x: np.ndarray, q) -> np.ndarray:
    """(x - P_lo) / (P_hi - P_lo) per channel row of x (C, N); scale 1 where P_hi = P_lo, as the
    runtime does (``unet_rt.format.model_file``: normalisation "percentiles")."""
    lo, hi = np.percentile(x, q, axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo[:, None]) / span[:, None]


def normalization(samples: list[Sample], percentiles=None) -> dict:
    """The model file's normalisation record for the training images.

    Without ``percentiles``: per-channel mean and std in raw units. With ``percentiles=[lo, hi]``:
    each image is first scaled per channel to (x - P_lo) / (P_hi - P_lo) (StarDist's and
    Cellpose's habit, so that a model does not depend on the bit depth or offset of the camera),
    and mean/std are those of the scaled values. Either way ``train_range`` records the raw
    P1/P99 of the training pixels, from which ``Engine`` warns about inputs far outside them.
    """
    raw = np.concatenate([_channels(s.image) for s in samples], axis=1)
    q = TRAIN_RANGE_PERCENTILES
    lo, hi = np.percentile(raw, q, axis=1)
    if percentiles:
        x = np.concatenate([_percentile_scale(_channels(s.image), percentiles) for s in samples], axis=1)
    else:
        x = raw
    out = {"mean": x.mean(axis=1).tolist(), "std": np.maximum(x.std(axis=1), 1e-6).tolist()}
    if percentiles:
        out["percentiles"] = [float(p) for p in percentiles]
    out["train_range"] = {"percentiles": list(q), "low": lo.tolist(), "high": hi.tolist()}
    return out


def normalize(image: np.ndarray, norm: dict) -> np.ndarray:
    """The network's input for an image: float32 (C, H, W), normalised as the runtime does."""
    a = np.asarray(image)
    x = _channels(a)
    if norm.get("percentiles"):
        x = _percentile_scale(x, norm["percentiles"])
    x = (x - np.asarray(norm["mean"])[:, None]) / np.asarray(norm["std"])[:, None]
    return x.reshape((x.shape[0],) + a.shape[:2]).astype(np.float32)


class TileSampler:
    """Random training tiles: (input (C, I, I), classes (O, O), weights (O, O)).

    An output window is placed at a random centre; the input tile around it is produced by one
    resampling of the mirror-extrapolated image through flip + rotation + elastic deformation,
    so augmentation and mirror padding cost a single pass. Labels are resampled nearest-neighbour,
    weight maps (precomputed per image) linearly.

    ``window="inside"`` keeps the (unrotated) output window inside the image where the image is
    larger than the window, so supervision comes from real pixels; ``"anywhere"`` centres it
    uniformly over the image (then up to a third of the supervised pixels of a 512² ISBI slice
    with a 388² window are mirrored copies). ``foreground`` is the probability of centring the
    window on a random foreground pixel instead (sparse objects are otherwise rarely seen).
    """

    def __init__(self, samples: list[Sample], norm: dict, tile: int, depth: int = 4, padding: str = "valid",
                 elastic_sigma: float = 10.0, grey: bool = True, window: str = "anywhere",
                 foreground: float = 0.0):
        if window not in ("anywhere", "inside"):
            raise ValueError(f"window must be 'anywhere' or 'inside', got {window!r}")
        self.samples, self.norm, self.tile = samples, norm, tile
        self.out = output_size(tile, depth, padding)
        self.elastic_sigma, self.grey = elastic_sigma, grey
        self.window, self.foreground = window, foreground
        self.images = [normalize(s.image, norm) for s in samples]
        self.fg_index = [np.flatnonzero(s.classes.ravel()) for s in samples]

    def _center(self, rng: np.random.Generator, i: int) -> tuple[float, float]:
        h, w = self.samples[i].classes.shape
        fg = self.fg_index[i]
        if self.foreground > 0 and fg.size and rng.uniform() < self.foreground:
            k = int(fg[rng.integers(fg.size)])
            cy, cx = float(k // w), float(k % w)
        else:
            cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        if self.window == "inside":  # clamp the window into the image (centred if it cannot fit)
            r = (self.out - 1) / 2.0
            cy = min(max(cy, r), h - 1 - r) if h > self.out else (h - 1) / 2.0
            cx = min(max(cx, r), w - 1 - r) if w > self.out else (w - 1) / 2.0
        return cy, cx

    def __call__(self, rng: np.random.Generator):
        i = int(rng.integers(len(self.samples)))
        s, img = self.samples[i], self.images[i]
        center = self._center(rng, i)
        t = augment.sample_transform(rng, (self.tile, self.tile), sigma=self.elastic_sigma)
        coords = augment.coordinates(t, center)
        x = augment.warp(img, coords, order=3)
        m = (self.tile - self.out) // 2
        oc = coords[:, m:m + self.out, m:m + self.out]
        y = augment.warp(s.classes, oc, order=0)
        wt = augment.warp(s.weights, oc, order=1)
        if s.known is not None:  # unannotated pixels keep weight 0 (not a blend with their neighbours)
            wt = wt * augment.warp(s.known.astype(np.uint8), oc, order=0)
        if self.grey:
            x = augment.grey_value(x, rng)
        return x.astype(np.float32), y.astype(np.int64), wt.astype(np.float32)


def synthetic_cells(shape=(128, 128), n_cells: int = 30, membrane: int = 1, seed: int = 0,
                    dtype=np.uint8, noise: float = 0.08):
    """Touching cells with ground truth: a Voronoi partition of random seeds, cells separated by
    membranes ``membrane`` pixels wide. Returns (image, instance labels, binary 0/255 mask)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    pts = rng.uniform([0, 0], [h, w], size=(n_cells, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    owner = d.argmin(-1)
    inst = owner + 1
    border = np.zeros(shape, bool)
    border[:-1] |= owner[:-1] != owner[1:]
    border[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    for _ in range(membrane - 1):
        border[1:] |= border[:-1]
        border[:, 1:] |= border[:, :-1]
    inst = np.where(border, 0, inst).astype(np.int32)
    brightness = rng.uniform(0.55, 0.9, n_cells + 1)
    img = np.where(inst > 0, brightness[inst], 0.15) + rng.normal(0, noise, shape)
    hi = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    img = (np.clip(img, 0, 1) * hi).astype(dtype)
    # relabel in case a cell vanished under the membranes
    inst = instances_from_mask(inst > 0)
    return img, inst, ((inst > 0) * 255).astype(np.uint8)
