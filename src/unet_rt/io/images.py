"""Image I/O for the CLI, the napari plugin and the trainer: PNG, TIFF (plain, ImageJ, OME), zarr
and OME-Zarr (NGFF), read and written with the field's own libraries (Pillow, tifffile, zarr,
ome-zarr).

Pixel values are returned as stored (uint8, uint16, float32...): never rescaled, never assumed
8-bit. :func:`open_image` also returns what the file says about its dimensions (an axes string,
see :mod:`unet_rt.io.axes`), physical pixel sizes and channel names; :func:`read_image` returns only
the array (H x W, H x W x C for RGB PNG, T x H x W for a multi-page TIFF or a zarr stack).

Output: :func:`write_image` writes PNG or TIFF atomically; TIFFs keep the physical pixel size
(ImageJ metadata for ``.tif``, OME-XML for ``.ome.tif``). :func:`write_ome_zarr` writes an
OME-Zarr image with label images in its NGFF ``labels`` group, or adds labels beside the image
of an existing OME-Zarr.
"""
from __future__ import annotations

import io as _io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_rt.format.model_file import atomic_write

TIFF_EXT = (".tif", ".tiff")
PIL_EXT = (".png", ".jpg", ".jpeg", ".bmp")
ZARR_EXT = (".zarr",)
# what -o may name: the image writers below (a directory otherwise)
OUTPUT_EXT = (".png", ".tif", ".tiff", ".zarr")

# unit names: NGFF uses UDUNITS-2 names, OME-XML and ImageJ use symbols
_UNIT_NAMES = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "\\u00B5m": "micrometer",
               "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter", "Å": "angstrom",
               "s": "second", "ms": "millisecond", "min": "minute", "h": "hour"}
_UNIT_SYMBOLS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
                 "angstrom": "Å", "second": "s", "millisecond": "ms", "minute": "min", "hour": "h"}


def missing_extra(extra: str, what: str, err: Exception) -> ImportError:
    """The error for an optional feature whose extra is not installed."""
    return ImportError(f"{what} needs the '{extra}' extra: pip install 'unet-rt[{extra}]' ({err})")


def _import_zarr():
    try:
        import zarr
    except ImportError as e:
        raise missing_extra("zarr", "zarr / OME-Zarr input and output", e) from None
    return zarr


def _import_ome_zarr():
    _import_zarr()
    try:
        import ome_zarr.io
        import ome_zarr.reader
        import ome_zarr.writer
    except ImportError as e:
        raise missing_extra("zarr", "OME-Zarr input and output", e) from None
    return ome_zarr


def unit_name(u) -> str | None:
    if u is None or u == "":
        return None
    return _UNIT_NAMES.get(str(u), str(u))


@dataclass
class ImageData:
    """An image and what its file says about it."""
    data: np.ndarray
    axes: str                                   # one letter per dimension of ``data`` (unet_rt.io.axes)
    pixel_size: dict = field(default_factory=dict)  # axis letter -> (size, NGFF unit name or None)
    channel_names: list | None = None
    rgb: bool = False                           # the C axis holds display colours (RGB PNG/TIFF)
    kind: str = "image"                         # png, tiff, imagej-tiff, ome-tiff, zarr, ome-zarr
    path: Path | None = None
    ngff: dict | None = None                    # for OME-Zarr: {"axes": [...], "scale": [...], "level": n}


# ---------------------------------------------------------------------------------------------- reading
def is_zarr(path) -> bool:
    p = Path(path)
    return p.suffix.lower() in ZARR_EXT or (p.is_dir() and any((p / n).exists() for n in (".zarray", ".zgroup", "zarr.json")))


def open_image(path, level: int = 0) -> ImageData:
    """Read an image with its metadata. ``level``: the resolution level of an OME-Zarr multiscale
    image (0 = full resolution)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image: {path}")
    ext = path.suffix.lower()
    try:
        if is_zarr(path):
            return _open_zarr(path, level)
        if ext in TIFF_EXT:
            return _open_tiff(path)
        if ext in PIL_EXT:
            return _open_pil(path)
    except (OSError, ValueError, KeyError, IndexError, SyntaxError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
    raise ValueError(f"{path}: unsupported image format {ext!r} (use PNG, TIFF, zarr or OME-Zarr)")


def read_image(path) -> np.ndarray:
    """Only the pixels of :func:`open_image` (H x W, H x W x C, T x H x W...)."""
    return open_image(path).data


def _open_pil(path: Path) -> ImageData:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode now: a truncated file fails here, inside open_image's error handling
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L"):
            arr = np.array(im, dtype=np.uint16)
        elif mode == "P":
            arr, mode = np.array(im.convert("RGB")), "RGB"
        elif mode in ("LA", "RGBA"):
            mode = mode[:-1]
            arr = np.array(im.convert(mode))
        else:
            arr = np.array(im)
    if arr.dtype == np.int32:  # PIL mode "I" (16-bit PNG on some Pillow versions)
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr.astype(np.float32)
    rgb = arr.ndim == 3
    return ImageData(arr, "YXC" if rgb else "YX", rgb=rgb, kind="png" if path.suffix.lower() == ".png" else "image",
                     path=path)


def _tiff_axes(axes: str) -> str:
    """tifffile's axes codes -> ours: S (samples) -> C; every other non-YX letter stays a stack axis."""
    return axes.replace("S", "C")


def _open_tiff(path: Path) -> ImageData:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        s = tf.series[0]
        arr = s.asarray()
        axes = _tiff_axes(s.axes)
        page = tf.pages[0]
        rgb = getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB
        px: dict = {}
        names = None
        kind = "tiff"
        if tf.is_ome and tf.ome_metadata:
            kind = "ome-tiff"
            ome = tifffile.xml2dict(tf.ome_metadata)["OME"]
            image = ome["Image"][0] if isinstance(ome["Image"], list) else ome["Image"]
            pix = image["Pixels"]
            for ax in "XYZ":
                if f"PhysicalSize{ax}" in pix:
                    px[ax] = (float(pix[f"PhysicalSize{ax}"]), unit_name(pix.get(f"PhysicalSize{ax}Unit", "µm")))
            if "TimeIncrement" in pix:
                px["T"] = (float(pix["TimeIncrement"]), unit_name(pix.get("TimeIncrementUnit", "s")))
            ch = pix.get("Channel")
            ch = ch if isinstance(ch, list) else [ch] if ch else []
            if ch and all("Name" in c for c in ch):
                names = [str(c["Name"]) for c in ch]
        elif tf.is_imagej:
            kind = "imagej-tiff"
            meta = tf.imagej_metadata or {}
            unit = unit_name(meta.get("unit"))
            for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
                t = page.tags.get(tag)
                if t is not None and t.value[0]:
                    px[ax] = (t.value[1] / t.value[0], unit)
            if "spacing" in meta:
                px["Z"] = (float(meta["spacing"]), unit)
            if "finterval" in meta:
                px["T"] = (float(meta["finterval"]), unit_name(meta.get("tunit", "s")))
            if meta.get("Labels") and "C" in axes:
                names = list(meta["Labels"])
        else:
            unit = page.tags.get("ResolutionUnit")
            if unit is not None and unit.value == tifffile.RESUNIT.CENTIMETER:
                for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
                    t = page.tags.get(tag)
                    if t is not None and t.value[0]:
                        px[ax] = (1e4 * t.value[1] / t.value[0], "micrometer")
    return ImageData(arr, axes, px, names, rgb, kind, path)


def _ngff_multiscales(group) -> list | None:
    attrs = dict(group.attrs)
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _open_zarr(path: Path, level: int) -> ImageData:
    zarr = _import_zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises its own error types per version
        raise ValueError(f"{path}: not a zarr array or group ({type(e).__name__}: {e})") from None
    if isinstance(node, zarr.Array):
        arr = np.asarray(node[...])
        parent = _ngff_parent(path)
        if parent is not None:  # a level inside an OME-Zarr image ("image.zarr/0")
            img = _open_ome_zarr(parent[0], parent[1])
            img.data = arr
            return img
        from unet_rt.io.axes import guess_axes

        return ImageData(arr, guess_axes(arr.shape), kind="zarr", path=path)
    if _ngff_multiscales(node):
        return _open_ome_zarr(path, level)
    arrays = sorted(k for k, _ in node.arrays()) if hasattr(node, "arrays") else []
    raise ValueError(f"{path} is a zarr group without OME-Zarr (NGFF) multiscales metadata: give one of its "
                     f"arrays ({', '.join(arrays[:5]) or 'none found'})")


def _ngff_parent(path: Path):
    """(group path, level) when ``path`` is one resolution level of an OME-Zarr image."""
    zarr = _import_zarr()
    try:
        g = zarr.open_group(str(path.parent), mode="r")
    except Exception:
        return None
    ms = _ngff_multiscales(g)
    if not ms:
        return None
    names = [d["path"] for d in ms[0]["datasets"]]
    return (path.parent, names.index(path.name)) if path.name in names else None


def _open_ome_zarr(path: Path, level: int) -> ImageData:
    ome_zarr = _import_ome_zarr()
    reader = ome_zarr.reader.Reader(ome_zarr.io.parse_url(str(path), mode="r"))
    node = next(iter(reader()), None)
    if node is None or not node.data:
        raise ValueError(f"{path}: no OME-Zarr image found")
    levels = node.data
    if not 0 <= level < len(levels):
        raise ValueError(f"{path}: resolution level {level} does not exist (levels 0..{len(levels) - 1})")
    meta = node.metadata
    ngff_axes = meta.get("axes") or [{"name": n} for n in "tczyx"[5 - levels[level].ndim:]]
    names = [(a["name"] if isinstance(a, dict) else str(a)) for a in ngff_axes]
    axes = "".join(n.upper() for n in names)
    arr = np.asarray(levels[level])
    scale = None
    cts = meta.get("coordinateTransformations")
    if cts and level < len(cts):
        for t in cts[level]:
            if t.get("type") == "scale":
                scale = list(t["scale"])
    px = {}
    if scale:
        for a, s in zip(ngff_axes, scale):
            if isinstance(a, dict) and a.get("type") in ("space", "time"):
                px[a["name"].upper()] = (float(s), a.get("unit"))
    cn = meta.get("channel_names") or meta.get("name") if "C" in axes else None
    channel_names = list(cn) if isinstance(cn, (list, tuple)) else None
    return ImageData(arr, axes, px, channel_names, False, "ome-zarr", path,
                     ngff={"axes": ngff_axes, "scale": scale, "level": level})


def list_images(path) -> list[Path]:
    """The image files in a directory (sorted naturally: 2.png before 10.png), or [path]. A zarr
    array or group (OME-Zarr) counts as one image."""
    path = Path(path)
    if path.is_dir() and not is_zarr(path):
        files = [p for p in path.iterdir() if p.suffix.lower() in TIFF_EXT + PIL_EXT or
                 (p.is_dir() and p.suffix.lower() in ZARR_EXT)]
        return sorted(files, key=lambda p: (len(p.stem), p.stem) if p.stem.isdigit() else (1 << 30, p.stem))
    return [path]


# ---------------------------------------------------------------------------------------------- writing
def _imagej_unit(px: dict) -> str | None:
    units = {u for a, (_, u) in px.items() if a in "XYZ" and u}
    return _UNIT_SYMBOLS.get(units.pop(), None) if len(units) == 1 else None


def write_image(path, arr: np.ndarray, axes: str | None = None, pixel_size: dict | None = None,
                channel_names: list | None = None) -> None:
    """Write atomically: PNG for 2-D uint8/uint16 (or H x W x 3/4 uint8), TIFF for anything.

    TIFF: with ``pixel_size`` ({axis: (size, unit)}), a ``.ome.tif`` name gets OME-XML (axes,
    physical sizes, channel names) and any other ``.tif`` ImageJ metadata (resolution, unit, Z
    spacing), both of which Fiji, napari and tifffile read back."""
    path = Path(path)
    arr = np.asarray(arr)
    ext = path.suffix.lower()
    if ext in TIFF_EXT:
        import tifffile

        rgb = arr.ndim >= 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8 and (axes or "").endswith("C")
        photometric = "rgb" if rgb or (axes is None and arr.ndim == 3 and arr.shape[-1] in (3, 4)
                                        and arr.dtype == np.uint8) else "minisblack"
        kw: dict = {"photometric": photometric, "compression": "zlib"}
        px = pixel_size or {}
        if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
            meta: dict = {"axes": (axes or "").replace("C", "S") if photometric == "rgb" else axes}
            for a in "XYZ":
                if a in px:
                    meta[f"PhysicalSize{a}"] = px[a][0]
                    if px[a][1]:
                        meta[f"PhysicalSize{a}Unit"] = _UNIT_SYMBOLS.get(px[a][1], px[a][1])
            if channel_names:
                meta["Channel"] = {"Name": list(channel_names)}
            kw.update(ome=True, metadata={k: v for k, v in meta.items() if v is not None})
        elif px.get("X") and px.get("Y") and arr.dtype in (np.uint8, np.uint16, np.float32) and \
                (axes is None or set(axes) <= set("TZCYX")):
            # ImageJ names RGB samples S (an RGB overlay of a stack: TYXS)
            meta = {"axes": axes.replace("C", "S") if photometric == "rgb" else axes} if axes else {}
            unit = _imagej_unit(px)
            if unit:
                meta["unit"] = "um" if unit == "µm" else unit
            if "Z" in px:
                meta["spacing"] = px["Z"][0]
            kw.update(imagej=True, resolution=(1 / px["X"][0], 1 / px["Y"][0]), metadata=meta)
            kw.pop("compression")  # ImageJ reads only uncompressed hyperstacks
        elif px.get("X") and px.get("Y"):
            kw.update(resolution=(1e4 / px["X"][0], 1e4 / px["Y"][0]), resolutionunit="CENTIMETER")
        buf = _io.BytesIO()
        tifffile.imwrite(buf, arr, **kw)
        _write_bytes(path, buf.getvalue())
    elif ext == ".png":
        from PIL import Image

        if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3) or \
                (arr.ndim == 3 and (arr.dtype != np.uint8 or arr.shape[-1] not in (3, 4))):
            raise ValueError(f"PNG holds 2-D uint8/uint16 or HxWx3/4 uint8 images, got {arr.dtype} {arr.shape}: use .tif")
        buf = _io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        _write_bytes(path, buf.getvalue())
    else:
        raise ValueError(f"{path}: unsupported output format {ext!r} (use .png or .tif)")


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None


NGFF_ORDER = "TCZYX"


def _to_ngff_order(arr: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """NGFF wants the axes in t, c, z, y, x order."""
    bad = sorted(set(axes) - set(NGFF_ORDER))
    if bad:
        raise ValueError(f"OME-Zarr holds axes among T, C, Z, Y, X; this image has {''.join(bad)} (axes {axes})")
    want = "".join(a for a in NGFF_ORDER if a in axes)
    return np.transpose(arr, [axes.index(a) for a in want]), want


def _ngff_kwargs(axes: str, pixel_size: dict) -> dict:
    scale = {a.lower(): float(pixel_size[a][0]) for a in axes if a in pixel_size and a != "C"}
    units = {a.lower(): pixel_size[a][1] for a in axes if a in pixel_size and pixel_size[a][1] and a != "C"}
    return {"axes": [a.lower() for a in axes], "scale": scale or None, "axes_units": units or None}


def write_ome_zarr(path, labels: dict, image: ImageData | None = None, axes: str | None = None) -> Path:
    """Write label images into the NGFF ``labels`` group of the OME-Zarr at ``path``.

    ``labels``: {name: integer array}, their axes ``axes`` (the image's axes without C; default
    YX/ZYX). With no zarr at ``path`` yet, ``image`` is written there first (one level, NGFF axis
    order, its pixel sizes); with an existing OME-Zarr at ``path`` its image is left untouched and
    only ``labels/<name>`` is added (refused when that label exists). The labels carry the pixel
    size of the level they were computed on, so viewers (napari, OME-Zarr viewers) overlay them."""
    _import_ome_zarr()
    zarr = _import_zarr()
    from ome_zarr.writer import write_image as ngff_write_image, write_labels

    path = Path(path)
    px = dict(image.pixel_size) if image else {}
    if path.exists():
        try:
            root = zarr.open_group(str(path), mode="r+")
        except Exception as e:
            raise ValueError(f"{path} exists and is not a zarr group ({type(e).__name__}): choose a new name") from None
        if not _ngff_multiscales(root):
            raise ValueError(f"{path} exists and is not an OME-Zarr image: choose a new name")
        existing = set(root["labels"].group_keys()) if "labels" in root else set()
        clash = sorted(set(labels) & existing)
        if clash:
            raise ValueError(f"{path} already holds labels/{clash[0]}: choose another --label-name")
    else:
        if image is None:
            raise ValueError(f"{path} does not exist and no image was given to write there")
        data, img_axes = _to_ngff_order(np.asarray(image.data), image.axes)
        root = zarr.open_group(str(path), mode="w")
        ngff_write_image(data, root, scale_factors=[], **_ngff_kwargs(img_axes, px))
    for name, lab in labels.items():
        lab = np.asarray(lab)
        lab, lab_axes = _to_ngff_order(lab, axes or "ZYX"[3 - lab.ndim:])
        write_labels(lab, root, name=name, scale_factors=[], **_ngff_kwargs(lab_axes, px))
    return path


# ---------------------------------------------------------------------------------------------- pictures
def overlay(image: np.ndarray, labels: np.ndarray, color=(255, 64, 0), alpha: float = 0.45,
            cls: int = 0) -> np.ndarray:
    """An RGB uint8 picture: the grey image with pixels of class ``cls`` tinted (default: class 0).
    ``image`` is H x W (or H x W x C: averaged), or a stack N x H x W with labels N x H x W (the
    grey range is taken over the whole stack, so frames compare)."""
    img = np.asarray(image, np.float64)
    lab = np.asarray(labels)
    if img.ndim == lab.ndim + 1:
        img = img.mean(axis=-1)
    if img.shape != lab.shape:
        raise ValueError(f"overlay: image {img.shape} and labels {lab.shape} differ in shape")
    lo, hi = np.percentile(img, [0.5, 99.5])
    g = np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(g[..., None], 3, axis=-1)
    m = lab == cls
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, np.float64)
    return rgb.astype(np.uint8)


def visible_labels(labels: np.ndarray, classes: int) -> np.ndarray:
    """Class map 0..K-1 spread over 0..255 (uint8) so that an image viewer shows it."""
    step = 255 // max(classes - 1, 1)
    if classes > 256:
        return np.asarray(labels)
    return (np.asarray(labels, np.uint16) * step).astype(np.uint8)


def same_file(a, b) -> bool:
    """Whether two paths name the same file or directory (existing or not)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


__all__ = ["ImageData", "open_image", "read_image", "write_image", "write_ome_zarr", "list_images", "overlay",
           "visible_labels", "missing_extra", "same_file", "is_zarr"]
