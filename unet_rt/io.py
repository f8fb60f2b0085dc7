"""Image I/O for the CLI and the trainer: PNG and TIFF (8/16-bit, float, stacks), zarr arrays.

Pixel values are returned as stored (uint8, uint16, float32...): never rescaled, never assumed 8-bit.
Shapes: H x W, H x W x C (RGB PNG), or T x H x W (multi-page TIFF / zarr stack).
"""
from __future__ import annotations


from pathlib import Path

import numpy as np

from .model_file import atomic_write

TIFF_EXT = (".tif", ".tiff")
PIL_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def read_image(path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image: {path}")
    ext = path.suffix.lower()
    if ext in TIFF_EXT:
        import tifffile

        arr = tifffile.imread(str(path))
    elif ext in PIL_EXT:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr = np.array(im, dtype=np.uint16)
            elif im.mode == "P":
                arr = np.array(im.convert("RGB"))
            elif im.mode in ("LA", "RGBA"):
                arr = np.array(im.convert(im.mode[:-1] or "L"))
            else:
                arr = np.array(im)
        if arr.dtype == np.int32:  # PIL mode "I" (16-bit PNG on some Pillow versions)
            arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr.astype(np.float32)
    elif ext == ".zarr" or path.is_dir():
        import zarr

        arr = np.asarray(zarr.open(str(path), mode="r"))
    else:
        raise ValueError(f"{path}: unsupported image format {ext!r} (use PNG, TIFF or zarr)")
    return np.asarray(arr)


def write_image(path, arr: np.ndarray) -> None:
    """Write atomically: PNG for 2-D uint8/uint16 (or H x W x 3/4 uint8), TIFF for anything."""
    path = Path(path)
    arr = np.asarray(arr)
    ext = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext in TIFF_EXT:
        import io

        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8 else "minisblack",
                         compression="zlib")
        atomic_write(path, buf.getvalue())
    elif ext == ".png":
        import io

        from PIL import Image

        if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
            raise ValueError(f"PNG holds 2-D uint8/uint16 or HxWx3/4 uint8 images, got {arr.dtype} {arr.shape}: use .tif")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        atomic_write(path, buf.getvalue())
    else:
        raise ValueError(f"{path}: unsupported output format {ext!r} (use .png or .tif)")


def list_images(path) -> list[Path]:
    """The image files in a directory (sorted naturally: 2.png before 10.png), or [path]."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".zarr":
        files = [p for p in path.iterdir() if p.suffix.lower() in TIFF_EXT + PIL_EXT]
        return sorted(files, key=lambda p: (len(p.stem), p.stem) if p.stem.isdigit() else (1 << 30, p.stem))
    return [path]


def overlay(image: np.ndarray, labels: np.ndarray, color=(255, 64, 0), alpha: float = 0.45,
            cls: int = 0) -> np.ndarray:
    """An RGB uint8 picture: the grey image with pixels of class ``cls`` tinted (default: class 0)."""
    img = np.asarray(image, np.float64)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    lo, hi = np.percentile(img, [0.5, 99.5])
    g = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(g[..., None], 3, axis=-1)
    m = np.asarray(labels) == cls
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, np.float64)
    return rgb.astype(np.uint8)


def parse_slices(spec: str) -> list[int]:
    """'0-22,24' -> [0, 1, ..., 22, 24]."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def select_slices(paths: list[Path], spec: str) -> list[Path]:
    """The files a slice spec ('23-24,26') names: by file number when every file is named by a
    number (ISBI's N.png: data/samples holds 23..29), else by position in natural order."""
    want = parse_slices(spec)
    if paths and all(p.stem.isdigit() for p in paths):
        return [p for p in paths if int(p.stem) in set(want)]
    return [paths[i] for i in want if 0 <= i < len(paths)]


__all__ = ["read_image", "write_image", "list_images", "overlay", "parse_slices", "select_slices"]
