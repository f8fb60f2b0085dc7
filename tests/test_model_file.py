"""The model file container (Python side): round trip, validation, kind detection, atomic writes."""
import json
import struct

import numpy as np
import pytest

from unet_rt.format import model_file as M

ARCH = dict(in_channels=1, classes=2, depth=2, base=4, padding="valid")


def random_weights(arch, rng):
    return {k: rng.normal(size=s).astype(np.float32) for k, s in M.expected_shapes(arch).items()}


def make(rng, **kw):
    return M.ModelFile("weights", dict(ARCH), {"mean": [10.0], "std": [2.0]}, ["bg", "cell"],
                       random_weights(ARCH, rng), {"note": "test"}, **kw)


def test_round_trip(tmp_path, rng):
    mf = make(rng)
    M.save(tmp_path / "m.plan", mf)
    back = M.load(tmp_path / "m.plan")
    assert back.kind == "weights" and back.arch == ARCH and back.class_names == ["bg", "cell"]
    assert back.normalization == {"mean": [10.0], "std": [2.0]} and back.provenance == {"note": "test"}
    for k, v in mf.tensors.items():
        assert np.array_equal(back.tensors[k], v)
    assert M.detect_kind(tmp_path / "m.plan") == "weights"


def test_readable_by_safetensors_and_torch(tmp_path, rng):
    from safetensors import safe_open

    M.save(tmp_path / "m.plan", make(rng))
    with safe_open(str(tmp_path / "m.plan"), framework="numpy") as f:
        meta = f.metadata()
        assert meta["format"] == "unet-rt" and json.loads(meta["arch"]) == ARCH
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import load_model_file

    net, _ = load_model_file(tmp_path / "m.plan")
    assert net(torch.zeros(1, 1, 44, 44)).shape[-1] == 4


def test_paper_parameter_count_from_shapes():
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    assert sum(int(np.prod(s)) for s in M.expected_shapes(arch).values()) == 31_030_658


def test_shapes_match_the_torch_model():
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet

    for arch in (ARCH, dict(in_channels=3, classes=5, depth=3, base=6, padding="same")):
        sd = UNet(**arch).state_dict()
        assert {k: tuple(v.shape) for k, v in sd.items()} == M.expected_shapes(arch)


@pytest.mark.parametrize("mutate,msg", [
    (lambda t: t.pop("head.bias"), "missing"),
    (lambda t: t.__setitem__("extra", np.zeros(1, np.float32)), "unexpected"),
    (lambda t: t.__setitem__("head.bias", np.zeros(3, np.float32)), "shape"),
    (lambda t: t["enc.0.conv1.weight"].__setitem__((0, 0, 0, 0), np.nan), "NaN"),
])
def test_rejects_bad_weights(tmp_path, rng, mutate, msg):
    mf = make(rng)
    mutate(mf.tensors)
    with pytest.raises(M.ModelFileError, match=msg):
        M.save(tmp_path / "m.plan", mf)
    assert not (tmp_path / "m.plan").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


@pytest.mark.parametrize("norm", [{"mean": [0.0], "std": [0.0]}, {"mean": [0.0, 1.0], "std": [1.0, 1.0]},
                                  {"mean": [float("nan")], "std": [1.0]}, {"std": [1.0]}])
def test_rejects_bad_normalization(tmp_path, rng, norm):
    mf = make(rng)
    mf.normalization = norm
    with pytest.raises(M.ModelFileError):
        M.save(tmp_path / "m.plan", mf)


def test_corrupt_and_foreign_files(tmp_path, rng):
    M.save(tmp_path / "m.plan", make(rng))
    data = (tmp_path / "m.plan").read_bytes()
    cases = {
        "empty": b"",
        "short": data[:5],
        "truncated_header": data[:40],
        "truncated_data": data[: len(data) - 100],
        "bad_json": data[:8] + b"{" * (len(data) - 8),
        "huge_len": struct.pack("<Q", 1 << 60) + data[8:],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.plan"
        p.write_bytes(blob)
        with pytest.raises(M.ModelFileError):
            M.load(p)
    # a plain safetensors file that is not ours
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(M.ModelFileError, match="not a unet-rt model"):
        M.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        M.load(tmp_path / "missing.plan")


def test_tensorrt_container_and_bare_plan(tmp_path, rng):
    engine = np.frombuffer(b"ftrt" + bytes(range(200)), np.uint8)
    mf = M.ModelFile("tensorrt", dict(ARCH), {"mean": [0.0], "std": [1.0]}, ["a", "b"], {"engine": engine},
                     extra={"tensorrt": {"tile_in": 44, "tile_out": 4}})
    M.save(tmp_path / "t.plan", mf)
    back = M.load(tmp_path / "t.plan")
    assert back.kind == "tensorrt" and back.extra["tensorrt"]["tile_in"] == 44
    assert np.array_equal(back.tensors["engine"], engine)
    # a bare plan as trtexec writes it is recognised by its bytes
    (tmp_path / "bare.plan").write_bytes(b"\x00" * 4 + b"ptrt" + bytes(100))
    assert M.detect_kind(tmp_path / "bare.plan") == "tensorrt-bare"


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    M.atomic_write(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(M.os, "replace", boom)
    with pytest.raises(OSError):
        M.atomic_write(p, b"new")
    assert p.read_bytes() == b"old" and sorted(x.name for x in tmp_path.iterdir()) == ["f.bin"]
