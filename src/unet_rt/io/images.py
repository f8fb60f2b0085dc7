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

Hostile files (docs/robustness.md): pixel sizes must be finite and positive, else they are dropped
with a :class:`MetadataWarning`, when read and again when written; the size a file declares is
checked against the bytes it holds before anything is allocated (:data:`MAX_RATIO`,
:data:`ALWAYS_READABLE`); malformed metadata, corrupt chunks and undecodable data end in a
``ValueError`` naming the file; the zarr writer builds its output under a temporary name and
moves it into place whole.
"""
from __future__ import annotations

import io as _io
import math
import os
import shutil
import tempfile
import warnings
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


# Declared sizes against the file's real data: an image may declare at most MAX_RATIO times the
# bytes its file (TIFF) or its stored chunks (zarr) hold, so that a small file cannot make the
# reader allocate gigabytes; ALWAYS_READABLE bytes are allowed whatever the file holds (a zarr of
# fill-value chunks, an extremely compressible TIFF). Deflate's ratio is at most ~1032:1.
MAX_RATIO = 1024
ALWAYS_READABLE = 256 << 20


class MetadataWarning(UserWarning):
    """Invalid metadata (a pixel size that is not a finite positive number) was dropped."""


def valid_pixel_size(v) -> float | None:
    """``v`` as a float when it is a usable physical pixel size (finite, > 0, and so is 1/v, which
    TIFF resolution tags store), else None."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) and f > 0 and math.isfinite(1.0 / f) else None


def clean_pixel_size(px: dict | None, where) -> dict:
    """The entries of ``px`` ({axis: (size, unit)}) whose size is valid (:func:`valid_pixel_size`);
    the others are dropped with a :class:`MetadataWarning` naming ``where`` (a file)."""
    out = {}
    for a, v in (px or {}).items():
        size, unit = (v if isinstance(v, (tuple, list)) and len(v) == 2 else (v, None))
        f = valid_pixel_size(size)
        if f is None:
            warnings.warn(f"{where}: pixel size {a}={size!r} is not a finite positive number: dropped",
                          MetadataWarning, stacklevel=3)
            continue
        out[a] = (f, unit if isinstance(unit, str) and unit else None)
    return out


def check_declared(path, declared_bytes: int, stored_bytes: int, what: str = "the image") -> None:
    """ValueError when ``declared_bytes`` (what the metadata says the pixels take) exceeds both
    :data:`ALWAYS_READABLE` and :data:`MAX_RATIO` x ``stored_bytes`` (what the file really holds)."""
    if declared_bytes > max(ALWAYS_READABLE, MAX_RATIO * stored_bytes):
        raise ValueError(f"{path}: {what} declares {_gib(declared_bytes)} of pixels but the file holds "
                         f"{_gib(stored_bytes)} (more than {MAX_RATIO}x): refused before reading")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.3g} MiB" if n >= 1 << 20 else f"{n} bytes"


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
            return _checked(_open_zarr(path, level))
        if ext in TIFF_EXT:
            return _checked(_open_tiff(path))
        if ext in PIL_EXT:
            return _checked(_open_pil(path))
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as e:  # the parsers (Pillow, tifffile, zarr, ome-zarr, codecs) raise their own types
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise ValueError(str(e)) from None
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
    raise ValueError(f"{path}: unsupported image format {ext!r} (use PNG, TIFF, zarr or OME-Zarr)")


def _checked(img: ImageData) -> ImageData:
    """What every reader returns: pixels, and one axis letter per dimension."""
    if img.data.size == 0 or img.data.ndim == 0:
        raise ValueError(f"{img.path}: the image holds no pixels (shape {img.data.shape})")
    if len(img.axes) != img.data.ndim:
        raise ValueError(f"{img.path}: the metadata names {len(img.axes)} axes ({img.axes or 'none'}) for "
                         f"an image of shape {img.data.shape}")
    return img


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


_OME_BYTES = {"int8": 1, "uint8": 1, "bit": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "float": 4,
              "double": 8, "complex": 8, "double-complex": 16}


def _ome_pixels(ome_xml: str, path: Path) -> list[dict]:
    """The Pixels elements of OME-XML, checked: positive integer sizes and a known pixel type."""
    import tifffile

    ome = tifffile.xml2dict(ome_xml).get("OME")
    images = ome.get("Image") if isinstance(ome, dict) else None
    images = images if isinstance(images, list) else [images]
    out = []
    for image in images:
        pix = image.get("Pixels") if isinstance(image, dict) else None
        if not isinstance(pix, dict):
            raise ValueError(f"{path}: OME-XML: an Image without Pixels")
        for k in ("SizeX", "SizeY", "SizeC", "SizeZ", "SizeT"):
            v = pix.get(k, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{path}: OME-XML: {k}={v!r} is not a positive integer")
        if str(pix.get("Type", "")).lower() not in _OME_BYTES:
            raise ValueError(f"{path}: OME-XML: unknown pixel Type {pix.get('Type')!r}")
        out.append(pix)
    return out


def _tiff_segments(page) -> int:
    """How many strips or tiles a TIFF page's geometry declares (what tifffile's reader iterates)."""
    k = getattr(page, "keyframe", page)
    try:
        planes = int(k.samplesperpixel) if int(k.planarconfig) == 2 else 1
        depth = max(int(getattr(k, "imagedepth", 1) or 1), 1)
        if getattr(k, "is_tiled", False):
            tl, tw = max(int(k.tilelength), 1), max(int(k.tilewidth), 1)
            td = max(int(getattr(k, "tiledepth", 1) or 1), 1)
            return planes * -(-depth // td) * -(-int(k.imagelength) // tl) * -(-int(k.imagewidth) // tw)
        rps = max(int(k.rowsperstrip or k.imagelength or 1), 1)
        return planes * depth * -(-int(k.imagelength) // rps)
    except (AttributeError, TypeError, ValueError):
        return 0


def _check_tiff_declared(tf, path: Path) -> None:
    """Before tifffile builds a series (it allocates per declared plane, and walks every page): the
    chain of pages ends, every OME image's declared planes are pages of this file, and its declared
    bytes fit what the file holds."""
    size = os.path.getsize(path)
    pages = 0
    for page in tf.pages:  # tifffile follows an IFD chain that revisits one offset without end (fuzzing)
        pages += 1
        if pages > size // 6:  # an IFD takes 6 bytes at least: more pages than that is a loop
            raise ValueError(f"{path}: the TIFF's chain of image directories loops")
        declared, held = _tiff_segments(page), len(getattr(page, "dataoffsets", ()) or ())
        if declared > max(held, size // 8):  # tifffile visits every declared strip or tile, held or not
            raise ValueError(f"{path}: a page declares {declared} strips or tiles but the file holds {held}")
    if not (tf.is_ome and tf.ome_metadata):
        return
    multi_file = "FileName" in tf.ome_metadata  # planes in other files of the dataset
    for pix in _ome_pixels(tf.ome_metadata, path):
        planes = pix.get("SizeC", 1) * pix.get("SizeZ", 1) * pix.get("SizeT", 1)
        spp = 1
        ch = pix.get("Channel")
        if isinstance(ch, dict) and isinstance(ch.get("SamplesPerPixel"), int) and ch["SamplesPerPixel"] > 0:
            spp = ch["SamplesPerPixel"]
        if not multi_file and planes // spp > pages:
            raise ValueError(f"{path}: OME-XML declares {planes // spp} planes but the file holds {pages} page(s)")
        check_declared(path, planes * pix["SizeX"] * pix["SizeY"] * _OME_BYTES[str(pix["Type"]).lower()], size,
                       "its OME-XML")


def _open_tiff(path: Path) -> ImageData:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        _check_tiff_declared(tf, path)
        s = tf.series[0]
        check_declared(path, math.prod(int(n) for n in s.shape) * s.dtype.itemsize, os.path.getsize(path))
        arr = s.asarray()
        axes = _tiff_axes(s.axes)
        page = tf.pages[0]
        rgb = getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB
        px: dict = {}
        names = None
        kind = "tiff"
        if tf.is_ome and tf.ome_metadata:
            kind = "ome-tiff"
            pix = _ome_pixels(tf.ome_metadata, path)[0]
            for ax in "XYZ":
                if f"PhysicalSize{ax}" in pix:
                    px[ax] = (pix[f"PhysicalSize{ax}"], unit_name(pix.get(f"PhysicalSize{ax}Unit", "µm")))
            if "TimeIncrement" in pix:
                px["T"] = (pix["TimeIncrement"], unit_name(pix.get("TimeIncrementUnit", "s")))
            ch = pix.get("Channel")
            ch = ch if isinstance(ch, list) else [ch] if ch else []
            if ch and all(isinstance(c, dict) and "Name" in c for c in ch):
                names = [str(c["Name"]) for c in ch]
        elif tf.is_imagej:
            kind = "imagej-tiff"
            meta = tf.imagej_metadata or {}
            unit = unit_name(meta.get("unit"))
            for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
                t = page.tags.get(tag)
                r = _rational(t.value) if t is not None else None
                if r:
                    px[ax] = (1 / r, unit)
            if "spacing" in meta:
                px["Z"] = (meta["spacing"], unit)
            if "finterval" in meta:
                px["T"] = (meta["finterval"], unit_name(meta.get("tunit", "s")))
            if isinstance(meta.get("Labels"), (list, tuple)) and "C" in axes:
                names = [str(n) for n in meta["Labels"]]
        else:
            unit = page.tags.get("ResolutionUnit")
            if unit is not None and unit.value == tifffile.RESUNIT.CENTIMETER:
                for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
                    t = page.tags.get(tag)
                    r = _rational(t.value) if t is not None else None
                    if r:
                        px[ax] = (1e4 / r, "micrometer")
    return ImageData(arr, axes, clean_pixel_size(px, path), names, rgb, kind, path)


def _rational(v) -> float | None:
    """A TIFF RATIONAL (numerator, denominator) as a float; None when it is not a positive number."""
    if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v) and v[0] > 0 and v[1] > 0):
        return None
    return v[0] / v[1]


def _ngff_multiscales(group) -> list | None:
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    return attrs.get("multiscales") or (ome.get("multiscales") if isinstance(ome, dict) else None)


def _relative_key(p) -> bool:
    """A dataset path that names a node inside its group: relative, no '..', no empty parts."""
    return isinstance(p, str) and bool(p) and not p.startswith("/") and \
        all(part not in ("", ".", "..") for part in p.split("/")) and "\\" not in p


def ngff_multiscale(group, path) -> dict | None:
    """The first NGFF multiscale of ``group``, checked (None without ``multiscales`` metadata):
    datasets with relative paths to arrays of the group, axes by name, scale transforms with one
    number per axis. Invalid scale values (not finite and positive) become 1.0 with a
    :class:`MetadataWarning`. ValueError for anything malformed."""
    ms = _ngff_multiscales(group)
    if not ms:
        return None
    if not isinstance(ms, list) or not isinstance(ms[0], dict):
        raise ValueError(f"{path}: NGFF multiscales metadata is not a list of objects")
    m = dict(ms[0])
    ds = m.get("datasets")
    if not isinstance(ds, list) or not ds or not all(isinstance(d, dict) for d in ds):
        raise ValueError(f"{path}: NGFF multiscales without a list of datasets")
    axes = m.get("axes")
    if axes is not None:
        if not isinstance(axes, list) or not all(
                isinstance(a, str) or (isinstance(a, dict) and isinstance(a.get("name"), str)) for a in axes):
            raise ValueError(f"{path}: NGFF axes must be a list of names or of objects with a name")
    datasets = []
    for d in ds:
        if not _relative_key(d.get("path")):
            raise ValueError(f"{path}: NGFF dataset path {d.get('path')!r} is not a relative path inside the image")
        if not _is_array(group, d["path"]):
            raise ValueError(f"{path}: NGFF dataset {d['path']!r} is not an array of the image")
        d = dict(d)
        cts = d.get("coordinateTransformations")
        if cts is not None:
            if not isinstance(cts, list) or not all(isinstance(t, dict) for t in cts):
                raise ValueError(f"{path}: NGFF coordinateTransformations of {d['path']!r} is not a list of objects")
            d["coordinateTransformations"] = [_clean_transform(t, axes, path) for t in cts]
        datasets.append(d)
    m["datasets"] = datasets
    return m


def _clean_transform(t: dict, axes, path) -> dict:
    t = dict(t)
    kind = t.get("type")
    if kind not in ("scale", "translation"):
        return t
    v = t.get(kind)
    if not isinstance(v, list) or (axes is not None and len(v) != len(axes)) or \
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise ValueError(f"{path}: NGFF {kind} must be a list of numbers, one per axis")
    if kind == "scale":
        bad = [i for i, x in enumerate(v) if valid_pixel_size(x) is None]
        if bad:
            names = [(a["name"] if isinstance(a, dict) else a) for a in axes] if axes else [str(i) for i in range(len(v))]
            warnings.warn(f"{path}: NGFF scale {', '.join(f'{names[i]}={v[i]!r}' for i in bad)} is not a finite "
                          f"positive number: read as 1", MetadataWarning, stacklevel=4)
            t["scale"] = [1.0 if i in bad else float(x) for i, x in enumerate(v)]
    elif not all(math.isfinite(x) for x in v):
        raise ValueError(f"{path}: NGFF translation holds a value that is not finite")
    return t


def _is_array(group, key: str) -> bool:
    zarr = _import_zarr()
    try:
        return isinstance(group[key], zarr.Array)
    except (KeyError, ValueError, TypeError):
        return False


def _stored_bytes(path: Path) -> int:
    """The bytes of a local zarr array's chunks (its directory's files but the metadata)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            if f not in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
    return total


def checked_zarr_array(arr, path):
    """A zarr array that may be read: chunk sides >= 1 and a declared size the stored chunks can
    back (:func:`check_declared`); ValueError otherwise. ``path``: its local directory."""
    shape, chunks = tuple(arr.shape), tuple(arr.chunks)
    if len(chunks) != len(shape) or not all(isinstance(c, int) and c >= 1 for c in chunks):
        raise ValueError(f"{path}: zarr chunk shape {chunks} is invalid (every side must be >= 1)")
    check_declared(path, math.prod(int(n) for n in shape) * np.dtype(arr.dtype).itemsize, _stored_bytes(Path(path)),
                   f"the zarr array {shape}")
    return arr


def _read_zarr(arr, path) -> np.ndarray:
    checked_zarr_array(arr, path)
    try:
        return np.asarray(arr[...])
    except MemoryError:
        raise
    except Exception as e:  # a codec's error on a corrupt chunk (zstd, blosc, gzip...)
        raise ValueError(f"{path}: a chunk cannot be decoded ({type(e).__name__}: {e})") from None


def open_zarr_input(path):
    """A zarr image for block-wise processing (``unet-rt segment --workers``, unet_rt.scale):
    (array, checked NGFF multiscale dict or None, the image's root group or None). The array is
    the full-resolution level of an OME-Zarr image, or the plain zarr array at ``path``; both are
    checked as :func:`open_image` checks them. ValueError for anything unusable."""
    zarr = _import_zarr()
    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise ValueError(f"{path}: not a zarr array or group ({type(e).__name__}: {e})") from None
    if isinstance(node, zarr.Array):
        return checked_zarr_array(node, path), None, None
    ms = ngff_multiscale(node, path)
    if not ms:
        raise ValueError(f"{path} is a zarr group without OME-Zarr multiscales metadata: give the array's path")
    key = ms["datasets"][0]["path"]
    return checked_zarr_array(node[key], path / key), ms, node


def _open_zarr(path: Path, level: int) -> ImageData:
    zarr = _import_zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises its own error types per version
        raise ValueError(f"{path}: not a zarr array or group ({type(e).__name__}: {e})") from None
    if isinstance(node, zarr.Array):
        parent = _ngff_parent(path)
        if parent is not None:  # a level inside an OME-Zarr image ("image.zarr/0")
            return _open_ome_zarr(parent[0], parent[1])
        arr = _read_zarr(node, path)
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
        with warnings.catch_warnings():  # _open_ome_zarr warns
            warnings.simplefilter("ignore", MetadataWarning)
            ms = ngff_multiscale(g, path.parent)
    except Exception:
        return None
    if not ms:
        return None
    names = [d["path"] for d in ms["datasets"]]
    return (path.parent, names.index(path.name)) if path.name in names else None


def _open_ome_zarr(path: Path, level: int) -> ImageData:
    ome_zarr = _import_ome_zarr()
    zarr = _import_zarr()
    group = zarr.open_group(str(path), mode="r")
    with warnings.catch_warnings():  # invalid scales: clean_pixel_size warns below, naming the axes
        warnings.simplefilter("ignore", MetadataWarning)
        ms = ngff_multiscale(group, path)
    if not ms:
        raise ValueError(f"{path}: no OME-Zarr image found")
    if not 0 <= level < len(ms["datasets"]):
        raise ValueError(f"{path}: resolution level {level} does not exist (levels 0..{len(ms['datasets']) - 1})")
    key = ms["datasets"][level]["path"]
    level_arr = checked_zarr_array(group[key], path / key)
    reader = ome_zarr.reader.Reader(ome_zarr.io.parse_url(str(path), mode="r"))
    node = next(iter(reader()), None)
    if node is None or not node.data:
        raise ValueError(f"{path}: no OME-Zarr image found")
    meta = node.metadata
    ngff_axes = meta.get("axes") or [{"name": n} for n in "tczyx"[5 - level_arr.ndim:]]
    names = [(a["name"] if isinstance(a, dict) else str(a)) for a in ngff_axes]
    axes = "".join(n.upper() for n in names)
    if len(axes) != level_arr.ndim:
        raise ValueError(f"{path}: NGFF names {len(axes)} axes ({axes}) for an array of {level_arr.ndim} dimensions")
    arr = _read_zarr(level_arr, path / key)
    scale = raw = None
    cts = ms["datasets"][level].get("coordinateTransformations") or []
    raw_ms = _ngff_multiscales(group) or [ms]  # the metadata as stored (ms was found from it)
    raw_cts = raw_ms[0]["datasets"][level].get("coordinateTransformations") or []
    for t, r in zip(cts, raw_cts):
        if t.get("type") == "scale":
            scale, raw = list(t["scale"]), list(r["scale"])  # invalid values: 1.0 in scale, as found in raw
    px = {}
    if scale and raw is not None:
        for a, sc in zip(ngff_axes, raw):
            if isinstance(a, dict) and a.get("type") in ("space", "time"):
                px[a["name"].upper()] = (sc, a.get("unit"))
    cn = meta.get("channel_names") or meta.get("name") if "C" in axes else None
    channel_names = [str(c) for c in cn] if isinstance(cn, (list, tuple)) else None
    return ImageData(arr, axes, clean_pixel_size(px, path), channel_names, False, "ome-zarr", path,
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
        px = clean_pixel_size(pixel_size, path)
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
    """ome-zarr's writer arguments; ``pixel_size`` was checked (clean_pixel_size)."""
    scale = {a.lower(): float(pixel_size[a][0]) for a in axes if a in pixel_size and a != "C"}
    units = {a.lower(): pixel_size[a][1] for a in axes if a in pixel_size and pixel_size[a][1] and a != "C"}
    return {"axes": [a.lower() for a in axes], "scale": scale or None, "axes_units": units or None}


def _temp_dir_beside(path: Path) -> Path:
    """A new empty directory next to ``path`` (same file system: it can be renamed onto ``path``),
    with the permissions a directory created there would get."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    return tmp


def write_ome_zarr(path, labels: dict, image: ImageData | None = None, axes: str | None = None) -> Path:
    """Write label images into the NGFF ``labels`` group of the OME-Zarr at ``path``.

    ``labels``: {name: integer array}, their axes ``axes`` (the image's axes without C; default
    YX/ZYX). With no zarr at ``path`` yet, ``image`` is written there first (one level, NGFF axis
    order, its pixel sizes); with an existing OME-Zarr at ``path`` its image is left untouched and
    only ``labels/<name>`` is added (refused when that label exists). The labels carry the pixel
    size of the level they were computed on, so viewers (napari, OME-Zarr viewers) overlay them.

    Nothing is half-written: everything is built in a temporary directory beside ``path`` and moved
    into place whole (the new zarr, or each ``labels/<name>`` of an existing one); on an error the
    temporary directory is removed and ``path`` is as it was."""
    _import_ome_zarr()
    zarr = _import_zarr()
    from ome_zarr.writer import write_image as ngff_write_image, write_labels

    path = Path(path)
    px = clean_pixel_size(image.pixel_size if image else {}, path)
    todo = []
    for name, lab in labels.items():
        if not (isinstance(name, str) and _relative_key(name) and "/" not in name):
            raise ValueError(f"label name {name!r}: use a plain name (no '/', not '.' or '..')")
        lab = np.asarray(lab)
        todo.append((name, *_to_ngff_order(lab, axes or "ZYX"[3 - lab.ndim:])))
    if path.exists():
        try:
            root = zarr.open_group(str(path), mode="r")
        except Exception as e:
            raise ValueError(f"{path} exists and is not a zarr group ({type(e).__name__}): choose a new name") from None
        if not _ngff_multiscales(root):
            raise ValueError(f"{path} exists and is not an OME-Zarr image: choose a new name")
        has_labels = "labels" in root
        existing = set(root["labels"].group_keys()) if has_labels else set()
        existing |= {n for n, *_ in todo if (path / "labels" / n).exists()}
        clash = sorted({n for n, *_ in todo} & existing)
        if clash:
            raise ValueError(f"{path} already holds labels/{clash[0]}: choose another --label-name")
        tmp = _temp_dir_beside(path)
        try:
            troot = zarr.open_group(str(tmp), mode="w", zarr_format=root.metadata.zarr_format)
            for name, lab, lab_axes in todo:
                write_labels(lab, troot, name=name, scale_factors=[], **_ngff_kwargs(lab_axes, px))
            if not has_labels:
                os.rename(tmp / "labels", path / "labels")
            else:
                from ome_zarr.writer import add_metadata, get_metadata

                for name, *_ in todo:
                    os.rename(tmp / "labels" / name, path / "labels" / name)
                lg = zarr.open_group(str(path / "labels"), mode="r+")
                names = get_metadata(lg).get("labels", [])
                add_metadata(lg, {"labels": list(names) + [n for n, *_ in todo if n not in names]})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path
    if image is None:
        raise ValueError(f"{path} does not exist and no image was given to write there")
    data, img_axes = _to_ngff_order(np.asarray(image.data), image.axes)
    tmp = _temp_dir_beside(path)
    try:
        root = zarr.open_group(str(tmp), mode="w")
        ngff_write_image(data, root, scale_factors=[], **_ngff_kwargs(img_axes, px))
        for name, lab, lab_axes in todo:
            write_labels(lab, root, name=name, scale_factors=[], **_ngff_kwargs(lab_axes, px))
        os.rename(tmp, path)  # fails (the temporary is removed) if something appeared at path meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


__all__ = ["ImageData", "MetadataWarning", "open_image", "open_zarr_input", "valid_pixel_size", "clean_pixel_size",
           "check_declared", "checked_zarr_array", "ngff_multiscale", "read_image", "write_image", "write_ome_zarr", "list_images", "overlay",
           "visible_labels", "missing_extra", "same_file", "is_zarr"]
