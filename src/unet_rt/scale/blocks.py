"""Images larger than memory, on one machine or a cluster: ``unet_rt`` over Dask arrays.

    import dask.array as da, zarr
    from unet_rt.scale.blocks import segment, predict, instances

    img = da.from_zarr("big.zarr")                   # or a zarr array, an OME-Zarr level, a tifffile memmap
    labels = segment(img, "model.plan")             # lazy dask array, (H, W) uint8
    labels.to_zarr("labels.zarr")                    # computed block by block, on any scheduler
    objects = instances(img, "model.plan")          # lazy (H, W) int32 objects, joined across blocks

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
Same-padded networks run, per block, the whole-image plan's windows that cover it (``_same_block``).
Models that normalise each image by its own percentiles get exact whole-plane percentiles from a
lazy histogram reduction first (``_percentile_normalize``); ``instances`` is described at its code.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["segment", "predict", "instances", "block_plan", "BlockPlan"]

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
class BlockPlan:
    """How an image axis pair (H, W) is cut: blocks of whole tiles of the whole-image pass."""
    tile: int                        # input tile T
    stride: int                      # output stride S of the whole-image pass
    halo: int
    y: tuple[tuple[int, int], ...]   # per block row: output [start, stop)
    x: tuple[tuple[int, int], ...]
    y_in: tuple[tuple[int, int], ...]  # per block row: input [start, stop) (may leave the image)
    x_in: tuple[tuple[int, int], ...]
    # same-padded nets: per block row/column, the image coordinates of the windows it runs; window size
    y_win: tuple = ()
    x_win: tuple = ()
    window: tuple = ()


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
    from unet_rt import _core

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


def _same_axis(n: int, starts: list, size: int, block: int):
    """Same-padded nets: blocks of about ``block`` output pixels, each reading the windows (of the
    whole-image plan, image coordinates ``starts``) that overlap it."""
    out, inp, win = [], [], []
    for a in range(0, n, max(1, block)):
        b = min(a + block, n)
        hit = tuple(s for s in starts if s < b and s + size > a)
        out.append((a, b))
        inp.append((hit[0], hit[-1] + size))
        win.append(hit)
    return tuple(out), tuple(inp), tuple(win)


def _plan(height: int, width: int, depth: int, tile: int, block: int, same: bool) -> BlockPlan:
    """The blocks of an image: whole tiles (valid nets, ``block_plan``), or for same-padded nets
    plain ``block``-sized blocks with the windows of the whole-image plan that overlap them."""
    if not same:
        return block_plan(height, width, depth, tile, block)
    from unet_rt import _core

    p = _core.plan_tiles(height, width, depth, True, tile=tile)
    pad_y, pad_x = p["pad"]
    ry, rx = int(p["y"]["in_size"][0]), int(p["x"]["in_size"][0])
    y, y_in, y_win = _same_axis(height, [int(s) - pad_y for s in p["y"]["out_start"]], ry, block)
    x, x_in, x_win = _same_axis(width, [int(s) - pad_x for s in p["x"]["out_start"]], rx, block)
    return BlockPlan(tile=tile, stride=0, halo=0, y=y, x=x, y_in=y_in, x_in=x_in, y_win=y_win, x_win=x_win,
                     window=(ry, rx))


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """numpy 'reflect' extended periodically (the native tiler's reflect_index)."""
    if n == 1:
        return np.zeros_like(i)
    p = 2 * (n - 1)
    i = np.mod(i, p)
    return np.where(i < n, i, p - i)


# ------------------------------------------------------------------ the block function (runs on workers)
def _run_block(region: np.ndarray, *, path: str, backend: str, threads: int | None, tile: int, stride: int,
               out_h: int, out_w: int, kind: str, channels_last: bool, normalized: bool = False,
               same: tuple | None = None) -> np.ndarray:
    """region: (..., Hin, Win) or (..., Hin, Win, C) -> (..., out_h, out_w) labels or (..., K, out_h, out_w).

    normalized: the region is already the network's input (per-image percentile normalisation,
    applied lazily by ``_percentile_normalize``), else raw values normalised here."""
    eng = _engine(path, backend, threads, tile)
    tile_fn = eng._native.forward_tile if eng._native is not None else None
    C = region.shape[-1] if channels_last else 1
    mean = np.zeros(C, np.float32) if normalized else np.asarray(eng.normalization["mean"], np.float32)
    std = np.ones(C, np.float32) if normalized else np.asarray(eng.normalization["std"], np.float32)
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
        # the tiler's normalisation, (float(x) - mean) / std in float32 (x - 0 and x / 1 are exact)
        x = (chw.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
        if not np.isfinite(x).all():
            raise ValueError("percentile normalisation overflows float32: the image's percentile range is too "
                             "small to scale its values" if normalized else "image holds NaN or Inf")
        if same is not None:
            out[t] = _same_block(x, eng, tile_fn, same, out_h, out_w, kind, decision)
            continue
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
                    from unet_rt import _core

                    out[t, ty:ty + oh, tx:tx + ow] = _core.decide_labels(np.ascontiguousarray(r[:, :oh, :ow]), decision)
                elif kind == "labels":
                    out[t, ty:ty + oh, tx:tx + ow] = r[:, :oh, :ow].argmax(0)
                else:
                    out[t, :, ty:ty + oh, tx:tx + ow] = r[:, :oh, :ow]
    return out.reshape(lead + out.shape[1:])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def _same_block(x: np.ndarray, eng, tile_fn, same: tuple, out_h: int, out_w: int, kind: str, decision):
    """Same-padded nets: the block's pixels from the whole-image plan's windows that cover it, their
    logits summed in the tiler's order (row-major) and divided by the count, as the tiler's constant
    blend does in float32 (so the logits are the Engine's bit for bit); then the softmax (numpy's,
    not the core's vectorised one: probabilities agree to float32 rounding) or the labels."""
    oy, ox, (ry, rx), wys, wxs = same
    K = eng.classes
    acc = np.zeros((K, out_h, out_w), np.float32)
    count = np.zeros((out_h, out_w), np.float32)
    for wy in wys:
        for wx in wxs:
            sub = np.ascontiguousarray(x[:, wy:wy + ry, wx:wx + rx])
            r = tile_fn(sub, probabilities=False) if tile_fn is not None else np.asarray(eng._fn(sub), np.float32)
            # the window's rows/columns inside the block
            a0, a1 = max(wy, oy), min(wy + ry, oy + out_h)
            b0, b1 = max(wx, ox), min(wx + rx, ox + out_w)
            acc[:, a0 - oy:a1 - oy, b0 - ox:b1 - ox] += r[:, a0 - wy:a1 - wy, b0 - wx:b1 - wx]
            count[a0 - oy:a1 - oy, b0 - ox:b1 - ox] += np.float32(1)
    acc /= count
    if kind == "labels" and decision is None:
        return acc.argmax(0)
    p = _softmax(acc)
    if kind == "labels":
        from unet_rt import _core

        return _core.decide_labels(np.ascontiguousarray(p), decision)
    return p


# ------------------------------------------------------------------ per-image percentile normalisation
# The runtime normalises each image (each plane of a stack), per channel, by its own percentiles
# (csrc/src/normalize.cc): x' = (x - P_lo) / (P_hi - P_lo), folded into an effective mean and std
# (mean' = P_lo + mean * s, std' = std * s in double, then float32). Here the percentiles of the whole
# plane come from histograms summed over all blocks (a dask reduction, lazy): 8/16-bit values by
# value; float32 values exactly too, by a two-pass radix select on their order-preserving 32-bit keys
# (pass 1: counts of the high 16 bits; pass 2: counts of the low 16 bits inside the bins that hold
# the wanted ranks). The values at the wanted ranks, numpy's linear interpolation and the fold are
# the runtime's arithmetic, so the normalised input, and the result, are the Engine's bit for bit.
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


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """numpy's linear percentile q of n values: ranks k, k + 1 and the weight (normalize.cc's arithmetic)."""
    idx = q / 100.0 * float(n - 1)
    k = min(max(int(np.floor(idx)), 0), n - 1)
    return k, min(k + 1, n - 1), idx - float(k)


def _lerp(a: float, b: float, t: float) -> float:
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


def _fold(lo: float, hi: float, mean: float, sd: float) -> tuple:
    s = hi - lo if hi > lo else 1.0
    m, d = np.float32(lo + float(mean) * s), np.float32(float(sd) * s)
    if not (np.isfinite(m) and np.isfinite(d) and d > 0):
        raise ValueError(f"percentile normalisation: a range float32 cannot scale ({lo} .. {hi})")
    return m, d


def _targets_block(counts: np.ndarray, *, qs: tuple) -> np.ndarray:
    """High-bin counts (lead..., C, 65536) -> (lead..., C, 4, 3): per wanted rank (k and k + 1 of each
    percentile), (its high bin, its rank inside that bin, the plane's pixel count)."""
    out = np.zeros(counts.shape[:-1] + (4, 3), np.int64)
    for idx in np.ndindex(*counts.shape[:-1]):
        n = int(counts[idx].sum())
        ranks = [r for q in qs for r in _ranks(n, q)[:2]]
        out[idx] = [(*_rank_of(counts[idx], r), n) for r in ranks]
    return out


def _stats_block(counts: np.ndarray, targets=None, *, qs: tuple, mean: tuple, std: tuple) -> np.ndarray:
    """Counts by value (lead..., C, nbins), or float low-bit counts (lead..., C, 4, 65536) with their
    targets -> (lead..., C, 2) float32: each plane's and channel's effective (mean, std)."""
    lead = counts.shape[:counts.ndim - (2 if targets is None else 3)]
    C = counts.shape[len(lead)]
    out = np.zeros(lead + (C, 2), np.float32)
    for idx in np.ndindex(*lead):
        for c in range(C):
            h = counts[idx + (c,)]
            pct = []
            if targets is None:  # 8/16-bit: counts by value
                n = int(h.sum())
                for q in qs:
                    k, k1, w = _ranks(n, q)
                    pct.append(_lerp(float(_rank_of(h, k)[0]), float(_rank_of(h, k1)[0]), w))
            else:  # float32: the value of each wanted rank from its high bin and its low 16 bits
                t = targets[idx + (c,)]
                keys = np.array([(int(t[j, 0]) << 16) | _rank_of(h[j], int(t[j, 1]))[0] for j in range(4)])
                vals = [float(v) for v in _key_values(keys)]
                for j, q in enumerate(qs):
                    pct.append(_lerp(vals[2 * j], vals[2 * j + 1], _ranks(int(t[0, 2]), q)[2]))
            out[idx + (c,)] = _fold(pct[0], pct[1], mean[c], std[c])
    return out


def _percentile_normalize(x, norm: dict, channels_last: bool):
    """Lazy float32 network input: each plane normalised by its own percentiles, as the runtime does."""
    da = _dask_array()
    if channels_last:
        x = x.rechunk({x.ndim - 1: -1})
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    lead = x.ndim - (3 if channels_last else 2)
    L = "t"[:lead]
    xi = L + ("yxc" if channels_last else "yx")
    qs = tuple(float(np.float32(q)) for q in norm["percentiles"])  # the core reads them as float
    mean = tuple(float(np.float32(m)) for m in norm["mean"])
    std = tuple(float(np.float32(v)) for v in norm["std"])
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
        stats = da.blockwise(_stats_block, L + "ce", low, L + "cqb", targets, L + "cqr", new_axes={"e": 2},
                             concatenate=True, dtype=np.float32, qs=qs, mean=mean, std=std)
    else:
        stats = da.blockwise(_stats_block, L + "ce", counts, L + "cb", new_axes={"e": 2},
                             concatenate=True, dtype=np.float32, qs=qs, mean=mean, std=std)
    m, d = stats[..., 0], stats[..., 1]  # (lead..., C)
    if channels_last:
        m, d = m[..., None, None, :], d[..., None, None, :]
    else:
        m, d = m[..., 0, None, None], d[..., 0, None, None]
    return (x.astype(np.float32) - m) / d


# ------------------------------------------------------------------ the public API
def _as_dask(array):
    da = _dask_array()
    if isinstance(array, da.Array):
        return array
    if isinstance(array, (str, Path)):
        return da.from_zarr(str(array))
    return da.from_array(array)


def _model_info(path: str) -> dict:
    from unet_rt import _core
    from unet_rt.format import model_file

    kind = model_file.detect_kind(Path(path))
    if kind in ("tensorrt", "tensorrt-bare"):
        raise ValueError("unet_rt.scale runs weight files (cpu/triton backends); a TensorRT plan fixes its tile "
                         "shape: use the weights file it was compiled from")
    meta = _core.read_model(path)
    meta["normalization"] = dict(model_file.load(Path(path), tensors=False).normalization)
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
        x = _percentile_normalize(x, meta["normalization"], channels_last)
    tile = _resolve_tile(tile, depth, block, same)
    plan = _plan(H, W, depth, tile, block, same)

    # mirror-extrapolate the image as far as the tiles read (same indices as the native tiler)
    lo_y, lo_x = max(-plan.y_in[0][0], 0), max(-plan.x_in[0][0], 0)
    hi_y, hi_x = plan.y_in[-1][1] - H, plan.x_in[-1][1] - W
    def pad(a, axis, n, lo, hi):
        parts = []
        if lo > 0:
            parts.append(da.take(a, _reflect(np.arange(-lo, 0), n), axis=axis))
        parts.append(a)
        if hi > 0:
            parts.append(da.take(a, _reflect(np.arange(n, n + hi), n), axis=axis))
        return da.concatenate(parts, axis=axis) if len(parts) > 1 else a
    xp = pad(pad(x, ya, H, lo_y, max(hi_y, 0)), xa, W, lo_x, max(hi_x, 0))

    one = {ya: -1, xa: -1}
    if channels_last:
        one[x.ndim - 1] = -1
    out_t = np.uint8 if K <= 256 else np.uint16
    rows = []
    for bi, ((y0, y1), (iy0, iy1)) in enumerate(zip(plan.y, plan.y_in)):
        row = []
        for bj, ((x0, x1), (ix0, ix1)) in enumerate(zip(plan.x, plan.x_in)):
            sl = [slice(None)] * x.ndim
            sl[ya] = slice(iy0 + lo_y, iy1 + lo_y)
            sl[xa] = slice(ix0 + lo_x, ix1 + lo_x)
            region = xp[tuple(sl)].rechunk(one)
            kw = dict(path=path, backend=backend, threads=threads, tile=tile, stride=plan.stride,
                      out_h=y1 - y0, out_w=x1 - x0, kind=kind, channels_last=channels_last,
                      normalized=bool(percentiles))
            if same:  # the whole-image plan's windows over this block, and where the block starts
                kw.update(same=(y0 - iy0, x0 - ix0, plan.window, tuple(w - iy0 for w in plan.y_win[bi]),
                                tuple(w - ix0 for w in plan.x_win[bj])))
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
    """The pixels of the markers the core kept (for numbering objects as the Engine does): the
    4-connected components of (mask and p > marker threshold) of at least ``min_marker_size`` pixels;
    each keeps its own label in the core's flood."""
    from scipy import ndimage

    from unet_rt import _core

    ip, fg = canon["instances"], canon["foreground_class"]
    p = probs[fg]
    if ip["mask_threshold"] is None:
        mask = _core.decide_labels(np.ascontiguousarray(probs), json.dumps(canon)) == fg
    else:
        mask = p > np.float32(ip["mask_threshold"])
    seed = mask & (p > np.float32(ip["marker_threshold"]))
    comp, _ = ndimage.label(seed)  # 4-connected, as the core's markers
    big = np.bincount(comp.ravel()) >= ip["min_marker_size"]
    big[0] = False
    return big[comp] & (lab > 0)


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


def _plane_instances(chunks: np.ndarray, lead: int, plan: BlockPlan, H: int, W: int, decision: str, halo: int,
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
        import scipy.ndimage  # noqa: F401  (markers and the join, on the workers)
        import scipy.sparse.csgraph  # noqa: F401
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
    plan = _plan(H, W, depth, _resolve_tile(tile, depth, block, same), block, same)
    # one delayed object per block (K axis whole, one plane per chunk), from one optimised graph
    blocks = probs.rechunk({i: 1 for i in range(len(lead))}).to_delayed()
    planes = [_plane_instances(blocks[t][0], len(lead), plan, H, W, json.dumps(local), h, strip, not markers, min_keep,
                               local if markers else None)
              for t in np.ndindex(*lead)]
    if not lead:
        return planes[0]
    return da.stack(planes).reshape(lead + (H, W))
