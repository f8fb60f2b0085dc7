"""Synthetic microscopy data sets with ground truth, unlike ISBI on purpose, for testing recipes.

    python -m unet_rt.train.synthetic bacteria data/synth-bacteria --images 8      # image/ + label/ TIFFs

Kinds (each image with its instance label image, 0 = background):

* ``bacteria`` - phase contrast of a growing colony: 16-bit, offset far from 0, dark rods with a
  bright halo, sparse foreground (about 5-10%), rods touching end to end and side by side.
* ``nuclei``   - fluorescence: 8-bit bright blobs of varying size and brightness, many touching,
  uneven illumination, Poisson noise.
* ``sparse``   - very sparse small objects (about 1-3% foreground) in 12-bit data stored as
  16-bit, low contrast on a sloping background.

``cells`` (touching Voronoi cells separated by thin membranes, ISBI-like) is in ``unet_rt.train.data``.
Everything is generated with numpy and scipy.ndimage from a seed: the same call gives the same data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

KINDS = ("bacteria", "nuclei", "sparse")


def _rods(rng, shape, n, length=(14, 30), width=(5, 8), colony=True):
    """Instance image of n capsule-shaped rods, some in contact (a colony grows by division)."""
    h, w = shape
    inst = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    centres = []
    k = 0
    for _ in range(n * 4):
        if k >= n:
            break
        if colony and centres and rng.uniform() < 0.6:  # next to an existing rod: touching neighbours
            cy, cx, a = centres[rng.integers(len(centres))]
            side = rng.choice([-1, 1])
            off = rng.uniform(6, 9)
            if rng.uniform() < 0.5:  # side by side
                cy, cx = cy + side * off * np.cos(a), cx - side * off * np.sin(a)
            else:  # end to end (a divided cell)
                d = rng.uniform(length[0], length[1]) * 0.9
                cy, cx = cy + side * d * np.sin(a), cx + side * d * np.cos(a)
            a = a + rng.normal(0, 0.15)
        else:
            cy, cx, a = rng.uniform(10, h - 10), rng.uniform(10, w - 10), rng.uniform(0, np.pi)
        L, W = rng.uniform(*length) / 2, rng.uniform(*width) / 2
        # distance from the rod's axis segment
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        d = np.hypot(np.maximum(np.abs(u) - (L - W), 0), v)
        m = (d <= W) & (inst == 0)
        if m.sum() < 0.5 * np.pi * W * W:  # mostly covered by others: skip
            continue
        k += 1
        inst[m] = k
        centres.append((cy, cx, a))
    return inst


def _blobs(rng, shape, n, radius=(6, 14)):
    """Instance image of n touching, irregular round blobs (a Voronoi split of their union)."""
    h, w = shape
    pts = rng.uniform([0, 0], [h, w], size=(n, 2))
    rad = rng.uniform(*radius, size=n)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2) / rad
    wobble = ndimage.gaussian_filter(rng.normal(0, 1, shape), 3) * 0.6
    own = d.argmin(-1)
    inside = d.min(-1) + wobble * 0.25 < 1.0
    return np.where(inside, own + 1, 0).astype(np.int32)


def _relabel(inst):
    """1..n in scan order, dropping empty labels and tiny fragments (< 12 px)."""
    out = np.zeros_like(inst)
    k = 0
    for lab in np.unique(inst[inst > 0]):
        comp, n = ndimage.label(inst == lab)
        if n == 0:
            continue
        sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
        big = int(np.argmax(sizes)) + 1
        if sizes[big - 1] >= 12:
            k += 1
            out[comp == big] = k
    return out


def make(kind: str, shape=(256, 256), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, instance labels) of one synthetic image of ``kind``."""
    rng = np.random.default_rng([KINDS.index(kind) if kind in KINDS else 99, seed])
    h, w = shape
    if kind == "bacteria":
        inst = _relabel(_rods(rng, shape, n=int(h * w / 2500)))
        fg = (inst > 0).astype(float)
        halo = ndimage.gaussian_filter(fg, 3) - fg * 0.9
        img = 1.0 - 0.55 * ndimage.gaussian_filter(fg, 1.0) + 0.8 * np.clip(halo, 0, None)
        img += ndimage.gaussian_filter(rng.normal(0, 1, shape), 20) * 0.4  # uneven background
        img = 30000 + 6000 * img + rng.normal(0, 500, shape)
        return np.clip(img, 0, 65535).astype(np.uint16), inst
    if kind == "nuclei":
        inst = _relabel(_blobs(rng, shape, n=int(h * w / 900)))
        bright = rng.uniform(0.35, 1.0, inst.max() + 1)
        bright[0] = 0
        texture = 1 + 0.25 * ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
        sig = ndimage.gaussian_filter(bright[inst] * texture, 1.2)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        illum = 0.6 + 0.4 * np.cos(2.5 * (yy - rng.uniform())) * np.cos(2.0 * (xx - rng.uniform()))
        lam = 4 + 60 * sig * illum
        return np.clip(rng.poisson(lam), 0, 255).astype(np.uint8), inst
    if kind == "sparse":
        n = int(h * w / 5000)
        pts = rng.uniform([0, 0], [h, w], size=(n, 2))
        rad = rng.uniform(3, 7, size=n)
        yy, xx = np.mgrid[0:h, 0:w]
        inst = np.zeros(shape, np.int32)
        for i, ((py, px), r) in enumerate(zip(pts, rad), start=1):
            inst[((yy - py) ** 2 + (xx - px) ** 2 <= r * r) & (inst == 0)] = i
        inst = _relabel(inst)
        slope = (yy / h) * rng.uniform(-1, 1) + (xx / w) * rng.uniform(-1, 1)
        sig = ndimage.gaussian_filter((inst > 0).astype(float), 1.0)
        img = 1500 + 250 * slope + 220 * sig + rng.normal(0, 60, shape)
        return np.clip(img, 0, 4095).astype(np.uint16), inst
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def write_dataset(kind: str, root, images: int = 8, shape=(256, 256), seed: int = 0) -> Path:
    """root/image/N.tif and root/label/N.tif (instance labels, uint16) for N in 0..images-1."""
    from unet_rt.io.images import write_image

    root = Path(root)
    for i in range(images):
        img, inst = make(kind, shape, seed * 1000 + i)
        write_image(root / "image" / f"{i}.tif", img)
        write_image(root / "label" / f"{i}.tif", inst.astype(np.uint16))
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unet_rt.train.synthetic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS)
    p.add_argument("out", help="directory to write image/ and label/ into")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=256, help="images are size x size pixels")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = write_dataset(a.kind, a.out, a.images, (a.size, a.size), a.seed)
    print(f"wrote {a.images} {a.kind} images with instance labels to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
