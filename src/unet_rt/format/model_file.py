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

Validation (docs/architecture.md, "File format"): a weights file is validated by ONE reader, the
native one (``_core.read_model_bytes``, csrc/src/model_reader.cc) on the same bytes that are then
loaded here; the Python checks below (``_loads``, ``_validate_arch``, ``_validate_norm``) apply the
same rules to what Python writes (``save``) and to TensorRT containers, and
tests/test_validators.py runs both on one corpus.
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

FORMAT = "unet-rt"
FORMAT_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024
MAX_JSON_DEPTH = 64                         # as the native parser (csrc/src/json.h)
MAX_DIM = 1 << 20                           # as the native reader's limits on arch sizes

__all__ = ["ModelFile", "ModelFileError", "save", "load", "detect_kind", "expected_shapes", "atomic_write"]


class ModelFileError(ValueError):
    """The file is not a valid unet-rt model file."""


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
    for l in range(depth + 1):
        c = base * 2**l
        shapes[f"enc.{l}.conv1.weight"] = (c, prev, 3, 3)
        shapes[f"enc.{l}.conv1.bias"] = (c,)
        shapes[f"enc.{l}.conv2.weight"] = (c, c, 3, 3)
        shapes[f"enc.{l}.conv2.bias"] = (c,)
        prev = c
    for l in range(depth):
        c = base * 2**l
        shapes[f"dec.{l}.up.weight"] = (2 * c, c, 2, 2)
        shapes[f"dec.{l}.up.bias"] = (c,)
        shapes[f"dec.{l}.conv1.weight"] = (c, 2 * c, 3, 3)
        shapes[f"dec.{l}.conv1.bias"] = (c,)
        shapes[f"dec.{l}.conv2.weight"] = (c, c, 3, 3)
        shapes[f"dec.{l}.conv2.bias"] = (c,)
    shapes["head.weight"] = (k, base, 1, 1)
    shapes["head.bias"] = (k,)
    return shapes


def _loads(text, what: str):
    """JSON exactly as the native parser accepts it: no duplicate keys, no NaN/Infinity, nesting
    at most MAX_JSON_DEPTH, no unpaired surrogates. Errors are ModelFileError, never RecursionError."""
    def pairs(kv):
        d = dict(kv)
        if len(d) != len(kv):
            seen = set()
            dup = next(k for k, _ in kv if k in seen or seen.add(k))
            raise ModelFileError(f"{what}: duplicate key {dup!r}")
        return d

    def constant(name):
        raise ModelFileError(f"{what}: {name} is not valid JSON")

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except RecursionError:
        raise ModelFileError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"{what}: invalid JSON: {e}") from None
    stack = [(value, 0)]  # depth and strings, iteratively
    while stack:
        v, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ModelFileError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise ModelFileError(f"{what}: unpaired surrogate in a string") from None
        elif isinstance(v, dict):
            stack.extend((x, depth + 1) for kv in v.items() for x in kv)
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return value


def _int(arch: dict, name: str, lo: int, hi: int) -> int:
    v = arch.get(name) if isinstance(arch, dict) else None
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        # not "2", 2.0 or True: the native reader takes JSON integers only
        raise ModelFileError(f"bad 'arch' metadata: {name} must be an integer, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise ModelFileError(f"bad 'arch' metadata: {name} = {v} is outside [{lo}, {hi}]")
    return v


def _validate_arch(arch: dict) -> dict:
    if not isinstance(arch, dict):
        raise ModelFileError(f"bad 'arch' metadata: not an object: {arch!r}")
    out = {"in_channels": _int(arch, "in_channels", 1, MAX_DIM), "classes": _int(arch, "classes", 1, MAX_DIM)}
    out["depth"] = _int(arch, "depth", 1, 8)
    out["base"] = _int(arch, "base", 1, MAX_DIM >> out["depth"])
    out["padding"] = arch.get("padding", "valid")
    if out["padding"] not in ("valid", "same"):
        raise ModelFileError(f"arch padding must be 'valid' or 'same', got {out['padding']!r}")
    return out


def _validate_norm(norm: dict, cin: int) -> dict:
    def numbers(key):
        v = norm.get(key) if isinstance(norm, dict) else None
        if not isinstance(v, (list, tuple)) or len(v) != cin or \
                not all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in v):
            return None
        return [float(np.float32(x)) for x in v]  # float32, as the runtime holds them

    mean, std = numbers("mean"), numbers("std")
    if mean is None or std is None or not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
        raise ModelFileError(f"normalization needs {cin} finite means and positive finite stds "
                             f"(one per input channel), got {norm!r}")
    out = {"mean": mean, "std": std}
    bad = lambda msg: ModelFileError(f"bad 'normalization' metadata: {msg}")  # noqa: E731
    for k, v in norm.items():
        if k not in ("mean", "std", "percentiles", "train_range"):
            raise bad(f"unknown key '{k}'")
        if k in ("mean", "std") or v is None:
            continue
        if k == "percentiles":
            out[k] = _percentile_pair(v, k, bad)
        elif k == "train_range":
            if not isinstance(v, dict):
                raise bad("train_range must be an object")
            unknown = set(v) - {"percentiles", "low", "high"}
            if unknown:
                raise bad(f"unknown train_range key '{sorted(unknown)[0]}'")
            if "percentiles" not in v:
                raise bad("train_range needs percentiles")
            tr = {"percentiles": _percentile_pair(v["percentiles"], "train_range percentiles", bad)}
            for side in ("low", "high"):
                x = v.get(side)
                if not isinstance(x, list) or len(x) != cin:
                    raise bad(f"train_range {side} needs {cin} numbers")
                if not all(_is_number(e) and np.isfinite(e) for e in x):
                    raise bad(f"train_range {side} must be finite numbers")
                tr[side] = [float(e) for e in x]
            if any(lo > hi for lo, hi in zip(tr["low"], tr["high"])):
                raise bad("train_range low must be <= high")
            out[k] = tr
    return out


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _percentile_pair(v, key, bad) -> list:
    if not isinstance(v, list) or len(v) != 2 or not all(_is_number(e) for e in v):
        raise bad(f"{key} must be [low, high]")
    if not 0 <= v[0] < v[1] <= 100:
        raise bad(f"{key} must satisfy 0 <= low < high <= 100")
    return [float(v[0]), float(v[1])]


def _validate_decision(d, classes: int) -> dict:
    """The canonical "decision" metadata (see the module doc); the C++ reader (decision.cc) agrees."""
    def bad(msg):
        return ModelFileError(f"bad 'decision' metadata: {msg}")

    def prob(v, key):
        if not _is_number(v) or not 0 < v < 1:
            raise bad(f"{key} must be a number in (0, 1)")
        return float(v)

    def count(v, key, lo):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad(f"{key} must be an integer")
        if not lo <= v <= 1 << 40:
            raise bad(f"{key} must be an integer >= {lo}")
        return v

    if not isinstance(d, dict):
        raise bad("not an object")
    if "foreground_class" not in d:
        raise bad("no foreground_class")
    f = count(d["foreground_class"], "foreground_class", 0)
    if f >= classes:
        raise bad(f"foreground_class {f} of a {classes}-class model")
    out: dict = {"foreground_class": f}
    for k, v in d.items():
        if k not in ("foreground_class", "threshold", "instances", "calibration"):
            raise bad(f"unknown key '{k}'")
        if k == "foreground_class" or v is None:
            continue
        if k == "calibration":
            out[k] = v
        elif k == "threshold":
            out[k] = prob(v, k)
        elif k == "instances":
            if not isinstance(v, dict):
                raise bad("instances must be an object")
            inst = {}
            for ik, iv in v.items():
                if ik in ("mask_threshold", "marker_threshold"):
                    if iv is not None:
                        inst[ik] = prob(iv, ik)
                elif ik in ("min_marker_size", "min_size"):
                    inst[ik] = count(iv, ik, 1 if ik == "min_marker_size" else 0)
                else:
                    raise bad(f"unknown instances key '{ik}'")
            out[k] = inst
    if classes < 2 and "threshold" in out:
        raise bad("a threshold needs a model with at least 2 classes")
    return out


def _validate_names(names, classes: int) -> list:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"bad 'class_names' metadata: a list of strings expected, got {names!r}")
    if names and len(names) != classes:
        raise ModelFileError(f"{len(names)} class names for {classes} classes")
    return list(names) or [f"class{i}" for i in range(classes)]


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


def save(path, model: ModelFile) -> None:
    """Write a model file atomically. Weight files are checked against the architecture."""
    from safetensors.numpy import save as st_save

    arch = _validate_arch(model.arch)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": model.kind,
        "arch": json.dumps(arch),
        "normalization": json.dumps(_validate_norm(model.normalization, arch["in_channels"])),
        "class_names": json.dumps([str(c) for c in model.class_names]),
        "provenance": json.dumps(model.provenance),
    }
    if model.decision:
        meta["decision"] = json.dumps(_validate_decision(model.decision, arch["classes"]), allow_nan=False)
    for k, v in model.extra.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    if len(model.class_names) != arch["classes"]:
        raise ModelFileError(f"{len(model.class_names)} class names for {arch['classes']} classes")
    tensors = {k: np.ascontiguousarray(v) for k, v in model.tensors.items()}
    if model.kind == "weights":
        _check_weights(tensors, arch)
        tensors = {k: v.astype("<f4", copy=False) for k, v in tensors.items()}
    elif model.kind == "tensorrt":
        if "engine" not in tensors or tensors["engine"].dtype != np.uint8:
            raise ModelFileError("a tensorrt model file needs an 'engine' uint8 tensor")
    else:
        raise ModelFileError(f"cannot save kind {model.kind!r}")
    atomic_write(path, st_save(tensors, metadata=meta))


def _check_weights(tensors: dict, arch: dict) -> None:
    want = expected_shapes(arch)
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        raise ModelFileError(f"weights do not match the architecture: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in want.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise ModelFileError(f"tensor {name} has shape {tuple(t.shape)}, expected {shape}")
        if t.dtype.kind != "f":
            raise ModelFileError(f"tensor {name} has dtype {t.dtype}, expected floating point")
        if t.dtype != np.float32 and not np.all(np.isfinite(t.astype(np.float32))):
            raise ModelFileError(f"tensor {name} overflows float32")
        if not np.all(np.isfinite(t)):
            raise ModelFileError(f"tensor {name} holds NaN or Inf")


def _header(path, head: bytes, read) -> tuple[str, dict, int]:
    """-> (kind, header dict or {}, header length) from the first 8 bytes and read(n)."""
    if len(head) < 8:
        raise ModelFileError(f"{path}: file too short ({len(head)} bytes) to be a model file")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER:
        # Not safetensors. TensorRT plans carry the tag "ptrt" in their first bytes.
        if b"ptrt" in head[:8] or b"ftrt" in head[:8]:
            return "tensorrt-bare", {}, 0
        raise ModelFileError(f"{path}: not a unet-rt model file (bad header length {n})")
    hdr = read(n)
    if len(hdr) != n:
        raise ModelFileError(f"{path}: truncated header ({len(hdr)} of {n} bytes)")
    header = _loads(hdr, f"{path}: corrupt header")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a unet-rt model (no format='{FORMAT}' metadata)")
    kind = meta.get("kind", "weights")
    if kind not in ("weights", "tensorrt"):
        raise ModelFileError(f"{path}: unknown model kind {kind!r}")
    return kind, header, n


def detect_kind(path) -> str:
    """'weights' or 'tensorrt' for a unet-rt container, 'tensorrt-bare' for a raw TensorRT plan."""
    with os.fdopen(_open_regular(path), "rb") as f:
        return _header(path, f.read(8), f.read)[0]


def _native_check(path, data: bytes) -> None:
    """The one validator of weights files: the native reader, on these bytes."""
    try:
        from unet_rt import _core
    except ImportError as e:  # pragma: no cover - only when the package was not built
        raise ImportError("unet_rt._core (the compiled core) is missing: install the package with "
                          "`pip install .` (or `make install`)") from e
    try:
        _core.read_model_bytes(data, str(path))
    except ValueError as e:  # _core.ModelFileError: the message names the file and the problem
        raise ModelFileError(str(e)) from None


def load(path, tensors: bool = True) -> ModelFile:
    """Read and validate a unet-rt model file (numpy only, no torch, no pickle). The file is read
    once; a weights file is validated by the native reader (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    with os.fdopen(_open_regular(path), "rb") as f:
        data = f.read()
    kind, header, n = _header(path, data[:8], lambda k: data[8:8 + k])
    if kind == "tensorrt-bare":
        return ModelFile("tensorrt-bare", arch={}, normalization={}, class_names=[],
                         tensors={"engine": np.frombuffer(data, dtype=np.uint8)})
    if kind == "weights":
        _native_check(path, data)
    meta = header["__metadata__"]
    if not all(isinstance(v, str) for v in meta.values()):
        raise ModelFileError(f"{path}: corrupt header: metadata values must be strings")
    try:
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise ModelFileError(f"format version {meta.get('format_version')}, this unet-rt reads version "
                                 f"{FORMAT_VERSION}")
        for key in ("arch", "normalization"):
            if key not in meta:
                raise ModelFileError(f"no {key!r} metadata")
        arch = _validate_arch(_loads(meta["arch"], "'arch' metadata"))
        norm = _validate_norm(_loads(meta["normalization"], "'normalization' metadata"), arch["in_channels"])
        names = _validate_names(_loads(meta.get("class_names", "[]"), "'class_names' metadata"), arch["classes"])
        prov = _loads(meta.get("provenance", "{}"), "'provenance' metadata")
        decision = _validate_decision(_loads(meta["decision"], "'decision' metadata"), arch["classes"]) \
            if "decision" in meta else {}
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    known = {"format", "format_version", "kind", "arch", "normalization", "class_names", "provenance", "decision"}
    extra = {}
    for k, v in meta.items():
        if k not in known:
            try:
                extra[k] = _loads(v, k)
            except ModelFileError:
                extra[k] = v
    ts = {}
    if tensors:
        from safetensors.numpy import load as st_load

        try:
            ts = st_load(data)
        except Exception as e:  # safetensors raises its own error types for corrupt data
            raise ModelFileError(f"{path}: corrupt model file: {e}") from None
    return ModelFile(kind, arch, norm, names, ts, prov, extra, decision)
