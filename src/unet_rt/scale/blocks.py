"""Images larger than memory, on one machine or a cluster: ``unet_rt`` over Dask arrays.

    import dask.array as da, zarr
    from unet_rt.scale.blocks import segment, predict, instances

    img = da.from_zarr("big.zarr")                   # or a zarr array, an OME-Zarr level, a tifffile memmap
    labels = segment(img, "model.plan")             # lazy dask array, (H, W) uint8
    labels.to_zarr("labels.zarr")                    # computed block by block, on any scheduler
    objects = instances(img, "model.plan")          # lazy (H, W) int32 objects, joined across blocks

Needs the ``dask`` extra (``pip install unet-rt[dask]``; ``dask.distributed`` for clusters).

How a block is computed (docs/architecture.md: tiling; docs/dask.md). Every block runs through the
native core's tiler (``_core.Engine.run_region``): the whole-image pass with a fixed input tile ``T``
is planned for the whole frame, and the block runs exactly the tiles of that plan that write its pixels,
reading the frame's pixels around it as context (mirror-extrapolated at the frame's edges only). The
block's task loads just the frame pixels those tiles read (``_core.frame_reads``). The result is
therefore **bit-identical** to ``Engine(model, tile=T).predict(whole_image)`` / ``.segment(...)`` —
same tiles, same inputs, same arithmetic, for valid and same-padded networks alike. ``Engine`` with
its default automatic tile picks other tile shapes, whose Winograd kernels round differently: there
the agreement is to ~1e-5 in the probabilities (labels differ only where two classes tie to that
precision). Blocks of valid networks are runs of whole tiles of the whole-image pass (output stride
``S``: ``T - 2*halo`` rounded down to the ``2**depth`` pooling grid), so that no tile runs twice.

The model is opened once per process (``_engine``: a cache keyed by path, file size and mtime,
backend, threads and tile) — the task graph carries the model's *path*, never its weights, so the
file must be readable at that path on every worker (a shared file system, or the same install).
Stacks and volumes (T|Z, Y, X) run plane by plane with the 2-D model, chunked along T/Z.
Models that normalise each image by its own percentiles get exact whole-plane percentiles from a
lazy histogram reduction first (``_percentile_stats``), which the core's normaliser then applies to
every block; ``instances`` is described at its code.
"""
from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["segment", "predict", "instances", "block_grid", "BlockGrid"]

_MISSING = ("unet_rt.scale needs dask: pip install 'unet-rt[dask]' "
            "(dask[array], plus dask.distributed for clusters)")


def _dask_array():
    try:
        import dask.array as da
    except ImportError as e:
        raise ImportError(_MISSING) from e
    return da


# ------------------------------------------------------------------ the model, once per process
@functools.lru_cache(maxsize=8)
def _engine_cached(path: str, size: int, mtime_ns: int, backend: str, threads: int | None, tile: int,
                   precision: str = "fp32"):
    from unet_rt.engine import Engine

    return Engine(path, backend=backend, threads=threads, tile=tile, precision=precision)


def _worker_threads() -> int | None:
    """Threads for the engine: the dask.distributed worker's thread count, else every core."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _engine(path: str, backend: str, threads: int | None, tile: int, precision: str = "fp32"):
    st = os.stat(path)
    if threads is None:
        threads = _worker_threads()
    return _engine_cached(path, st.st_size, st.st_mtime_ns, backend, threads, tile, precision)


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class BlockGrid:
    """How an image axis pair (H, W) is cut into blocks: valid networks, runs of whole tiles of the
    whole-image pass; same-padded networks, ``block``-sized blocks."""
    tile: int                        # input tile T of the whole-image pass
    stride: int                      # its output stride S (0 for same-padded networks)
    halo: int
    y: tuple[tuple[int, int], ...]   # per block row: output [start, stop)
    x: tuple[tuple[int, int], ...]
    y_in: tuple[tuple[int, int], ...]  # per block row: the image rows [start, stop) its tiles read
    x_in: tuple[tuple[int, int], ...]  # (mirror extrapolation at the image's edges included)


def _reads(height: int, width: int, depth: int, tile: int, same: bool, y: tuple, x: tuple) -> tuple:
    """Per block row and column: the image rows / columns the whole-image pass's tiles over it read
    (the core's answer; rows depend only on the block's rows, columns only on its columns)."""
    from unet_rt import _core

    y_in = tuple(tuple(_core.frame_reads((height, width), (a, b, 0, 1), depth, same, tile)[:2]) for a, b in y)
    x_in = tuple(tuple(_core.frame_reads((height, width), (0, 1, a, b), depth, same, tile)[2:]) for a, b in x)
    return y_in, x_in


def _valid_axis(n: int, out_start: list, per_block: int) -> tuple:
    starts = list(out_start)
    return tuple((starts[i], starts[i + per_block] if i + per_block < len(starts) else n)
                 for i in range(0, len(starts), per_block))


def block_grid(height: int, width: int, depth: int, tile: int, block: int | tuple[int, int] = 2048,
               same: bool = False) -> BlockGrid:
    """Blocks of about ``block`` output pixels per side: for valid networks made of whole tiles of
    input size ``tile`` of the whole-image pass; for same-padded networks (``same``) ``block`` pixels."""
    from unet_rt import _core

    by, bx = (block, block) if isinstance(block, int) else block
    p = _core.plan_tiles(height, width, depth, same, tile=tile)
    if same:
        y = tuple((a, min(a + by, height)) for a in range(0, height, max(1, by)))
        x = tuple((a, min(a + bx, width)) for a in range(0, width, max(1, bx)))
        return BlockGrid(tile, 0, 0, y, x, *_reads(height, width, depth, tile, True, y, x))
    halo = int(p["halo"])
    sy = p["y"]["out_start"]
    stride = int(sy[1] - sy[0]) if len(sy) > 1 else int(p["y"]["out_size"][0])
    sx = p["x"]["out_start"]
    if len(sx) > 1:
        stride = int(sx[1] - sx[0])
    per_y = max(1, round(by / stride)) if stride else 1
    per_x = max(1, round(bx / stride)) if stride else 1
    y = _valid_axis(height, p["y"]["out_start"], per_y)
    x = _valid_axis(width, p["x"]["out_start"], per_x)
    return BlockGrid(tile, stride, halo, y, x, *_reads(height, width, depth, tile, False, y, x))


def block_plan(height: int, width: int, depth: int, tile: int, block: int | tuple[int, int] = 2048) -> BlockGrid:
    """Deprecated name of :func:`block_grid` (valid networks)."""
    warnings.warn("unet_rt.scale.block_plan is deprecated: use block_grid", DeprecationWarning, stacklevel=2)
    return block_grid(height, width, depth, tile, block)


def __getattr__(name: str):
    if name == "BlockPlan":
        warnings.warn("unet_rt.scale.BlockPlan is deprecated: use BlockGrid", DeprecationWarning, stacklevel=2)
        return BlockGrid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ the block function (runs on workers)
def _run_block(region: np.ndarray, stats: np.ndarray | None = None, *, path: str, backend: str,
               threads: int | None, tile: int, origin: tuple, frame: tuple, box: tuple, kind: str,
               channels_last: bool) -> np.ndarray:
    """region: (..., h, w) or (..., h, w, C), the frame's pixels from ``origin`` on that the block's
    tiles read -> the block ``box`` = (y0, y1, x0, x1) of the frame: (..., out_h, out_w) labels or
    (..., K, out_h, out_w) probabilities, by the core (``Engine._region``). stats: (..., C, 2) each
    plane's whole-frame percentiles (models with per-image percentile normalisation), else None."""
    eng = _engine(path, backend, threads, tile)
    lead = region.shape[:-3] if channels_last else region.shape[:-2]
    planes = region.reshape((-1,) + region.shape[len(lead):])
    pct = None if stats is None else np.asarray(stats, np.float64).reshape((len(planes),) + stats.shape[-2:])
    out = []
    for t, plane in enumerate(planes):
        chw = np.moveaxis(plane, -1, 0) if channels_last else plane[None]
        if not chw.dtype.isnative:
            chw = chw.astype(chw.dtype.type)
        out.append(eng._region(chw, origin, frame, box, kind,
                               None if pct is None else [(float(lo), float(hi)) for lo, hi in pct[t]]))
    return np.stack(out).reshape(lead + out[0].shape)


# ------------------------------------------------------------------ per-image percentile normalisation
# The runtime normalises each image (each plane of a stack), per channel, by its own percentiles
# (csrc/runtime/normalize.cc). Here the percentiles of the whole plane come from histograms summed over
# all blocks (a dask reduction, lazy): 8/16-bit values by value; float32 values exactly too, by a
# two-pass radix select on their order-preserving 32-bit keys (pass 1: counts of the high 16 bits; pass
# 2: counts of the low 16 bits inside the bins that hold the wanted ranks). Which ranks, and the
# percentile from the values there, are the core's (``_core.percentile_ranks`` / ``percentile_from_ranks``);
# the blocks then hand the percentiles to the core's normaliser, so the normalised input, and the
# result, are the Engine's bit for bit.
def _float_keys(v: np.ndarray) -> np.ndarray:
    """float32 -> uint32 keys in the order of the values (finite values)."""
    u = np.ascontiguousarray(v, np.float32).view(np.uint32)
    return np.where(u >> 31, ~u, u | np.uint32(1 << 31))


def _key_values(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.uint32)
    return np.where(k >> 31, k & np.uint32(0x7FFFFFFF), ~k).astype(np.uint32).view(np.float32)


def _plane_values(a: np.ndarray, channels_last: bool, lead: int) -> np.ndarray:
    """A block (lead..., h, w[, C]) -> (planes, C, pixels)."""
    if not channels_last:
        a = a[..., None]
    return np.moveaxis(a.reshape((int(np.prod(a.shape[:lead], dtype=np.int64)), -1, a.shape[-1])), 2, 1)


def _hist_block(a: np.ndarray, targets=None, *, channels_last: bool, lead: int, nbins: int) -> np.ndarray:
    """Counts per plane and channel: of the values (integers), of the float keys' high 16 bits, or
    (targets given: the high bins wanted) of the low 16 bits inside each target bin.
    -> (lead..., 1, 1, C[, Q], nbins)."""
    v = _plane_values(a, channels_last, lead)
    P, C = v.shape[:2]
    if v.dtype.kind == "f":
        if not np.isfinite(v).all():
            raise ValueError("image holds NaN or Inf")
        v = _float_keys(v)
    if targets is None:
        out = np.zeros((P, C, nbins), np.int64)
        for p in range(P):
            for c in range(C):
                vals = v[p, c] >> 16 if v.dtype == np.uint32 else v[p, c]
                out[p, c] = np.bincount(vals.astype(np.int64), minlength=nbins)
    else:
        t = np.asarray(targets)[..., 0].reshape(P, C, -1)
        out = np.zeros((P, C, t.shape[2], nbins), np.int64)
        for p in range(P):
            for c in range(C):
                hi = v[p, c] >> 16
                for q, b in enumerate(t[p, c]):
                    out[p, c, q] = np.bincount((v[p, c][hi == b] & 0xFFFF).astype(np.int64), minlength=nbins)
    return out.reshape(a.shape[:lead] + (1, 1) + out.shape[1:])


def _rank_of(counts: np.ndarray, r: int) -> tuple[int, int]:
    """(the bin holding the value of rank r, r's rank inside that bin)."""
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, r, side="right"))
    return b, r - (int(cum[b - 1]) if b else 0)


def _targets_block(counts: np.ndarray, *, qs: tuple) -> np.ndarray:
    """High-bin counts (lead..., C, 65536) -> (lead..., C, 4, 3): per wanted rank (k and k + 1 of each
    percentile, the core's), (its high bin, its rank inside that bin, the plane's pixel count)."""
    from unet_rt import _core

    out = np.zeros(counts.shape[:-1] + (4, 3), np.int64)
    for idx in np.ndindex(*counts.shape[:-1]):
        n = int(counts[idx].sum())
        ranks = [r for q in qs for r in _core.percentile_ranks(n, q)]
        out[idx] = [(*_rank_of(counts[idx], r), n) for r in ranks]
    return out


def _stats_block(counts: np.ndarray, targets=None, *, qs: tuple) -> np.ndarray:
    """Counts by value (lead..., C, nbins), or float low-bit counts (lead..., C, 4, 65536) with their
    targets -> (lead..., C, 2) float64: each plane's and channel's percentiles (P_lo, P_hi)."""
    from unet_rt import _core

    lead = counts.shape[:counts.ndim - (2 if targets is None else 3)]
    C = counts.shape[len(lead)]
    out = np.zeros(lead + (C, 2), np.float64)
    for idx in np.ndindex(*lead):
        for c in range(C):
            h = counts[idx + (c,)]
            if targets is None:  # 8/16-bit: counts by value
                n = int(h.sum())
                vals = [float(_rank_of(h, r)[0]) for q in qs for r in _core.percentile_ranks(n, q)]
            else:  # float32: the value of each wanted rank from its high bin and its low 16 bits
                t = targets[idx + (c,)]
                n = int(t[0, 2])
                keys = np.array([(int(t[j, 0]) << 16) | _rank_of(h[j], int(t[j, 1]))[0] for j in range(4)])
                vals = [float(v) for v in _key_values(keys)]
            out[idx + (c,)] = [_core.percentile_from_ranks(n, q, vals[2 * j], vals[2 * j + 1])
                               for j, q in enumerate(qs)]
    return out


def _percentile_stats(x, percentiles, channels_last: bool):
    """Lazy (lead..., C, 2) float64: each plane's and channel's whole-plane percentiles (P_lo, P_hi)."""
    da = _dask_array()
    lead = x.ndim - (3 if channels_last else 2)
    L = "t"[:lead]
    xi = L + ("yxc" if channels_last else "yx")
    qs = tuple(float(np.float32(q)) for q in percentiles)  # the core reads them as float
    kw = dict(channels_last=channels_last, lead=lead)
    nbins = 256 if x.dtype == np.uint8 else 65536  # uint8 by value; uint16 by value, float32 by 16-bit halves
    c_new = {} if channels_last else {"c": 1}
    counts = da.blockwise(_hist_block, L + "yxcb", x, xi, new_axes={"b": nbins, **c_new},
                          adjust_chunks={"y": 1, "x": 1}, dtype=np.int64, nbins=nbins, **kw).sum(axis=(lead, lead + 1))
    if x.dtype == np.float32:
        targets = da.blockwise(_targets_block, L + "cqr", counts, L + "cb", new_axes={"q": 4, "r": 3},
                               concatenate=True, dtype=np.int64, qs=qs)
        low = da.blockwise(_hist_block, L + "yxcqb", x, xi, targets, L + "cqr", new_axes={"b": nbins, **c_new},
                           adjust_chunks={"y": 1, "x": 1}, concatenate=True, dtype=np.int64, nbins=nbins,
                           **kw).sum(axis=(lead, lead + 1))
        return da.blockwise(_stats_block, L + "ce", low, L + "cqb", targets, L + "cqr", new_axes={"e": 2},
                            concatenate=True, dtype=np.float64, qs=qs)
    return da.blockwise(_stats_block, L + "ce", counts, L + "cb", new_axes={"e": 2},
                        concatenate=True, dtype=np.float64, qs=qs)


# ------------------------------------------------------------------ the public API
def _as_dask(array):
    da = _dask_array()
    if isinstance(array, da.Array):
        return array
    if isinstance(array, (str, Path)):
        return da.from_zarr(str(array))
    return da.from_array(array)


def _model_info(path: str) -> dict:
    """The native reader's record of the model (arch, decision as the runtime holds it) with the stored
    normalisation, from one read of the file (two more only to word the refusal of a TensorRT plan)."""
    from unet_rt import _core
    from unet_rt.format import model_file

    refusal = ("unet_rt.scale runs weight files (cpu/triton backends); a TensorRT plan fixes its tile "
               "shape: use the weights file it was compiled from")
    try:
        meta = _core.read_model(path)
    except Exception:
        if model_file.detect_kind(Path(path)) in ("tensorrt", "tensorrt-bare"):
            raise ValueError(refusal) from None
        raise
    if meta.get("kind") == "tensorrt":
        raise ValueError(refusal)
    meta["normalization"] = dict(model_file.from_native(meta).normalization)
    return meta


def _default_tile(depth: int, block: int, same: bool = False) -> int:
    """The input tile the engine's automatic planner picks for a square block (cost model + budget)."""
    from unet_rt import _core

    p = _core.plan_tiles(block, block, depth, same, tile=0, max_tile=1024 if not same else 512)
    return int(max(p["y"]["in_size"]))


def _resolve_tile(tile: int | None, depth: int, block: int, same: bool = False) -> int:
    return int(tile) if tile else _default_tile(depth, block, same)


def _lazy(array, model, kind: str, *, tile: int | None, block: int, backend: str, threads: int | None):
    da = _dask_array()
    path = str(Path(model).resolve())
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    meta = _model_info(path)
    arch = meta["arch"]
    depth, cin, K = int(arch["depth"]), int(arch["in_channels"]), int(arch["classes"])
    same = arch["padding"] == "same"
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
    percentiles = meta["normalization"].get("percentiles")
    if percentiles:
        if channels_last:
            x = x.rechunk({x.ndim - 1: -1})
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
    stats = _percentile_stats(x, percentiles, channels_last) if percentiles else None
    tile = _resolve_tile(tile, depth, block, same)
    grid = block_grid(H, W, depth, tile, block, same)

    lead = x.ndim - (3 if channels_last else 2)
    L = "t"[:lead]
    xi = L + ("yxc" if channels_last else "yx")
    one = {ya: -1, xa: -1}
    if channels_last:
        one[x.ndim - 1] = -1
    out_t = np.uint8 if K <= 256 else np.uint16
    rows = []
    for (y0, y1), (iy0, iy1) in zip(grid.y, grid.y_in):
        row = []
        for (x0, x1), (ix0, ix1) in zip(grid.x, grid.x_in):
            # the frame pixels this block's tiles read, one chunk per plane
            sl = [slice(None)] * x.ndim
            sl[ya] = slice(iy0, iy1)
            sl[xa] = slice(ix0, ix1)
            region = x[tuple(sl)].rechunk(one)
            kw = dict(path=path, backend=backend, threads=threads, tile=tile, origin=(iy0, ix0), frame=(H, W),
                      box=(y0, y1, x0, x1), kind=kind, channels_last=channels_last)
            args = (region, xi) if stats is None else (region, xi, stats, L + "ce")
            if kind == "labels":
                b = da.blockwise(_run_block, L + "yx", *args, adjust_chunks={"y": y1 - y0, "x": x1 - x0},
                                 concatenate=True, dtype=out_t, **kw)
            else:
                b = da.blockwise(_run_block, L + "kyx", *args, new_axes={"k": K},
                                 adjust_chunks={"y": y1 - y0, "x": x1 - x0}, concatenate=True, dtype=np.float32,
                                 **kw)
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


# ------------------------------------------------------------------ instances over blocks
# Each block's instances are computed by the core (``_core.instances``, the runtime's own decision step)
# on the block's probabilities extended by ``halo`` pixels on every side (clipped to the image); the
# block keeps its own pixels. Objects that cross a block border are then joined: two neighbouring
# blocks both labelled the strip of ``2 * strip`` pixels around their shared face, and their local
# labels are linked there (one task per face); one task over all blocks' per-object summaries and the
# links makes a graph of local labels (``scipy.sparse.csgraph.connected_components``). Finally objects
# smaller than the decision's sizes are dropped and the rest numbered 1..n as the Engine numbers them:
# in raster order of their marker's first pixel (of their own first pixel without markers).
#
# * No marker threshold (markers = the mask's components, so instances = connected components of the
#   mask): every pair of labels meeting on the face is linked, with a halo of 1. That is exact: two
#   pixels of the strip that both blocks call foreground belong to one component of the whole mask,
#   and a component crossing a face has a pair of 4-neighbours across it that both blocks see. The
#   result equals the whole-image ``Engine(model, tile=T).instances`` bit for bit (same numbering).
# * Marker-controlled watershed: a pixel's label depends on the flooding order of the whole mask
#   component, which blocks cannot see in full; with enough halo the two blocks' labels agree near
#   their face. A pair is linked only when each is the other's best match on the strip (most shared
#   pixels), so a small disagreement splits at worst, never chains two objects together. The result
#   is then close to, not equal to, the whole-image pass (bound tested; docs/dask.md).
def _decision_for(meta: dict, decision: dict | None, K: int) -> tuple[dict, bool]:
    """(the canonical decision, whether it floods from markers) for the model or the override."""
    from unet_rt import _core

    d = decision if decision is not None else meta.get("decision")
    text = json.dumps(d) if d else json.dumps({"foreground_class": 1 if K >= 2 else 0})
    canon = _core.decision(text, K)  # validates
    return canon, canon["instances"]["marker_threshold"] is not None


def _first_index(core: np.ndarray, n: int, y0: int, x0: int, W: int) -> np.ndarray:
    """Global raster index of each local label's first pixel in the block (int64 max if absent)."""
    first = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    labs, idx = np.unique(core, return_index=True)  # first occurrence in the block's raster order
    w = core.shape[1]
    first[labs] = (y0 + idx // w) * W + x0 + idx % w
    return first


def _marker_pixels(probs: np.ndarray, lab: np.ndarray, canon: dict) -> np.ndarray:
    """The pixels of the markers the core kept (for numbering objects as the Engine does): the core's
    own markers (``_core.instance_markers``, the first step of its watershed), where ``lab`` is set."""
    from unet_rt import _core

    return (_core.instance_markers(probs, json.dumps(canon)) > 0) & (lab > 0)


def _block_instances(pieces: list, *, decision: str, core: tuple, origin: tuple, W: int,
                     strips: dict, markers: dict | None) -> tuple:
    """pieces: rows of (K, h, w) parts of the extended block -> (the block's own local labels, its
    summary: label count, sizes and first pixels, its labels on the strips around its faces).
    markers: the canonical decision when it floods from markers (first pixels are then those of the
    objects' markers, the Engine's numbering), else None (an object's own first pixel)."""
    from unet_rt import _core

    probs = np.ascontiguousarray(np.concatenate([np.concatenate(row, axis=2) for row in pieces], axis=1),
                                 dtype=np.float32)
    lab = _core.instances(probs, decision)
    (cy0, cy1), (cx0, cx1) = core
    own = lab[cy0:cy1, cx0:cx1]
    n = int(lab.max())
    at = own if markers is None else np.where(_marker_pixels(probs, lab, markers)[cy0:cy1, cx0:cx1], own, 0)
    summary = {"n": n, "sizes": np.bincount(own.ravel(), minlength=n + 1).astype(np.int64),
               "first": _first_index(at, n, origin[0] + cy0, origin[1] + cx0, W)}
    # the extended block's labels on the strips around its faces (in its own coordinates)
    edges = {side: lab[ys[0]:ys[1], xs[0]:xs[1]].copy() for side, (ys, xs) in strips.items()}
    return np.ascontiguousarray(own), summary, edges


def _links(a: np.ndarray, b: np.ndarray, every: bool) -> np.ndarray:
    """Pairs (a, b) of labels to join from two labellings of the same strip: every pair of
    foreground labels meeting there, or only mutual best matches (most shared pixels)."""
    on = (a > 0) & (b > 0)
    pairs = np.stack([a[on], b[on]], 1).astype(np.int64)
    if not len(pairs):
        return pairs.reshape(0, 2)
    pairs, count = np.unique(pairs, axis=0, return_counts=True)
    if every:
        return pairs

    def best(key, other):  # for each key label: the pair with the most pixels (ties: smallest other label)
        order = np.lexsort((other, -count, key))
        k = key[order]
        return order[np.r_[True, k[1:] != k[:-1]]]

    both = np.intersect1d(best(pairs[:, 0], pairs[:, 1]), best(pairs[:, 1], pairs[:, 0]))
    return pairs[both]


def _face_links(mine: dict, theirs: dict, sides: tuple, every: bool) -> np.ndarray:
    """Links (label in the first block, label in the second) across one face (one task per face)."""
    return _links(mine[sides[0]], theirs[sides[1]], every)


def _merge(summaries: list, faces: list, links: list, min_keep: int) -> list:
    """Local labels of all blocks, and the links across faces ((block a, block b) -> pairs) -> one
    lookup table per block (local label -> global label). One task; its inputs are ~16 bytes per object."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ns = [s["n"] for s in summaries]
    offset = np.concatenate([[0], np.cumsum(ns)])  # node of block b's label l (>= 1): offset[b] + l - 1
    total = int(offset[-1])
    edges = [np.zeros((0, 2), np.int64)]
    for (a, b), e in zip(faces, links):
        edges.append(np.stack([e[:, 0] + offset[a] - 1, e[:, 1] + offset[b] - 1], 1))
    e = np.concatenate(edges)
    g = coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(total, total))
    ncomp, comp = connected_components(g, directed=False)
    sizes = np.zeros(ncomp, np.int64)
    first = np.full(ncomp, np.iinfo(np.int64).max, np.int64)
    for b, s in enumerate(summaries):
        nodes = comp[offset[b]:offset[b + 1]]
        np.add.at(sizes, nodes, s["sizes"][1:])
        np.minimum.at(first, nodes, s["first"][1:])
    keep = np.flatnonzero(sizes >= max(min_keep, 1))
    keep = keep[np.argsort(first[keep], kind="stable")]  # numbered in raster order of first pixel
    new = np.zeros(ncomp, np.int32)
    new[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return [np.concatenate([[0], new[comp[offset[b]:offset[b + 1]]]]).astype(np.int32)
            for b in range(len(summaries))]


def _relabel(own: np.ndarray, luts: list, b: int) -> np.ndarray:
    return luts[b][own]


def _plane_instances(chunks: np.ndarray, lead: int, plan: BlockGrid, H: int, W: int, decision: str, halo: int,
                     strip: int, every: bool, min_keep: int, markers: dict | None):
    """chunks: (ny, nx) delayed (1,) * lead + (K, h, w) probability blocks of one plane -> lazy (H, W) int32."""
    import operator

    import dask
    da = _dask_array()

    def part(y0, y1, x0, x1):  # rows of delayed pieces of the blocks covering [y0, y1) x [x0, x1)
        rows = []
        for bi, (a, b) in enumerate(plan.y):
            if b <= y0 or a >= y1:
                continue
            row = []
            for bj, (c, d) in enumerate(plan.x):
                if d <= x0 or c >= x1:
                    continue
                sl = (0,) * lead + (slice(None), slice(max(y0, a) - a, min(y1, b) - a),
                                    slice(max(x0, c) - c, min(x1, d) - c))
                row.append(dask.delayed(operator.getitem, pure=True)(chunks[bi, bj], sl))
            rows.append(row)
        return rows

    ny, nx = len(plan.y), len(plan.x)
    owns, summaries, edges = [], [], []
    for i, (y0, y1) in enumerate(plan.y):
        for j, (x0, x1) in enumerate(plan.x):
            ey0, ey1, ex0, ex1 = max(y0 - halo, 0), min(y1 + halo, H), max(x0 - halo, 0), min(x1 + halo, W)
            wy = [b - a for a, b in plan.y]
            wx = [b - a for a, b in plan.x]
            # strips (global rows, cols) around the faces shared with the next/previous block
            faces = {}
            if j + 1 < nx:
                s = min(strip, wx[j], wx[j + 1])
                faces["right"] = ((y0, y1), (x1 - s, x1 + s))
            if j:
                s = min(strip, wx[j - 1], wx[j])
                faces["left"] = ((y0, y1), (x0 - s, x0 + s))
            if i + 1 < ny:
                s = min(strip, wy[i], wy[i + 1])
                faces["bottom"] = ((y1 - s, y1 + s), (x0, x1))
            if i:
                s = min(strip, wy[i - 1], wy[i])
                faces["top"] = ((y0 - s, y0 + s), (x0, x1))
            local = {k: ((a - ey0, b - ey0), (c - ex0, d - ex0)) for k, ((a, b), (c, d)) in faces.items()}
            own, summ, strips_b = dask.delayed(_block_instances, nout=3, pure=True)(
                part(ey0, ey1, ex0, ex1), decision=decision, core=((y0 - ey0, y1 - ey0), (x0 - ex0, x1 - ex0)),
                origin=(ey0, ex0), W=W, strips=local, markers=markers)
            owns.append(own)
            summaries.append(summ)
            edges.append(strips_b)
    faces, links = [], []
    for i in range(ny):
        for j in range(nx):
            b = i * nx + j
            for nb, sides, ok in ((b + 1, ("right", "left"), j + 1 < nx), (b + nx, ("bottom", "top"), i + 1 < ny)):
                if ok:
                    faces.append((b, nb))
                    links.append(dask.delayed(_face_links, pure=True)(edges[b], edges[nb], sides, every))
    luts = dask.delayed(_merge, pure=True)(summaries, faces, links, min_keep)
    rows = []
    for i, (y0, y1) in enumerate(plan.y):
        rows.append([da.from_delayed(dask.delayed(_relabel, pure=True)(owns[i * nx + j], luts, i * nx + j),
                                     shape=(y1 - y0, x1 - x0), dtype=np.int32)
                     for j, (x0, x1) in enumerate(plan.x)])
    return da.block(rows)


def instances(array, model, *, tile: int | None = None, block: int = 2048, halo: int = 128,
              decision: dict | None = None, backend: str = "cpu", threads: int | None = None):
    """Lazy instance labels: (H, W) (or (T, H, W)) int32, 0 = background — as ``Engine.instances``.

    The runtime's decision step (the model's ``decision``, or ``decision`` given in the same layout)
    runs on each block's probabilities extended by ``halo`` pixels; objects crossing block borders
    are joined into one label, numbered 1..n per plane as the Engine numbers them.
    Without a marker threshold (instances = connected components of the mask) the result equals
    ``Engine(model, tile=tile).instances(whole_image)`` exactly, whatever ``halo``. With markers (a
    watershed) it is close to it, not equal: see docs/dask.md for the bound and what ``halo`` buys.
    The blocks' local labels (4 bytes/pixel) are held by the workers until every block is done
    (dask.distributed spills them to disk when memory runs short). Other arguments as ``predict``.
    """
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    try:
        import scipy.sparse.csgraph  # noqa: F401  (the join, on the workers)
    except ImportError as e:
        raise ImportError("unet_rt.scale.instances needs scipy: pip install 'unet-rt[dask]'") from e
    probs = _lazy(array, model, "probabilities", tile=tile, block=block, backend=backend, threads=threads)
    path = str(Path(model).resolve())
    meta = _model_info(path)
    K = int(meta["arch"]["classes"])
    canon, markers = _decision_for(meta, decision, K)
    ip = canon["instances"]
    # locally: every marker kept when there is no flooding (sizes then apply to whole components),
    # no final size filter (an object cut by the block's edge is smaller there than it is)
    local = dict(canon, instances=dict(ip, min_size=0, min_marker_size=ip["min_marker_size"] if markers else 1))
    min_keep = ip["min_size"] if markers else max(ip["min_size"], ip["min_marker_size"])
    h = max(halo, 1) if markers else 1
    strip = max(1, min(8, h // 8)) if markers else 1
    da = _dask_array()
    lead = probs.shape[:-3]
    H, W = probs.shape[-2:]
    depth, same = int(meta["arch"]["depth"]), meta["arch"]["padding"] == "same"
    plan = block_grid(H, W, depth, _resolve_tile(tile, depth, block, same), block, same)
    # one delayed object per block (K axis whole, one plane per chunk), from one optimised graph
    blocks = probs.rechunk({i: 1 for i in range(len(lead))}).to_delayed()
    planes = [_plane_instances(blocks[t][0], len(lead), plan, H, W, json.dumps(local), h, strip, not markers, min_keep,
                               local if markers else None)
              for t in np.ndindex(*lead)]
    if not lead:
        return planes[0]
    return da.stack(planes).reshape(lead + (H, W))
