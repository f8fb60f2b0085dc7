"""The training loop end to end on a tiny synthetic data set: runs, resumes, repeats, exports."""
import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from training import train  # noqa: E402
from training.data import load_pairs, make_sample, synthetic_cells, TileSampler, normalization  # noqa: E402
from unet_rt import model_file  # noqa: E402
from unet_rt.io import write_image  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    for i in range(3):
        img, _, mask = synthetic_cells((80, 80), 12, seed=i, dtype=np.uint16)  # 16-bit on purpose
        write_image(root / "image" / f"{i}.tif", img)
        write_image(root / "label" / f"{i}.png", mask)
    return root


ARGS = ["--base", "4", "--depth", "2", "--tile", "76", "--warmup", "2", "--val-slices", "2",
        "--val-every", "4", "--ckpt-every", "2", "--threads", "1", "--no-progress", "--lr", "0.01"]


def run(data, out, steps, *extra):
    assert train.main(["--data", str(data), "--out", str(out), "--steps", str(steps), *ARGS, *extra]) == 0


def test_loads_16bit_and_keeps_range(tiny_data):
    pairs = load_pairs(tiny_data)
    assert len(pairs) == 3 and pairs[0][1].dtype == np.uint16
    s = [make_sample(*p) for p in pairs]
    norm = normalization(s)
    assert norm["mean"][0] > 255  # raw 16-bit units, not divided by 255
    x, y, w = TileSampler(s, norm, 76, depth=2)(np.random.default_rng(0))
    assert x.shape == (1, 76, 76) and y.shape == w.shape == (76 - 40, 76 - 40)
    assert set(np.unique(y)) <= {0, 1} and (w > 0).all()


def test_train_resume_is_repeatable(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "a", 8)
    # killed at step 4, resumed to 8: the same weights as the uninterrupted run
    run(tiny_data, tmp_path / "b", 8, "--stop-at", "4")
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == 4
    assert not (tmp_path / "b" / "model.plan").exists()
    assert train.main(["--out", str(tmp_path / "b"), "--resume", "--no-progress"]) == 0
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))  # weights + momentum at step 8
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert (tmp_path / "b" / "metrics.png").stat().st_size > 1000
    assert any(r["val_rand_error"] for r in rows)


def test_refuses_to_overwrite_a_run(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "c", 2)
    with pytest.raises(SystemExit):
        run(tiny_data, tmp_path / "c", 2)


def test_export_matches_checkpoint(tiny_data, tmp_path):
    from training.export import export_run

    run(tiny_data, tmp_path / "e", 4)
    export_run(tmp_path / "e", tmp_path / "last.plan", last=True)
    mf = model_file.load(tmp_path / "last.plan")
    assert mf.arch["base"] == 4 and mf.class_names == ["membrane", "cell"]
    assert mf.normalization["mean"][0] > 255
