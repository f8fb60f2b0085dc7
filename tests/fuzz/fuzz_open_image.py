"""Fuzz target: ``unet_rt.io.open_image`` on TIFF and zarr files (metadata above all: OME-XML,
ImageJ descriptions, TIFF tags, zarr.json / .zarray / .zattrs, NGFF multiscales) and their data.

One input is one file or one zarr directory:

* first byte even: a TIFF; the second byte picks the name (``x.tif`` or ``x.ome.tif``), the rest
  is the file;
* first byte odd: a zarr directory ``x.zarr``: the rest is a list of entries separated by
  :data:`SEP`, each ``relative/path\\n`` followed by the file's bytes (``zarr.json``,
  ``0/zarr.json``, ``0/c/0/0``...). Paths that leave the directory are skipped.

The contract checked: open_image returns an image (data rank = axes length, every pixel size
finite and positive) or raises ValueError (FileNotFoundError for a vanished file); anything else
(another exception, MemoryError, a crash, more than the RSS limit, a hang) is a finding. Invalid
pixel sizes are dropped with a MetadataWarning, which is expected here and silenced.

Run: ``make fuzz-images`` (atheris, docs/fuzzing.md); ``tests/test_fuzz_open_image.py`` replays
``tests/corpus/open_image/`` through :func:`one_input` in ``make test``; ``python
tests/fuzz/fuzz_open_image.py --seeds DIR`` writes the seed inputs.
"""
from __future__ import annotations

import atexit
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

SEP = b"\n\xff\xfeZF\n"
_TMP = Path(tempfile.mkdtemp(prefix="fuzz-open-image-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, _TMP, True)


def materialise(data: bytes, where: Path) -> Path | None:
    """The file or zarr directory an input describes, written under ``where``."""
    if len(data) < 2:
        return None
    if data[0] % 2 == 0:
        p = where / ("x.ome.tif" if data[1] % 2 else "x.tif")
        p.write_bytes(data[2:])
        return p
    root = where / "x.zarr"
    root.mkdir()
    for entry in data[1:].split(SEP):
        name, _, body = entry.partition(b"\n")
        try:
            rel = name.decode("ascii")
        except UnicodeDecodeError:
            continue
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(x in ("", ".", "..") for x in parts) or len(parts) > 8 \
                or any(len(x) > 64 or "\x00" in x for x in parts):
            continue
        f = root / rel
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(body)
        except OSError:  # a path that is a file and a directory at once
            continue
    return root


def one_input(data: bytes) -> None:
    from unet_rt.io.images import open_image

    where = Path(tempfile.mkdtemp(dir=_TMP))
    try:
        path = materialise(data, where)
        if path is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                img = open_image(path)
            except (ValueError, FileNotFoundError):
                return
        assert img.data.ndim == len(img.axes), (img.data.shape, img.axes)
        for a, (size, unit) in img.pixel_size.items():
            assert isinstance(size, float) and math.isfinite(size) and size > 0, (a, size)
            assert unit is None or isinstance(unit, str), (a, unit)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def seeds() -> dict[str, bytes]:
    """Valid inputs of every kind the readers tell apart (the corpus starts from these)."""
    import numpy as np
    import tifffile

    out: dict[str, bytes] = {}
    a = (np.arange(12 * 10) % 251).astype(np.uint8).reshape(12, 10)
    cases = {
        "tiff-plain": (dict(), False),
        "tiff-resolution-cm": (dict(resolution=(2e4, 2e4), resolutionunit="CENTIMETER"), False),
        "tiff-imagej": (dict(imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um", "spacing": 1.5,
                                                                           "axes": "ZYX"}), False),
        "tiff-ome": (dict(ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                              "PhysicalSizeZ": 2.0}), True),
        "tiff-ome-channels": (dict(ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["a", "b"]}}), True),
    }
    import io

    for name, (kw, ome) in cases.items():
        buf = io.BytesIO()
        arr = np.stack([a, a]) if kw.get("imagej") or ome else a
        tifffile.imwrite(buf, arr, **kw)
        out[name] = bytes([0, 1 if ome else 0]) + buf.getvalue()
    try:
        import zarr
        from ome_zarr.writer import write_image
    except ImportError:
        return out
    for name, fmt in (("zarr3-array", 3), ("zarr2-array", 2), ("ome-zarr-0.5", 3), ("ome-zarr-0.4", 2)):
        d = Path(tempfile.mkdtemp(dir=_TMP)) / "x.zarr"
        if name.startswith("ome"):
            root = zarr.open_group(str(d), mode="w", zarr_format=fmt)
            write_image(np.stack([a, a]), root, axes="zyx", scale_factors=[], scale={"z": 2.0, "y": 0.5, "x": 0.5},
                        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
        else:
            z = zarr.create_array(str(d), shape=a.shape, chunks=(8, 8), dtype=a.dtype, zarr_format=fmt)
            z[...] = a
        entries = [str(f.relative_to(d)).encode() + b"\n" + f.read_bytes()
                   for f in sorted(d.rglob("*")) if f.is_file()]
        out[name] = b"\x01" + SEP.join(entries)
        shutil.rmtree(d.parent, ignore_errors=True)
    return out


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--seeds":
        d = Path(argv[2])
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds().items():
            (d / f"seed-{name}").write_bytes(data)
        return
    try:
        import atheris
    except ImportError:
        sys.exit("fuzz_open_image needs atheris, the fuzz extra: .venv/bin/python -m pip install 'unet-rt[fuzz]' (make fuzz-images installs it)")
    with atheris.instrument_imports(include=["unet_rt", "tifffile", "zarr", "ome_zarr", "numcodecs"]):
        import unet_rt.io.images  # noqa: F401
        import tifffile  # noqa: F401
        import zarr  # noqa: F401
        import ome_zarr.reader  # noqa: F401
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
