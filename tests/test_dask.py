"""unet_rt.scale: lazy blocks of large images equal the whole-image Engine pass (threaded scheduler and a
2-process dask.distributed LocalCluster)."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import unet_rt  # noqa: E402
from unet_rt.scale import blocks as ud  # noqa: E402

TILE = 60  # depth-2 valid sizes: 44 + multiples of 4 (halo 20, output 20, stride 20)


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_unet):
    p = tmp_path_factory.mktemp("m") / "m.plan"
    save_unet(p, depth=2, base=4, classes=3, seed=3)
    return p


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(7)
    return rng.integers(0, 200, size=(157, 203), dtype=np.uint16)


def test_block_grid_is_the_whole_image_tiling(model):
    from unet_rt import _core

    p = ud.block_grid(157, 203, depth=2, tile=TILE, block=50)
    whole = _core.plan_tiles(157, 203, 2, False, tile=TILE)
    # blocks are runs of whole tiles of the whole-image pass, covering the image exactly once
    assert p.stride == whole["y"]["out_start"][1] - whole["y"]["out_start"][0]
    assert p.y[0][0] == 0 and p.y[-1][1] == 157 and all(a[1] == b[0] for a, b in zip(p.y, p.y[1:]))
    assert p.x[0][0] == 0 and p.x[-1][1] == 203 and all(a[1] == b[0] for a, b in zip(p.x, p.x[1:]))
    assert {a for a, _ in p.y} <= set(whole["y"]["out_start"]) and len(p.y) > 2
    # a block reads the image rows its tiles read: the halo before it and, after it, up to the end of
    # its last tile's input; at the image's edges the mirror image of rows inside it
    assert p.y_in[0][0] == 0 and p.y_in[-1][1] == 157
    for (a, _b), (i0, i1) in zip(p.y[1:-1], p.y_in[1:-1]):
        assert i0 == a - p.halo and (i1 - i0 - TILE) % p.stride == 0


def test_block_plan_and_BlockPlan_are_deprecated_aliases():
    import unet_rt.scale as scale

    with pytest.warns(DeprecationWarning, match="block_grid"):
        old = ud.block_plan(157, 203, 2, TILE, 50)
    assert old == ud.block_grid(157, 203, 2, TILE, 50)
    with pytest.warns(DeprecationWarning, match="BlockGrid"):
        assert scale.BlockPlan is ud.BlockGrid
    with pytest.warns(DeprecationWarning, match="BlockGrid"):
        assert ud.BlockPlan is ud.BlockGrid


def test_threaded_equals_engine_bit_for_bit(model, image):
    ref = unet_rt.Engine(model, tile=TILE, threads=1)
    x = da.from_array(image, chunks=(40, 64))  # small chunks: merged into blocks
    lab = ud.segment(x, model, tile=TILE, block=50)
    prob = ud.predict(x, model, tile=TILE, block=50)
    assert lab.numblocks == (len(ud.block_grid(157, 203, 2, TILE, 50).y), len(ud.block_grid(157, 203, 2, TILE, 50).x))
    assert lab.shape == image.shape and lab.dtype == np.uint8
    got_l = lab.compute(scheduler="threads")
    got_p = prob.compute(scheduler="threads")
    np.testing.assert_array_equal(got_l, ref.segment(image))
    np.testing.assert_array_equal(got_p, ref.predict(image))
    assert len(np.unique(got_l)) > 1


def test_automatic_tile_engine_within_bound(model):
    # Engine's automatic tiles have other shapes, whose Winograd arithmetic rounds differently: the
    # probabilities agree to 1e-5 of the logits' scale, the labels wherever two classes do not tie
    img = np.random.default_rng(7).integers(0, 255, size=(157, 203)).astype(np.uint8)
    auto = unet_rt.Engine(model, threads=1)
    assert max(auto._native.plan(*img.shape)["y"]["in_size"]) != TILE  # really other tiles
    p = ud.predict(img, model, tile=TILE, block=64).compute(scheduler="sync")
    q = auto.predict(img)
    scale = np.abs(auto.logits(img)).max()
    err = np.abs(p - q).max()
    assert 0 < err <= 1e-5 * scale
    lab = ud.segment(img, model, tile=TILE, block=64).compute(scheduler="sync")
    srt = np.sort(q, axis=0)
    tie = (srt[-1] - srt[-2]) <= 2 * err
    same = lab == auto.segment(img)
    assert same[~tie].all() and same.mean() > 0.999


def test_stack_plane_by_plane_and_default_tile(model, image):
    stack = np.stack([image, image[::-1], image[:, ::-1] // 2]).astype(np.float64)  # float64: as Engine, float32
    x = da.from_array(stack, chunks=(2, 100, 100))
    lab = ud.segment(x, model, block=80)
    assert lab.shape == stack.shape and lab.chunks[0] == (2, 1)
    tile = ud._default_tile(2, 80)
    np.testing.assert_array_equal(lab.compute(), unet_rt.Engine(model, tile=tile).segment(stack))
    prob = ud.predict(x, model, block=80)
    assert prob.shape == (3, 3) + image.shape
    np.testing.assert_array_equal(prob[1].compute(), unet_rt.Engine(model, tile=tile).predict(stack[1]))


def test_small_image_and_multichannel(tmp_path, save_unet):
    m = tmp_path / "rgb.plan"
    save_unet(m, cin=3, depth=2, base=4, classes=2, seed=5)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(13, 70, 3), dtype=np.uint8)  # 13 rows: less than the halo
    ref = unet_rt.Engine(m, tile=TILE)
    np.testing.assert_array_equal(ud.segment(img, m, tile=TILE, block=40).compute(), ref.segment(img))
    np.testing.assert_array_equal(ud.predict(img, m, tile=TILE, block=40).compute(), ref.predict(img))


def test_sources_zarr_path_and_tiff_memmap(model, image, tmp_path):
    zarr = pytest.importorskip("zarr")
    tifffile = pytest.importorskip("tifffile")
    ref = unet_rt.Engine(model, tile=TILE).segment(image)
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    z[:] = image
    np.testing.assert_array_equal(ud.segment(z, model, tile=TILE).compute(), ref)
    np.testing.assert_array_equal(ud.segment(tmp_path / "a.zarr", model, tile=TILE).compute(), ref)
    tifffile.imwrite(tmp_path / "a.tif", image)
    mm = tifffile.memmap(tmp_path / "a.tif", mode="r")
    np.testing.assert_array_equal(ud.segment(mm, model, tile=TILE).compute(), ref)


def test_graph_carries_the_path_not_the_weights(model, image):
    from unet_rt.format import model_file

    g = ud.segment(image, model, tile=TILE, block=50).__dask_graph__()
    blob = pickle.dumps(dict(g))
    w = next(iter(model_file.load(model).tensors.values()))
    assert np.asarray(w).tobytes()[:64] not in blob
    assert str(model.resolve()).encode() in blob


def test_bad_input(model, tmp_path):
    with pytest.raises(ValueError, match="single-channel"):
        ud.segment(np.zeros((2, 2, 40, 40), np.uint8), model)
    with pytest.raises(TypeError, match="uint8, uint16 or float32"):
        ud.segment(np.zeros((40, 40), np.int32), model)
    with pytest.raises(FileNotFoundError):
        ud.segment(np.zeros((40, 40), np.uint8), tmp_path / "nope.plan")


def test_missing_dask_names_the_extra(model):
    code = ("import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
            "import numpy as np\nfrom unet_rt import dask as ud\n"
            f"ud.segment(np.zeros((40, 40), np.uint8), {str(model)!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "pip install 'unet-rt[dask]'" in r.stderr
    code = ("import sys; sys.modules['distributed'] = None\nfrom unet_rt.cli import main\n"
            f"sys.exit(main(['segment', 'x.png', '-o', 'out', '-m', {str(model)!r}, '--workers', '2']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'unet-rt[dask]'" in r.stderr
    code = ("import sys; sys.modules['scipy'] = None\nimport numpy as np\nfrom unet_rt import dask as ud\n"
            f"ud.instances(np.zeros((40, 40), np.uint8), {str(model)!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "needs scipy: pip install 'unet-rt[dask]'" in r.stderr


@pytest.fixture(scope="module")
def client():
    """The issue's cluster: 2 worker processes, 1 thread each, on localhost (shared by the tests below)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as c:
        yield c


def test_distributed_local_cluster(client, model, image):
    stack = np.stack([image, image[::-1]])
    ref = unet_rt.Engine(model, tile=TILE)
    client.run(ud._engine_cached.cache_clear)
    lab = ud.segment(da.from_array(stack, chunks=(1, 64, 64)), model, tile=TILE, block=50)
    prob = ud.predict(stack[0], model, tile=TILE, block=50)
    got_l, got_p = client.compute([lab, prob], sync=True)
    np.testing.assert_array_equal(got_l, ref.segment(stack))
    np.testing.assert_array_equal(got_p, ref.predict(stack[0]))
    # the model was opened once per worker process, not once per block
    info = client.run(lambda: ud._engine_cached.cache_info()._asdict())
    assert len(info) == 2
    assert sum(i["hits"] for i in info.values()) > 2
    assert all(i["misses"] <= 1 for i in info.values())


# ------------------------------------------------------------------ the CLI: unet-rt segment --scheduler/--workers
def _cli(*argv):
    from unet_rt.cli import main

    return main([str(a) for a in argv])


def _chunk_files(path):
    return sorted(p for p in path.rglob("*") if p.is_file() and "/c/" in p.as_posix() and p.suffix != ".partial")


def test_cli_zarr_resumable(client, model, image, tmp_path):
    zarr = pytest.importorskip("zarr")
    src, out = tmp_path / "big.zarr", tmp_path / "labels.zarr"
    z = zarr.create_array(str(src), shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    z[:] = image
    addr = client.scheduler.address
    args = ("segment", src, "-o", out, "-m", model, "--tile", TILE, "--block", 50, "--scheduler", addr, "-q")
    assert _cli(*args) == 0
    ref = unet_rt.Engine(model, tile=TILE).segment(image)
    got = zarr.open_array(str(out), mode="r")
    np.testing.assert_array_equal(got[:], ref)
    assert got.chunks == (40, 40)  # chunk = block: round(50 / 20) = 2 tiles at stride 20
    files = _chunk_files(out)
    assert len(files) == got.nchunks  # every chunk written, background-only ones too
    # resume: two chunks lost (one replaced by a stray partial write); the others are not rewritten
    files[0].unlink()
    files[3].unlink()
    (files[3].parent / (files[3].name + ".0123abcd.partial")).write_bytes(b"half")
    mtimes = {f: f.stat().st_mtime_ns for f in files if f.exists()}
    assert _cli(*args) == 0
    assert all(f.stat().st_mtime_ns == t for f, t in mtimes.items())
    assert files[0].exists() and files[3].exists()
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], ref)
    # another run's output is not silently mixed into
    assert _cli("segment", src, "-o", out, "-m", model, "--tile", TILE + 4, "--block", 50, "--scheduler", addr,
                "-q") == 2


def test_cli_ome_zarr_labels(client, model, image, tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr.writer import write_image

    stack = np.stack([image, image[::-1]])
    src = tmp_path / "img.ome.zarr"
    root = zarr.open_group(str(src), mode="w")
    write_image(stack, root, axes="zyx", scale_factors=[], scale={"z": 2.0, "y": 0.5, "x": 0.5})
    assert _cli("segment", src, "-o", src, "-m", model, "--tile", TILE, "--block", 50,
                "--scheduler", client.scheduler.address, "-q") == 0
    # ome-zarr's reader finds the label image beside the image, with the image's scale
    nodes = list(Reader(parse_url(str(src)))())
    lab = [n for n in nodes if any(type(s) is Label for s in n.specs)]
    assert len(lab) == 1 and lab[0].zarr.path.endswith("labels/unet-rt")
    np.testing.assert_array_equal(np.asarray(lab[0].data[0]), unet_rt.Engine(model, tile=TILE).segment(stack))
    img_ct = nodes[0].metadata["coordinateTransformations"][0]
    assert lab[0].metadata["coordinateTransformations"][0] == img_ct
    assert img_ct[0]["scale"] == [2.0, 0.5, 0.5]


def test_cli_many_files(client, model, tmp_path):
    from unet_rt.io.images import read_image, visible_labels, write_image

    rng = np.random.default_rng(3)
    d = tmp_path / "in"
    imgs = {f"im{i}": rng.integers(0, 255, size=(40 + 7 * i, 50), dtype=np.uint8) for i in range(3)}
    for k, v in imgs.items():
        write_image(d / f"{k}.png", v)
    out = tmp_path / "out"
    addr = client.scheduler.address
    assert _cli("segment", d / "*.png", "-o", out, "-m", model, "--scheduler", addr, "-q") == 0
    eng = unet_rt.Engine(model)
    for k, v in imgs.items():  # visible class maps, as the single-process CLI writes them
        np.testing.assert_array_equal(read_image(out / f"{k}.png"), visible_labels(eng.segment(v), 3))
    # --raw and --instances as the single-process CLI
    assert _cli("segment", d / "im0.png", "-o", tmp_path / "raw", "-m", model, "--scheduler", addr, "-q", "--raw") == 0
    np.testing.assert_array_equal(read_image(tmp_path / "raw/im0.png"), eng.segment(imgs["im0"]))
    assert _cli("segment", d / "im0.png", "-o", tmp_path / "ins", "-m", model, "--scheduler", addr, "-q",
                "--instances") == 0
    got = read_image(tmp_path / "ins/im0.png")
    assert got.dtype == np.uint16 and got.max() >= 1
    np.testing.assert_array_equal(got, eng.instances(imgs["im0"]))
    t = (out / "im1.png").stat().st_mtime_ns
    (out / "im2.png").unlink()
    assert _cli("segment", d, "-o", out, "-m", model, "--scheduler", addr, "-q") == 0
    assert (out / "im1.png").stat().st_mtime_ns == t and (out / "im2.png").exists()


def test_model_decision_threshold(model, image, tmp_path):
    # a calibrated threshold on p(foreground) in the model file: dask applies it as Engine.segment does
    import dataclasses

    from unet_rt.format import model_file

    m = tmp_path / "thr.plan"
    mf = model_file.load(model)
    model_file.save(m, dataclasses.replace(mf, decision={"foreground_class": 1, "threshold": 0.2}))
    ref = unet_rt.Engine(m, tile=TILE)
    got = ud.segment(image, m, tile=TILE, block=50).compute(scheduler="sync")
    exp = ref.segment(image)
    assert (exp != unet_rt.Engine(model, tile=TILE).segment(image)).any()  # the threshold matters here
    # per-tile softmax vs the core's softmax from logits: equal labels off p == threshold ties
    p = ref.predict(image)[1]
    assert ((got == exp) | (np.abs(p - 0.2) < 1e-6)).all()


# ------------------------------------------------------------------ instances over blocks
ROOT = Path(__file__).resolve().parents[1]


def _same_partition(a, b):
    """a and b label the same objects (up to their numbering)."""
    from skimage.metrics import adapted_rand_error

    return (len(np.unique(a)) == len(np.unique(b)) and ((a > 0) == (b > 0)).all()
            and adapted_rand_error(a, b, ignore_labels=(0,))[0] == 0)


@pytest.mark.parametrize("decision", [
    None,  # argmax == class 1: one component over 87 % of the image, across every block
    {"foreground_class": 2},  # argmax == class 2: hundreds of small components
    {"foreground_class": 1, "threshold": 0.3, "instances": {"mask_threshold": 0.9, "min_marker_size": 4,
                                                             "min_size": 9}}])
def test_instances_components_equal_engine(model, image, decision):
    # no marker threshold: instances are the mask's connected components, joined exactly across blocks
    from scipy import ndimage

    ref = unet_rt.Engine(model, tile=TILE).instances(image, decision=decision)
    x = da.from_array(image, chunks=(40, 64))
    got = ud.instances(x, model, tile=TILE, block=40, decision=decision).compute(scheduler="threads")
    assert got.dtype == np.int32 and ud.block_grid(157, 203, 2, TILE, 40).y[1][0] == 40
    np.testing.assert_array_equal(got, ref)  # numbering too: raster order of first pixel
    # objects cross block borders (every 40 px; else the test would prove little)
    rows = [got[b - 1][(got[b - 1] > 0) & (got[b - 1] == got[b])] for b in (40, 80, 120)]
    cols = [got[:, b - 1][(got[:, b - 1] > 0) & (got[:, b - 1] == got[:, b])] for b in (40, 80, 120, 160)]
    cross = np.concatenate(rows + cols)
    assert len(np.unique(cross)) >= (1 if decision is None else 20)
    # an independent reference: scipy's 4-connected components of the mask, size-filtered
    if decision is None or "threshold" not in decision:
        fg = (decision or {"foreground_class": 1})["foreground_class"]
        mask = ud.segment(image, model, tile=TILE).compute() == fg
        keep = 1
    else:
        mask = ud.predict(image, model, tile=TILE).compute()[1] > 0.9
        keep = 9
    comp, n = ndimage.label(mask)
    sizes = np.bincount(comp.ravel())
    comp[sizes[comp] < keep] = 0
    assert _same_partition(got, comp) and got.max() >= (1 if decision is None else 100)


def test_instances_watershed_close_to_engine_on_samples():
    # the shipped model's decision floods from markers: blocks are not exact. Measured on all seven
    # sample slices at block 128 (16 blocks of 128 px): with the default halo (128) the arrays equalled the
    # whole-image pass's, numbering included (also at block 200); with halo 32 a few objects were split or
    # moved (error up to 0.035). The test: one slice, the stated bound, and that the halo matters.
    from skimage.metrics import adapted_rand_error

    from unet_rt.cli._common import DEFAULT_MODEL as m
    from unet_rt.io.images import read_image

    img = read_image(ROOT / "data/samples/image/27.png")
    ref = unet_rt.Engine(m, tile=ud._default_tile(4, 128)).instances(img)
    got = ud.instances(img, m, block=128).compute(scheduler="threads")
    assert ref.max() > 50 and abs(int(got.max()) - int(ref.max())) <= 1
    assert adapted_rand_error(ref, got, ignore_labels=(0,))[0] < 1e-3
    assert (got == ref).mean() > 0.99  # numbered as the Engine does: by each object's marker's first pixel
    short = ud.instances(img, m, block=128, halo=32).compute(scheduler="threads")
    assert adapted_rand_error(ref, short, ignore_labels=(0,))[0] > 1e-3  # too little halo shows


def test_instances_stack_and_distributed(client, model, pct_model, image):
    stack = np.stack([image, image[::-1]])
    ref = unet_rt.Engine(model, tile=TILE).instances(stack)
    x = da.from_array(stack, chunks=(1, 64, 64))
    lab = ud.instances(x, model, tile=TILE, block=50)
    assert lab.shape == stack.shape
    pct = ud.segment(x, pct_model, tile=TILE, block=50)  # percentile statistics on the cluster too
    got, got_pct = client.compute([lab, pct], sync=True)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got_pct, unet_rt.Engine(pct_model, tile=TILE).segment(stack))
    with pytest.raises(ValueError, match="halo"):
        ud.instances(image, model, halo=-1)
    # no object anywhere: an empty join
    none = {"foreground_class": 0, "instances": {"mask_threshold": 0.99}}
    empty = ud.instances(image, model, tile=TILE, block=50, decision=none).compute(scheduler="threads")
    assert empty.max() == 0
    np.testing.assert_array_equal(empty, unet_rt.Engine(model, tile=TILE).instances(image, decision=none))


# ------------------------------------------------------------------ per-image percentile normalisation
@pytest.fixture(scope="module")
def pct_model(model, tmp_path_factory):
    import dataclasses

    from unet_rt.format import model_file

    p = tmp_path_factory.mktemp("pct") / "pct.plan"
    norm = {"mean": [0.5], "std": [0.25], "percentiles": [1.0, 99.8]}
    model_file.save(p, dataclasses.replace(model_file.load(model), normalization=norm))
    return p


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentile_model_equals_engine(pct_model, dtype):
    # each plane normalised by its own whole-plane percentiles, from histograms over the blocks:
    # the Engine's result bit for bit (8/16-bit by value, float32 by a two-pass radix select)
    rng = np.random.default_rng(0)
    img = rng.gamma(2.0, 300.0, size=(157, 203)).astype(dtype)
    if dtype == np.float32:
        img = img * np.float32(0.37) - 40
    other = img[::-1] // 2 if dtype != np.float32 else img[::-1] * 3  # another plane, other percentiles
    stack = np.stack([img, other])
    x = da.from_array(stack, chunks=(1, 50, 64))
    eng = unet_rt.Engine(pct_model, tile=TILE)
    for fn, ref in ((ud.predict, eng.predict), (ud.segment, eng.segment), (ud.instances, eng.instances)):
        np.testing.assert_array_equal(fn(x, pct_model, tile=TILE, block=50).compute(scheduler="threads"), ref(stack))
    # against numpy: each plane's whole-plane percentiles, from the histograms and the core's rank rule
    got = ud._percentile_stats(x, [1.0, 99.8], False).compute(scheduler="threads")
    assert got.shape == (2, 1, 2)
    for t in range(2):
        q = [float(np.float32(1.0)), float(np.float32(99.8))]  # as the model file stores them (float32)
        np.testing.assert_allclose(got[t, 0], np.percentile(stack[t].astype(np.float64), q), rtol=1e-12, atol=0)
    assert not np.allclose(got[0], got[1])  # planes differ


def test_percentile_multichannel_constant_and_nan(tmp_path, save_unet):
    import dataclasses

    from unet_rt.format import model_file

    m = tmp_path / "rgb.plan"
    save_unet(m, cin=3, depth=2, base=4, classes=2, seed=5)
    norm = {"mean": [0.4, 0.5, 0.6], "std": [0.3, 0.2, 0.25], "percentiles": [2.0, 98.0]}
    model_file.save(m, dataclasses.replace(model_file.load(m), normalization=norm))
    img = np.random.default_rng(1).integers(0, 255, size=(90, 70, 3), dtype=np.uint8)
    img[..., 1] = 7  # a constant channel: P_hi == P_lo, scale 1
    ref = unet_rt.Engine(m, tile=TILE)
    np.testing.assert_array_equal(ud.predict(da.from_array(img, chunks=(40, 30, 1)), m, tile=TILE,
                                             block=40).compute(scheduler="threads"), ref.predict(img))
    bad = img.astype(np.float32)
    bad[5, 5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ud.segment(bad, m, tile=TILE).compute(scheduler="threads")
    # a percentile range of subnormal width: the normalised values overflow float32, the core's error
    # (its normaliser: the same message as the whole-image Engine's)
    tiny = np.zeros((90, 70, 3), np.float32)
    tiny[::2] = 1e-42  # P2 = 0, P98 = 1e-42
    tiny[1, :3] = 3.5
    with pytest.raises(ValueError, match="range float32 cannot scale"):
        ud.segment(tiny, m, tile=TILE).compute(scheduler="threads")
    with pytest.raises(ValueError, match="range float32 cannot scale"):
        ref.segment(tiny)


# ------------------------------------------------------------------ the CLI: --instances on zarr, --workers N
def _zarr_image(path, image):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(str(path), shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    z[:] = image
    return zarr


def test_cli_zarr_instances(client, model, image, tmp_path):
    zarr = _zarr_image(tmp_path / "big.zarr", image)
    out = tmp_path / "objects.zarr"
    args = ("segment", tmp_path / "big.zarr", "-o", out, "-m", model, "--tile", TILE, "--block", 50, "--instances",
            "--scheduler", client.scheduler.address, "-q")
    assert _cli(*args) == 0
    got = zarr.open_array(str(out), mode="r")
    assert got.dtype == np.int32 and got.chunks == (40, 40)
    np.testing.assert_array_equal(got[:], unet_rt.Engine(model, tile=TILE).instances(image))
    # a class-map run does not write into the instances' array
    assert _cli(*[a for a in args if a != "--instances"]) == 2


def test_cli_workers_local_cluster(model, image, tmp_path):
    # the user's command, in its own process: unet-rt segment big.zarr -o labels.zarr --workers 2
    zarr = _zarr_image(tmp_path / "big.zarr", image)
    exe = Path(sys.executable).with_name("unet-rt")
    r = subprocess.run([str(exe), "segment", "big.zarr", "-o", "labels.zarr", "--workers", "2", "-m", str(model),
                        "--tile", str(TILE), "--block", "50"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "chunk(s)" in r.stderr
    got = zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")
    np.testing.assert_array_equal(got[:], unet_rt.Engine(model, tile=TILE).segment(image))


# ------------------------------------------------------------------ same-padded networks
@pytest.mark.parametrize("tile,block", [(48, 50), (256, 64)])  # 256: one window larger than the image
def test_same_padded_within_bound(tile, block, tmp_path):
    # blocks run the whole-image plan's windows that cover them through the core's tiler (the same
    # blending order, the same softmax): the Engine's probabilities and labels bit for bit
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet, to_model_file
    from unet_rt.format import model_file

    torch.manual_seed(3)
    net = UNet(1, 3, depth=2, base=4, padding="same", dropout=0).eval()
    m = tmp_path / "same.plan"
    model_file.save(m, to_model_file(net, {"mean": [100.0], "std": [40.0]}, ["a", "b", "c"]))
    img = np.random.default_rng(7).integers(0, 200, size=(157, 203), dtype=np.uint16)
    eng = unet_rt.Engine(m, tile=tile)
    x = da.from_array(img, chunks=(40, 64))
    p = ud.predict(x, m, tile=tile, block=block).compute(scheduler="threads")
    assert ud.predict(x, m, tile=tile, block=block).numblocks[1:] == (-(-157 // block), -(-203 // block))
    np.testing.assert_array_equal(p, eng.predict(img))
    np.testing.assert_array_equal(ud.segment(x, m, tile=tile, block=block).compute(scheduler="threads"),
                                  eng.segment(img))


def test_cli_refuses_what_it_does_not_do(model, tmp_path, capsys):
    for extra in (["--threshold", "0.3"], ["--halo", "-1"], ["--instances", "--probabilities"]):
        assert _cli("segment", tmp_path / "x.zarr", "-o", tmp_path / "y.zarr", "-m", model, "--workers", 2,
                    *extra) == 2
        assert "unet-rt: error:" in capsys.readouterr().err
    assert not (tmp_path / "y.zarr").exists()


# ------------------------------------------------------------------ one segment_file (issue 18) and resumes that verify (issue 20)
def _parity_inputs(d: Path, image):
    """Inputs that exercise the file options: grey PNG, RGB PNG (converted to grey), an ImageJ TIFF stack
    and an OME-TIFF, both with a physical pixel size."""
    from unet_rt.io.images import write_image

    a = (image[:64, :72] % 256).astype(np.uint8)
    write_image(d / "grey.png", a)
    write_image(d / "rgb.png", np.stack([a, a[::-1], a[:, ::-1]], -1))
    write_image(d / "stack.tif", np.stack([a, a[::-1]]), axes="TYX",
                pixel_size={"X": (0.25, "micrometer"), "Y": (0.25, "micrometer")})
    write_image(d / "ome.ome.tif", image[:50, :60], axes="YX",
                pixel_size={"X": (0.5, "micrometer"), "Y": (0.5, "micrometer")})
    write_image(d / "cyx.tif", np.stack([a, a[::-1]]), axes="CYX")


def _files(root: Path) -> dict:
    """Every file's bytes; an OME-TIFF's UUID (new for every file written, by the OME spec) masked."""
    import re

    return {p.relative_to(root).as_posix(): re.sub(rb"urn:uuid:[0-9a-f-]{36}", b"urn:uuid:" + b"0" * 36, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_workers_write_what_one_process_writes(model, image, tmp_path):
    """The same command line with and without --workers 2 (a LocalCluster of 2 processes on 127.0.0.1)
    writes identical files, metadata included: both run unet_rt.files.segment_file with every option."""
    pytest.importorskip("distributed")
    d = tmp_path / "in"
    _parity_inputs(d, image)
    runs = [(["grey.png", "rgb.png", "stack.tif", "ome.ome.tif"],
             ["--tile", TILE, "--tta", "--overlay", "--overlay-class", 1, "--threshold", 0.4, "--precision", "bf16"]),
            (["cyx.tif", "stack.tif"], ["--axes", "CYX", "--channel", 1, "--probabilities"]),
            (["grey.png", "ome.ome.tif"], ["--instances", "--raw"])]
    for k, (names, opts) in enumerate(runs):
        if k == 1:  # --axes names every input: one input per run
            names = names[:1]
        one, two = tmp_path / f"one{k}", tmp_path / f"two{k}"
        assert _cli("segment", *[d / n for n in names], "-o", one, "-m", model, "-q", *opts) == 0
        assert _cli("segment", *[d / n for n in names], "-o", two, "-m", model, "-q", *opts, "--workers", 2) == 0
        a, b = _files(one), _files(two)
        assert sorted(a) == sorted(b) and a, (sorted(a), sorted(b))
        assert all(a[n] == b[n] for n in a), [n for n in a if a[n] != b[n]]
    tif = __import__("tifffile")
    with tif.TiffFile(tmp_path / "two0" / "stack.tif") as t:  # the pixel size went through the workers
        assert t.imagej_metadata and t.pages[0].tags["XResolution"].value == (4, 1)
    assert (tmp_path / "two0" / "rgb-overlay.png").exists()


def test_workers_resume_rewrites_a_truncated_output_file(client, model, image, tmp_path):
    from unet_rt.io.images import read_image, write_image

    d, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_image(d / f"im{i}.png", (image[:60, :70] + 40 * i).astype(np.uint8))
    args = ("segment", d, "-o", out, "-m", model, "--scheduler", client.scheduler.address, "-q")
    assert _cli(*args) == 0
    good = (out / "im0.png").read_bytes()
    (out / "im0.png").write_bytes(good[: len(good) // 2])  # a copy cut short
    t1 = (out / "im1.png").stat().st_mtime_ns
    assert _cli(*args) == 0
    assert (out / "im0.png").read_bytes() == good and read_image(out / "im0.png").shape == (60, 70)
    assert (out / "im1.png").stat().st_mtime_ns == t1  # a complete output is skipped


def test_cli_zarr_resume_rewrites_a_truncated_chunk(client, model, image, tmp_path):
    zarr = pytest.importorskip("zarr")
    src, out = tmp_path / "big.zarr", tmp_path / "labels.zarr"
    z = zarr.create_array(str(src), shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    z[:] = image
    args = ("segment", src, "-o", out, "-m", model, "--tile", TILE, "--block", 50, "--scheduler",
            client.scheduler.address, "-q")
    assert _cli(*args) == 0
    files = _chunk_files(out)
    ref = files[2].read_bytes()
    files[2].write_bytes(ref[: len(ref) // 2])  # truncated: the file exists but does not decode
    assert _cli(*args) == 0
    assert files[2].read_bytes() == ref
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], unet_rt.Engine(model, tile=TILE).segment(image))


def test_a_corrupt_zarr_does_not_stop_the_other_inputs(model, tmp_path, capsys):
    """README: a file that cannot be read is reported, the others are still written (exit status 1)."""
    zarr = pytest.importorskip("zarr")
    from unet_rt.io.images import read_image, write_image

    d = tmp_path / "in"
    a = zarr.create_array(str(d / "a.zarr"), shape=(64, 64), chunks=(32, 32), dtype="uint8")
    a[:] = 7
    chunk = next(p for p in (d / "a.zarr").rglob("*") if p.is_file() and "/c/" in p.as_posix())
    chunk.write_bytes(chunk.read_bytes()[:5])  # a zstd chunk cut short
    write_image(d / "b.png", np.full((48, 48), 90, np.uint8))
    assert _cli("segment", d, "-o", tmp_path / "out", "-m", model, "-q") == 1
    err = capsys.readouterr().err
    assert "a.zarr" in err and "Traceback" not in err
    assert read_image(tmp_path / "out" / "b.png").shape == (48, 48)


def test_tensorrt_plans_are_refused_with_a_message(tmp_path):
    # a TensorRT container (kind "tensorrt") and a bare TensorRT plan: unet_rt.scale needs the weights
    from unet_rt.format import model_file

    arch = dict(in_channels=1, classes=2, depth=2, base=4, padding="valid")
    trt = tmp_path / "trt.plan"
    model_file.save(trt, model_file.ModelFile("tensorrt", arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"],
                                              {"engine": np.frombuffer(b"ftrt0000", np.uint8)}))
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"\xff\xff\xff\xffftrt" + bytes(64))
    img = np.zeros((64, 64), np.float32)
    for path in (trt, bare):
        with pytest.raises(ValueError, match="weights file it was compiled from"):
            ud.segment(img, str(path), block=64)
