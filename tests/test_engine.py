"""The user-facing unet_rt.Engine: layouts, stacks, TTA, threads, backends, errors — against the
PyTorch reference through the native core."""
import threading

import numpy as np
import pytest

import unet_rt

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gray(tmp_path_factory, save_unet):
    p = tmp_path_factory.mktemp("e") / "gray.plan"
    net, norm = save_unet(p)
    return p, net, norm


def reference_probs(net, img, norm, depth=2):
    """PyTorch float64: one pass over the mirror-padded whole image, softmax."""
    from unet_rt.train.data import normalize
    from unet_rt.train.train import predict_whole

    x = normalize(img, norm).astype(np.float64)
    with torch.no_grad():
        y = predict_whole(net.double(), x, depth, "valid")
    net.float()
    return torch.softmax(torch.from_numpy(y), 0).numpy()


def test_predict_and_segment_match_pytorch(gray, rng):
    path, net, norm = gray
    eng = unet_rt.Engine(path)
    img = rng.integers(0, 255, (67, 90)).astype(np.uint8)
    p = eng.predict(img)
    ref = reference_probs(net, img, norm)
    assert p.shape == (2, 67, 90) and p.dtype == np.float32
    # probabilities: fp32 executor vs float64 reference, |err| well under 1e-4 for this tiny net
    assert np.abs(p - ref).max() < 1e-4
    lab = eng.segment(img)
    assert lab.dtype == np.uint8 and lab.shape == (67, 90)
    sure = np.abs(ref[1] - ref[0]) > 1e-3  # pixels whose argmax is not a numerical tie
    assert np.array_equal(lab[sure], ref.argmax(0)[sure])


def test_dtypes_give_the_same_result(gray, rng):
    eng = unet_rt.Engine(gray[0])
    img8 = rng.integers(0, 255, (40, 41)).astype(np.uint8)
    a = eng.predict(img8)
    assert np.allclose(eng.predict(img8.astype(np.uint16)), a, atol=1e-6)
    assert np.allclose(eng.predict(img8.astype(np.float32)), a, atol=1e-6)
    assert np.allclose(eng.predict(img8.astype(np.float64)), a, atol=1e-6)
    # 16-bit values are used as they are (never divided by 255 or 65535)
    b = eng.predict((img8.astype(np.uint16) * 200))
    assert not np.allclose(a, b, atol=1e-3)


def test_stack_equals_per_frame(gray, rng):
    eng = unet_rt.Engine(gray[0])
    stack = rng.integers(0, 4000, (3, 33, 47)).astype(np.uint16)
    out = eng.segment(stack)
    assert out.shape == (3, 33, 47)
    for t in range(3):
        assert np.array_equal(out[t], eng.segment(stack[t]))
    assert eng.predict(stack).shape == (3, 2, 33, 47)


def test_multichannel_hwc(tmp_path, rng, save_unet):
    net, norm = save_unet(tmp_path / "rgb.plan", cin=3, classes=3)
    eng = unet_rt.Engine(tmp_path / "rgb.plan")
    img = rng.integers(0, 255, (30, 35, 3)).astype(np.uint8)
    assert np.abs(eng.predict(img) - reference_probs(net, img, norm)).max() < 1e-4
    assert eng.segment(np.stack([img, img])).shape == (2, 30, 35)
    with pytest.raises(ValueError, match="3-channel"):
        eng.predict(img[..., :2])
    with pytest.raises(ValueError, match="3-channel"):
        eng.predict(img[..., 0])


def test_tta_averages_the_eight_transforms(gray, rng):
    eng = unet_rt.Engine(gray[0])
    img = rng.integers(0, 255, (29, 38)).astype(np.uint8)
    manual = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(img, k)
            t = t[:, ::-1] if flip else t
            p = eng.predict(np.ascontiguousarray(t))
            p = p[:, :, ::-1] if flip else p
            manual.append(np.rot90(p, -k, axes=(1, 2)))
    want = np.mean(manual, axis=0)
    got = eng.predict(img, tta=True)
    assert got.shape == (2, 29, 38)
    assert np.abs(got - want).max() < 1e-6
    assert np.abs(got - eng.predict(img)).max() > 1e-4  # random weights: TTA does change the result
    assert np.array_equal(eng.segment(img, tta=True), want.argmax(0))


def test_threads_share_one_engine(gray, rng):
    eng = unet_rt.Engine(gray[0], threads=1)
    imgs = [rng.integers(0, 255, (50 + i, 60)).astype(np.uint8) for i in range(6)]
    serial = [eng.segment(x) for x in imgs]
    results = [None] * len(imgs)

    def work(i):
        for _ in range(2):
            results[i] = eng.segment(imgs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(imgs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for a, b in zip(serial, results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("img,err,match", [
    (np.zeros((0, 5), np.uint8), ValueError, "empty"),
    (np.zeros((2, 3, 4, 5), np.uint8), ValueError, "H x W"),
    (np.zeros(7, np.uint8), ValueError, "H x W"),
    (np.zeros((5, 5), np.int32), TypeError, "dtype"),
    (np.zeros((5, 5), bool), TypeError, "dtype"),
    (np.full((5, 5), np.nan, np.float32), ValueError, "NaN|finite"),
])
def test_bad_input(gray, img, err, match):
    with pytest.raises(err, match=match):
        unet_rt.Engine(gray[0]).segment(img)


def test_bad_engine_arguments(gray, tmp_path):
    with pytest.raises(FileNotFoundError):
        unet_rt.Engine(tmp_path / "nope.plan")
    with pytest.raises(ValueError, match="backend"):
        unet_rt.Engine(gray[0], backend="gpu")
    with pytest.raises(ValueError, match="TensorRT"):
        unet_rt.Engine(gray[0], backend="tensorrt")
    (tmp_path / "junk.plan").write_bytes(b"\x01" * 64)
    with pytest.raises(ValueError):
        unet_rt.Engine(tmp_path / "junk.plan")


def test_info_and_repr(gray):
    eng = unet_rt.Engine(gray[0])
    info = eng.info
    assert info["backend"] == "cpu" and info["arch"]["depth"] == 2 and info["class_names"] == ["c0", "c1"]
    assert isinstance(info["provenance"], dict) and info["isa"] in ("ref", "avx2", "avx512", "neon")
    assert "depth 2" in repr(eng)


def test_cpu_path_does_not_import_torch(gray):
    import subprocess
    import sys

    code = ("import sys, numpy as np, unet_rt; e = unet_rt.Engine(sys.argv[1]); e.segment(np.zeros((30, 30), np.uint8));"
            "bad = [m for m in ('torch', 'triton', 'tensorrt') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code, str(gray[0])], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_big_endian_input(gray, rng):
    eng = unet_rt.Engine(gray[0])
    img = rng.integers(0, 4000, (20, 30)).astype(np.uint16)
    assert np.array_equal(eng.segment(img.astype(">u2")), eng.segment(img))
