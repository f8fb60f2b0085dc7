"""Data augmentation of the paper (§3.1): elastic deformation, shift, rotation, flips, grey values.

Elastic deformation: random displacement vectors on a coarse 3x3 grid, N(0, 10 px), interpolated
to a dense per-pixel field by cubic B-splines (the interpolating "bicubic" spline), the image
resampled smoothly (cubic) and labels nearest-neighbour, mirror extrapolation at the borders.
All geometric changes are composed into ONE coordinate map and the image resampled once.
``elastic_field`` follows the convention of the ``elasticdeform`` package's ``deform_grid``
(control points spread evenly over the output, first and last on its border), so the warp agrees
with it for the same displacements (tests/test_augment.py).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def elastic_field(displacement: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Dense displacement (2, H, W) from control-point displacements (2, gy, gx) by cubic splines."""
    disp = np.asarray(displacement, np.float64)
    _, gy, gx = disp.shape
    h, w = shape
    yy = np.linspace(0, gy - 1, h) if h > 1 else np.zeros(1)
    xx = np.linspace(0, gx - 1, w) if w > 1 else np.zeros(1)
    cy, cx = np.meshgrid(yy, xx, indexing="ij")
    return np.stack([ndimage.map_coordinates(disp[d], [cy, cx], order=3, mode="mirror") for d in range(2)])


def sample_transform(rng: np.random.Generator, out_shape: tuple[int, int], sigma: float = 10.0,
                     points: int = 3, max_rotate: float = np.pi, max_shift: float = 0.0,
                     flip: bool = True) -> dict:
    """Random transform parameters (elastic grid, rotation, shift, flips)."""
    return dict(
        displacement=rng.normal(0.0, sigma, size=(2, points, points)),
        angle=float(rng.uniform(-max_rotate, max_rotate)) if max_rotate else 0.0,
        shift=rng.uniform(-max_shift, max_shift, size=2) if max_shift else np.zeros(2),
        flip=(bool(rng.integers(2)), bool(rng.integers(2))) if flip else (False, False),
        out_shape=tuple(out_shape),
    )


def coordinates(t: dict, center: tuple[float, float]) -> np.ndarray:
    """Source coordinates (2, h, w) of every output pixel: output -> flip -> rotate -> shift -> elastic."""
    h, w = t["out_shape"]
    y, x = np.meshgrid(np.arange(h) - (h - 1) / 2.0, np.arange(w) - (w - 1) / 2.0, indexing="ij")
    if t["flip"][0]:
        y = -y
    if t["flip"][1]:
        x = -x
    c, s = np.cos(t["angle"]), np.sin(t["angle"])
    yr, xr = c * y - s * x, s * y + c * x
    field = elastic_field(t["displacement"], (h, w))
    return np.stack([yr + center[0] + t["shift"][0] + field[0], xr + center[1] + t["shift"][1] + field[1]])


def warp(img: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Resample a 2-D image (or C x H x W) at coords with mirror extrapolation."""
    if img.ndim == 3:
        return np.stack([warp(c, coords, order) for c in img])
    return ndimage.map_coordinates(img, coords, order=order, mode="mirror", prefilter=order > 1)


def grey_value(img: np.ndarray, rng: np.random.Generator, contrast: float = 0.2, brightness: float = 0.2,
               gamma: float = 0.2) -> np.ndarray:
    """Random contrast, brightness and gamma on a normalised image (zero mean, unit std)."""
    a = 1.0 + rng.uniform(-contrast, contrast)
    b = rng.uniform(-brightness, brightness)
    g = np.exp(rng.uniform(-gamma, gamma))
    lo, hi = img.min(), img.max()
    span = max(hi - lo, 1e-6)
    u = ((img - lo) / span) ** g * span + lo   # gamma on the [lo, hi] range
    return (a * u + b).astype(np.float32)
