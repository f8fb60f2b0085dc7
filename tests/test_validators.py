"""One validator for model files: the native reader (_core.read_model_bytes). unet_rt.format.model_file
reads and writes through it, so the two cannot disagree: run on the issue's cases and on the fuzz corpus
(tests/corpus/model_reader/, kept by `make fuzz`), load gives the native reader's records or its very
error; the corpus replays through the native reader as a model or a clean error, never a crash."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _model_bytes import build, metadata, random_tensors, tiny_arch, tiny_model_bytes
from unet_rt.format import model_file

_core = pytest.importorskip("unet_rt._core")
CORPUS = Path(__file__).resolve().parent / "corpus" / "model_reader"


def _cases() -> dict[str, bytes]:
    a = tiny_arch()
    t = random_tensors(a)
    hdr = json.dumps({"__metadata__": metadata(a)})
    out = {
        "valid": tiny_model_bytes(),
        "classes_string": build(t, metadata(a, arch=json.dumps(dict(a, classes="2")))),
        "classes_float": build(t, metadata(a, arch=json.dumps(dict(a, classes=2.0)))),
        "classes_bool": build(t, metadata(a, arch=json.dumps(dict(a, in_channels=True)))),
        "three_names_two_classes": build(t, metadata(a, class_names=json.dumps(["a", "b", "c"]))),
        "names_not_strings": build(t, metadata(a, class_names=json.dumps([1, 2]))),
        "no_names": build(t, metadata(a, class_names=None)),
        "duplicate_metadata_key": build(t, metadata(a), header_text=hdr[:-1] + ', "__metadata__": {}}'),
        "duplicate_arch_key": build(t, metadata(a, arch='{"in_channels": 1, "classes": 2, "depth": 1, "base": 1, '
                                                    '"classes": 2}')),
        "nan_literal": build(t, metadata(a, normalization='{"mean": [NaN], "std": [1]}')),
        "std_string": build(t, metadata(a, normalization='{"mean": [1], "std": ["2"]}')),
        "std_underflows_float32": build(t, metadata(a, normalization='{"mean": [1], "std": [1e-50]}')),
        "mean_overflows_float32": build(t, metadata(a, normalization='{"mean": [1e39], "std": [1]}')),
        "format_version_01": build(t, metadata(a, format_version="01")),
        "kind_unknown": build(t, metadata(a, kind="pickle")),
        "f64_tensors": build({k: v.astype(np.float64) for k, v in t.items()}, metadata(a), dtype="F64"),
        "lone_surrogate": build(t, metadata(a, class_names='["\\ud800", "b"]')),
        "deep_provenance": build(t, metadata(a, provenance="[" * 70 + "]" * 70)),
        "padding_number": build(t, metadata(a, arch=json.dumps(dict(a, padding=1)))),
        "depth_9": build(t, metadata(a, arch=json.dumps(dict(a, depth=9)))),
        "truncated": tiny_model_bytes()[:-3],
    }
    for f in sorted(CORPUS.iterdir()):
        out[f"corpus/{f.name}"] = f.read_bytes()
    return out


CASES = _cases()


def _native(data: bytes):
    try:
        return _core.read_model_bytes(data)
    except ValueError as e:
        return e


def _python(path):
    try:
        return model_file.load(path)
    except (model_file.ModelFileError, OSError) as e:
        return e


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_is_the_native_reader(name, tmp_path):
    data = CASES[name]
    p = tmp_path / "m.plan"
    p.write_bytes(data)
    python = _python(p)
    if isinstance(python, model_file.ModelFile) and python.kind == "tensorrt-bare":
        return
    native = _native_named(data, str(p))
    assert isinstance(native, dict) == isinstance(python, model_file.ModelFile), (name, native, python)
    if isinstance(native, dict):
        assert native["arch"] == python.arch and native["class_names"] == python.class_names
        assert native["normalization"]["mean"] == python.normalization["mean"]
        assert set(native["tensors"]) <= set(python.tensors)
    else:  # the same exception type and message: there is no second validator to word it differently
        assert type(python) is type(native) is _core.ModelFileError and str(python) == str(native), name


def _native_named(data: bytes, name: str):
    try:
        return _core.read_model_bytes(data, name, tensorrt=True)
    except ValueError as e:
        return e


def test_issue_cases_are_rejected():
    for name in ("classes_string", "three_names_two_classes", "duplicate_metadata_key", "duplicate_arch_key",
                 "nan_literal", "std_string", "f64_tensors", "lone_surrogate", "deep_provenance"):
        assert isinstance(_native(CASES[name]), ValueError), name
    assert isinstance(_native(CASES["valid"]), dict) and isinstance(_native(CASES["no_names"]), dict)


def test_one_exception_type():
    assert model_file.ModelFileError is _core.ModelFileError
    import unet_rt

    assert unet_rt.ModelFileError is _core.ModelFileError


def test_save_refuses_what_the_reader_refuses(tmp_path):
    a = tiny_arch()
    mf = model_file.ModelFile("weights", dict(a, classes="2"), {"mean": [1.0], "std": [2.0]}, ["a", "b"],
                              random_tensors(a))
    with pytest.raises(model_file.ModelFileError, match="classes must be an integer"):
        model_file.save(tmp_path / "x.plan", mf)
    mf = model_file.ModelFile("weights", a, {"mean": [1.0], "std": [1e-50]}, ["a", "b"], random_tensors(a))
    with pytest.raises(model_file.ModelFileError, match="positive finite stds"):
        model_file.save(tmp_path / "x.plan", mf)
    mf = model_file.ModelFile("weights", a, {"mean": [1.0], "std": [2.0]}, ["a", "b"], random_tensors(a),
                              decision={"foreground_class": 1, "threshold": 1.5})
    with pytest.raises(model_file.ModelFileError, match="threshold"):
        model_file.save(tmp_path / "x.plan", mf)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_tensorrt_containers_are_validated_natively(tmp_path):
    a = tiny_arch()
    engine = np.frombuffer(b"ftrt" + bytes(64), np.uint8)
    ok = model_file.ModelFile("tensorrt", a, {"mean": [1.0], "std": [2.0]}, ["a", "b"], {"engine": engine})
    model_file.save(tmp_path / "t.plan", ok)
    assert model_file.load(tmp_path / "t.plan").kind == "tensorrt"
    # the CPU reader refuses a container by name; in container mode it checks its metadata and tensor
    with pytest.raises(_core.ModelFileError, match="TensorRT"):
        _core.read_model_bytes((tmp_path / "t.plan").read_bytes())
    bad_norm = model_file.ModelFile("tensorrt", a, {"mean": [1.0], "std": [-2.0]}, ["a", "b"], {"engine": engine})
    with pytest.raises(model_file.ModelFileError, match="positive finite stds"):
        model_file.save(tmp_path / "b.plan", bad_norm)
    f32 = model_file.ModelFile("tensorrt", a, {"mean": [1.0], "std": [2.0]}, ["a", "b"],
                               {"engine": np.zeros(4, np.float32)})
    with pytest.raises(model_file.ModelFileError, match="engine"):
        model_file.save(tmp_path / "c.plan", f32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.plan"]


def test_corpus_is_small_and_present():
    files = list(CORPUS.iterdir())
    assert len(files) >= 10
    assert sum(f.stat().st_size for f in files) < 2_000_000
