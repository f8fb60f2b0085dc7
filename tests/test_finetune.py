"""Bring your own data: sparse annotations (--ignore-label) and fine-tuning (--init).

The sparse-annotation tests compare against a plain reference: the annotated pixels on their own
(the crop of the annotated columns), where nothing is ignored."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from unet_rt.format import model_file  # noqa: E402
from unet_rt.io.images import write_image  # noqa: E402
from unet_rt.train import data as D  # noqa: E402
from unet_rt.train import train  # noqa: E402
from unet_rt.train.weightmap import dataset_class_weights, weight_map  # noqa: E402

IGN = 128
K = 45  # columns 0..K-1 annotated, the rest ignored


def _partial(seed=0, shape=(72, 80)):
    img, _, mask = D.synthetic_cells(shape, 14, seed=seed)
    partial = mask.copy()
    partial[:, K:] = IGN
    return img, mask, partial


def test_weight_map_of_a_partly_ignored_image_is_that_of_its_annotated_crop():
    img, mask, partial = _partial()
    inst, known = D.instances_known(partial, IGN)
    assert known is not None and not known[:, K:].any() and known[:, :K].all()
    w = weight_map(inst, instances=True, known=known)
    ref = weight_map(mask[:, :K])                       # the annotated pixels alone
    np.testing.assert_allclose(w[:, :K], ref, rtol=1e-6, atol=1e-6)
    assert not w[:, K:].any()                           # zero weight where not annotated
    # the cells in the ignored part are not cells for the border term: without the ignore label
    # (everything annotated) the weights near the cut differ
    assert not np.allclose(weight_map(mask)[:, :K], ref, atol=1e-3)
    # dataset class weights are counted over the annotated pixels
    np.testing.assert_allclose(dataset_class_weights([inst > 0], 10.0, [known]),
                               dataset_class_weights([mask[:, :K] > 0], 10.0))


@pytest.mark.parametrize("reduction", ["normalized", "sum", "mean"])
def test_loss_of_a_partly_ignored_image_is_the_loss_of_its_annotated_crop(reduction):
    img, mask, partial = _partial(1)
    s = D.make_sample("p", img, partial, ignore_label=IGN)
    ref = D.make_sample("c", img[:, :K], mask[:, :K])
    logits = torch.randn(1, 2, *mask.shape, generator=torch.Generator().manual_seed(0))
    full = train.weighted_loss(logits, torch.from_numpy(s.classes.astype(np.int64))[None],
                               torch.from_numpy(s.weights)[None], reduction)
    crop = train.weighted_loss(logits[..., :K].contiguous(), torch.from_numpy(ref.classes.astype(np.int64))[None],
                               torch.from_numpy(ref.weights)[None], reduction)
    if reduction == "mean":  # the mean divides by all pixels, ignored ones included: scale back
        full = full * mask.size / ref.classes.size
    assert float(full) == pytest.approx(float(crop), rel=1e-5)


def test_sampler_keeps_ignored_pixels_at_zero_weight():
    img, mask, partial = _partial(2)
    s = D.make_sample("p", img, partial, ignore_label=IGN)
    norm = D.normalization([s])
    sampler = D.TileSampler([s], norm, 76, depth=2, elastic_sigma=0.0)
    # a window far into the ignored half gets no weight at all
    ign_only = D.make_sample("q", img, np.full_like(partial, IGN), ignore_label=IGN)
    assert not ign_only.weights.any() and ign_only.known is not None and not ign_only.known.any()
    _, _, w = D.TileSampler([ign_only], norm, 76, depth=2)(np.random.default_rng(0))
    assert not w.any()
    _, _, w = sampler(np.random.default_rng(3))
    assert w.any()


def test_validation_scores_use_only_annotated_pixels():
    img, mask, partial = _partial(3)
    s = D.make_sample("p", img, partial, ignore_label=IGN)
    truth = (mask > 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    pred = truth.copy()
    pred[rng.uniform(size=pred.shape) < 0.1] ^= 1         # some errors everywhere
    garbage = pred.copy()
    garbage[:, K:] = rng.integers(0, 2, garbage[:, K:].shape)   # anything where not annotated
    a, b = train.evaluate_known(pred, s.classes, s.known), train.evaluate_known(garbage, s.classes, s.known)
    assert a["wrong_pixel_fraction"] == b["wrong_pixel_fraction"] and a["dice"] == b["dice"] and a["iou"] == b["iou"]
    from unet_rt.eval import metrics

    ref = metrics.evaluate(pred[:, :K], truth[:, :K])
    for k in ("wrong_pixel_fraction", "iou", "dice"):
        assert a[k] == pytest.approx(ref[k])
    p = np.where(pred > 0, 0.9, 0.1)
    pg = np.where(garbage > 0, 0.9, 0.1)
    assert train.best_f1([p], [s.classes], [s.known]) == train.best_f1([pg], [s.classes], [s.known]) \
        == train.best_f1([p[:, :K]], [truth[:, :K]])


def test_calibration_counts_only_annotated_pixels(tmp_path, save_unet):
    pytest.importorskip("unet_rt._core")
    from unet_rt import Engine
    from unet_rt.eval.calibrate import calibrate

    save_unet(tmp_path / "m.plan")
    img, mask, partial = _partial(4)
    inst, known = D.instances_known(partial, IGN)
    d = calibrate(tmp_path / "m.plan", [img], [inst], known=[known], progress=False,
                  grid={"threshold": [0.3, 0.5, 0.7], "threshold_refine": 0, "mask_threshold": [],
                        "marker_threshold": [0.8], "min_marker_size": [1], "min_size": [0], "refine": 0})
    t = d["threshold"]
    seg = Engine(tmp_path / "m.plan").segment(img, threshold=t)
    expect = np.mean(((seg == 1) != (inst > 0))[known])
    assert d["calibration"]["wrong_pixel_fraction"] == pytest.approx(expect, abs=1e-6)
    with pytest.raises(ValueError, match="label 0"):
        calibrate(tmp_path / "m.plan", [img], [D.instances_of(mask)], known=[known], progress=False)


def _near_drawn_reference(label, d):
    """Plain reference for --partial: a pixel is annotated when it is drawn or within d (Euclidean)
    of a drawn pixel, by the minimum over every drawn pixel's distance."""
    ys, xs = np.nonzero(label)
    yy, xx = np.mgrid[:label.shape[0], :label.shape[1]]
    dist = np.sqrt((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(axis=-1)
    return dist <= d


@pytest.mark.parametrize("d", [1.5, 4.0])
def test_partial_annotates_background_only_near_drawn_objects(d):
    _, inst, _ = D.synthetic_cells((48, 56), 10, seed=5)
    drawn = np.where(np.isin(inst, [2, 5]), inst, 0)     # two objects drawn, the others left at 0
    lab, known = D.split_ignore(drawn, None, partial=d)
    np.testing.assert_array_equal(known, _near_drawn_reference(drawn, d))
    np.testing.assert_array_equal(lab, drawn)
    inst_k, known_k = D.instances_known(drawn, None, partial=d)
    assert set(np.unique(inst_k[inst_k > 0]).tolist()) == {2, 5}   # the two drawn objects, as cells
    # an undrawn object's pixels far from the drawn ones are not taught as background
    far = (inst > 0) & (drawn == 0) & ~known
    assert far.any()
    s = D.make_sample("p", np.zeros(drawn.shape, np.float32), drawn, partial=d)
    assert not s.weights[~known].any() and s.weights[known].all()
    # with the ignore label too: the ignored pixels stay unannotated, and do not count as drawn
    both = drawn.copy()
    both[:, :8] = IGN
    _, known_b = D.split_ignore(both, IGN, partial=d)
    ref = _near_drawn_reference(np.where(both == IGN, 0, both), d)
    ref[:, :8] = False
    np.testing.assert_array_equal(known_b, ref)
    # nothing drawn: nothing annotated
    _, none = D.split_ignore(np.zeros_like(drawn), None, partial=d)
    assert none is not None and not none.any()


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sparse_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    for i in range(3):
        img, _, mask = D.synthetic_cells((80, 80), 12, seed=i)
        lab = mask.copy()
        lab[:, 50:] = 255                                  # the right part not annotated
        write_image(root / "image" / f"{i}.png", img)
        write_image(root / "label" / f"{i}.png", lab)
    return root


ARGS = ["--tile", "76", "--val-slices", "2", "--val-every", "2", "--ckpt-every", "2", "--threads", "1",
        "--no-progress"]


def test_train_with_ignore_label_end_to_end(sparse_data, tmp_path, capsys):
    pytest.importorskip("unet_rt._core")
    out = tmp_path / "run"
    assert train.main(["--data", str(sparse_data), "--out", str(out), "--steps", "2", "--warmup", "1",
                       "--base", "4", "--depth", "2", "--ignore-label", "255", *ARGS]) == 0
    mf = model_file.load(out / "model.plan")
    assert mf.provenance["ignore_label"] == 255
    assert mf.decision["calibration"]["ignore_label"] == 255
    with pytest.raises(SystemExit, match="label 0 is the background"):
        train.main(["--data", str(sparse_data), "--out", str(tmp_path / "z"), "--ignore-label", "0", *ARGS])


def test_train_with_partial_end_to_end(tmp_path, capsys):
    pytest.importorskip("unet_rt._core")
    out = tmp_path / "run"
    data = tmp_path / "drawn"
    for i in range(3):  # instance labels, every other object drawn, the right part ignored
        img, inst, _ = D.synthetic_cells((80, 80), 12, seed=i)
        lab = np.where(inst % 2 == 1, inst, 0).astype(np.uint8)
        lab[:, 60:] = 255
        write_image(data / "image" / f"{i}.png", img)
        write_image(data / "label" / f"{i}.png", lab)
    assert train.main(["--data", str(data), "--out", str(out), "--steps", "2", "--warmup", "1",
                       "--base", "4", "--depth", "2", "--ignore-label", "255", "--partial", "6", *ARGS]) == 0
    mf = model_file.load(out / "model.plan")
    assert mf.provenance["partial"] == 6 and mf.provenance["ignore_label"] == 255
    assert mf.decision["calibration"]["partial"] == 6
    with pytest.raises(SystemExit, match="positive number of pixels"):
        train.main(["--data", str(data), "--out", str(tmp_path / "z"), "--partial", "0", *ARGS])
    empty = tmp_path / "empty"
    for i in range(3):
        img, _, _ = D.synthetic_cells((80, 80), 12, seed=i)
        write_image(empty / "image" / f"{i}.png", img)
        write_image(empty / "label" / f"{i}.png", np.zeros((80, 80), np.uint8))
    with pytest.raises(SystemExit, match="no annotated pixels .*--partial 6: no drawn object"):
        train.main(["--data", str(empty), "--out", str(tmp_path / "e"), "--partial", "6", *ARGS])


def _shipped():
    from unet_rt.format.model_file import SHIPPED_MODEL as DEFAULT_MODEL

    if not DEFAULT_MODEL.exists():
        pytest.skip("the shipped model is not installed")
    return DEFAULT_MODEL


def test_init_with_zero_learning_rate_keeps_the_model(sparse_data, tmp_path, capsys):
    src = _shipped()
    out = tmp_path / "ft"
    # the shipped model (depth 4): a 188 tile is valid for it; lr 0 must give back its weights
    assert train.main(["--data", str(sparse_data), "--out", str(out), "--init", str(src), "--steps", "1",
                       "--lr", "0", "--tile", "188", "--val-slices", "", "--threads", "1", "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert "normalisation from the file" in log and "without BatchNorm" in log
    a, b = model_file.load(src), model_file.load(out / "model.plan")
    assert b.arch == a.arch and b.class_names == a.class_names and b.normalization == a.normalization
    for k, v in a.tensors.items():
        np.testing.assert_array_equal(b.tensors[k], v, err_msg=k)
    assert json.loads((out / "checkpoint.json").read_text())["config"]["norm"] == "none"

    # the same names in the other order: the output classes are swapped
    out2 = tmp_path / "swapped"
    assert train.main(["--data", str(sparse_data), "--out", str(out2), "--init", str(src), "--steps", "1",
                       "--lr", "0", "--tile", "188", "--val-slices", "", "--threads", "1", "--no-progress",
                       "--class-names", "cell,membrane", "--renormalize"]) == 0
    assert "re-estimated" in capsys.readouterr().out
    c = model_file.load(out2 / "model.plan")
    assert c.class_names == ["cell", "membrane"] and c.normalization["mean"] != a.normalization["mean"]
    np.testing.assert_array_equal(c.tensors["head.weight"], a.tensors["head.weight"][::-1])
    np.testing.assert_array_equal(c.tensors["enc.0.conv1.weight"], a.tensors["enc.0.conv1.weight"])


@pytest.mark.parametrize("extra, msg", [
    (["--class-names", "background,nucleus"], "differ from the model's classes"),
    (["--norm", "batch"], "folded into the"),
    (["--base", "8"], "architecture comes from the file"),
    (["--tile", "190"], "not a valid input"),
])
def test_init_refuses_what_does_not_fit(sparse_data, tmp_path, extra, msg):
    src = _shipped()
    args = ["--data", str(sparse_data), "--out", str(tmp_path / "x"), "--init", str(src), "--steps", "1",
            "--tile", "188", "--val-slices", "", "--threads", "1", "--no-progress"]
    with pytest.raises(SystemExit, match=msg):
        train.main(args + extra)


def test_map_classes():
    assert train.map_classes(["membrane", "cell"], None) == [0, 1]
    assert train.map_classes(["cell", "bg"], None, fg_class=0) == [1, 0]
    assert train.map_classes(["membrane", "cell"], ["cell", "membrane"]) == [1, 0]
    with pytest.raises(ValueError, match="differ"):
        train.map_classes(["membrane", "cell"], ["a", "b"])


def test_finetune_recipe_is_the_default_with_init():
    cfg = train.resolve_recipe(train.build_parser().parse_args(["--out", "x", "--init", "m.plan"]))
    assert cfg["recipe"] == "finetune" and cfg["steps"] == train.RECIPES["finetune"]["steps"]
    cfg = train.resolve_recipe(train.build_parser().parse_args(["--out", "x"]))
    assert cfg["recipe"] == "default" and cfg["steps"] == 3000 and cfg["warmup"] == 200


def test_progress_callback_can_stop_a_run(sparse_data, tmp_path):
    seen = []

    def progress(step, total):
        seen.append((step, total))
        return step < 2                                     # stop after the second step

    out = tmp_path / "run"
    rc = train.main(["--data", str(sparse_data), "--out", str(out), "--steps", "50", "--warmup", "1", "--base", "4",
                     "--depth", "2", "--ignore-label", "255", "--tile", "76", "--val-slices", "", "--threads", "1",
                     "--no-progress", "--ckpt-every", "1000"], progress=progress)
    assert rc == 130 and seen == [(1, 50), (2, 50)]
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2 and not (out / "model.plan").exists()


def test_partial_annotations_of_the_ablation(tmp_path):
    from unet_rt.io.images import read_image
    from unet_rt.train import synthetic
    from unet_rt.train.finetune_ablation import IGNORE, write_partial

    root = write_partial("nuclei", tmp_path / "d", 1, 0.3)
    lab = read_image(root / "label" / "0.tif")
    _, inst = synthetic.make("nuclei", (256, 256), 0)
    kept = np.unique(lab[(lab > 0) & (lab != IGNORE)])
    n = np.unique(inst[inst > 0]).size
    assert kept.size == round(0.3 * n)
    assert np.array_equal(lab == 0, inst == 0)               # background stays annotated
    assert np.array_equal(lab == IGNORE, (inst > 0) & ~np.isin(inst, kept))
    # left at 0 instead (--unannotated zero): the same objects drawn, the others background-valued
    zero = read_image(write_partial("nuclei", tmp_path / "z", 1, 0.3, unannotated="zero") / "label" / "0.tif")
    assert np.array_equal(zero, np.where(lab == IGNORE, 0, lab))


def test_isbi_examples_of_the_ablation(tmp_path):
    from pathlib import Path

    from unet_rt.io.images import read_image
    from unet_rt.train.finetune_ablation import IGNORE, write_partial

    isbi = Path(__file__).resolve().parents[1] / "data" / "isbi2012"
    root = write_partial("isbi", tmp_path / "i", 2, 0.5, isbi=isbi)
    assert sorted(p.name for p in (root / "test" / "label").iterdir()) == [f"{i}.tif" for i in range(25, 30)]
    mask = read_image(isbi / "label" / "1.png")
    lab = read_image(root / "label" / "1.tif")
    assert np.array_equal(lab == 0, mask == 0)                  # the membranes stay annotated
    cells = D.instances_of(mask)
    drawn = np.unique(cells[lab == 255])
    assert drawn.size == round(0.5 * cells.max())               # half of the cells drawn, whole
    assert np.array_equal(lab == IGNORE, (mask > 0) & ~np.isin(cells, drawn))


def test_freeze_encoder_keeps_the_contracting_path(sparse_data, tmp_path, save_unet):
    save_unet(tmp_path / "m.plan", depth=2, base=4, names=["background", "cell"])
    out = tmp_path / "ft"
    assert train.main(["--data", str(sparse_data), "--out", str(out), "--init", str(tmp_path / "m.plan"),
                       "--steps", "2", "--warmup", "1", "--lr", "0.01", "--freeze", "encoder", "--ignore-label", "255",
                       "--tile", "76", "--val-slices", "", "--threads", "1", "--no-progress"]) == 0
    a, b = model_file.load(tmp_path / "m.plan"), model_file.load(out / "model.plan")
    for k, v in a.tensors.items():
        same = np.array_equal(b.tensors[k], v)
        assert same == k.startswith("enc."), k
