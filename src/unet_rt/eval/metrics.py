"""Segmentation metrics (numpy only).

Two families, kept apart because they answer different questions:

**The ISBI 2012 challenge protocol** (Arganda-Carreras et al., 2015, "Crowdsourcing the creation of
image segmentation algorithms for connectomics", Front. Neuroanat. 9:142; the challenge's Fiji
scripts, Trainable Weka Segmentation ``trainableSegmentation.metrics``). A submission is a
*probability map* per slice, p(cell) in [0, 1] (cells white, membranes black, as the training
labels); it is binarised at the thresholds 0.0, 0.1, ..., 1.0 (a pixel is cell when p > t) and each
score is the *best* over those thresholds, one threshold for the whole stack:

- ``V_rand`` (thinned): foreground-restricted Rand F-score after border thinning (``rand_scores``
  on ``thin_boundaries``), mean over slices; the current leader board's figure.
- ``V_info`` (thinned): the information-theoretic analogue (``info_scores``), mean over slices.
- ``rand_error``: 1 - maximal F-score of the foreground-restricted Rand index of the 4-connected
  components, *without* thinning, counts pooled over slices. This is the challenge's original
  (2012-2015) "Rand error", the one of the U-Net paper's Table 1 (0.0382).
- ``pixel_error``: 1 - maximal F-score of pixel similarity (cell = positive), counts pooled over
  slices; the U-Net paper's "pixel error" (0.0611). Not the fraction of wrong pixels.
- ``warping_error``: the "minimum splits and mergers warping error" (Jain et al., CVPR 2010, as the
  challenge scored it): the ground truth is warped toward the binarised proposal by flipping simple
  points only; the mismatches left are topological errors, and the pixels among them that split or
  merge objects, divided by the number of pixels, is the error (minimum over thresholds 0.0-0.9;
  the U-Net paper's 0.000353).

``challenge_scores`` computes all five for a stack.

**Per-image metrics of a decision** (a class map, e.g. ``Engine.segment``): ``pixel_error`` (the
fraction of pixels whose class differs), ``iou``, ``dice`` and ``adapted_rand_error`` (as
``skimage.metrics.adapted_rand_error`` with ground-truth label 0 ignored) between the connected
components of the cell class; ``evaluate`` returns them for one image.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

#: thresholds of the challenge's scripts (0.0 to 1.0 in steps of 0.1; a pixel is cell when p > t)
CHALLENGE_THRESHOLDS = tuple(k / 10 for k in range(11))
#: thresholds of the challenge's warping-error script (0.0 to 0.9)
WARPING_THRESHOLDS = tuple(k / 10 for k in range(10))

PROTOCOL = ("ISBI 2012 challenge protocol (Arganda-Carreras et al. 2015): proposal p(cell) binarised at "
            "p > t for t = 0.0, 0.1, ..., 1.0 (warping error: 0.0-0.9), best threshold for the whole stack; "
            "ground-truth membrane pixels excluded from the Rand and information scores")


# ------------------------------------------------------------------------------ per-image decision metrics
def pixel_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of pixels whose class differs (of a decision, e.g. ``Engine.segment``'s class map)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {true.shape}")
    return float(np.count_nonzero(pred != true)) / max(pred.size, 1)


def iou(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    """Intersection over union of class ``cls`` (1.0 when neither image has it)."""
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t)) / union if union else 1.0


def dice(pred: np.ndarray, true: np.ndarray, cls: int = 1) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of class ``cls`` (1.0 when neither image has it)."""
    p, t = np.asarray(pred) == cls, np.asarray(true) == cls
    s = np.count_nonzero(p) + np.count_nonzero(t)
    return 2.0 * np.count_nonzero(p & t) / s if s else 1.0


def connected_components(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Connected components of a 2-D boolean mask: int32 labels 1..n in raster order of their first
    pixel, 0 outside. ``connectivity`` 4 (edge neighbours) or 8 (also diagonal). numpy only.

    Horizontal runs are labelled first; runs that touch across rows (vertically, or also diagonally
    for 8) are joined by a vectorised union-find (hook the larger root under the smaller, then
    compress paths fully) until no edge joins two roots.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError("connected_components needs a 2-D mask")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    h, w = m.shape
    out = np.zeros((h, w), np.int32)
    if not m.any():
        return out
    flat = m.ravel()
    start = flat.copy()
    start[1:] &= ~flat[:-1]
    start[::w] = flat[::w]  # a run starts at a row's first pixel
    run = np.cumsum(start) - 1  # run index of each foreground pixel
    nruns = int(np.count_nonzero(start))
    a_list, b_list = [], []
    pairs = [(m[:-1, :] & m[1:, :], 0, w)]  # (valid pair mask over the upper pixel, column shift, flat offset)
    if connectivity == 8:
        pairs += [(m[:-1, :-1] & m[1:, 1:], 1, w + 1), (m[:-1, 1:] & m[1:, :-1], -1, w - 1)]
    for valid, shift, off in pairs:
        r, c = np.nonzero(valid)
        if shift < 0:
            c = c + 1
        top = r * w + c
        ra, rb = run[top], run[top + off]
        step = np.ones(ra.size, bool)  # one edge per pair of touching runs (they come in raster order)
        step[1:] = (ra[1:] != ra[:-1]) | (rb[1:] != rb[:-1])
        a_list.append(ra[step])
        b_list.append(rb[step])
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    parent = np.arange(nruns)
    while a.size:
        pa, pb = parent[a], parent[b]
        diff = pa != pb
        if not diff.any():
            break
        a, b, pa, pb = a[diff], b[diff], pa[diff], pb[diff]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:  # full path compression: every run points at its root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    is_root = parent == np.arange(nruns)  # roots are the smallest run ids of their components: raster order
    root_label = np.cumsum(is_root)[parent]
    out.ravel()[flat] = root_label[run[flat]]
    return out


def adapted_rand_error(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """Adapted Rand error between two label images, true label 0 ignored.

    Computed as ``skimage.metrics.adapted_rand_error(true, test, ignore_labels=(0,))`` does (the
    tests check that they agree): over the pixels with a true label, with n_ij the contingency
    table, a_i and b_j its row and column sums and n the pixel count, precision
    P = (sum n_ij^2 - n) / (sum b_j^2 - n), recall R = (sum n_ij^2 - n) / (sum a_i^2 - n), and the
    error is 1 - 2PR / (P + R). Test label 0 is an ordinary segment here. This is *not* the
    challenge's Rand error (see ``rand_scores``).
    """
    t = np.asarray(true_seg).ravel()
    s = np.asarray(test_seg).ravel()
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: {np.shape(true_seg)} vs {np.shape(test_seg)}")
    keep = t != 0
    t, s = t[keep].astype(np.int64), s[keep].astype(np.int64)
    if t.size == 0:
        return 0.0
    _, ti = np.unique(t, return_inverse=True)
    _, si = np.unique(s, return_inverse=True)
    pair = ti * (si.max() + 1) + si
    _, nij = np.unique(pair, return_counts=True)
    a = np.bincount(ti).astype(np.float64)
    b = np.bincount(si).astype(np.float64)
    nij = nij.astype(np.float64)
    sum_p = (nij**2).sum() - t.size
    sum_a = (a**2).sum() - t.size
    sum_b = (b**2).sum() - t.size
    precision = sum_p / sum_b if sum_b else 1.0
    recall = sum_p / sum_a if sum_a else 1.0
    if precision + recall == 0:
        return 1.0
    return float(1.0 - 2.0 * precision * recall / (precision + recall))


def evaluate(pred_classes: np.ndarray, true_classes: np.ndarray, fg: int = 1) -> dict:
    """Metrics of one decision (class map) against the true class map; cells = 4-connected
    components of class ``fg``: pixel_error (fraction wrong), iou, dice, adapted_rand_error."""
    true_inst = connected_components(np.asarray(true_classes) == fg)
    pred_inst = connected_components(np.asarray(pred_classes) == fg)
    return {
        "pixel_error": pixel_error(pred_classes, true_classes),
        "iou": iou(pred_classes, true_classes, fg),
        "dice": dice(pred_classes, true_classes, fg),
        "adapted_rand_error": adapted_rand_error(true_inst, pred_inst),
    }


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


# ------------------------------------------------------------------------------ warping error
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


# ------------------------------------------------------------------------------ the challenge protocol
def _pixel_counts(true_mask: np.ndarray, pred_mask: np.ndarray) -> np.ndarray:
    tp = np.count_nonzero(true_mask & pred_mask)
    return np.array([tp, np.count_nonzero(pred_mask) - tp, np.count_nonzero(true_mask) - tp], np.float64)


def _pixel_fscore(tp: float, fp: float, fn: float) -> float:
    # the challenge's convention: no false positives = precision 1, no false negatives = recall 1
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return _fscore(precision, recall)


def _check_pair(p, t) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, np.float64)
    t = np.asarray(t)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"need a 2-D probability map and a label image of one shape, got {p.shape} and {t.shape}")
    if not np.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError("probabilities must be finite and within [0, 1]")
    return np.clip(p, 0.0, 1.0), t


def challenge_scores(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                     thresholds: Iterable[float] = CHALLENGE_THRESHOLDS,
                     warping_thresholds: Iterable[float] | None = WARPING_THRESHOLDS,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """The ISBI 2012 challenge's scores of a stack of foreground probability maps.

    ``probabilities``: one (H, W) map of p(cell) in [0, 1] per image (a binary decision as 0/1 works
    too: every threshold then gives the same result). ``truths``: the true labels per image, > 0 =
    cell (a binary mask; its 4-connected components are the true segments). A pixel is cell when
    p > t. For every threshold t and image: ``rand_scores``/``info_scores`` of ``thin_boundaries``
    (V_rand, V_info), ``rand_scores`` of the ``connected_components`` (Rand error), pixel counts
    (pixel error) and ``warp`` (warping error; ``warping_thresholds=None`` skips it, the costly part).
    ``progress(done, total)`` is called after each image.

    Returns a dict: ``v_rand``, ``v_info`` (max over t of the mean over images), ``rand_error``,
    ``pixel_error`` (1 - max over t of the F-score of counts pooled over images), ``warping_error``
    (min over t of pooled split + merger pixels / pixels), each with ``<name>_threshold``;
    ``v_rand_split``/``v_rand_merge``/``v_info_split``/``v_info_merge`` (means at the V_rand/V_info
    threshold), ``warping_splits``/``warping_mergers`` (at its threshold); ``images``: per image,
    the same figures at the stack's thresholds; ``curves``: per threshold, the stack's figures
    (and ``wrong_pixel_fraction``, the fraction of misclassified pixels at that threshold);
    ``protocol``: a sentence naming the protocol; ``n_images``.
    """
    thresholds = [float(t) for t in thresholds]
    wths = [float(t) for t in warping_thresholds] if warping_thresholds is not None else []
    if not thresholds:
        raise ValueError("no thresholds")
    probabilities, truths = list(probabilities), list(truths)
    if len(probabilities) != len(truths) or not probabilities:
        raise ValueError(f"need as many probability maps as truths (and at least one), got "
                         f"{len(probabilities)} and {len(truths)}")
    nt, ni = len(thresholds), len(probabilities)
    vr = np.zeros((nt, ni, 3))  # split, merge, F
    vi = np.zeros((nt, ni, 3))
    rc = np.zeros((nt, ni, 3))  # sum p^2, sum s^2, sum t^2
    pc = np.zeros((nt, ni, 3))  # tp, fp, fn
    wc = np.zeros((len(wths), ni, 3))  # splits, mergers, pixels
    for i, (p, t) in enumerate(zip(probabilities, truths)):
        p, t = _check_pair(p, t)
        true_mask = t > 0
        true_cc = connected_components(true_mask)
        for k, th in enumerate(thresholds):
            cells = p > th
            thin = thin_boundaries(cells)
            vr[k, i] = rand_scores(true_cc, thin)
            vi[k, i] = info_scores(true_cc, thin)
            rc[k, i] = _rand_counts(true_cc, connected_components(cells))
            pc[k, i] = _pixel_counts(true_mask, cells)
        for k, th in enumerate(wths):
            r = warp(true_mask, p > th, np.abs(p - th))
            wc[k, i] = (r.splits, r.mergers, r.pixels)
        if progress is not None:
            progress(i + 1, ni)

    def rand_f(c):  # pooled sums -> F
        return _fscore(c[0] / c[2], c[0] / c[1])

    v_rand = vr[:, :, 2].mean(1)
    v_info = vi[:, :, 2].mean(1)
    rand_f_t = np.array([rand_f(rc[k].sum(0)) for k in range(nt)])
    pix_f_t = np.array([_pixel_fscore(*pc[k].sum(0)) for k in range(nt)])
    kr, ki, ke, kp = (int(np.argmax(x)) for x in (v_rand, v_info, rand_f_t, pix_f_t))
    out = {
        "protocol": PROTOCOL, "n_images": ni,
        "v_rand": float(v_rand[kr]), "v_rand_threshold": thresholds[kr],
        "v_rand_split": float(vr[kr, :, 0].mean()), "v_rand_merge": float(vr[kr, :, 1].mean()),
        "v_info": float(v_info[ki]), "v_info_threshold": thresholds[ki],
        "v_info_split": float(vi[ki, :, 0].mean()), "v_info_merge": float(vi[ki, :, 1].mean()),
        "rand_error": float(1.0 - rand_f_t[ke]), "rand_error_threshold": thresholds[ke],
        "pixel_error": float(1.0 - pix_f_t[kp]), "pixel_error_threshold": thresholds[kp],
    }
    n_pixels = sum(np.asarray(t).size for t in truths)
    curves = [{"threshold": th, "v_rand": float(v_rand[k]), "v_info": float(v_info[k]),
               "rand_error": float(1 - rand_f_t[k]), "pixel_error": float(1 - pix_f_t[k]),
               "wrong_pixel_fraction": float(pc[k, :, 1:].sum() / n_pixels)}
              for k, th in enumerate(thresholds)]
    images = [{"v_rand": float(vr[kr, i, 2]), "v_info": float(vi[ki, i, 2]),
               "rand_error": float(1 - rand_f(rc[ke, i])), "pixel_error": float(1 - _pixel_fscore(*pc[kp, i]))}
              for i in range(ni)]
    if wths:
        werr = wc[:, :, :2].sum((1, 2)) / wc[:, :, 2].sum(1)
        kw = int(np.argmin(werr))
        out.update(warping_error=float(werr[kw]), warping_error_threshold=wths[kw],
                   warping_splits=int(wc[kw, :, 0].sum()), warping_mergers=int(wc[kw, :, 1].sum()))
        for i in range(ni):
            images[i]["warping_error"] = float(wc[kw, i, :2].sum() / wc[kw, i, 2])
        for k, th in enumerate(wths):
            for row in curves:
                if row["threshold"] == th:
                    row["warping_error"] = float(werr[k])
    out["images"] = images
    out["curves"] = curves
    return out


# ------------------------------------------------------------------------------ evaluation report
def evaluate_stack(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                   decisions: Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
                   warping: bool = True, progress: Callable[[int, int], None] | None = None,
                   instances: Sequence[np.ndarray] | None = None) -> dict:
    """Everything ``unet-rt evaluate`` reports, for a stack of images.

    ``probabilities``: p(cell) per image; ``truths``: label images (> 0 = cell); ``decisions``: the
    class maps actually returned to a user (e.g. ``Engine.segment``; 1 = cell), default p > 0.5.
    Returns ``{"challenge": challenge_scores(...), "decision": {"mean": {...}, "images": [...]},
    "names": [...]}``, where the decision metrics are those of ``evaluate`` (pixel error as the
    fraction of wrong pixels, adapted Rand error, IoU, Dice). ``warping=False`` skips the warping
    error (the costly part). ``instances``: the user's instance label images (``Engine.instances``);
    then the decision's adapted Rand error is theirs (against the true cells), not that of the
    class map's connected components (reported "instances": true).
    """
    probabilities, truths = list(probabilities), list(truths)
    if decisions is None:
        decisions = [(np.asarray(p) > 0.5).astype(np.uint8) for p in probabilities]
    decisions = list(decisions)
    if len(decisions) != len(truths):
        raise ValueError(f"need one decision per truth, got {len(decisions)} and {len(truths)}")
    names = list(names) if names is not None else [str(i) for i in range(len(truths))]
    challenge = challenge_scores(probabilities, truths,
                                 warping_thresholds=WARPING_THRESHOLDS if warping else None, progress=progress)
    rows = [evaluate(np.asarray(d), (np.asarray(t) > 0).astype(np.uint8)) for d, t in zip(decisions, truths)]
    if instances is not None:
        for r, t, inst in zip(rows, truths, instances):
            t = np.asarray(t)
            true_inst = connected_components(t > 0) if len(np.unique(t)) <= 2 else t
            r["adapted_rand_error"] = adapted_rand_error(true_inst, np.asarray(inst))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {"names": names, "challenge": challenge, "decision": {"mean": mean, "images": rows},
            "instances": instances is not None}


def format_report(report: dict, per_image: bool = False) -> list[str]:
    """The lines ``unet-rt evaluate`` prints for an ``evaluate_stack`` report."""
    c, d = report["challenge"], report["decision"]
    lines = [f"{c['protocol']}; {c['n_images']} images:",
             f"  V_rand (thinned)          {c['v_rand']:.4f}  (split {c['v_rand_split']:.4f}, merge "
             f"{c['v_rand_merge']:.4f}; t = {c['v_rand_threshold']:.1f})",
             f"  V_info (thinned)          {c['v_info']:.4f}  (split {c['v_info_split']:.4f}, merge "
             f"{c['v_info_merge']:.4f}; t = {c['v_info_threshold']:.1f})",
             f"  Rand error                {c['rand_error']:.4f}  (1 - max foreground-restricted Rand F-score, "
             f"no thinning; t = {c['rand_error_threshold']:.1f})",
             f"  pixel error               {c['pixel_error']:.4f}  (1 - max pixel F-score; "
             f"t = {c['pixel_error_threshold']:.1f})"]
    if "warping_error" in c:
        lines.append(f"  warping error             {c['warping_error']:.6f}  ({c['warping_splits']} split + "
                     f"{c['warping_mergers']} merger pixels; t = {c['warping_error_threshold']:.1f})")
    m = d["mean"]
    lines += ["At the decision (the class map a user gets), mean over images:",
              f"  pixel error {m['pixel_error']:.4f} (fraction of wrong pixels)  adapted Rand error "
              f"{m['adapted_rand_error']:.4f}{' (of Engine.instances)' if report.get('instances') else ''}  IoU {m['iou']:.4f}  Dice {m['dice']:.4f}"]
    if per_image:
        lines.append("Per image (challenge scores at the stack's thresholds; decision metrics):")
        for name, ci, di in zip(report["names"], c["images"], d["images"]):
            warp_txt = f"  warping {ci['warping_error']:.6f}" if "warping_error" in ci else ""
            lines.append(f"  {name:>12}  V_rand {ci['v_rand']:.4f}  V_info {ci['v_info']:.4f}  Rand error "
                         f"{ci['rand_error']:.4f}  pixel error {ci['pixel_error']:.4f}{warp_txt} | pixel error "
                         f"{di['pixel_error']:.4f}  adapted Rand {di['adapted_rand_error']:.4f}")
    return lines
