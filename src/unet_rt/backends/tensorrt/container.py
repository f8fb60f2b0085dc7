"""TensorRT plans in the unet-rt container, and the checks made before one is opened.

Pure Python + numpy: nothing here imports TensorRT, so all of it is tested on machines without a GPU.

A plan built by ``unet-rt compile`` is stored as a unet-rt model file of kind ``"tensorrt"``
(``unet_rt.format.model_file``): tensor ``engine`` (uint8, the serialized engine), the source model's
arch / normalization / class_names, and ``extra["tensorrt"]``::

    {"tile_in": 572, "tile_out": 388, "halo": 92, "batch": 1, "precision": "fp32"|"fp16",
     "version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0],
     "input": "input", "output": "logits"}

A bare plan written by ``trtexec`` (``detect_kind`` -> "tensorrt-bare") carries none of this: its
geometry is read from the engine's I/O tensor shapes (``geometry_from_io_shapes``) and its
normalisation must be given by the user, else it is the identity (the network then sees raw
intensities -- right only if the ONNX it was built from normalises inside the graph).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from unet_rt.format import geometry
from unet_rt.format.model_file import ModelFile, ModelFileError

__all__ = ["PlanMismatchError", "PlanInfo", "check_compat", "geometry_from_io_shapes", "make_container",
           "plan_info", "version_tuple"]

PRECISIONS = ("fp32", "fp16")


class PlanMismatchError(RuntimeError):
    """The plan was built for another TensorRT version or another GPU: rebuild it on this machine."""


@dataclass(frozen=True)
class PlanInfo:
    """What the runner needs to know about a plan, whichever way it was stored."""
    tile_in: int
    tile_out: int
    halo: int
    batch: int
    in_channels: int
    classes: int
    depth: int
    padding: str
    precision: str | None            # None: unknown (bare plan)
    version: str | None              # TensorRT version that built it; None: unknown (bare plan)
    gpu: str | None
    compute_capability: tuple | None
    normalization: dict
    class_names: list
    input_name: str = "input"
    output_name: str = "logits"


def version_tuple(v: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); raises ValueError on anything else."""
    try:
        parts = tuple(int(p) for p in str(v).split("."))
    except ValueError:
        raise ValueError(f"not a TensorRT version string: {v!r}") from None
    if not parts or any(p < 0 for p in parts):
        raise ValueError(f"not a TensorRT version string: {v!r}")
    return parts


def check_compat(built: dict, runtime_version: str, gpu_name: str, compute_capability,
                 allow_other_gpu: bool = False) -> list[str]:
    """Refuse a plan that this TensorRT / GPU cannot run. Returns a list of warnings (may be empty).

    ``built`` is the plan's ``extra["tensorrt"]`` metadata. TensorRT's rules (its "Engine
    Compatibility" documentation): a plan runs only under the TensorRT version that built it (we build
    without the version-compatible flag) and is not portable across GPU architectures. So:

    - another TensorRT version (any differing component of major.minor.patch[.build]) -> refuse;
    - another compute capability -> refuse, always;
    - same compute capability, another GPU name -> refuse unless ``allow_other_gpu`` (then a warning:
      TensorRT will load it, but its kernels were timed on the other GPU).
    """
    for key in ("version", "gpu", "compute_capability"):
        if built.get(key) in (None, ""):
            raise PlanMismatchError(f"the plan's metadata lacks {key!r}: cannot check that it fits this machine; "
                                    f"rebuild it with 'unet-rt compile'")
    have, want = version_tuple(runtime_version), version_tuple(built["version"])
    n = min(len(have), len(want))
    if have[:n] != want[:n] or n < 3:
        raise PlanMismatchError(
            f"this plan was built by TensorRT {built['version']} but TensorRT {runtime_version} is installed; "
            f"TensorRT plans run only under the version that built them: rebuild it here "
            f"(unet-rt compile MODEL --target tensorrt ...) from the weights file")
    cc_built = tuple(int(c) for c in built["compute_capability"])
    cc_here = tuple(int(c) for c in compute_capability)
    if cc_built != cc_here:
        raise PlanMismatchError(
            f"this plan was built for a {built['gpu']} (compute capability {'.'.join(map(str, cc_built))}) but this "
            f"GPU is a {gpu_name} (compute capability {'.'.join(map(str, cc_here))}); TensorRT plans do not move "
            f"across GPU architectures: rebuild it on this machine")
    notes = []
    if str(built["gpu"]).strip() != str(gpu_name).strip():
        msg = (f"this plan was built on a {built['gpu']} and this GPU is a {gpu_name} (same compute capability "
               f"{'.'.join(map(str, cc_here))})")
        if not allow_other_gpu:
            raise PlanMismatchError(msg + "; TensorRT plans are tuned for the exact GPU model: rebuild it here, or "
                                          "pass allow_other_gpu=True to run it anyway")
        notes.append(msg + ": it runs, but its kernels were chosen for the other GPU")
    return notes


def geometry_from_io_shapes(in_shape, out_shape) -> dict:
    """Tile geometry of a plan from its I/O shapes: input [B, C, t, t], output [B, K, o, o].

    Depth and padding are inferred: t == o means a same-padded network (depth: the largest d <= 8
    with t divisible by 2**d -- the only use of depth there is the tile-size rule, which t obeys);
    otherwise the valid depth d whose output for t is o (the halo differs for every depth).
    """
    in_shape, out_shape = tuple(int(d) for d in in_shape), tuple(int(d) for d in out_shape)
    if len(in_shape) != 4 or len(out_shape) != 4:
        raise ModelFileError(f"a U-Net plan has 4-d input and output, got {in_shape} and {out_shape}")
    if min(in_shape) < 1 or min(out_shape) < 1:
        raise ModelFileError(f"the plan has dynamic or empty dimensions {in_shape} -> {out_shape}: "
                             f"build it for one fixed tile size")
    b, c, h, w = in_shape
    b2, k, oh, ow = out_shape
    if h != w or oh != ow or b != b2:
        raise ModelFileError(f"plan I/O shapes {in_shape} -> {out_shape} are not a square-tile U-Net")
    if oh == h:
        depth = max(d for d in range(1, 9) if h % 2**d == 0) if h % 2 == 0 else None
        if depth is None:
            raise ModelFileError(f"a same-padded U-Net needs an even tile, got {h}")
        padding = "same"
    else:
        depths = [d for d in range(1, 9) if geometry.is_valid_input(h, d) and geometry.output_size(h, d) == oh]
        if len(depths) != 1:
            raise ModelFileError(f"plan I/O shapes {in_shape} -> {out_shape} match no valid-padded U-Net depth")
        depth, padding = depths[0], "valid"
    return {"tile_in": h, "tile_out": oh, "halo": (h - oh) // 2, "batch": b, "in_channels": c, "classes": k,
            "depth": depth, "padding": padding}


def make_container(source: ModelFile, engine: bytes | np.ndarray, *, tile_in: int, precision: str,
                   version: str, gpu: str, compute_capability, batch: int = 1,
                   input_name: str = "input", output_name: str = "logits") -> ModelFile:
    """The kind "tensorrt" ModelFile for an engine built from ``source`` (a weights file)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    a = source.arch
    depth, padding = int(a["depth"]), a.get("padding", "valid")
    tile_out = geometry.output_size(int(tile_in), depth, padding)
    blob = np.frombuffer(bytes(engine), dtype=np.uint8).copy() if not isinstance(engine, np.ndarray) \
        else np.ascontiguousarray(engine, dtype=np.uint8)
    if blob.size == 0:
        raise ValueError("empty engine")
    version_tuple(version)  # validates
    meta = {"tile_in": int(tile_in), "tile_out": int(tile_out), "halo": (int(tile_in) - tile_out) // 2,
            "batch": int(batch), "precision": precision, "version": str(version), "gpu": str(gpu),
            "compute_capability": [int(c) for c in compute_capability],
            "input": input_name, "output": output_name}
    prov = dict(source.provenance)
    prov["compiled_from"] = {"kind": source.kind, "target": "tensorrt"}
    return ModelFile("tensorrt", dict(a), dict(source.normalization), list(source.class_names),
                     {"engine": blob}, prov, {"tensorrt": meta})


def plan_info(mf: ModelFile, io_shapes: tuple | None = None, normalization: dict | None = None,
              class_names: list | None = None) -> PlanInfo:
    """A PlanInfo from a loaded container (kind "tensorrt") or a bare plan (kind "tensorrt-bare").

    For a bare plan pass ``io_shapes=(input_shape, output_shape)`` read from the engine (and the
    I/O names as ``io_shapes[2:]`` if known), and the normalisation it expects; without one the
    identity is used and a warning says so.
    """
    if mf.kind == "tensorrt":
        t = mf.extra.get("tensorrt")
        if not isinstance(t, dict):
            raise ModelFileError("a tensorrt model file needs 'tensorrt' metadata (tile sizes, version, GPU)")
        try:
            a = mf.arch
            g = {"tile_in": int(t["tile_in"]), "tile_out": int(t["tile_out"]), "halo": int(t["halo"])}
            depth, padding = int(a["depth"]), a.get("padding", "valid")
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"bad 'tensorrt' metadata {t!r}: {e}") from None
        if geometry.output_size(g["tile_in"], depth, padding) != g["tile_out"] or \
                g["halo"] != (g["tile_in"] - g["tile_out"]) // 2:
            raise ModelFileError(f"inconsistent 'tensorrt' metadata {t!r} for a depth-{depth} {padding} U-Net")
        if t.get("precision") not in PRECISIONS:
            raise ModelFileError(f"bad precision {t.get('precision')!r} in 'tensorrt' metadata")
        cc = t.get("compute_capability")
        return PlanInfo(g["tile_in"], g["tile_out"], g["halo"], int(t.get("batch", 1)), int(a["in_channels"]),
                        int(a["classes"]), depth, padding, t["precision"], t.get("version"), t.get("gpu"),
                        tuple(int(c) for c in cc) if cc is not None else None,
                        normalization or dict(mf.normalization), class_names or list(mf.class_names),
                        t.get("input", "input"), t.get("output", "logits"))
    if mf.kind == "tensorrt-bare":
        if io_shapes is None:
            raise ValueError("a bare TensorRT plan needs the engine's I/O shapes to know its tile geometry")
        g = geometry_from_io_shapes(io_shapes[0], io_shapes[1])
        names = tuple(io_shapes[2:4]) if len(io_shapes) >= 4 else ("input", "logits")
        c = g["in_channels"]
        if normalization is None:
            warnings.warn("bare TensorRT plan: no normalisation stored in it, using the identity "
                          "(mean 0, std 1): pass normalization={'mean': [...], 'std': [...]} if the network "
                          "was trained on normalised images", UserWarning, stacklevel=2)
            normalization = {"mean": [0.0] * c, "std": [1.0] * c}
        mean, std = list(normalization["mean"]), list(normalization["std"])
        if len(mean) != c or len(std) != c or not all(float(s) > 0 for s in std):
            raise ValueError(f"normalization needs {c} means and {c} positive stds, got {normalization!r}")
        names_k = class_names or [f"class{i}" for i in range(g["classes"])]
        if len(names_k) != g["classes"]:
            raise ValueError(f"{len(names_k)} class names for {g['classes']} classes")
        return PlanInfo(g["tile_in"], g["tile_out"], g["halo"], g["batch"], c, g["classes"], g["depth"],
                        g["padding"], None, None, None, None, {"mean": mean, "std": std}, list(names_k),
                        names[0], names[1])
    raise ModelFileError(f"not a TensorRT plan: kind {mf.kind!r}")
