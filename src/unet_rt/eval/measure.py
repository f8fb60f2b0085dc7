"""Measurements and ImageJ ROIs of segmented objects: what a user takes to a spreadsheet or to Fiji.

    from unet_rt import Engine, measure, write_measurements, write_rois
    inst = Engine("model.plan").instances(image)
    table = measure(inst, image, pixel_size={"Y": (0.2, "micrometer"), "X": (0.2, "micrometer")})
    write_measurements(table, "objects.csv")      # one row per object
    write_rois(inst, "objects.zip")               # Fiji: ROI Manager > More > Open...

    unet-rt segment cells.tif -o labels.tif --instances --measure objects.csv --rois objects.zip

``measure`` is scikit-image's ``regionprops_table`` (label, area, centroid, bounding box, mean /
min / max intensity, eccentricity, solidity) with plainer column names, plus the same lengths and
areas in physical units where the image has a pixel size (Y and X in one unit). Stacks (frames
of 2-D images, e.g. T or Z segmented frame by frame) get a ``frame`` column: the objects of each
frame are measured in that frame. ROIs are polygons (``roifile``) around each object's pixels,
named by the object's label (and frame), with the ImageJ stack position for stacks.

Needs scikit-image and roifile (``pip install 'unet-rt[measure]'``).
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np

PROPERTIES = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_min", "intensity_max",
              "eccentricity", "solidity")
# regionprops_table's names -> ours (y = rows, x = columns; bbox: inclusive start, exclusive end)
_RENAME = {"centroid-0": "centroid_y", "centroid-1": "centroid_x", "bbox-0": "bbox_y0", "bbox-1": "bbox_x0",
           "bbox-2": "bbox_y1", "bbox-3": "bbox_x1"}
_LENGTHS = {"centroid_y": "Y", "centroid_x": "X", "bbox_y0": "Y", "bbox_x0": "X", "bbox_y1": "Y", "bbox_x1": "X"}
_UNIT_ABBREV = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
                "angstrom": "A", "picometer": "pm"}


def _needs(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"measurements need {module.split('.')[0]}: pip install 'unet-rt[measure]'") from None


def _frames(labels: np.ndarray, image: np.ndarray | None):
    """[(frame index or None, 2-D labels, image of that frame or None)]."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return [(None, labels, image)]
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 2-D image or a stack of them, got shape {labels.shape}")
    return [(t, labels[t], None if image is None else image[t]) for t in range(labels.shape[0])]


def _physical(pixel_size: dict | None) -> tuple[float, float, str] | None:
    """(size Y, size X, unit suffix) when Y and X have positive sizes in one unit, else None."""
    if not pixel_size or "Y" not in pixel_size or "X" not in pixel_size:
        return None
    (sy, uy), (sx, ux) = _entry(pixel_size["Y"]), _entry(pixel_size["X"])
    if not (np.isfinite(sy) and np.isfinite(sx) and sy > 0 and sx > 0) or uy != ux:
        return None
    return sy, sx, _UNIT_ABBREV.get(uy, uy) if uy else "unit"


def _entry(v) -> tuple[float, str | None]:
    if isinstance(v, (tuple, list)):
        return float(v[0]), (v[1] if len(v) > 1 else None)
    return float(v), None


def measure(labels, image=None, pixel_size: dict | None = None) -> dict[str, np.ndarray]:
    """One row per object of an instance label image (0 = background): a dict of columns.

    labels : 2-D int array, or a stack (N, H, W) of them (a ``frame`` column is added).
    image : the intensities, the same shape as ``labels`` (or with a trailing channel axis: then
        ``intensity_mean-0``, ``-1`` ... per channel); None leaves the intensity columns out.
    pixel_size : ``{"Y": (size, unit), "X": (size, unit)}`` as ``unet_rt.io.images`` reads it
        (``open_image(...).pixel_size``). When Y and X have sizes in the same unit, the table also
        holds ``area_<unit>2`` and every centroid / bounding-box column in that unit.
    """
    skm = _needs("skimage.measure")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer instance image, got dtype {labels.dtype}")
    if image is not None:
        image = np.asarray(image)
        if image.shape[:labels.ndim] != labels.shape:
            raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    props = [p for p in PROPERTIES if image is not None or not p.startswith("intensity")]
    cols: dict[str, list] = {}
    for t, lab, img in _frames(labels, image):
        tab = skm.regionprops_table(lab, intensity_image=img, properties=props)
        n = len(tab["label"])
        if t is not None:
            cols.setdefault("frame", []).append(np.full(n, t, np.int64))
        for k, v in tab.items():
            cols.setdefault(_RENAME.get(k, k), []).append(np.asarray(v))
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    if "label" not in out:
        out["label"] = np.zeros(0, np.int64)
    phys = _physical(pixel_size)
    if phys is not None:
        sy, sx, u = phys
        out[f"area_{u}2"] = out["area"] * sy * sx
        for k, axis in _LENGTHS.items():
            out[f"{k}_{u}"] = out[k] * (sy if axis == "Y" else sx)
    return out


def write_measurements(table: dict, path, image_name: str | None = None) -> Path:
    """Write a ``measure`` table as CSV (one row per object), atomically; ``image_name`` adds an
    ``image`` column (tables of several images: concatenate with ``concat``)."""
    from unet_rt.format.model_file import atomic_write

    table = dict(table)
    n = len(table.get("label", []))
    if image_name is not None:
        table = {"image": np.array([image_name] * n, dtype=object), **table}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(table))
    for i in range(n):
        w.writerow([_fmt(table[k][i]) for k in table])
    atomic_write(Path(path), buf.getvalue().encode())
    return Path(path)


def concat(tables: list[dict], names: list[str]) -> dict:
    """One table of several images' ``measure`` tables, with an ``image`` column first."""
    keys = []
    for t in tables:
        keys += [k for k in t if k not in keys]
    out = {"image": np.concatenate([np.array([nm] * len(t["label"]), dtype=object) for t, nm in zip(tables, names)])
           if tables else np.zeros(0, object)}
    for k in keys:
        out[k] = np.concatenate([np.asarray(t[k], dtype=object) if k in t else np.full(len(t["label"]), "", object)
                                 for t in tables])
    return out


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def rois(labels, prefix: str = "") -> list:
    """ImageJ polygon ROIs (``roifile.ImagejRoi``) of the objects of an instance label image (or a
    stack: the ROI's position is its frame, 1-based as in ImageJ). Each polygon runs along the
    object's outer boundary (the longest contour of ``skimage.measure.find_contours`` at 0.5,
    in ImageJ's coordinates, where pixel (x, y) covers [x, x+1) x [y, y+1)); an object in several
    pieces gets its largest piece's outline. Named ``[prefix]LABEL`` (stacks: ``[prefix]tFRAME-LABEL``)."""
    roifile = _needs("roifile")
    skm = _needs("skimage.measure")
    from scipy import ndimage

    out = []
    labels = np.asarray(labels)
    for t, lab, _ in _frames(labels, None):
        for idx, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            crop = np.pad(lab[sl] == idx, 1)
            contours = skm.find_contours(crop.astype(np.float32), 0.5)
            if not contours:
                continue
            c = max(contours, key=len)
            # crop coordinates -> image rows/cols (pad of 1) -> ImageJ x, y (pixel centres at +0.5)
            y = c[:, 0] - 1 + sl[0].start + 0.5
            x = c[:, 1] - 1 + sl[1].start + 0.5
            pts = np.stack([x, y], axis=1)[:-1]          # find_contours closes the loop: drop the repeat
            name = f"{prefix}{idx}" if t is None else f"{prefix}t{t + 1}-{idx}"
            pts = skm.approximate_polygon(pts, tolerance=0.0)  # collinear runs -> their two ends
            roi = roifile.ImagejRoi.frompoints(pts, name=name, position=t)   # stored 1-based
            roi.roitype = roifile.ROI_TYPE.POLYGON                   # vertices, not a freehand trace
            out.append(roi)
    return out


def write_rois(labels, path, prefix: str = "", extra: list | None = None) -> Path:
    """Write the objects' ROIs (``rois``; plus ``extra`` ROIs) to an ImageJ ROI set (.zip), which
    Fiji's ROI Manager opens. Written to a temporary file first: nothing half-written on failure."""
    roifile = _needs("roifile")
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"ROIs are written as an ImageJ ROI set: name it .zip, not {path.name}")
    items = list(extra or []) + (rois(labels, prefix) if labels is not None else [])
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".zip", dir=path.parent)
    os.close(fd)
    try:
        os.unlink(tmp)                                   # roifile appends to an existing zip
        roifile.roiwrite(tmp, items, name=[r.name for r in items], mode="w")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class Collector:
    """What ``unet-rt segment --instances --measure CSV --rois ZIP`` gathers over its inputs: one
    table (an ``image`` column first) and one ROI set (ROI names prefixed by the image's name
    when there are several). Checks the options before anything is segmented."""

    def __init__(self, measure_path, rois_path, instances: bool):
        if not instances:
            raise ValueError("--measure/--rois measure objects: add --instances")
        if rois_path and Path(rois_path).suffix.lower() != ".zip":
            raise ValueError(f"--rois {rois_path}: ImageJ ROI sets are .zip files")
        _needs("skimage.measure")
        if rois_path:
            _needs("roifile")
        self.measure_path, self.rois_path = measure_path, rois_path
        self.items: list[tuple] = []

    def add(self, src, labels, data, pixel_size: dict, stack: bool) -> None:
        """One input: ``labels`` (N, H, W) instances, ``data`` (N, C, H, W) the segmented frames."""
        labels = np.asarray(labels)
        img = np.moveaxis(np.asarray(data), 1, -1)
        img = img[..., 0] if img.shape[-1] == 1 else img
        if not stack:
            labels, img = labels[0], img[0]
        self.items.append((Path(src).name, labels, img, pixel_size))

    def write(self) -> list[Path]:
        """Write the table and the ROI set (their directories created, as ``-o`` does)."""
        written = []
        for f in (self.measure_path, self.rois_path):
            if f:
                Path(f).parent.mkdir(parents=True, exist_ok=True)
        if self.measure_path:
            tables = [measure(lab, img, px) for _, lab, img, px in self.items]
            write_measurements(concat(tables, [n for n, *_ in self.items]), self.measure_path)
            written.append(Path(self.measure_path))
        if self.rois_path:
            several = len(self.items) > 1
            allrois = [r for n, lab, _, _ in self.items for r in rois(lab, f"{n}:" if several else "")]
            write_rois(None, self.rois_path, extra=allrois)
            written.append(Path(self.rois_path))
        return written
