"""The runtime model file (DESIGN.md §4): one safetensors container for every backend.

Layout: safetensors (8-byte little-endian header length, JSON header, raw little-endian tensors).
``__metadata__`` (string values only, as safetensors requires):

=================  ===============================================================================
format             "unet-rt"
format_version     "1"
kind               "weights" (fp32 tensors named as in ``training.model.UNet.state_dict()``)
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
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "unet-rt"
FORMAT_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024

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


def _validate_arch(arch: dict) -> dict:
    try:
        out = {n: int(arch[n]) for n in ("in_channels", "classes", "depth", "base")}
        out["padding"] = str(arch.get("padding", "valid"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"bad 'arch' metadata {arch!r}: {e}") from None
    if min(out["in_channels"], out["classes"], out["depth"], out["base"]) < 1 or out["depth"] > 8:
        raise ModelFileError(f"bad 'arch' metadata {arch!r}")
    if out["padding"] not in ("valid", "same"):
        raise ModelFileError(f"arch padding must be 'valid' or 'same', got {out['padding']!r}")
    return out


def _validate_norm(norm: dict, cin: int) -> dict:
    try:
        mean = [float(v) for v in norm["mean"]]
        std = [float(v) for v in norm["std"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"bad 'normalization' metadata {norm!r}: {e}") from None
    if len(mean) != cin or len(std) != cin or not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
        raise ModelFileError(f"normalization needs {cin} finite means and positive stds, got {norm!r}")
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
        if not np.all(np.isfinite(t)):
            raise ModelFileError(f"tensor {name} holds NaN or Inf")


def detect_kind(path) -> str:
    """'weights' or 'tensorrt' for a unet-rt container, 'tensorrt-bare' for a raw TensorRT plan."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: file too short ({len(head)} bytes) to be a model file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            # Not safetensors. TensorRT plans carry the tag "ptrt" in their first bytes.
            if b"ptrt" in head or b"ftrt" in head:
                return "tensorrt-bare"
            raise ModelFileError(f"{path}: not a unet-rt model file (bad header length {n})")
        hdr = f.read(n)
    if len(hdr) != n:
        raise ModelFileError(f"{path}: truncated header ({len(hdr)} of {n} bytes)")
    try:
        meta = json.loads(hdr).get("__metadata__", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ModelFileError(f"{path}: corrupt header: {e}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a unet-rt model (no format='{FORMAT}' metadata)")
    return meta.get("kind", "weights")


def load(path, tensors: bool = True) -> ModelFile:
    """Read and validate a unet-rt model file (numpy only, no torch, no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    kind = detect_kind(path)
    if kind == "tensorrt-bare":
        data = np.fromfile(path, dtype=np.uint8)
        return ModelFile("tensorrt-bare", arch={}, normalization={}, class_names=[], tensors={"engine": data})
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            ts = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error types for corrupt data
        raise ModelFileError(f"{path}: corrupt model file: {e}") from None
    try:
        version = int(meta.get("format_version", "0"))
        arch = _validate_arch(json.loads(meta["arch"]))
        norm = _validate_norm(json.loads(meta["normalization"]), arch["in_channels"])
        names = json.loads(meta.get("class_names", "[]")) or [f"class{i}" for i in range(arch["classes"])]
        prov = json.loads(meta.get("provenance", "{}"))
        decision = _validate_decision(json.loads(meta["decision"]), arch["classes"]) if "decision" in meta else {}
    except (KeyError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: bad metadata: {e}") from None
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {version}, this unet-rt reads version {FORMAT_VERSION}")
    known = {"format", "format_version", "kind", "arch", "normalization", "class_names", "provenance", "decision"}
    extra = {}
    for k, v in meta.items():
        if k not in known:
            try:
                extra[k] = json.loads(v)
            except json.JSONDecodeError:
                extra[k] = v
    if tensors and kind == "weights":
        _check_weights(ts, arch)
    return ModelFile(kind, arch, norm, names, ts, prov, extra, decision)
