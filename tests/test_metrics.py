"""Metrics: against scikit-image and scipy where they have a reference, against hand-computed tiny
cases and plain brute-force definitions where they do not."""
import itertools

import numpy as np
import pytest
from scipy import ndimage

from unet_rt.train.data import synthetic_cells
from unet_rt.eval import metrics, warping

EIGHT = np.ones((3, 3), int)


def same_partition(a, b, where):
    """Label images a and b induce the same partition of the pixels ``where``."""
    pairs = set(zip(a[where].tolist(), b[where].tolist()))
    return len(pairs) == len(np.unique(a[where])) == len(np.unique(b[where]))


# ------------------------------------------------------------------------------ connected components
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_scipy(seed, connectivity):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((70, 53)) > 0.45) if seed % 2 else rng.random((41, 67)) > 0.5
    ours = metrics.connected_components(mask, connectivity)
    ref, n = ndimage.label(mask, EIGHT if connectivity == 8 else None)
    assert ours.max() == n
    assert np.array_equal(ours == 0, ~mask)
    assert same_partition(ours, ref, mask)
    # labels in raster order of each component's first pixel
    firsts = [ours.ravel()[np.flatnonzero(ours.ravel() == k)[0]] for k in range(1, n + 1)]
    assert firsts == sorted(firsts)
    order = [np.flatnonzero(ours.ravel() == k)[0] for k in range(1, n + 1)]
    assert order == sorted(order)


def test_connected_components_edge_cases():
    assert metrics.connected_components(np.zeros((3, 4), bool)).max() == 0
    assert metrics.connected_components(np.ones((1, 1), bool)).max() == 1
    snake = np.zeros((9, 9), bool)
    snake[::2, :] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    assert metrics.connected_components(snake).max() == 1
    diag = np.eye(5, dtype=bool)
    assert metrics.connected_components(diag, 4).max() == 5
    assert metrics.connected_components(diag, 8).max() == 1
    assert metrics.connected_components(np.fliplr(diag), 8).max() == 1
    with pytest.raises(ValueError):
        metrics.connected_components(diag, 6)


# ------------------------------------------------------------------------------ decision metrics
@pytest.mark.parametrize("seed", range(4))
def test_adapted_rand_error_matches_skimage(seed):
    skm = pytest.importorskip("skimage.metrics")
    _, true, _ = synthetic_cells((64, 64), 12, seed=seed)
    _, test, _ = synthetic_cells((64, 64), 9, seed=seed + 10)
    ref = skm.adapted_rand_error(true, test, ignore_labels=(0,))[0]
    assert metrics.adapted_rand_error(true, test) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert metrics.adapted_rand_error(true, true) == pytest.approx(0.0, abs=1e-12)


def test_wrong_pixel_fraction_iou_dice():
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[0, 1], [0, 1]])
    assert metrics.wrong_pixel_fraction(a, b) == 0.25
    with pytest.warns(DeprecationWarning, match="wrong_pixel_fraction"):
        assert metrics.pixel_error(a, b) == 0.25  # the old name, deprecated
    assert metrics.iou(a, b) == pytest.approx(2 / 3)
    assert metrics.dice(a, b) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        metrics.wrong_pixel_fraction(a, b[:1])
    m = metrics.evaluate(a, b)
    assert set(m) == {"wrong_pixel_fraction", "iou", "dice", "adapted_rand_error"}


# ------------------------------------------------------------------------------ Rand and information scores
def test_rand_scores_hand_computed():
    one = np.array([[1, 1, 1, 1]])
    # a split in halves: sum p^2 = (4 + 4) / 16, sum t^2 = 16 / 16, sum s^2 = 8 / 16
    r = metrics.rand_scores(one, np.array([[1, 1, 2, 2]]))
    assert r == pytest.approx((0.5, 1.0, 2 / 3))
    # a boundary pixel (0) in the proposal is a segment of its own: n_ij = 2, 1 and one singleton
    r = metrics.rand_scores(one, np.array([[1, 1, 0, 2]]))
    assert r == pytest.approx((6 / 16, 1.0, 2 * 0.375 / 1.375))
    # a merge of two true segments: sum p^2 = 8/16, sum t^2 = 8/16, sum s^2 = 1
    r = metrics.rand_scores(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]]))
    assert r == pytest.approx((1.0, 0.5, 2 / 3))
    # true background (0) is excluded whatever the proposal says there
    assert metrics.rand_scores(np.array([[0, 1, 1, 0]]), np.array([[5, 1, 1, 7]])) == pytest.approx((1, 1, 1))
    assert metrics.rand_scores(np.zeros((2, 2), int), np.ones((2, 2), int)) == (1.0, 1.0, 1.0)


def brute_force_rand(true, pred):
    """Pairs (with replacement) of true-foreground pixels: same in both / same in pred / same in true."""
    t = true.ravel()
    keep = t > 0
    t, p = t[keep], pred.ravel()[keep]
    p = np.where(p > 0, p, -1 - np.arange(p.size))  # proposal boundary pixels: singletons
    both = same_p = same_t = 0
    for i, j in itertools.product(range(t.size), repeat=2):
        st, sp = t[i] == t[j], p[i] == p[j]
        both += st and sp
        same_p += sp
        same_t += st
    return both / same_t, both / same_p


@pytest.mark.parametrize("seed", range(3))
def test_rand_scores_against_pair_counting(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, (6, 7))
    pred = rng.integers(0, 5, (6, 7))
    split, merge = brute_force_rand(true, pred)
    r = metrics.rand_scores(true, pred)
    assert (r.split, r.merge) == pytest.approx((split, merge), rel=1e-12)
    assert r.fscore == pytest.approx(2 * split * merge / (split + merge), rel=1e-12)


def _singletons(pred: np.ndarray) -> np.ndarray:
    """Proposal label 0 (boundary) made into one-pixel segments, so that skimage's contingency
    table counts boundary pixels as the challenge's definition does."""
    return np.where(pred > 0, pred, pred.max() + 1 + np.arange(pred.size).reshape(pred.shape))


@pytest.mark.parametrize("seed", range(3))
def test_rand_scores_against_skimage_contingency_table(seed):
    skm = pytest.importorskip("skimage.metrics")
    _, true, _ = synthetic_cells((64, 64), 12, seed=seed)
    _, pred, _ = synthetic_cells((64, 64), 9, seed=seed + 10)
    singles = _singletons(pred)
    table = skm.contingency_table(true, singles, ignore_labels=(0,), normalize=True)
    p2 = float(table.multiply(table).sum())
    s2 = float((np.asarray(table.sum(axis=0)) ** 2).sum())
    t2 = float((np.asarray(table.sum(axis=1)) ** 2).sum())
    r = metrics.rand_scores(true, pred)
    assert (r.split, r.merge) == pytest.approx((p2 / t2, p2 / s2), rel=1e-10)


def test_info_scores_hand_computed():
    assert metrics.info_scores(np.array([[1, 1, 2, 2]]), np.array([[4, 4, 9, 9]])) == pytest.approx((1, 1, 1))
    # all merged: I = 0, H(S) = 0
    assert metrics.info_scores(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]])) == pytest.approx((0, 0, 0))
    # 4 true pixels in 2 segments, proposal splits one in singletons (via boundary pixels):
    # H(T) = ln 2, H(S) = 1.5 ln 2, I = ln 2: split = 2/3, merge = 1
    r = metrics.info_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 0, 0]]))
    assert r == pytest.approx((2 / 3, 1.0, 0.8))
    assert metrics.info_scores(np.array([[0, 1, 1]]), np.array([[2, 1, 1]])) == pytest.approx((1, 1, 1))


@pytest.mark.parametrize("seed", range(3))
def test_info_scores_against_skimage(seed):
    skm = pytest.importorskip("skimage.metrics")
    _, true, _ = synthetic_cells((64, 64), 12, seed=seed)
    _, pred, _ = synthetic_cells((64, 64), 9, seed=seed + 10)
    singles = _singletons(pred)
    h_s_given_t, h_t_given_s = skm.variation_of_information(true, singles, ignore_labels=(0,))  # bits
    table = skm.contingency_table(true, singles, ignore_labels=(0,), normalize=True)

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    h_t = entropy(np.asarray(table.sum(axis=1)).ravel())
    h_s = entropy(np.asarray(table.sum(axis=0)).ravel())
    mi = h_t - h_t_given_s
    assert mi == pytest.approx(h_s - h_s_given_t, abs=1e-9)
    r = metrics.info_scores(true, pred)
    assert (r.split, r.merge) == pytest.approx((mi / h_s, mi / h_t), rel=1e-9)
    assert r.fscore == pytest.approx(2 * mi / (h_s + h_t), rel=1e-9)


# ------------------------------------------------------------------------------ border thinning
def two_cells(gap):
    cells = np.zeros((6, 6 + gap), bool)
    cells[:, :3] = True
    cells[:, 3 + gap:] = True
    return cells


def test_thin_boundaries_hand_cases():
    odd = metrics.thin_boundaries(two_cells(3))  # band of 3: the middle column is the line
    assert (odd[:, :4] == 1).all() and (odd[:, 4] == 0).all() and (odd[:, 5:] == 2).all()
    even = metrics.thin_boundaries(two_cells(4))  # band of 4: no tie; the later middle column is line
    assert (even[:, :5] == 1).all() and (even[:, 5] == 0).all() and (even[:, 6:] == 2).all()
    touching = metrics.thin_boundaries(two_cells(1))
    assert (touching[:, 3] == 0).all() and touching.max() == 2
    assert (metrics.thin_boundaries(np.zeros((4, 5), bool)) == 1).all()  # all boundary: one segment
    assert (metrics.thin_boundaries(np.ones((4, 5), bool)) == 1).all()
    # a boundary pocket reached only through line pixels becomes line
    cells = np.zeros((5, 5), bool)
    cells[0, :] = cells[4, :] = True
    thin = metrics.thin_boundaries(cells)
    assert (thin[2, :] == 0).all() and (thin[:2] == 1).all() and (thin[3:] == 2).all()


@pytest.mark.parametrize("seed", range(3))
def test_thin_boundaries_like_skimage_watershed(seed):
    seg = pytest.importorskip("skimage.segmentation")
    rng = np.random.default_rng(seed)
    cells = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((96, 96)), 3) > 0.5, iterations=2)
    ours = metrics.thin_boundaries(cells)
    markers, n = ndimage.label(cells)
    ref = seg.watershed(~cells, markers, connectivity=1, watershed_line=True)
    assert ours.max() == ref.max() == n
    # segments separated by one-pixel lines: no two 4-adjacent pixels carry different segments
    for a, b in ((ours[1:], ours[:-1]), (ours[:, 1:], ours[:, :-1])):
        assert not ((a > 0) & (b > 0) & (a != b)).any()
    assert (ours[cells] == markers[cells]).all()
    # the lines lie where the watershed's do, up to how ties are resolved
    both = (ours > 0) & (ref > 0)
    assert (ours[both] == ref[both]).mean() > 0.995
    assert abs(np.count_nonzero(ours == 0) - np.count_nonzero(ref == 0)) <= 0.25 * np.count_nonzero(ref == 0)


# ------------------------------------------------------------------------------ simple points and warping
def ring_counts_scipy(patch):
    """T4 of the foreground and T8 of the background of a 3x3 patch's ring, by scipy labelling."""
    ring = patch.copy()
    ring[1, 1] = False
    fg, _ = ndimage.label(ring)
    edge = {fg[0, 1], fg[1, 0], fg[1, 2], fg[2, 1]} - {0}
    bg_ring = ~patch
    bg_ring[1, 1] = False
    _, n_bg = ndimage.label(bg_ring, EIGHT)
    return len(edge), n_bg


def test_simple_point_table_against_scipy():
    for code in range(256):
        patch = np.zeros((3, 3), bool)
        for k, (dy, dx) in enumerate(warping._RING):
            patch[1 + dy, 1 + dx] = bool(code >> k & 1)
        t4, t8 = ring_counts_scipy(patch)
        assert (warping._T4[code], warping._T8[code]) == (t4, t8), code
        for centre in (False, True):
            patch[1, 1] = centre
            assert metrics.is_simple(patch) == (t4 == 1 and t8 == 1)


def topology(mask):
    padded = np.pad(mask, 1)
    return ndimage.label(padded)[1], ndimage.label(~padded, EIGHT)[1]


@pytest.mark.parametrize("seed", range(3))
def test_warp_keeps_the_truths_topology(seed):
    rng = np.random.default_rng(seed)
    truth = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((64, 64)), 2) > 0.5)
    pred = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((64, 64)), 2) > 0.5)
    r = metrics.warp(truth, pred, rng.random((64, 64)))
    assert topology(r.warped) == topology(truth)
    left = r.warped != pred
    assert r.splits + r.mergers + r.other == np.count_nonzero(left)
    # what is left cannot be flipped without changing the topology
    padded = np.pad(r.warped, 1)
    for y, x in zip(*np.nonzero(left)):
        assert not metrics.is_simple(padded[y:y + 3, x:x + 3])


def square_cell(h=12, w=12):
    truth = np.zeros((h + 4, w + 4), bool)
    truth[2:-2, 2:-2] = True
    return truth


def test_warping_error_hand_cases():
    truth = square_cell()
    same = metrics.warp(truth, truth)
    assert (same.splits, same.mergers, same.other) == (0, 0, 0) and metrics.warping_error(truth, truth) == 0.0
    # thicker or thinner borders are absorbed by the warp: no error
    assert metrics.warping_error(truth, ndimage.binary_erosion(truth)) == 0.0
    assert metrics.warping_error(truth, ndimage.binary_dilation(truth)) == 0.0
    # a small spurious blob (in the background, or a hole in the cell) is not a split or merger
    blob = truth.copy()
    blob[0, 0] = True
    blob[6:8, 6:8] = False
    r = metrics.warp(truth, blob)
    assert (r.splits, r.mergers) == (0, 0) and r.other > 0
    # a cut through the cell: one bridge pixel is left, a split
    cut = truth.copy()
    cut[:, 8] = False
    r = metrics.warp(truth, cut)
    assert (r.splits, r.mergers) == (1, 0)
    assert r.error == 1 / truth.size
    # a wider cut leaves a bridge as long as the cut is wide
    cut[:, 7:10] = False
    r = metrics.warp(truth, cut)
    assert r.splits >= 3 and r.mergers == 0 and r.splits + r.other <= 6
    # two cells joined across their boundary: the truth's boundary cannot be warped away, so every
    # pixel of the missing boundary is a merger (what it takes to correct the proposal)
    two = truth.copy()
    two[:, 8] = False
    r = metrics.warp(two, truth)
    assert (r.splits, r.mergers) == (0, 12)


def test_warp_takes_confident_pixels_first():
    # a cut of two columns: the bridge is left in the column where the proposal is least sure
    truth = square_cell()
    cut = truth.copy()
    cut[:, 7:9] = False
    conf = np.ones(truth.shape)
    conf[:, 8] = 0.05  # column 8 is a weak cut
    r = metrics.warp(truth, cut, conf)
    assert r.splits >= 1
    left = r.warped != cut
    assert left[:, 8].sum() >= 1 and left[:, 7].sum() <= left[:, 8].sum()


# ------------------------------------------------------------------------------ the challenge protocol
def isbi_like(seed, shape=(64, 64)):
    _, inst, classes = synthetic_cells(shape, 10, seed=seed)
    return classes.astype(np.uint8) * 255


def test_challenge_scores_of_the_truth_are_perfect():
    truths = [isbi_like(s) for s in range(2)]
    out = metrics.challenge_scores([(t > 0).astype(float) for t in truths], truths)
    assert out["v_rand"] == pytest.approx(1.0) and out["v_info"] == pytest.approx(1.0)
    assert out["rand_error"] == pytest.approx(0.0, abs=1e-12)
    assert out["pixel_error"] == 0.0 and out["warping_error"] == 0.0
    assert len(out["images"]) == 2 and len(out["curves"]) == 11
    assert "Arganda-Carreras" in out["protocol"]


def test_challenge_scores_see_splits_and_merges():
    truth = isbi_like(3)
    cells = truth > 0
    merged = cells.copy()
    merged[:, :32] = ndimage.binary_dilation(cells, iterations=3)[:, :32]  # membranes erased on the left: merges
    split = cells.copy()
    split[:, ::9] = False  # vertical cuts every 9 columns: splits
    m = metrics.challenge_scores([merged.astype(float)], [truth])
    s = metrics.challenge_scores([split.astype(float)], [truth])
    assert m["v_rand_merge"] < 0.9 and m["v_rand_split"] > 0.95
    assert s["v_rand_split"] < 0.9 and s["v_rand_merge"] > 0.95
    assert m["v_info_merge"] < m["v_info_split"] and s["v_info_split"] < s["v_info_merge"]
    assert m["warping_mergers"] > 0 and s["warping_splits"] > 0
    assert m["warping_splits"] == 0 and s["warping_mergers"] == 0


def test_challenge_scores_pick_the_best_threshold():
    truth = isbi_like(4)
    rng = np.random.default_rng(0)
    # a map whose right decision is p > 0.3: cells at 0.35-0.45, membrane at 0.05-0.25
    p = np.where(truth > 0, rng.uniform(0.35, 0.45, truth.shape), rng.uniform(0.05, 0.25, truth.shape))
    out = metrics.challenge_scores([p], [truth])
    assert out["pixel_error"] == 0.0 and out["pixel_error_threshold"] == 0.3
    assert out["v_rand"] == pytest.approx(1.0) and out["v_rand_threshold"] == 0.3
    assert out["warping_error"] == 0.0
    curve = {r["threshold"]: r for r in out["curves"]}
    assert curve[0.5]["pixel_error"] == 1.0  # nothing above 0.5: no true positive
    assert curve[0.5]["wrong_pixel_fraction"] == pytest.approx(np.mean(truth > 0))
    assert curve[0.3]["wrong_pixel_fraction"] == 0.0


def test_challenge_scores_reject_bad_input():
    t = isbi_like(0)
    with pytest.raises(ValueError, match="one shape"):
        metrics.challenge_scores([np.zeros((3, 3))], [t])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.challenge_scores([np.full(t.shape, 2.0)], [t])
    with pytest.raises(ValueError, match="as many"):
        metrics.challenge_scores([], [])
    # float rounding just past 1 is accepted (clipped)
    assert metrics.challenge_scores([np.full(t.shape, 1 + 1e-7)], [t], warping_thresholds=None)["v_rand"] > 0
