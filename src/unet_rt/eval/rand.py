"""Rand and information scores of a segmentation against the truth, foreground-restricted as the ISBI 2012
challenge scored them (Arganda-Carreras et al. 2015), and the challenge's border thinning of a binary
proposal before V_rand / V_info. numpy only.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from unet_rt.eval.labels import connected_components


__all__ = ["thin_boundaries", "SplitMerge", "rand_scores", "info_scores"]


# ------------------------------------------------------------------------------ border thinning
def thin_boundaries(cells: np.ndarray) -> np.ndarray:
    """Thin a binary proposal's boundaries to one pixel: int32 labels, 0 = boundary line.

    The challenge turns a binarised proposal into segments with a watershed of the binary image
    (Vincent-Soille flooding, 4-connectivity): the 4-connected components of the cell pixels are the
    basins, and the boundary pixels are flooded from them in order of geodesic distance. Here the
    flooding is level-synchronous: at each distance step, a boundary pixel reached from one label
    takes it; one reached from two labels at once becomes line (0); of two 4-adjacent pixels that
    take different labels in the same step, the later in raster order becomes line, so that
    different segments are always separated by line pixels (as in the flooding with a FIFO queue).
    Line pixels do not propagate; boundary pixels cut off behind lines become line; a boundary
    region that touches no cell (e.g. an all-boundary image) becomes a segment of its own, as in
    the watershed. Ties may be resolved at other pixels than Fiji's FIFO order resolves them.
    """
    fg = np.asarray(cells, bool)
    if fg.ndim != 2:
        raise ValueError("thin_boundaries needs a 2-D mask")
    h, w = fg.shape
    wp = w + 2
    cc = connected_components(fg)
    k = int(cc.max())
    lab = np.full((h + 2, wp), -2, np.int64)  # -2: outside the image
    lab[1:-1, 1:-1] = np.where(fg, cc, -1)  # -1: boundary pixel not reached yet
    lab = lab.ravel()
    offs = np.array([-wp, 1, wp, -1])
    fresh = np.zeros(lab.size, bool)
    pos = np.flatnonzero(lab > 0)
    frontier = pos[(lab[pos[:, None] + offs] == -1).any(1)]
    seen = np.zeros(lab.size, np.int64)  # scratch: a label written by one of a pixel's sources
    owner = np.zeros(lab.size, np.int64)  # scratch: which source entry wrote last
    while frontier.size:
        nb = (frontier[:, None] + offs).ravel()
        src = np.repeat(lab[frontier], 4)
        keep = lab[nb] == -1
        nb, src = nb[keep], src[keep]
        if not nb.size:
            break
        seen[nb] = src  # the last write wins; a source that disagrees with it means two labels
        clash = np.zeros(lab.size, bool)
        clash[nb[seen[nb] != src]] = True
        owner[nb] = np.arange(nb.size)
        cand = nb[owner[nb] == np.arange(nb.size)]  # each reached pixel once
        new = np.where(clash[cand], 0, seen[cand])
        fresh[cand] = True
        lab[cand] = new
        # same-step neighbours with different labels: the later one (larger index) becomes line
        for off in (-wp, -1):
            q = cand + off
            clash = fresh[q] & (lab[q] > 0) & (new > 0) & (lab[q] != new)
            new[clash] = 0
        lab[cand] = new
        fresh[cand] = False
        frontier = cand[new > 0]
    rest = (lab == -1).reshape(h + 2, wp)[1:-1, 1:-1]
    if rest.any():
        rl = connected_components(rest)
        rflat = np.zeros(lab.size, np.int64)
        rflat.reshape(h + 2, wp)[1:-1, 1:-1] = rl
        idx = np.flatnonzero(rflat)
        touches = (lab[idx[:, None] + offs] >= 0).any(1)  # next to a flooded pixel: cut off behind a line
        comp = rflat[idx]
        cut = np.zeros(int(rl.max()) + 1, bool)
        cut[comp[touches]] = True
        keep = ~cut[comp]
        lab[idx[~keep]] = 0
        _, inv = np.unique(comp[keep], return_inverse=True)
        lab[idx[keep]] = k + 1 + inv
    return lab.reshape(h + 2, wp)[1:-1, 1:-1].astype(np.int32)


# ------------------------------------------------------------------------------ Rand and information scores
class SplitMerge(NamedTuple):
    """A split score, a merge score and their harmonic mean (the F-score); all in [0, 1], 1 = perfect."""
    split: float
    merge: float
    fscore: float


def _contingency(true_labels: np.ndarray, pred_labels: np.ndarray):
    """Over the pixels with a true label > 0: their number n, the true segment sizes a_i, the
    proposal segment sizes b_j (proposal label > 0), the overlap counts n_ij and the number n0 of
    those pixels the proposal labels 0 (boundary: each one a singleton segment)."""
    t = np.asarray(true_labels).ravel()
    s = np.asarray(pred_labels).ravel()
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: {np.shape(true_labels)} vs {np.shape(pred_labels)}")
    keep = t > 0
    t, s = _dense_ids(t[keep]), s[keep]
    n = t.size
    a = np.bincount(t).astype(np.float64)
    inside = s > 0
    n0 = int(n - np.count_nonzero(inside))
    t, s = t[inside], _dense_ids(s[inside])
    if s.size == 0:
        return n, a, np.zeros(0), np.zeros(0), n0
    b = np.bincount(s).astype(np.float64)
    nij = _counts(t * (int(s.max()) + 1) + s)
    return n, a[a > 0], b[b > 0], nij, n0


def _dense_ids(x: np.ndarray) -> np.ndarray:
    """Non-negative int64 ids of the values of x, small enough for bincount (labels as they are when
    they already are, else their rank)."""
    x = x.astype(np.int64, copy=False)
    if x.size and (x.min() < 0 or x.max() > 4 * x.size + 1024):
        return np.unique(x, return_inverse=True)[1].ravel()
    return x


def _counts(keys: np.ndarray) -> np.ndarray:
    """Occurrence counts (> 0) of non-negative int64 keys."""
    if keys.size and keys.max() < 1 << 24:
        c = np.bincount(keys)
        return c[c > 0].astype(np.float64)
    return np.unique(keys, return_counts=True)[1].astype(np.float64)


def _fscore(split: float, merge: float) -> float:
    return 2.0 * split * merge / (split + merge) if split + merge > 0 else 0.0


def rand_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> SplitMerge:
    """Foreground-restricted Rand scores (Arganda-Carreras et al. 2015, eq. 3 with alpha 0, 1, 1/2).

    Over the n pixels with a true label > 0 (ground-truth background/membrane excluded), with
    p_ij = n_ij / n the joint distribution of (proposal segment i, true segment j), s_i and t_j its
    marginals, and each proposal pixel labelled 0 (a boundary pixel) counted as a segment of its
    own:

        V_rand_split = sum p_ij^2 / sum t_j^2      (1 unless the proposal splits true segments)
        V_rand_merge = sum p_ij^2 / sum s_i^2      (1 unless the proposal merges true segments)
        V_rand       = 2 / (1 / split + 1 / merge)

    These are the probabilities that two pixels drawn at random with replacement and in the same
    proposal (true) segment are also in the same true (proposal) segment. 1 - V_rand of
    ``connected_components`` is the challenge's "foreground-restricted Rand error"; V_rand of
    ``thin_boundaries`` is its "V_rand (thinned)". No true foreground: (1, 1, 1).
    """
    n, a, b, nij, n0 = _contingency(true_labels, pred_labels)
    if n == 0:
        return SplitMerge(1.0, 1.0, 1.0)
    sum_t2 = float((a**2).sum())
    sum_s2 = float((b**2).sum()) + n0
    sum_p2 = float((nij**2).sum()) + n0
    split, merge = sum_p2 / sum_t2, sum_p2 / sum_s2
    return SplitMerge(split, merge, _fscore(split, merge))


def _rand_counts(true_labels, pred_labels) -> np.ndarray:
    """(sum p^2, sum s^2, sum t^2) in pixel-pair counts, for pooling over slices."""
    n, a, b, nij, n0 = _contingency(true_labels, pred_labels)
    return np.array([(nij**2).sum() + n0, (b**2).sum() + n0, (a**2).sum()], np.float64)


def _plogp(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float((p * np.log(p)).sum())


def info_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> SplitMerge:
    """Foreground-restricted information-theoretic scores (Arganda-Carreras et al. 2015, eq. 5).

    With the same joint distribution p_ij as ``rand_scores`` (true background excluded, proposal
    label 0 = singletons), H the entropy and I(S;T) = H(S) + H(T) - H(S,T) the mutual information
    of proposal S and truth T:

        V_info_split = I(S;T) / H(S)     V_info_merge = I(S;T) / H(T)
        V_info       = 2 / (1 / split + 1 / merge) = 2 I / (H(S) + H(T))

    A perfect proposal scores 1; when both S and T are a single segment (all entropies 0) the
    scores are 1, when only one is, 0. No true foreground: (1, 1, 1).
    """
    n, a, b, nij, n0 = _contingency(true_labels, pred_labels)
    if n == 0:
        return SplitMerge(1.0, 1.0, 1.0)
    singles = n0 / n * np.log(1.0 / n) if n0 else 0.0
    h_t = -_plogp(a, n)
    h_s = -(_plogp(b, n) + singles)
    h_st = -(_plogp(nij, n) + singles)
    mi = max(h_s + h_t - h_st, 0.0)
    if h_s <= 1e-15 and h_t <= 1e-15:
        return SplitMerge(1.0, 1.0, 1.0)
    split = mi / h_s if h_s > 1e-15 else 0.0
    merge = mi / h_t if h_t > 1e-15 else 0.0
    return SplitMerge(split, merge, _fscore(split, merge))
