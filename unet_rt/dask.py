"""Images larger than memory, on one machine or a cluster: ``unet_rt`` over Dask arrays.

    import dask.array as da, zarr
    from unet_rt.dask import segment, predict

    img = da.from_zarr("big.zarr")                   # or a zarr array, an OME-Zarr level, a tifffile memmap
    labels = segment(img, "model.plan")             # lazy dask array, (H, W) uint8
    labels.to_zarr("labels.zarr")                    # computed block by block, on any scheduler

Needs the ``dask`` extra (``pip install unet-rt[dask]``; ``dask.distributed`` for clusters).

How a block is computed (docs/architecture.md: tiling; docs/dask.md). The whole-image pass with a fixed input tile ``T``
cuts tiles at output stride ``S`` (``T - 2*halo`` rounded down to the ``2**depth`` pooling grid);
every output pixel belongs to tile ``floor(p / S)`` (neighbours' 4-pixel overlap strips are
written by the later tile). Blocks here are runs of whole tiles along each axis: a block's output
``[a*S, b*S)`` reads the input ``[a*S - halo, (b-1)*S + T - halo)`` (mirror-extrapolated past the
image, as the native tiler does) and runs exactly the tiles the whole-image pass runs there, each
through the same native network call. The result is therefore **bit-identical** to
``Engine(model, tile=T).predict(whole_image)`` / ``.segment(...)`` — same tiles, same inputs,
same arithmetic. ``Engine`` with its default automatic tile picks other tile shapes, whose
Winograd kernels round differently: there the agreement is to ~1e-5 in the probabilities (labels
differ only where two classes tie to that precision).

The model is opened once per process (``_engine``: a cache keyed by path, file size and mtime,
backend, threads and tile) — the task graph carries the model's *path*, never its weights, so the
file must be readable at that path on every worker (a shared file system, or the same install).
Stacks and volumes (T|Z, Y, X) run plane by plane with the 2-D model, chunked along T/Z.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["segment", "predict", "block_plan", "BlockPlan"]

_MISSING = ("unet_rt.dask needs dask: pip install 'unet-rt[dask]' "
            "(dask[array], plus dask.distributed for clusters)")


def _dask_array():
    try:
        import dask.array as da
    except ImportError as e:
        raise ImportError(_MISSING) from e
    return da


# ------------------------------------------------------------------ the model, once per process
@functools.lru_cache(maxsize=8)
def _engine_cached(path: str, size: int, mtime_ns: int, backend: str, threads: int | None, tile: int):
    from .engine import Engine

    return Engine(path, backend=backend, threads=threads, tile=tile)


def _worker_threads() -> int | None:
    """Threads for the engine: the dask.distributed worker's thread count, else every core."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _engine(path: str, backend: str, threads: int | None, tile: int):
    st = os.stat(path)
    if threads is None:
        threads = _worker_threads()
    return _engine_cached(path, st.st_size, st.st_mtime_ns, backend, threads, tile)


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class BlockPlan:
    """How an image axis pair (H, W) is cut: blocks of whole tiles of the whole-image pass."""
    tile: int                        # input tile T
    stride: int                      # output stride S of the whole-image pass
    halo: int
    y: tuple[tuple[int, int], ...]   # per block row: output [start, stop)
    x: tuple[tuple[int, int], ...]
    y_in: tuple[tuple[int, int], ...]  # per block row: input [start, stop) (may leave the image)
    x_in: tuple[tuple[int, int], ...]


def _axis_blocks(n: int, plan_axis: dict, per_block: int, halo: int):
    starts = list(plan_axis["out_start"])
    sizes = list(plan_axis["in_size"])
    out, inp = [], []
    for i in range(0, len(starts), per_block):
        j = min(i + per_block, len(starts))
        a = starts[i]
        b = starts[j] if j < len(starts) else n
        out.append((a, b))
        inp.append((a - halo, starts[j - 1] - halo + sizes[j - 1]))
    return tuple(out), tuple(inp)


def block_plan(height: int, width: int, depth: int, tile: int, block: int | tuple[int, int] = 2048) -> BlockPlan:
    """Blocks of about ``block`` output pixels per side, made of whole tiles of input size ``tile``."""
    from . import _core

    p = _core.plan_tiles(height, width, depth, False, tile=tile)
    halo = int(p["halo"])
    sy = p["y"]["out_start"]
    stride = int(sy[1] - sy[0]) if len(sy) > 1 else int(p["y"]["out_size"][0])
    sx = p["x"]["out_start"]
    if len(sx) > 1:
        stride = int(sx[1] - sx[0])
    by, bx = (block, block) if isinstance(block, int) else block
    per_y = max(1, round(by / stride)) if stride else 1
    per_x = max(1, round(bx / stride)) if stride else 1
    y, y_in = _axis_blocks(height, p["y"], per_y, halo)
    x, x_in = _axis_blocks(width, p["x"], per_x, halo)
    return BlockPlan(tile=tile, stride=stride, halo=halo, y=y, x=x, y_in=y_in, x_in=x_in)


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """numpy 'reflect' extended periodically (the native tiler's reflect_index)."""
    if n == 1:
        return np.zeros_like(i)
    p = 2 * (n - 1)
    i = np.mod(i, p)
    return np.where(i < n, i, p - i)


# ------------------------------------------------------------------ the block function (runs on workers)
def _run_block(region: np.ndarray, *, path: str, backend: str, threads: int | None, tile: int, stride: int,
               out_h: int, out_w: int, kind: str, channels_last: bool) -> np.ndarray:
    """region: (..., Hin, Win) or (..., Hin, Win, C) -> (..., out_h, out_w) labels or (..., K, out_h, out_w)."""
    eng = _engine(path, backend, threads, tile)
    tile_fn = eng._native.forward_tile if eng._native is not None else None
    mean = np.asarray(eng.normalization["mean"], np.float32)
    std = np.asarray(eng.normalization["std"], np.float32)
    K = eng.classes
    # the model's decision: a threshold on p(foreground) is applied by the core's decide_labels on
    # each tile's probabilities; without one, labels are the argmax of the logits (as Engine.segment)
    decision = eng._decision_json() if kind == "labels" else None
    if decision is not None and json.loads(decision).get("threshold") is None:
        decision = None
    lead = region.shape[:-3] if channels_last else region.shape[:-2]
    planes = region.reshape((-1,) + region.shape[len(lead):])
    out_t = np.uint8 if K <= 256 else np.uint16
    out = (np.empty((len(planes), out_h, out_w), out_t) if kind == "labels"
           else np.empty((len(planes), K, out_h, out_w), np.float32))
    for t, plane in enumerate(planes):
        chw = np.moveaxis(plane, -1, 0) if channels_last else plane[None]
        if not chw.dtype.isnative:
            chw = chw.astype(chw.dtype.type)
        # the tiler's normalisation, (float(x) - mean) / std in float32
        x = (chw.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
        if not np.isfinite(x).all():
            raise ValueError("image holds NaN or Inf")
        hin, win = x.shape[1:]
        # tiles at stride S in the region, in the native tiler's order (row-major: later tiles
        # overwrite the earlier ones' overlap strips)
        ys = range(0, max(1, hin - tile + stride), stride) if hin > tile else [0]
        xs = range(0, max(1, win - tile + stride), stride) if win > tile else [0]
        for ty in ys:
            for tx in xs:
                sub = np.ascontiguousarray(x[:, ty:ty + tile, tx:tx + tile])
                probs = kind == "probabilities" or decision is not None
                if tile_fn is not None:
                    r = tile_fn(sub, probabilities=probs)
                else:  # triton / tensorrt: logits from the backend's tile function
                    r = np.asarray(eng._fn(sub), np.float32)
                    if probs:
                        e = np.exp(r - r.max(0, keepdims=True))
                        r = e / e.sum(0, keepdims=True)
                oh, ow = min(r.shape[1], out_h - ty), min(r.shape[2], out_w - tx)
                if oh <= 0 or ow <= 0:
                    continue
                if decision is not None:
                    from . import _core

                    out[t, ty:ty + oh, tx:tx + ow] = _core.decide_labels(np.ascontiguousarray(r[:, :oh, :ow]), decision)
                elif kind == "labels":
                    out[t, ty:ty + oh, tx:tx + ow] = r[:, :oh, :ow].argmax(0)
                else:
                    out[t, :, ty:ty + oh, tx:tx + ow] = r[:, :oh, :ow]
    return out.reshape(lead + out.shape[1:])


# ------------------------------------------------------------------ the public API
def _as_dask(array):
    da = _dask_array()
    if isinstance(array, da.Array):
        return array
    if isinstance(array, (str, Path)):
        return da.from_zarr(str(array))
    return da.from_array(array)


def _model_info(path: str) -> dict:
    from . import _core, model_file

    kind = model_file.detect_kind(Path(path))
    if kind in ("tensorrt", "tensorrt-bare"):
        raise ValueError("unet_rt.dask runs weight files (cpu/triton backends); a TensorRT plan fixes its tile "
                         "shape: use the weights file it was compiled from")
    meta = _core.read_model(path)
    if model_file.load(Path(path), tensors=False).normalization.get("percentiles"):
        raise NotImplementedError("unet_rt.dask: this model normalises each image by its own percentiles, which "
                                  "needs whole-image statistics before the blocks run: not supported yet")
    return meta


def _default_tile(depth: int, block: int) -> int:
    """The input tile the engine's automatic planner picks for a square block (cost model + budget)."""
    from . import _core

    p = _core.plan_tiles(block, block, depth, False, tile=0, max_tile=1024)
    return int(max(p["y"]["in_size"]))


def _resolve_tile(tile: int | None, depth: int, block: int) -> int:
    return int(tile) if tile else _default_tile(depth, block)


def _lazy(array, model, kind: str, *, tile: int | None, block: int, backend: str, threads: int | None):
    da = _dask_array()
    path = str(Path(model).resolve())
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    meta = _model_info(path)
    arch = meta["arch"]
    depth, cin, K = int(arch["depth"]), int(arch["in_channels"]), int(arch["classes"])
    if arch["padding"] == "same":
        raise NotImplementedError("unet_rt.dask supports valid (unpadded) networks: a same-padded network blends "
                                  "overlapping windows of the whole image, which blocks cannot reproduce exactly")
    x = _as_dask(array)
    channels_last = cin > 1
    spatial = x.ndim - (1 if channels_last else 0)
    if channels_last and (x.ndim not in (3, 4) or x.shape[-1] != cin):
        raise ValueError(f"this model takes {cin}-channel images as H x W x {cin} (or T x H x W x {cin}), "
                         f"got shape {x.shape}")
    if not channels_last and x.ndim not in (2, 3):
        raise ValueError(f"a single-channel model takes H x W images or T x H x W stacks, got shape {x.shape}")
    if x.dtype.kind == "f" and x.dtype != np.float32:
        x = x.astype(np.float32)
    elif x.dtype.newbyteorder("=") not in (np.uint8, np.uint16, np.float32):
        raise TypeError(f"image dtype must be uint8, uint16 or float32, got {x.dtype}")
    if 0 in x.shape:
        raise ValueError(f"image is empty (shape {x.shape})")
    ya, xa = spatial - 2, spatial - 1
    H, W = int(x.shape[ya]), int(x.shape[xa])
    tile = _resolve_tile(tile, depth, block)
    plan = block_plan(H, W, depth, tile, block)

    # mirror-extrapolate the image as far as the last tile reads (same indices as the native tiler)
    lo = plan.halo
    hi_y, hi_x = plan.y_in[-1][1] - H, plan.x_in[-1][1] - W
    def pad(a, axis, n, lo, hi):
        parts = []
        if lo > 0:
            parts.append(da.take(a, _reflect(np.arange(-lo, 0), n), axis=axis))
        parts.append(a)
        if hi > 0:
            parts.append(da.take(a, _reflect(np.arange(n, n + hi), n), axis=axis))
        return da.concatenate(parts, axis=axis) if len(parts) > 1 else a
    xp = pad(pad(x, ya, H, lo, max(hi_y, 0)), xa, W, lo, max(hi_x, 0))

    one = {ya: -1, xa: -1}
    if channels_last:
        one[x.ndim - 1] = -1
    out_t = np.uint8 if K <= 256 else np.uint16
    rows = []
    for (y0, y1), (iy0, iy1) in zip(plan.y, plan.y_in):
        row = []
        for (x0, x1), (ix0, ix1) in zip(plan.x, plan.x_in):
            sl = [slice(None)] * x.ndim
            sl[ya] = slice(iy0 + lo, iy1 + lo)
            sl[xa] = slice(ix0 + lo, ix1 + lo)
            region = xp[tuple(sl)].rechunk(one)
            kw = dict(path=path, backend=backend, threads=threads, tile=tile, stride=plan.stride,
                      out_h=y1 - y0, out_w=x1 - x0, kind=kind, channels_last=channels_last)
            lead_chunks = region.chunks[:ya]
            if kind == "labels":
                chunks = lead_chunks + ((y1 - y0,), (x1 - x0,))
                b = region.map_blocks(_run_block, dtype=out_t, chunks=chunks,
                                      drop_axis=[x.ndim - 1] if channels_last else [], **kw)
            else:
                chunks = lead_chunks + ((K,), (y1 - y0,), (x1 - x0,))
                if channels_last:  # (.., H, W, C) -> (.., K, H, W): same rank
                    b = region.map_blocks(_run_block, dtype=np.float32, chunks=chunks, **kw)
                else:
                    b = region.map_blocks(_run_block, dtype=np.float32, chunks=chunks, new_axis=[ya], **kw)
            row.append(b)
        rows.append(row)
    # assemble: blocks along (Y, X), which are the last two axes of every block
    return da.block(rows)


def predict(array, model, *, tile: int | None = None, block: int = 2048, backend: str = "cpu",
            threads: int | None = None):
    """Lazy class probabilities: (K, H, W) float32, or (T, K, H, W) for a stack — as ``Engine.predict``.

    array : a dask array, or anything ``dask.array.from_array`` takes (zarr array, OME-Zarr level,
        memory-mapped TIFF, numpy), or a path to a zarr array. H x W or T x H x W (single-channel
        models), H x W x C or T x H x W x C; uint8, uint16 or float32 raw values.
    model : path of the model file (read on each worker: it must be reachable there).
    tile : input tile size (default: what the engine picks for a ``block``-sized square). The result
        equals ``Engine(model, tile=tile).predict(whole_image)`` bit for bit.
    block : output block side in pixels (rounded to whole tiles); one task per block and plane.
    backend : "cpu" or "triton". threads : engine threads per process (default: the distributed
        worker's thread count, else every core).
    """
    return _lazy(array, model, "probabilities", tile=tile, block=block, backend=backend, threads=threads)


def segment(array, model, *, tile: int | None = None, block: int = 2048, backend: str = "cpu",
            threads: int | None = None):
    """Lazy class map: (H, W) (or (T, H, W)) uint8 — as ``Engine.segment``. Arguments as ``predict``."""
    return _lazy(array, model, "labels", tile=tile, block=block, backend=backend, threads=threads)
