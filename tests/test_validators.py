"""One set of rules for model files: the Python side (unet_rt.format.model_file) and the native reader
(_core.read_model) accept and reject the same files. Run on the issue's cases and on the fuzz corpus
(tests/corpus/model_reader/, kept by `make fuzz`): a replay of the corpus through the native reader
that must give a model or a clean error, never a crash."""
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
def test_python_and_native_readers_agree(name, tmp_path):
    data = CASES[name]
    p = tmp_path / "m.plan"
    p.write_bytes(data)
    native, python = _native(data), _python(p)
    if isinstance(python, model_file.ModelFile) and python.kind != "weights":
        # TensorRT engines (containers or bare plans) are the Python tensorrt backend's: the native
        # CPU reader refuses them, by name
        assert isinstance(native, ValueError) and "TensorRT" in str(native), (name, native)
        return
    assert isinstance(native, dict) == isinstance(python, model_file.ModelFile), (name, native, python)
    if isinstance(native, dict):
        assert native["arch"] == python.arch and native["class_names"] == python.class_names
        assert native["normalization"]["mean"] == pytest.approx(python.normalization["mean"])
        assert set(native["tensors"]) == set(python.tensors)


def test_issue_cases_are_rejected():
    for name in ("classes_string", "three_names_two_classes", "duplicate_metadata_key", "duplicate_arch_key",
                 "nan_literal", "std_string", "f64_tensors", "lone_surrogate", "deep_provenance"):
        assert isinstance(_native(CASES[name]), ValueError), name
    assert isinstance(_native(CASES["valid"]), dict) and isinstance(_native(CASES["no_names"]), dict)


def test_save_refuses_what_the_reader_would_refuse(tmp_path):
    a = tiny_arch()
    mf = model_file.ModelFile("weights", dict(a, classes="2"), {"mean": [1.0], "std": [2.0]}, ["a", "b"],
                              random_tensors(a))
    with pytest.raises(model_file.ModelFileError, match="classes must be an integer"):
        model_file.save(tmp_path / "x.plan", mf)
    mf = model_file.ModelFile("weights", a, {"mean": [1.0], "std": [1e-50]}, ["a", "b"], random_tensors(a))
    with pytest.raises(model_file.ModelFileError, match="positive finite stds"):
        model_file.save(tmp_path / "x.plan", mf)


def test_corpus_is_small_and_present():
    files = list(CORPUS.iterdir())
    assert len(files) >= 10
    assert sum(f.stat().st_size for f in files) < 2_000_000
