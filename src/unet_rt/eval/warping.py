"""The "minimum splits and mergers warping error" (Jain et al., CVPR 2010, as the ISBI 2012 challenge scored
it): the ground truth is warped toward a binary proposal by flipping simple points only; the mismatches
left are topological errors, and the pixels among them that split or merge objects, divided by the
number of pixels, is the error. numpy only.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from unet_rt.eval.labels import connected_components


__all__ = ["is_simple", "WarpingResult", "warp", "warping_error"]

# 8-neighbour ring, clockwise from north-west; bit k of a ring code is neighbour k
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
_EDGES = (1, 3, 5, 7)  # N, E, S, W: the 4-neighbours


def _ring_components(code: int, value: int, connectivity: int) -> list[set[int]]:
    """Components of the ring positions whose bit equals ``value`` (the centre excluded)."""
    members = [k for k in range(8) if (code >> k) & 1 == value]
    comps: list[set[int]] = []
    for k in members:
        touching = [c for c in comps if any(
            max(abs(_RING[k][0] - _RING[j][0]), abs(_RING[k][1] - _RING[j][1])) == 1
            and (connectivity == 8 or abs(_RING[k][0] - _RING[j][0]) + abs(_RING[k][1] - _RING[j][1]) == 1)
            for j in c)]
        merged = {k}.union(*touching)
        comps = [c for c in comps if not any(c is t for t in touching)] + [merged]
    return comps


def _ring_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of the 256 ring codes: T4 (4-components of the foreground ring that contain a
    4-neighbour of the centre), T8 (8-components of the background ring) and simplicity."""
    t4 = np.zeros(256, np.int8)
    t8 = np.zeros(256, np.int8)
    for code in range(256):
        t4[code] = sum(1 for c in _ring_components(code, 1, 4) if c & set(_EDGES))
        t8[code] = len(_ring_components(code, 0, 8))
    return t4, t8, (t4 == 1) & (t8 == 1)


_T4, _T8, _SIMPLE = _ring_tables()


def is_simple(patch: np.ndarray) -> bool:
    """Whether the centre of a 3x3 binary patch is a simple point for (4, 8) connectivity
    (foreground 4-connected, background 8-connected): flipping it changes neither the foreground
    nor the background components (T4 = 1 and T8 = 1, Kong & Rosenfeld 1989). The same test holds
    for a foreground and a background centre."""
    p = np.asarray(patch, bool)
    if p.shape != (3, 3):
        raise ValueError("is_simple needs a 3x3 patch")
    code = sum(int(p[1 + dy, 1 + dx]) << k for k, (dy, dx) in enumerate(_RING))
    return bool(_SIMPLE[code])


class WarpingResult(NamedTuple):
    """Outcome of warping the ground truth toward a binary proposal."""
    warped: np.ndarray  # the warped ground truth (bool)
    splits: int  # mismatch pixels where the proposal splits an object
    mergers: int  # mismatch pixels where the proposal merges objects
    other: int  # other topological mismatches (object/hole added or deleted)
    pixels: int  # pixels of the image

    @property
    def error(self) -> float:
        """The splits-and-mergers warping error: (splits + mergers) / pixels."""
        return (self.splits + self.mergers) / self.pixels if self.pixels else 0.0


#: confidence bands |p - t| of the warp, most confident first
_WARP_BANDS = tuple(np.round(np.arange(1.0, -0.01, -0.05), 2))


def warp(true_mask: np.ndarray, pred_mask: np.ndarray, confidence: np.ndarray | None = None) -> WarpingResult:
    """Warp the binary ground truth toward a binary proposal by simple-point flips (Jain et al. 2010)
    and classify the mismatches that remain.

    Only simple points (``is_simple``: (4, 8) connectivity, outside the image = background) of the
    ground truth that disagree with the proposal are flipped, so the warped truth keeps the truth's
    topology; the mismatches left are topological disagreements. The flips are done in parallel on
    the four parity sub-lattices (pixels two apart do not see each other's flips, so a parallel flip
    equals a sequential one), with a work list: after a pass only the mismatched neighbours of
    flipped pixels are tested again, until none can flip. Pixels are taken in bands of
    ``confidence`` (|p - t|, bands 0.05 wide), most confident first, as the challenge's script sorts
    them (it sweeps the whole sorted list sequentially until nothing flips); a band starts with its
    own pixels, and earlier bands' leftovers are tested again when a neighbour flips. The order
    matters: on the shipped model's slices 25-29 at t = 0.5, ignoring the confidence leaves 1540
    split pixels, bands of 0.1 1220, of 0.05 1212, of 0.02 1163 (mergers 1663, 1576, 1549, 1534).
    Cost: proportional to the number of mismatches times the warp depth plus the bands' overhead,
    some tens of milliseconds on 512 x 512.

    A remaining mismatch is a *merger* when the truth is background there and setting it to
    foreground would join two or more objects (distinct 4-components among its 4-neighbours), a
    *split* when the truth is foreground there and setting it to background would disconnect its
    object (its ring has k >= 2 background runs lying in d < k background 8-components: by the
    Euler number, removing it then adds k - d objects); anything else is ``other``. The challenge's
    script decides this from the labels in the pixel's 8-neighbourhood, relabelling the image after
    a trial flip in the ambiguous case; the criteria here are exact and need one labelling of each
    phase. The error counts pixels, as the script does: a missing boundary costs its length, a
    false cut the width of the bridge the warp must keep.
    """
    src_in = np.asarray(true_mask, bool)
    tgt_in = np.asarray(pred_mask, bool)
    if src_in.shape != tgt_in.shape or src_in.ndim != 2:
        raise ValueError(f"warp needs two 2-D masks of one shape, got {src_in.shape} and {tgt_in.shape}")
    h, w = src_in.shape
    wp = w + 2
    src = np.zeros((h + 2, wp), np.uint8)
    tgt = np.zeros((h + 2, wp), np.uint8)
    conf = np.zeros((h + 2, wp), np.float32)
    src[1:-1, 1:-1], tgt[1:-1, 1:-1] = src_in, tgt_in
    if confidence is not None:
        conf[1:-1, 1:-1] = np.asarray(confidence, np.float32)
    src, tgt, conf = src.ravel(), tgt.ravel(), conf.ravel()
    mark = np.zeros(src.size, bool)
    ring = np.array([dy * wp + dx for dy, dx in _RING])
    weights = (1 << np.arange(8)).astype(np.int64)
    mism = np.flatnonzero(src != tgt)
    bands = _WARP_BANDS if confidence is not None else (0.0,)
    upper = np.inf
    for level in bands:
        # the band's own pixels; earlier bands' leftovers are tested again when a neighbour flips
        cand = mism[(conf[mism] >= level) & (conf[mism] < upper)]
        upper = level
        while cand.size:
            flipped = []
            for sub in range(4):
                c = cand[((((cand // wp) & 1) << 1) | (cand % wp & 1)) == sub]
                c = c[src[c] != tgt[c]]
                if c.size:
                    code = src[c[:, None] + ring] @ weights
                    f = c[_SIMPLE[code]]
                    src[f] ^= 1
                    flipped.append(f)
            f = np.concatenate(flipped) if flipped else np.zeros(0, np.int64)
            if not f.size:
                break
            mark[(f[:, None] + ring).ravel()] = True
            nb = np.flatnonzero(mark)
            mark[nb] = False
            cand = nb[(src[nb] != tgt[nb]) & (conf[nb] >= level)]
    warped = src.reshape(h + 2, wp)[1:-1, 1:-1].astype(bool)
    left = np.flatnonzero(src != tgt)
    splits = mergers = 0
    if left.size:
        fg4 = np.zeros((h + 2, wp), np.int32)
        fg4[1:-1, 1:-1] = connected_components(warped, 4)
        bg8 = connected_components(src.reshape(h + 2, wp) == 0, 8).ravel()  # padded: one outer background
        fg4 = fg4.ravel()
        code = src[left[:, None] + ring] @ weights
        on = src[left] == 1
        # mergers: background pixels whose 4-neighbours carry >= 2 distinct objects
        off_px = left[~on]
        lab4 = np.sort(fg4[off_px[:, None] + ring[list(_EDGES)]], axis=1)
        distinct = (lab4[:, 0] > 0).astype(int) + ((lab4[:, 1:] != lab4[:, :-1]) & (lab4[:, 1:] > 0)).sum(1)
        mergers = int(np.count_nonzero(distinct >= 2))
        # splits: foreground pixels with k >= 2 background runs in fewer than k background components
        on_px, k = left[on], _T8[code[on]].astype(int)
        lab8 = np.where(src[on_px[:, None] + ring] == 0, bg8[on_px[:, None] + ring], 0)
        lab8 = np.sort(lab8, axis=1)
        d = (lab8[:, 0] > 0).astype(int) + ((lab8[:, 1:] != lab8[:, :-1]) & (lab8[:, 1:] > 0)).sum(1)
        splits = int(np.count_nonzero((k >= 2) & (d < k)))
    return WarpingResult(warped, splits, mergers, int(left.size) - splits - mergers, h * w)


def warping_error(true_mask: np.ndarray, pred_mask: np.ndarray, confidence: np.ndarray | None = None) -> float:
    """Splits-and-mergers warping error of one binary proposal: ``warp(...).error``."""
    return warp(true_mask, pred_mask, confidence).error
