"""The runtime model file (docs/architecture.md, "File format"): one safetensors container for every backend.

Layout: safetensors (8-byte little-endian header length, JSON header, raw little-endian tensors).
``__metadata__`` (string values only, as safetensors requires):

=================  ===============================================================================
format             "unet-rt"
format_version     "1"
kind               "weights" (fp32 tensors named as in ``unet_rt.train.model.UNet.state_dict()``)
                   or "tensorrt" (tensor ``engine``: U8 bytes of a serialized TensorRT engine)
arch               JSON: {"in_channels", "classes", "depth", "base", "padding": "valid"|"same"}
normalization      JSON: {"mean": [per channel], "std": [per channel]} in raw intensity units:
                   the network sees (x - mean) / std. Never assumes 8-bit data. Optional keys:
                   "percentiles": [lo, hi] (0 <= lo < hi <= 100): per image and channel, first
                   x' = (x - P_lo(x)) / (P_hi(x) - P_lo(x)) (numpy's linear percentiles; scale 1
                   when P_hi = P_lo), then (x' - mean) / std; mean/std are then in x' units.
                   "train_range": {"percentiles": [lo, hi], "low": [per channel], "high": [...]}:
                   raw percentiles of the training images; Engine warns on inputs far outside.
class_names        JSON list of K names
provenance         JSON: free-form (data, steps, date, git commit, ...)
decision           JSON, optional (absent: argmax, instances = connected components):
                   {"foreground_class": k (int, required),
                    "threshold": t in (0, 1) (label k iff p_k > t, else argmax of the others),
                    "instances": {"mask_threshold": (0, 1), "marker_threshold": (0, 1),
                                  "min_marker_size": int >= 1, "min_size": int >= 0},
                    "calibration": {free-form record of how it was chosen}}
                   Omitted keys take their defaults (threshold: argmax; mask: the segmentation;
                   markers: the mask; sizes 1 and 0). Unknown keys are errors.
tensorrt           JSON (kind "tensorrt" only): tile_in, tile_out, halo, version, gpu, precision
=================  ===============================================================================

Weight tensor names (depth D, level l = 0..D, width base*2**l)::

    enc.{l}.conv1.weight [Cl, Cin, 3, 3]   enc.{l}.conv1.bias [Cl]   (and conv2: [Cl, Cl, 3, 3])
    dec.{l}.up.weight    [C(l+1), Cl, 2, 2]  (ConvTranspose2d layout: [in, out, kh, kw])  dec.{l}.up.bias [Cl]
    dec.{l}.conv1.weight [Cl, 2*Cl, 3, 3]   input channels: [cropped skip (Cl), up-sampled (Cl)]
    dec.{l}.conv2.weight [Cl, Cl, 3, 3]
    head.weight          [K, C0, 1, 1]      head.bias [K]

A bare TensorRT plan (from ``trtexec``) is recognised by its bytes (it is not safetensors).

Validation (docs/architecture.md, "File format"): ONE validator, the native reader
(``_core.read_model_bytes``, csrc/model/model_reader.cc). :func:`load` reads the file once and hands
the bytes to it; :func:`save` builds the bytes and has them checked by it before anything is written.
Every problem is a :class:`ModelFileError` (the native module's exception type).
"""
from __future__ import annotations

import errno
import json
import os
import stat
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # the one exception type of model files: the native reader's
    from unet_rt._core import ModelFileError
except ImportError:  # pragma: no cover - only when the package was not built (nothing can be read then)
    class ModelFileError(ValueError):  # type: ignore[no-redef]
        """The file is not a valid unet-rt model file."""

FORMAT = "unet-rt"
FORMAT_VERSION = 1
#: the shipped pretrained model (ISBI 2012, the paper's network at base 16): the default of the CLI and napari
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "isbi2012-unet16.plan"
MAX_HEADER = 100 * 1024 * 1024              # as the native reader: a longer "header" is no safetensors file

__all__ = ["ModelFile", "ModelFileError", "save", "load", "loads", "from_native", "detect_kind", "expected_shapes",
           "atomic_write", "native", "SHIPPED_MODEL"]


@dataclass
class ModelFile:
    kind: str                      # "weights" | "tensorrt" | "tensorrt-bare"
    arch: dict
    normalization: dict
    class_names: list
    tensors: dict = field(default_factory=dict)   # name -> np.ndarray
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)     # other metadata (e.g. "tensorrt": {...})
    decision: dict = field(default_factory=dict)  # the "decision" metadata ({}: absent)


def expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Every weight tensor's name and shape for an architecture (see module doc)."""
    cin, k, depth, base = (int(arch[n]) for n in ("in_channels", "classes", "depth", "base"))
    shapes: dict[str, tuple[int, ...]] = {}
    prev = cin
    for lv in range(depth + 1):
        c = base * 2**lv
        shapes[f"enc.{lv}.conv1.weight"] = (c, prev, 3, 3)
        shapes[f"enc.{lv}.conv1.bias"] = (c,)
        shapes[f"enc.{lv}.conv2.weight"] = (c, c, 3, 3)
        shapes[f"enc.{lv}.conv2.bias"] = (c,)
        prev = c
    for lv in range(depth):
        c = base * 2**lv
        shapes[f"dec.{lv}.up.weight"] = (2 * c, c, 2, 2)
        shapes[f"dec.{lv}.up.bias"] = (c,)
        shapes[f"dec.{lv}.conv1.weight"] = (c, 2 * c, 3, 3)
        shapes[f"dec.{lv}.conv1.bias"] = (c,)
        shapes[f"dec.{lv}.conv2.weight"] = (c, c, 3, 3)
        shapes[f"dec.{lv}.conv2.bias"] = (c,)
    shapes["head.weight"] = (k, base, 1, 1)
    shapes["head.bias"] = (k,)
    return shapes


def native():
    """The compiled core (``unet_rt._core``), or an ImportError saying how to build it."""
    try:
        import unet_rt._core as _core
    except ImportError as e:  # pragma: no cover - only when the package was not built
        raise ImportError("unet_rt._core (the compiled core) is missing: install the package with "
                          "`pip install .` (or `make install`)") from e
    return _core


class NotARegularFileError(OSError):
    """A model path that names a directory, FIFO or device: "PATH: not a regular file (a FIFO)"."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _open_regular(path) -> int:
    """An fd for reading a regular file; a FIFO or device is refused at once (O_NONBLOCK: opening a
    FIFO does not wait for a writer), a directory too."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a file"
        raise NotARegularFileError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                                   f"not a regular file ({what})", str(path))
    os.set_blocking(fd, True)
    return fd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _jsonable(v):
    """numpy scalars and arrays in metadata -> JSON values."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _dumps(key: str, value) -> str:
    try:
        return json.dumps(value, default=_jsonable, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"bad {key!r} metadata: {e}") from None


def save(path, model: ModelFile) -> None:
    """Write a model file atomically, after the native reader has accepted its bytes (nothing is
    written otherwise)."""
    from safetensors.numpy import save as st_save

    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": str(model.kind),
            "arch": _dumps("arch", model.arch), "normalization": _dumps("normalization", model.normalization),
            "class_names": _dumps("class_names", [str(c) for c in model.class_names]),
            "provenance": _dumps("provenance", model.provenance)}
    if model.decision:
        meta["decision"] = _dumps("decision", model.decision)
    for k, v in model.extra.items():
        meta[k] = v if isinstance(v, str) else _dumps(k, v)
    tensors = {}
    for k, v in model.tensors.items():
        a = np.ascontiguousarray(v)
        tensors[k] = a.astype("<f4") if a.dtype.kind == "f" and model.kind == "weights" else a
    try:
        data = st_save(tensors, metadata=meta)
    except Exception as e:  # safetensors' own error types (e.g. an unsupported dtype)
        raise ModelFileError(f"{path}: cannot write the model file: {e}") from None
    native().read_model_bytes(data, str(path), tensorrt=True)  # ModelFileError: nothing written
    atomic_write(path, data)


def _bare_tensorrt(head: bytes) -> bool:
    """A raw TensorRT plan (from ``trtexec``): no safetensors length, the tag "ptrt"/"ftrt" up front."""
    if len(head) < 8:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return n > MAX_HEADER and (b"ptrt" in head[:8] or b"ftrt" in head[:8])


def _floats(v) -> list:
    return [float(x) for x in v]


def from_native(info: dict) -> ModelFile:
    """The records of a file the native reader accepted (its dict: ``_core.read_model_bytes`` or
    ``_core.Engine.info``), without tensors: arch, normalisation and class names as the runtime holds
    them, the rest from the stored metadata."""
    md = info["metadata"]
    stored = json.loads(md["normalization"])
    norm: dict = {"mean": _floats(info["normalization"]["mean"]), "std": _floats(info["normalization"]["std"])}
    if stored.get("percentiles") is not None:
        norm["percentiles"] = _floats(stored["percentiles"])
    tr = stored.get("train_range")
    if tr is not None:
        norm["train_range"] = {k: _floats(tr[k]) for k in ("percentiles", "low", "high") if k in tr}
    decision: dict = {}
    if "decision" in md:
        d = json.loads(md["decision"])
        decision = {"foreground_class": int(d["foreground_class"])}
        if d.get("threshold") is not None:
            decision["threshold"] = float(d["threshold"])
        if d.get("instances") is not None:
            decision["instances"] = {k: (float(v) if k.endswith("threshold") else int(v))
                                     for k, v in d["instances"].items() if v is not None}
        if d.get("calibration") is not None:
            decision["calibration"] = d["calibration"]
    known = {"format", "format_version", "kind", "arch", "normalization", "class_names", "provenance", "decision"}
    extra = {}
    for k, v in md.items():
        if k not in known:
            try:
                extra[k] = json.loads(v)
            except ValueError:
                extra[k] = v
    return ModelFile(md.get("kind", "weights"), dict(info["arch"]), norm, list(info["class_names"]), {},
                     json.loads(md.get("provenance", "{}")), extra, decision)


def loads(data: bytes, name: str = "<memory>", tensors: bool = True) -> ModelFile:
    """A model file from its bytes, validated by the native reader (numpy only, no torch, no pickle)."""
    if _bare_tensorrt(data[:8]):
        return ModelFile("tensorrt-bare", arch={}, normalization={}, class_names=[],
                         tensors={"engine": np.frombuffer(data, dtype=np.uint8)} if tensors else {})
    mf = from_native(native().read_model_bytes(data, name, tensorrt=True))
    if tensors:
        from safetensors.numpy import load as st_load

        mf.tensors = st_load(data)  # the native reader accepted these bytes: safetensors reads them
    return mf


def _read(path) -> bytes:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    with os.fdopen(_open_regular(path), "rb") as f:
        return f.read()


def load(path, tensors: bool = True) -> ModelFile:
    """Read a model file (once) and validate it with the native reader; ``tensors=False`` keeps only
    the metadata records."""
    return loads(_read(path), str(path), tensors)


def detect_kind(path) -> str:
    """'weights' or 'tensorrt' for a unet-rt container, 'tensorrt-bare' for a raw TensorRT plan."""
    return load(path, tensors=False).kind
