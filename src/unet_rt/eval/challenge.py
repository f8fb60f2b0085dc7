"""Two families, kept apart because they answer different questions:

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

``challenge_scores`` computes all five for a stack. numpy only.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from unet_rt.eval.labels import connected_components
from unet_rt.eval.rand import _fscore, _rand_counts, info_scores, rand_scores, thin_boundaries
from unet_rt.eval.warping import warp


__all__ = ["CHALLENGE_THRESHOLDS", "WARPING_THRESHOLDS", "PROTOCOL", "challenge_scores"]

CHALLENGE_THRESHOLDS = tuple(k / 10 for k in range(11))
#: thresholds of the challenge's warping-error script (0.0 to 0.9)
WARPING_THRESHOLDS = tuple(k / 10 for k in range(10))

PROTOCOL = ("ISBI 2012 challenge protocol (Arganda-Carreras et al. 2015): proposal p(cell) binarised at "
            "p > t for t = 0.0, 0.1, ..., 1.0 (warping error: 0.0-0.9), best threshold for the whole stack; "
            "ground-truth membrane pixels excluded from the Rand and information scores")


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
