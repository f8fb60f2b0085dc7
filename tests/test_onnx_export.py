"""The ONNX export (unet_rt.export.onnx) against the PyTorch reference model, run by onnxruntime.

Neither side of the parity check is ours alone: the graph is built from the model file's numpy
weights by our exporter, the reference is ``unet_rt.train.model.UNet`` evaluated by PyTorch, and the
graph is executed by onnxruntime.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from unet_rt.train.model import UNet, to_model_file  # noqa: E402
from unet_rt.format import geometry  # noqa: E402
from unet_rt.format.model_file import ModelFile  # noqa: E402
from unet_rt.export.onnx import ALLOWED_OPS, export_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
U_FP16 = 2.0**-11          # unit roundoff of IEEE half precision (10-bit mantissa)


def _net(depth, base, cin, k, padding, seed=0):
    torch.manual_seed(seed)
    net = UNet(cin, k, depth, base, padding).eval()
    # He init leaves the biases at zero; make them non-zero so that bias handling is tested too.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
    mf = to_model_file(net, {"mean": [0.0] * cin, "std": [1.0] * cin}, [f"class{i}" for i in range(k)])
    return net, mf


def _tiles(depth, padding, n=2):
    """The smallest n tile sizes with a non-empty output."""
    return [i for i, o in geometry.valid_input_sizes(1, 600, depth, padding) if o >= 1][:n]


def _run_ort(model, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _ref(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def _n_convs(depth):
    # 2 per level (depth + 1 levels), ConvTranspose + 2 convs per decoder level, 1x1 head
    return 2 * (depth + 1) + 3 * depth + 1


def _check_static_graph(model, batch, cin, k, tile, out):
    """The properties TensorRT's static-shape path relies on."""
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS, f"unexpected ops {ops - ALLOWED_OPS}"
    assert "Shape" not in ops and "Gather" not in ops
    # every Slice takes constant (initializer) starts/ends/axes/steps
    inits = {i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Slice":
            assert all(name in inits for name in n.input[1:]), n
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    g = inferred.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        dims = vi.type.tensor_type.shape.dim
        assert len(dims) == 4, vi
        for d in dims:
            assert d.HasField("dim_value") and d.dim_value > 0, f"non-static dim in {vi.name}: {d}"
    (i,), (o,) = g.input, g.output
    assert [d.dim_value for d in i.type.tensor_type.shape.dim] == [batch, cin, tile, tile]
    assert [d.dim_value for d in o.type.tensor_type.shape.dim] == [batch, k, out, out]
    assert i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    return inferred


# (depth, base, in_channels, classes, padding)
SMALL_ARCHS = [
    (2, 4, 1, 2, "valid"),
    (2, 8, 3, 3, "valid"),
    (3, 4, 3, 2, "valid"),
    (3, 8, 1, 3, "valid"),
    (2, 4, 3, 2, "same"),
    (3, 8, 1, 3, "same"),
]


@pytest.mark.parametrize("depth,base,cin,k,padding", SMALL_ARCHS)
def test_fp32_parity_small(depth, base, cin, k, padding):
    net, mf = _net(depth, base, cin, k, padding)
    rng = np.random.default_rng(depth * 100 + base)
    for tile in _tiles(depth, padding):
        out = geometry.output_size(tile, depth, padding)
        batch = 2 if tile == _tiles(depth, padding)[0] else 1
        model = export_onnx(mf, tile, batch=batch)
        _check_static_graph(model, batch, cin, k, tile, out)
        x = rng.standard_normal((batch, cin, tile, tile)).astype(np.float32)
        got, ref = _run_ort(model, x), _ref(net, x)
        assert got.shape == ref.shape == (batch, k, out, out)
        # Error model: both sides accumulate in fp32 in different orders; each of the
        # _n_convs(depth) <= 16 layers adds ~1e-7 * sqrt(9*C) relative error (measured ~1e-6 overall).
        # 1e-4 of max|logit| leaves a wide margin while still catching any wrong weight, crop offset
        # or channel order (those give O(1) relative errors).
        err = np.abs(got - ref).max() / np.abs(ref).max()
        assert err <= 1e-4, f"tile {tile}: relative error {err:.3g}"


@pytest.mark.parametrize("depth,base,cin,k,padding", [SMALL_ARCHS[1], SMALL_ARCHS[3], SMALL_ARCHS[5]])
def test_fp16_parity_small(depth, base, cin, k, padding):
    net, mf = _net(depth, base, cin, k, padding, seed=1)
    tile = _tiles(depth, padding)[1]
    out = geometry.output_size(tile, depth, padding)
    model = export_onnx(mf, tile, dtype="float16")
    inferred = _check_static_graph(model, 1, cin, k, tile, out)
    # every weight and every intermediate activation is fp16; only the graph I/O is fp32
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer
               if i.data_type != onnx.TensorProto.INT64)
    for vi in inferred.graph.value_info:
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16, vi.name
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and casts[0].input[0] == "input" and casts[-1].output[0] == "logits"
    x = np.random.default_rng(7).standard_normal((1, cin, tile, tile)).astype(np.float32)
    got, ref = _run_ort(model, x), _ref(net, x)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    # Error model: fp16 rounds weights and every activation with relative error <= u = 2^-11 ~ 4.9e-4.
    # Errors from L = _n_convs(depth) layers add up (He-initialised layers keep the activation scale,
    # so relative errors neither blow up nor vanish): |err| <~ L * u * (a few) of max|logit|.
    # Bound used: 2 * L * u (1.3e-2 for depth 2, 1.8e-2 for depth 3); measured 3e-4 .. 2e-3
    # (the paper network, 23 layers, at 572: 1.6e-3).
    tol = 2 * _n_convs(depth) * U_FP16
    assert err <= tol, f"fp16 relative error {err:.3g} > {tol:.3g}"
    # ... and the fp16 graph really is lower precision than the fp32 one (it is not an fp32 graph)
    err32 = np.abs(_run_ort(export_onnx(mf, tile), x) - ref).max() / np.abs(ref).max()
    assert err > 10 * err32


@pytest.mark.slow
def test_paper_network_572():
    """The paper's network (depth 4, base 64, 31,030,658 parameters) on one 572 tile (~8 s on 2 cores)."""
    net, mf = _net(4, 64, 1, 2, "valid", seed=3)
    assert sum(v.size for v in mf.tensors.values()) == 31_030_658
    model = export_onnx(mf, 572)
    _check_static_graph(model, 1, 1, 2, 572, 388)
    x = np.random.default_rng(3).standard_normal((1, 1, 572, 572)).astype(np.float32)
    got, ref = _run_ort(model, x), _ref(net, x)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    # same error model as the small cases: 23 layers, fp32 accumulation of up to 9*128 = 1152 terms
    assert err <= 1e-4, f"relative error {err:.3g}"
    assert sum(n.op_type == "Slice" for n in model.graph.node) == 4   # one static crop per decoder level
    # the paper's "23 convolutional layers": 18 3x3 convs + 4 2x2 up-convs + the 1x1 head
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 19
    assert sum(n.op_type == "ConvTranspose" for n in model.graph.node) == 4


def test_metadata_and_atomic_write(tmp_path):
    _, mf = _net(2, 4, 1, 2, "valid")
    tile = _tiles(2, "valid")[0]
    path = tmp_path / "m.onnx"
    model = export_onnx(mf, tile, path=path)
    assert path.read_bytes() == model.SerializeToString()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]       # no temporary file left behind
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["unet_rt.tile_in"] == str(tile)
    assert meta["unet_rt.tile_out"] == str(geometry.output_size(tile, 2))
    assert meta["unet_rt.halo"] == str(geometry.halo(2))
    assert meta["unet_rt.class_names"] == '["class0", "class1"]'
    assert meta["unet_rt.normalization"] == '{"mean": [0.0], "std": [1.0]}'


def test_failed_write_leaves_nothing(tmp_path):
    _, mf = _net(2, 4, 1, 2, "valid")
    with pytest.raises(OSError):
        export_onnx(mf, _tiles(2, "valid")[0], path=tmp_path / "missing_dir" / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs():
    _, mf = _net(2, 4, 1, 2, "valid")
    good = _tiles(2, "valid")[0]
    with pytest.raises(ValueError, match="not a valid input size.*valid sizes near it"):
        export_onnx(mf, good + 1)
    with pytest.raises(ValueError, match="not a valid input size"):
        export_onnx(mf, 4)            # far too small: no output at all
    with pytest.raises(TypeError):
        export_onnx(mf, float(good))
    with pytest.raises(TypeError):
        export_onnx(mf, True)
    with pytest.raises(ValueError, match="dtype"):
        export_onnx(mf, good, dtype="bfloat16")
    with pytest.raises(ValueError, match="batch"):
        export_onnx(mf, good, batch=0)
    with pytest.raises(TypeError, match="ModelFile"):
        export_onnx(mf.tensors, good)
    trt = ModelFile("tensorrt", mf.arch, mf.normalization, mf.class_names, {"engine": np.zeros(4, np.uint8)})
    with pytest.raises(ValueError, match="weights"):
        export_onnx(trt, good)
    bad = ModelFile("weights", mf.arch, mf.normalization, mf.class_names, dict(mf.tensors))
    bad.tensors["enc.0.conv1.weight"] = bad.tensors["enc.0.conv1.weight"].copy()
    bad.tensors["enc.0.conv1.weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_onnx(bad, good)
    bad.tensors["enc.0.conv1.weight"][0, 0, 0, 0] = 1e6
    export_onnx(bad, good)                             # fine in fp32 ...
    with pytest.raises(ValueError, match="fp16 range"):
        export_onnx(bad, good, dtype="float16")        # ... but would overflow in fp16
    del bad.tensors["head.bias"]
    with pytest.raises(ValueError, match="head.bias"):
        export_onnx(bad, good)


def test_export_needs_no_torch(tmp_path):
    """The runtime side exports from a model file with numpy + onnx alone (torch never imported)."""
    from unet_rt.format.model_file import expected_shapes, save

    arch = {"in_channels": 1, "classes": 2, "depth": 2, "base": 4, "padding": "valid"}
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal(s).astype(np.float32) for n, s in expected_shapes(arch).items()}
    save(tmp_path / "w.plan", ModelFile("weights", arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"], tensors))
    code = (
        "import sys\n"
        "from unet_rt import model_file, onnx_export\n"
        f"m = onnx_export.export_onnx(model_file.load({str(tmp_path / 'w.plan')!r}), {_tiles(2, 'valid')[0]})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok', len(m.graph.node))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))  # the installed package, not the source tree
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=str(Path(__file__).resolve().parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")
