"""The native model file reader (csrc/src/model_reader.cc) against unet_rt.format.model_file (Python) and
safetensors, on good files and on every kind of malformed one (docs/architecture.md,
file format and error model: never read out of bounds, always a clear error)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unet_rt.format import model_file

_core = pytest.importorskip("unet_rt._core")
from _model_bytes import build, metadata, random_tensors, tiny_arch, tiny_model_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read(b: bytes) -> dict:
    return _core.read_model_bytes(b)


# ---- good files: agree with the Python reader ------------------------------------------------------

@pytest.mark.parametrize("arch", [
    dict(in_channels=1, classes=2, depth=1, base=1, padding="valid"),
    dict(in_channels=3, classes=5, depth=2, base=2, padding="same"),
    dict(in_channels=2, classes=1, depth=3, base=1, padding="valid"),
])
def test_reads_what_model_file_writes(tmp_path, arch):
    path = tmp_path / "m.plan"
    mf = model_file.ModelFile("weights", arch, {"mean": [0.5 * i for i in range(arch["in_channels"])],
                                                "std": [1.0 + i for i in range(arch["in_channels"])]},
                              [f"k{i}é" for i in range(arch["classes"])], random_tensors(arch), {"steps": 3})
    model_file.save(path, mf)
    ref = model_file.load(path)
    got = _core.read_model(str(path))
    assert got["kind"] == "weights" and got["format_version"] == 1
    assert got["arch"] == ref.arch
    assert got["class_names"] == ref.class_names
    np.testing.assert_array_equal(np.float32(got["normalization"]["mean"]), np.float32(ref.normalization["mean"]))
    np.testing.assert_array_equal(np.float32(got["normalization"]["std"]), np.float32(ref.normalization["std"]))
    assert json.loads(got["provenance"]) == ref.provenance
    assert got["tensors"] == {k: tuple(v.shape) for k, v in ref.tensors.items()}
    assert got == read(path.read_bytes())


def test_paper_network_shapes():
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    shapes = model_file.expected_shapes(arch)
    tensors = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    got = read(build(tensors, metadata(arch)))
    assert got["tensors"] == shapes
    assert sum(int(np.prod(s)) for s in got["tensors"].values()) == 31_030_658


def test_optional_metadata_defaults():
    arch = tiny_arch(classes=3)
    arch_no_padding = {k: v for k, v in arch.items() if k != "padding"}
    b = build(random_tensors(arch), metadata(arch, arch=json.dumps(arch_no_padding), kind=None, class_names=None,
                                             provenance=None))
    got = read(b)
    assert got["kind"] == "weights" and got["arch"]["padding"] == "valid"
    assert got["class_names"] == ["class0", "class1", "class2"]
    assert got["provenance"] == "{}"


def test_unicode_escapes_decoded_like_python():
    arch = tiny_arch()
    names = json.dumps(["\u00e9t\u00e9 \"q\"\\/\t", "\U0001F600 cell"])  # json.dumps escapes to \uXXXX pairs
    got = read(build(random_tensors(arch), metadata(arch, class_names=names)))
    assert got["class_names"] == json.loads(names)


def test_misaligned_data_is_copied_not_misread():
    arch = tiny_arch()
    t = random_tensors(arch)
    residues = set()
    for pad in range(4):  # header lengths of every residue mod 4: data start misaligned 3 times out of 4
        b = build(t, metadata(arch, provenance=json.dumps({"p": "x" * pad})), align=0)
        residues.add(struct.unpack("<Q", b[:8])[0] % 4)
        assert read(b)["tensors"] == {k: v.shape for k, v in t.items()}
    assert residues == {0, 1, 2, 3}


# ---- rejections with clear messages --------------------------------------------------------------

def _bad(b: bytes, match: str):
    with pytest.raises(_core.ModelFileError, match=match):
        read(b)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        _core.read_model(str(tmp_path / "nope.plan"))
    with pytest.raises(OSError):
        _core.read_model(str(tmp_path))  # a directory


def test_model_file_error_is_value_error():
    assert issubclass(_core.ModelFileError, ValueError)


def test_tensorrt_models_rejected_with_pointer_to_backend(tmp_path):
    arch = tiny_arch()
    path = tmp_path / "trt.plan"
    model_file.save(path, model_file.ModelFile("tensorrt", arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"],
                                               {"engine": np.frombuffer(b"ftrt-engine-bytes", np.uint8)}))
    with pytest.raises(_core.ModelFileError, match="TensorRT.*Python tensorrt backend"):
        _core.read_model(str(path))
    bare = b"ftrt\x00\x00\x00\x00" + bytes(64)  # a trtexec plan starts with its tag, not a header length
    assert struct.unpack("<Q", bare[:8])[0] > model_file.MAX_HEADER
    _bad(bare, "bare TensorRT plan")


@pytest.mark.parametrize("over, match", [
    (dict(format="other"), "not a unet-rt model"),
    (dict(format=None), "not a unet-rt model"),
    (dict(format_version="2"), "format version 2"),
    (dict(format_version=None), "format_version"),
    (dict(kind="onnx"), "unknown model kind"),
    (dict(arch=None), "no 'arch'"),
    (dict(arch="{"), "bad 'arch' metadata"),
    (dict(arch=json.dumps(dict(in_channels=1, classes=2, depth=1))), "no 'base'"),
    (dict(arch=json.dumps(dict(in_channels=1, classes=2, depth=9, base=1))), "depth"),
    (dict(arch=json.dumps(dict(in_channels=0, classes=2, depth=1, base=1))), "in_channels"),
    (dict(arch=json.dumps(dict(in_channels=1.5, classes=2, depth=1, base=1))), "integer"),
    (dict(arch=json.dumps(dict(in_channels=1, classes=2, depth=1, base=1, padding="reflect"))), "padding"),
    (dict(normalization=None), "no 'normalization'"),
    (dict(normalization=json.dumps({"mean": [0.0], "std": [0.0]})), "positive"),
    (dict(normalization=json.dumps({"mean": [0.0], "std": [-1.0]})), "positive"),
    (dict(normalization=json.dumps({"mean": [0.0, 1.0], "std": [1.0, 1.0]})), "1 finite means"),
    (dict(normalization='{"mean": [NaN], "std": [1.0]}'), "normalization"),
    (dict(normalization='{"mean": [1e39], "std": [1.0]}'), "finite"),
    (dict(class_names=json.dumps(["a"])), "1 class names for 2 classes"),
    (dict(class_names=json.dumps([1, 2])), "strings"),
])
def test_bad_metadata(over, match):
    arch = tiny_arch()
    _bad(build(random_tensors(arch), metadata(arch, **over)), match)


def test_bad_tensors():
    arch = tiny_arch()
    t = random_tensors(arch)
    meta = metadata(arch)
    missing = dict(t)
    del missing["head.bias"]
    _bad(build(missing, meta), "missing tensor 'head.bias'")
    _bad(build({**t, "extra": np.zeros(2, np.float32)}, meta), "unexpected tensor 'extra'")
    wrong = dict(t)
    wrong["head.weight"] = np.zeros((2, 1, 1, 2), np.float32)
    _bad(build(wrong, meta), r"head.weight has shape \[2, 1, 1, 2\], expected \[2, 1, 1, 1\]")
    nan = dict(t)
    nan["enc.0.conv1.weight"] = nan["enc.0.conv1.weight"].copy()
    nan["enc.0.conv1.weight"][0, 0, 1, 1] = np.nan
    _bad(build(nan, meta), "NaN or Inf")
    f16 = {k: v.astype(np.float16) for k, v in t.items()}
    _bad(build(f16, meta, dtype="F16"), "dtype F16, expected F32")


def _header_and_data(b: bytes):
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8:8 + n]), b[8 + n:]


def _rebuild(header: dict, data: bytes) -> bytes:
    hb = json.dumps(header).encode()
    return struct.pack("<Q", len(hb)) + hb + data


def test_bad_offsets():
    b = tiny_model_bytes()
    header, data = _header_and_data(b)
    names = [k for k in header if k != "__metadata__"]
    h = json.loads(json.dumps(header))
    h[names[1]]["data_offsets"] = [0, h[names[1]]["data_offsets"][1] - h[names[1]]["data_offsets"][0]]
    _bad(_rebuild(h, data), "overlap")
    h = json.loads(json.dumps(header))
    end = h[names[-1]]["data_offsets"][1]
    h[names[-1]]["data_offsets"] = [end + 4 - 4 * int(np.prod(h[names[-1]]["shape"])), end + 4]
    _bad(_rebuild(h, data), "beyond the end")
    h = json.loads(json.dumps(header))
    h[names[0]]["data_offsets"] = [h[names[0]]["data_offsets"][0], h[names[0]]["data_offsets"][1] - 4]
    _bad(_rebuild(h, data), "bytes but its shape")
    h = json.loads(json.dumps(header))
    h[names[0]]["data_offsets"] = [8, 4]
    _bad(_rebuild(h, data), "invalid data_offsets")
    h = json.loads(json.dumps(header))
    h[names[0]]["shape"] = [2**62, 2**62]
    _bad(_rebuild(h, data), "absurd shape")
    h = json.loads(json.dumps(header))
    h[names[0]]["data_offsets"] = [0, 2**70]
    _bad(_rebuild(h, data), "out of range")
    h = json.loads(json.dumps(header))
    h[names[0]]["extra"] = 1
    _bad(_rebuild(h, data), "unknown field")
    h = json.loads(json.dumps(header))
    h[names[0]]["dtype"] = "Q7"
    _bad(_rebuild(h, data), "unknown dtype")


def test_container_errors():
    b = tiny_model_bytes()
    _bad(b"", "too short")
    _bad(b[:7], "too short")
    _bad(struct.pack("<Q", 10**6) + b"{}", "truncated")
    _bad(struct.pack("<Q", 2**40) + b"xx", "bad header length")
    _bad(struct.pack("<Q", 2) + b"[]", "not an object")


# Strict JSON: each header text must be rejected (with the metadata otherwise valid where possible).
_META = metadata(tiny_arch())
_VALID = json.dumps({"__metadata__": _META})


@pytest.mark.parametrize("text", [
    _VALID[:-1] + ",}",                                  # trailing comma
    _VALID + " x",                                       # trailing data
    "/*c*/" + _VALID,                                    # comment
    _VALID.replace('"unet-rt"', "'unet-rt'"),            # single quotes
    _VALID.replace('"format"', '"format", "format"'),    # broken syntax
    '{"__metadata__": {"format": "unet-rt"}, "__metadata__": {}}',  # duplicate key
    '{"a": 01}',                                         # leading zero
    '{"a": 1.}',                                         # bare fraction
    '{"a": -}',
    '{"a": 1e}',
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": "tab\there"}',                                # raw control character
    '{"a": "\\x41"}',                                    # invalid escape
    '{"a": "\\ud800"}',                                  # lone high surrogate
    '{"a": "\\udc00"}',                                  # lone low surrogate
    '{"a": "\\u12"}',
    '{"a": tru}',
    '{"a" 1}',
    '{"a": [1 2]}',
    '{"a": "unterminated}',
    "[" * 100000 + "]" * 100000,                         # deep nesting: clean error, no stack overflow
    "",
    " ",
])
def test_strict_json_rejections(text):
    b = text.encode("utf-8")
    with pytest.raises(_core.ModelFileError):
        read(struct.pack("<Q", len(b)) + b)


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b'{"a": "\xc0\xaf"}', b'{"a": "\xed\xa0\x80"}', b'{"a": "\xe2\x82"}'])
def test_invalid_utf8_rejected(raw):
    with pytest.raises(_core.ModelFileError, match="UTF-8"):
        read(struct.pack("<Q", len(raw)) + raw)


# ---- fuzzing: a clean error or a valid model, never a crash ------------------------------------

FUZZ = textwrap.dedent(r'''
    import json, random, struct, sys
    sys.path.insert(0, sys.argv[1])
    from unet_rt import _core
    from _model_bytes import tiny_model_bytes
    rng = random.Random(1234)
    good = tiny_model_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    ok = bad = 0
    def run(b):
        global ok, bad
        try:
            info = _core.read_model_bytes(bytes(b))
            assert info["kind"] == "weights"
            ok += 1
        except _core.ModelFileError as e:
            assert str(e), "empty error message"
            bad += 1
    # random bytes, with and without a plausible header length
    for i in range(300):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        run(body)
        run(struct.pack("<Q", rng.randrange(0, len(body) + 16)) + body)
    # truncation at every offset of the header region and at many in the data
    cuts = set(range(0, n + 16)) | set(range(n + 8, len(good), 7)) | {len(good) - 1}
    for c in sorted(cuts):
        run(good[:c])
    # bit flips in the length and the header; byte substitutions in the JSON
    for i in range(1500):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(0, 8 + n)
            b[pos] ^= 1 << rng.randrange(8)
        run(b)
    alphabet = b'{}[]:,"\\0123456789.eE+-tfnul \x00\xff\xc3'
    for i in range(1500):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 3)):
            pos = rng.randrange(8, 8 + n)
            b[pos] = alphabet[rng.randrange(len(alphabet))]
        run(b)
    # header length pointing anywhere
    for L in list(range(0, 40)) + [n - 1, n + 1, len(good), 2**63, 2**64 - 1]:
        run(struct.pack("<Q", L) + good[8:])
    print(ok, bad)
''')


def test_fuzz_never_crashes():
    r = subprocess.run([sys.executable, "-c", FUZZ, str(Path(__file__).parent)], capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(Path(__file__).resolve().parent), "PATH": "/usr/bin:/bin"}, cwd=str(Path(__file__).resolve().parent))
    assert r.returncode == 0, f"reader crashed or misbehaved (rc={r.returncode}):\n{r.stderr[-3000:]}"
    ok, bad = map(int, r.stdout.split())
    assert bad > 3000 and ok >= 1  # most mutations are errors; the untouched length runs are not
