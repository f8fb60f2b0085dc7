"""Helpers for the native reader / engine tests: small model files built by hand or with model_file."""
from __future__ import annotations

import json
import struct

import numpy as np

from unet_rt.format import model_file


def tiny_arch(**kw) -> dict:
    a = dict(in_channels=1, classes=2, depth=1, base=1, padding="valid")
    a.update(kw)
    return a


def random_tensors(arch: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) * 0.3 for k, s in model_file.expected_shapes(arch).items()}


def metadata(a: dict, /, **over) -> dict:
    """Valid metadata for architecture `a`; keyword overrides (None removes a key)."""
    arch = a
    meta = {
        "format": "unet-rt",
        "format_version": "1",
        "kind": "weights",
        "arch": json.dumps(arch),
        "normalization": json.dumps({"mean": [1.5] * arch["in_channels"], "std": [2.0] * arch["in_channels"]}),
        "class_names": json.dumps([f"c{i}" for i in range(arch["classes"])]),
        "provenance": json.dumps({"test": True}),
    }
    meta.update(over)
    return {k: v for k, v in meta.items() if v is not None}


def build(tensors: dict, meta: dict | None, *, header_text: str | None = None, dtype: str = "F32",
          align: int = 8) -> bytes:
    """A safetensors byte string (tensors in insertion order, contiguous); `header_text` replaces the JSON."""
    header: dict = {}
    if meta is not None:
        header["__metadata__"] = meta
    data = b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).astype("<f4").tobytes() if dtype == "F32" else np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_text if header_text is not None else json.dumps(header)
    hb = text.encode("utf-8") if isinstance(text, str) else text
    if align:
        hb += b" " * (-(len(hb)) % align)
    return struct.pack("<Q", len(hb)) + hb + data


def tiny_model_bytes(seed: int = 0, **arch_kw) -> bytes:
    arch = tiny_arch(**arch_kw)
    return build(random_tensors(arch, seed), metadata(arch))
