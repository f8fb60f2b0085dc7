"""Labelled data sets: ``DATA/image/*`` with ``DATA/label/*`` (matched by file name), as ``unet-rt evaluate``,
``unet-rt calibrate`` and the trainer read them, with the one rule for which slices a ``--slices`` spec
names.

**Slices.** Each file is one slice, or one slice per page when it is a stack (a multi-page TIFF,
T x H x W). A spec such as ``"23-24,26"`` names slices by number:

* when every image file is named by a number (ISBI's ``N.png``; ``data/samples`` holds 23..29), the
  number is the file's (all pages of a numbered stack);
* otherwise it is the slice's position, from 0, in natural order (files sorted as ``2.png`` before
  ``10.png``, pages in order), e.g. the 30 pages of ISBI's ``train-volume.tif`` are 0..29.

A number that names no slice is an error, never silently dropped. Slices are returned in natural order.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["parse_slices", "slice_indices", "select_slices", "load_pairs"]

_NUMBERED = re.compile(r"^(\d+)(\[\d+\])?$")


def parse_slices(spec: str) -> list[int]:
    """'0-22,24' -> [0, 1, ..., 22, 24]; a malformed spec is a ValueError saying so."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        a, _, b = part.partition("-")
        try:
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ValueError(f"slices {spec!r}: {part!r} is not a number or a range N-M") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"slices {spec!r}: {part!r} is not a range N-M with 0 <= N <= M")
        out.extend(range(lo, hi + 1))
    return out


def _ranges(numbers) -> str:
    """[23, 24, 25, 27] -> '23-25,27'."""
    ns = sorted(set(numbers))
    out, i = [], 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        out.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ",".join(out)


def slice_indices(names: list[str], spec: str, where: str = "the data") -> list[int]:
    """Positions in ``names`` (as :func:`load_pairs` names its slices) of the slices ``spec`` names,
    by the module's rule; ValueError for a number that names no slice."""
    m = [_NUMBERED.match(n) for n in names]
    keys = [int(x.group(1)) for x in m] if names and all(m) else list(range(len(names)))  # type: ignore[union-attr]
    want = set(parse_slices(spec))
    missing = sorted(want - set(keys))
    if missing:
        raise ValueError(f"slices {spec}: no slice {_ranges(missing)} in {where} (it holds {_ranges(keys) or 'none'})")
    return [i for i, k in enumerate(keys) if k in want]


def select_slices(paths: list[Path], spec: str) -> list[Path]:
    """The files (one slice each) a slice spec ('23-24,26') names, by the module's rule."""
    return [paths[i] for i in slice_indices([p.stem for p in paths], spec)]


def _pages(arr: np.ndarray) -> list[np.ndarray]:
    """The slices of one file: the pages of a stack (T x H x W), else the image itself."""
    return list(arr) if arr.ndim == 3 and arr.shape[-1] not in (3, 4) else [arr]


def load_pairs(root, slices: str | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, label) of the slices of ``root/image`` and ``root/label`` that ``slices`` names
    (all without it). Names: the file's stem, ``stem[k]`` for page k of a stack. FileNotFoundError for
    a missing directory or label, ValueError for mismatched sizes or a bad spec."""
    from unet_rt.io.images import list_images, read_image

    root = Path(root)
    if not (root / "image").is_dir() or not (root / "label").is_dir():
        raise FileNotFoundError(f"{root} must hold image/ and label/ directories")
    imgs = list_images(root / "image")
    if not imgs:
        raise FileNotFoundError(f"no images in {root / 'image'}")
    labs = {p.stem: p for p in list_images(root / "label")}
    if slices and all(p.stem.isdigit() for p in imgs):
        slice_indices([p.stem for p in imgs], slices, str(root / "image"))  # an unknown number is an error
        want = set(parse_slices(slices))
        imgs = [p for p in imgs if int(p.stem) in want]                      # read only the files named
    missing = [p.name for p in imgs if p.stem not in labs]
    if missing:
        raise FileNotFoundError(f"no label in {root / 'label'} for {', '.join(missing[:5])}")
    pairs = []
    for p in imgs:
        im, lb = _pages(read_image(p)), _pages(read_image(labs[p.stem]))
        if len(im) != len(lb):
            raise ValueError(f"{p.name}: {len(im)} image slices but {len(lb)} label slices")
        for k, (a, b) in enumerate(zip(im, lb)):
            if a.shape[:2] != b.shape[:2]:
                raise ValueError(f"{p.name}{'' if len(im) == 1 else f'[{k}]'}: image {a.shape} and label {b.shape} "
                                 f"differ in size")
            pairs.append((p.stem if len(im) == 1 else f"{p.stem}[{k}]", a, b))
    if slices:
        pairs = [pairs[i] for i in slice_indices([n for n, _, _ in pairs], slices, str(root / "image"))]
    return pairs
