"""Everything that feeds TensorRT, tested without TensorRT; the TensorRT-only tests skip here.

1. The ONNX graphs TensorRT is built from (fp32 and fp16): checker, supported ops, static shapes.
2. The plan container (fake engine bytes), bare-plan geometry, the version/GPU refusal rules.
3. The ``compile`` CLI (``--target onnx`` fully; ``--target tensorrt`` refusing cleanly).
4. Import hygiene: ``unet_rt`` and its CPU path never import tensorrt or torch.
5. The runner's and builder's CUDA/TensorRT plumbing against stand-in ``tensorrt`` and
   ``cuda.bindings.runtime`` modules defined below: a lazy, dependency-respecting stream simulator
   (a copy or kernel runs only when something waits for it, so a missing event dependency gives
   stale data) and an "engine" that is the ONNX graph run by onnxruntime. This checks OUR buffer,
   stream, event, CUDA-graph and shape logic -- not TensorRT, which has not been run here.
6. Real TensorRT on a GPU: skipped unless ``tensorrt`` imports and a GPU is present.
"""
from __future__ import annotations

import ctypes
import enum
import importlib
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from unet_rt.format import geometry  # noqa: E402
from unet_rt.format import model_file
from unet_rt.format.model_file import ModelFile, ModelFileError, expected_shapes  # noqa: E402
from unet_rt.export.onnx import ALLOWED_OPS, IR_VERSION, OPSET, export_onnx  # noqa: E402
from unet_rt.cli import compile as trt_cli  # noqa: E402
from unet_rt.backends.tensorrt.container import (PlanMismatchError, check_compat, geometry_from_io_shapes,  # noqa: E402
                                   make_container, plan_info)

ROOT = Path(__file__).resolve().parents[1]
# The ONNX operators TensorRT's ONNX parser supports that this exporter may emit (TensorRT's
# "Supported ONNX Operators" list: all of these are supported for fp32 and fp16).
TRT_SUPPORTED = {"Conv", "Relu", "MaxPool", "ConvTranspose", "Slice", "Concat", "Cast"}


def _weights(arch, seed=0):
    """A weights ModelFile with He-scaled random weights (numpy only)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(arch).items():
        if len(shape) == 1:
            tensors[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
        else:
            fan_in = shape[0] if "up.weight" in name else int(np.prod(shape[1:]))
            tensors[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    c, k = arch["in_channels"], arch["classes"]
    return ModelFile("weights", dict(arch), {"mean": [10.0] * c, "std": [2.0] * c}, [f"k{i}" for i in range(k)],
                     tensors, {"note": "test"})


ARCH = {"in_channels": 1, "classes": 2, "depth": 2, "base": 4, "padding": "valid"}
ARCH3 = {"in_channels": 3, "classes": 3, "depth": 3, "base": 4, "padding": "same"}


def _tile(arch, i=0):
    return [t for t, o in geometry.valid_input_sizes(1, 600, arch["depth"], arch["padding"]) if o >= 1][i]


# --------------------------------------------------------------------------------------------
# 1. the ONNX graphs TensorRT consumes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("arch,tile", [(ARCH, None), (ARCH3, None),
                                       ({"in_channels": 1, "classes": 2, "depth": 4, "base": 64,
                                         "padding": "valid"}, 572)])
def test_onnx_for_tensorrt(arch, tile, dtype):
    mf = _weights(arch)
    tile = tile or _tile(arch, 1)
    m = export_onnx(mf, tile, dtype=dtype)
    onnx.checker.check_model(m, full_check=True)
    assert {n.op_type for n in m.graph.node} <= TRT_SUPPORTED <= ALLOWED_OPS | TRT_SUPPORTED
    assert m.ir_version == IR_VERSION and [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:                        # all weights and Slice parameters are constants
        if n.op_type in ("Conv", "ConvTranspose"):
            assert n.input[1] in inits and n.input[2] in inits
        if n.op_type == "Slice":
            assert all(x in inits for x in n.input[1:])
            for x in n.input[1:]:
                assert inits[x].data_type == onnx.TensorProto.INT64
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    for vi in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        assert all(d.HasField("dim_value") and d.dim_value > 0 for d in vi.type.tensor_type.shape.dim), vi.name
    out = geometry.output_size(tile, arch["depth"], arch["padding"])
    (o,) = inferred.graph.output
    assert [d.dim_value for d in o.type.tensor_type.shape.dim] == [1, arch["classes"], out, out]
    want = onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.FLOAT
    assert {i.data_type for i in m.graph.initializer} - {onnx.TensorProto.INT64} == {want}


# --------------------------------------------------------------------------------------------
# 2. container, bare plans, compatibility rules
# --------------------------------------------------------------------------------------------
FAKE_ENGINE = b"ftrt" + bytes(range(256)) * 3


def test_container_round_trip(tmp_path):
    src = _weights(ARCH)
    tile = _tile(ARCH, 2)
    mf = make_container(src, FAKE_ENGINE, tile_in=tile, precision="fp16", version="10.13.0.35",
                        gpu="NVIDIA H100 80GB HBM3", compute_capability=(9, 0))
    path = tmp_path / "model.plan"
    model_file.save(path, mf)
    assert model_file.detect_kind(path) == "tensorrt"
    back = model_file.load(path)
    assert back.kind == "tensorrt"
    assert back.tensors["engine"].dtype == np.uint8 and back.tensors["engine"].tobytes() == FAKE_ENGINE
    assert back.arch == src.arch and back.normalization == src.normalization and back.class_names == src.class_names
    meta = back.extra["tensorrt"]
    out = geometry.output_size(tile, 2)
    assert meta == {"tile_in": tile, "tile_out": out, "halo": (tile - out) // 2, "batch": 1, "precision": "fp16",
                    "version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0],
                    "input": "input", "output": "logits"}
    info = plan_info(back)
    assert (info.tile_in, info.tile_out, info.halo, info.depth, info.padding) == (tile, out, (tile - out) // 2, 2, "valid")
    assert info.compute_capability == (9, 0) and info.normalization == {"mean": [10.0], "std": [2.0]}
    # corrupted metadata is refused with a clear error
    back.extra["tensorrt"] = dict(meta, tile_out=out + 2)
    with pytest.raises(ModelFileError, match="inconsistent"):
        plan_info(back)
    back.extra["tensorrt"] = dict(meta, precision="int8")
    with pytest.raises(ModelFileError, match="precision"):
        plan_info(back)
    del back.extra["tensorrt"]
    with pytest.raises(ModelFileError, match="metadata"):
        plan_info(back)


def test_container_rejects_bad_values():
    src = _weights(ARCH)
    tile = _tile(ARCH)
    with pytest.raises(ValueError, match="precision"):
        make_container(src, FAKE_ENGINE, tile_in=tile, precision="int8", version="10.0.0", gpu="g",
                       compute_capability=(8, 0))
    with pytest.raises(ValueError, match="empty"):
        make_container(src, b"", tile_in=tile, precision="fp32", version="10.0.0", gpu="g", compute_capability=(8, 0))
    with pytest.raises(ValueError, match="version"):
        make_container(src, FAKE_ENGINE, tile_in=tile, precision="fp32", version="ten", gpu="g",
                       compute_capability=(8, 0))
    with pytest.raises(ValueError):
        make_container(src, FAKE_ENGINE, tile_in=tile + 1, precision="fp32", version="10.0.0", gpu="g",
                       compute_capability=(8, 0))


def test_bare_plan(tmp_path):
    path = tmp_path / "trtexec.engine"
    path.write_bytes(FAKE_ENGINE)
    assert model_file.detect_kind(path) == "tensorrt-bare"
    mf = model_file.load(path)
    assert mf.kind == "tensorrt-bare" and mf.tensors["engine"].tobytes() == FAKE_ENGINE
    with pytest.warns(UserWarning, match="identity"):
        info = plan_info(mf, io_shapes=((1, 1, 572, 572), (1, 2, 388, 388)))
    # the paper's numbers: 572 -> 388, halo 92, depth 4
    assert (info.tile_in, info.tile_out, info.halo, info.depth, info.padding) == (572, 388, 92, 4, "valid")
    assert info.normalization == {"mean": [0.0], "std": [1.0]} and info.class_names == ["class0", "class1"]
    assert info.version is None and info.precision is None
    info = plan_info(mf, io_shapes=((1, 3, 572, 572), (1, 2, 388, 388), "x", "y"),
                     normalization={"mean": [1, 2, 3], "std": [4, 5, 6]}, class_names=["bg", "cell"])
    assert info.normalization == {"mean": [1, 2, 3], "std": [4, 5, 6]} and (info.input_name, info.output_name) == ("x", "y")
    with pytest.raises(ValueError, match="3 means"):
        plan_info(mf, io_shapes=((1, 3, 572, 572), (1, 2, 388, 388)), normalization={"mean": [0], "std": [1]})
    with pytest.raises(ValueError, match="I/O shapes"):
        plan_info(mf)


def test_geometry_from_io_shapes_matches_reference_network():
    """Recover depth/halo from I/O shapes; the reference is the PyTorch network's actual output size."""
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet

    for depth in (1, 2, 3):
        net = UNet(2, 3, depth, 2, "valid").eval()
        for tile in [t for t, o in geometry.valid_input_sizes(1, 160, depth) if o >= 1][:3]:
            with torch.no_grad():
                o = net(torch.zeros(1, 2, tile, tile)).shape[-1]
            g = geometry_from_io_shapes((1, 2, tile, tile), (1, 3, o, o))
            assert (g["depth"], g["padding"], g["halo"], g["tile_out"]) == (depth, "valid", (tile - o) // 2, o)
            assert (g["in_channels"], g["classes"], g["batch"]) == (2, 3, 1)
    g = geometry_from_io_shapes((2, 1, 256, 256), (2, 4, 256, 256))
    assert (g["padding"], g["halo"], g["batch"], g["classes"]) == ("same", 0, 2, 4) and 256 % 2 ** g["depth"] == 0
    for bad in [((1, 1, 572, 570), (1, 2, 388, 388)), ((1, 1, -1, -1), (1, 2, -1, -1)),
                ((1, 1, 572, 572), (2, 2, 388, 388)), ((1, 1, 572, 572), (1, 2, 390, 390)),
                ((1, 572, 572), (1, 388, 388)), ((1, 1, 101, 101), (1, 2, 101, 101))]:
        with pytest.raises(ModelFileError):
            geometry_from_io_shapes(*bad)


BUILT = {"version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}


def test_check_compat_rules():
    assert check_compat(BUILT, "10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0)) == []
    assert check_compat(BUILT, "10.13.0", "NVIDIA H100 80GB HBM3", (9, 0)) == []   # no build number given
    for other in ("10.13.0.36", "10.13.1.35", "10.14.0.35", "11.0.0.1", "10.13"):
        with pytest.raises(PlanMismatchError, match="TensorRT"):
            check_compat(BUILT, other, "NVIDIA H100 80GB HBM3", (9, 0))
    with pytest.raises(PlanMismatchError, match="compute capability 9.0.*compute capability 8.0"):
        check_compat(BUILT, "10.13.0.35", "NVIDIA A100-SXM4-80GB", (8, 0))
    with pytest.raises(PlanMismatchError, match="compute capability"):   # even when allowed other GPUs
        check_compat(BUILT, "10.13.0.35", "NVIDIA A100-SXM4-80GB", (8, 0), allow_other_gpu=True)
    with pytest.raises(PlanMismatchError, match="exact GPU model"):
        check_compat(BUILT, "10.13.0.35", "NVIDIA H100 PCIe", (9, 0))
    notes = check_compat(BUILT, "10.13.0.35", "NVIDIA H100 PCIe", (9, 0), allow_other_gpu=True)
    assert len(notes) == 1 and "H100 PCIe" in notes[0]
    for key in BUILT:
        with pytest.raises(PlanMismatchError, match=key):
            check_compat({k: v for k, v in BUILT.items() if k != key}, "10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0))
    with pytest.raises(ValueError, match="version"):
        check_compat(BUILT, "latest", "NVIDIA H100 80GB HBM3", (9, 0))


# --------------------------------------------------------------------------------------------
# 3. the compile CLI
# --------------------------------------------------------------------------------------------
@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "w.plan"
    model_file.save(path, _weights(ARCH))
    return path


def test_cli_onnx(weights_file, tmp_path, capsys):
    tile = _tile(ARCH, 1)
    for precision, dtype in (("fp32", "float32"), ("fp16", "float16")):
        out = tmp_path / f"u_{precision}.onnx"
        rc = trt_cli.main([str(weights_file), "--target", "onnx", "-o", str(out), "--tile", str(tile),
                           "--precision", precision])
        assert rc == 0, capsys.readouterr().err
        assert f"tile {tile} -> {geometry.output_size(tile, 2)}" in capsys.readouterr().out
        want = export_onnx(model_file.load(weights_file), tile, dtype=dtype)
        assert out.read_bytes() == want.SerializeToString()
        x = np.random.default_rng(0).standard_normal((1, 1, tile, tile)).astype(np.float32)
        y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        assert y.shape == (1, 2, geometry.output_size(tile, 2), geometry.output_size(tile, 2))


def _files(d):
    return sorted(p.name for p in Path(d).iterdir())


def test_cli_errors(weights_file, tmp_path, capsys):
    tile = _tile(ARCH)
    before = _files(tmp_path)
    out = str(tmp_path / "o.onnx")
    cases = [
        ([str(weights_file), "--target", "onnx", "-o", out, "--tile", str(tile + 1)], "not a valid input size"),
        ([str(tmp_path / "nope.plan"), "--target", "onnx", "-o", out, "--tile", str(tile)], "not found"),
        ([str(weights_file), "--target", "onnx", "-o", out, "--tile", str(tile), "--timing-cache", "c"], "--timing-cache"),
        ([str(weights_file), "--target", "onnx", "-o", out, "--tile", str(tile), "--tf32"], "--tf32"),
        ([str(weights_file), "--target", "onnx", "-o", str(tmp_path / "no" / "o.onnx"), "--tile", str(tile)], "does not exist"),
        ([str(weights_file), "--target", "onnx", "-o", str(weights_file), "--tile", str(tile)], "overwrite"),
        ([str(weights_file), "--target", "onnx", "-o", out, "--tile", str(tile), "--batch", "0"], "--batch"),
    ]
    for argv, msg in cases:
        assert trt_cli.main(argv) == 2, argv
        assert msg in capsys.readouterr().err, argv
    # a TensorRT plan is not something to compile
    trt_plan = tmp_path / "t.plan"
    model_file.save(trt_plan, make_container(_weights(ARCH), FAKE_ENGINE, tile_in=tile, precision="fp32",
                                             version="10.0.0", gpu="g", compute_capability=(8, 0)))
    assert trt_cli.main([str(trt_plan), "--target", "onnx", "-o", out, "--tile", str(tile)]) == 2
    assert "weights file" in capsys.readouterr().err
    assert _files(tmp_path) == sorted(before + ["t.plan"])      # nothing written by any failure
    with pytest.raises(SystemExit) as e:
        trt_cli.main(["--help"])
    assert e.value.code == 0
    assert "--target" in capsys.readouterr().out


def test_cli_tensorrt_without_tensorrt(weights_file, tmp_path, capsys, monkeypatch):
    """Without TensorRT, --target tensorrt says how to install it and writes nothing."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)     # makes `import tensorrt` fail even where installed
    monkeypatch.setattr("unet_rt.backends.tensorrt.available", lambda: False)
    out = tmp_path / "m_trt.plan"
    rc = trt_cli.main([str(weights_file), "--target", "tensorrt", "-o", str(out), "--tile", str(_tile(ARCH))])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'unet-rt[tensorrt]'" in err and "nothing was written" in err
    assert not out.exists()


def test_cli_add_arguments_to_a_subparser():
    import argparse

    p = argparse.ArgumentParser(prog="unet-rt")
    sub = p.add_subparsers(dest="cmd")
    trt_cli.add_arguments(sub.add_parser("compile", help="compile a model"))
    a = p.parse_args(["compile", "m.plan", "--target", "tensorrt", "-o", "x.plan", "--tile", "572",
                      "--precision", "fp16", "--timing-cache", "c.bin", "--workspace-mb", "2048"])
    assert (a.model, a.target, a.output, a.tile, a.precision, a.timing_cache, a.workspace_mb) == \
        ("m.plan", "tensorrt", "x.plan", 572, "fp16", "c.bin", 2048)


# --------------------------------------------------------------------------------------------
# 4. import hygiene
# --------------------------------------------------------------------------------------------
def _run_py(code):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))  # the installed package, not the source tree
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=str(Path(__file__).resolve().parent))


def test_cpu_path_imports_neither_tensorrt_nor_torch():
    code = (
        "import sys, pkgutil, importlib\n"
        "import unet_rt\n"
        "skipped = []\n"
        "for m in pkgutil.iter_modules(unet_rt.__path__):\n"
        "    if 'triton' in m.name or m.name == '__main__':\n"  # triton needs torch by design; __main__ runs the CLI
        "        continue\n"
        "    try:\n"
        "        importlib.import_module('unet_rt.' + m.name)\n"
        "    except ImportError as e:\n"
        "        if '_core' not in str(e):\n"   # the native module may not be built in this checkout
        "            raise\n"
        "        skipped.append(m.name)\n"
        "import unet_rt.cli.compile, unet_rt.backends.tensorrt.container\n"
        "bad = sorted(k for k in ('torch', 'tensorrt', 'cuda') if k in sys.modules)\n"
        "assert not bad, bad\n"
        "print('ok', skipped)\n"
    )
    r = _run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_missing_tensorrt_gives_install_hint():
    code = (
        "import sys\n"
        "sys.modules['tensorrt'] = None\n"       # as if not installed
        "import unet_rt.backends.tensorrt as t\n"
        "assert not t.available() or True\n"
        "for name in ('TensorRTRunner', 'make_tile_fn', 'compile_model', 'build_engine'):\n"
        "    try:\n"
        "        getattr(t, name)\n"
        "    except ImportError as e:\n"
        "        assert \"pip install 'unet-rt[tensorrt]'\" in str(e), str(e)\n"
        "    else:\n"
        "        raise SystemExit(name + ' imported without tensorrt')\n"
        "try:\n"
        "    t.require()\n"
        "except ImportError as e:\n"
        "    print('ok')\n"
    )
    r = _run_py(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------------
# 5. our CUDA / TensorRT plumbing against stand-ins (see module docstring)
# --------------------------------------------------------------------------------------------
class _Op:
    def __init__(self, fn, desc):
        self.fn, self.desc, self.done = fn, desc, False


class _Stream:
    def __init__(self, sim, ident):
        self.sim, self.ident, self.queue, self.capture = sim, ident, [], None

    def __int__(self):
        return self.ident

    def push(self, fn, desc):
        op = _Op(fn, desc)
        if self.capture is not None:
            self.capture.append(op)
        else:
            self.queue.append(op)
        return op

    def flush_until(self, op=None):
        """Run queued work in order (lazily: only when someone waits)."""
        while self.queue:
            head = self.queue.pop(0)
            head.fn()
            head.done = True
            self.sim.log.append((self.ident, head.desc))
            if head is op:
                return


class _Event:
    def __init__(self):
        self.op = None       # the record op; None: never recorded (complete)


class _FakeCudart(types.ModuleType):
    """Just enough of cuda.bindings.runtime, with a lazy stream simulator on host memory."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self):
        super().__init__("cuda.bindings.runtime")
        self.buffers, self.streams, self.log = {}, {}, []
        self.freed, self.graph_launches, self.lock = [], 0, threading.RLock()
        self.kinds = {}

    ok = property(lambda self: self.cudaError_t.cudaSuccess)

    def _alloc(self, n, kind):
        buf = (ctypes.c_uint8 * int(n))()
        ctypes.memset(buf, 0xFF, int(n))   # garbage, so that reading unwritten memory shows
        addr = ctypes.addressof(buf)
        self.buffers[addr], self.kinds[addr] = buf, kind
        return addr

    def cudaSetDevice(self, d):
        return (self.ok,)

    def cudaGetDeviceProperties(self, d):
        return (self.ok, types.SimpleNamespace(name=b"Fake GPU 9000\0\0", major=9, minor=0))

    def cudaGetErrorName(self, err):
        return (self.ok, b"cudaErrorFake")

    def cudaMallocHost(self, n):
        return (self.ok, self._alloc(n, "host"))

    def cudaMalloc(self, n):
        return (self.ok, self._alloc(n, "device"))

    def cudaFree(self, p):
        assert self.kinds.pop(p) == "device"
        self.freed.append(self.buffers.pop(p))
        return (self.ok,)

    def cudaFreeHost(self, p):
        assert self.kinds.pop(p) == "host"
        self.freed.append(self.buffers.pop(p))
        return (self.ok,)

    def cudaStreamCreate(self):
        with self.lock:
            s = _Stream(self, 1000 + len(self.streams))
            self.streams[s.ident] = s
        return (self.ok, s)

    def cudaStreamDestroy(self, s):
        assert not s.queue
        return (self.ok,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        want = {self.cudaMemcpyKind.cudaMemcpyHostToDevice: ("device", "host"),
                self.cudaMemcpyKind.cudaMemcpyDeviceToHost: ("host", "device")}[kind]
        assert (self.kinds[dst], self.kinds[src]) == want, "copy direction does not match the buffers"
        stream.push(lambda: ctypes.memmove(dst, src, n), f"memcpy {kind.name}")
        return (self.ok,)

    def cudaEventCreate(self):
        return (self.ok, _Event())

    def cudaEventDestroy(self, e):
        return (self.ok,)

    def cudaEventRecord(self, ev, stream):
        ev.stream = stream
        ev.op = stream.push(lambda: None, "record")
        return (self.ok,)

    def _wait(self, ev):
        if ev.op is not None and not ev.op.done:
            ev.stream.flush_until(ev.op)
            assert ev.op.done

    def cudaStreamWaitEvent(self, stream, ev, flags):
        op = ev.op
        stream.push(lambda: self._wait_op(ev, op), "wait")
        return (self.ok,)

    def _wait_op(self, ev, op):
        if op is not None and not op.done:
            ev.stream.flush_until(op)

    def cudaEventSynchronize(self, ev):
        with self.lock:
            self._wait(ev)
        return (self.ok,)

    def cudaStreamSynchronize(self, stream):
        with self.lock:
            stream.flush_until()
        return (self.ok,)

    def cudaStreamBeginCapture(self, stream, mode):
        assert stream.capture is None and not stream.queue
        stream.capture = []
        return (self.ok,)

    def cudaStreamEndCapture(self, stream):
        graph, stream.capture = stream.capture, None
        return (self.ok, graph)

    def cudaGraphInstantiate(self, graph, flags):
        return (self.ok, list(graph))

    def cudaGraphLaunch(self, exec_, stream):
        self.graph_launches += 1
        for op in exec_:
            stream.push(op.fn, "graph:" + op.desc)
        return (self.ok,)

    def cudaGraphDestroy(self, g):
        return (self.ok,)

    def cudaGraphExecDestroy(self, g):
        return (self.ok,)


def _fake_tensorrt(cudart, version="10.99.0.1"):
    """Stand-in tensorrt: an "engine" is serialized ONNX, executed with onnxruntime at stream time."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.built = []                          # what each build was asked for

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        TF32 = 7

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    def nptype(dt):
        return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dt]

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.calls = engine, {}, 0

        def set_tensor_address(self, name, ptr):
            assert name in (engine_names := (self.engine.in_name, self.engine.out_name)), engine_names
            self.addr[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle):
            stream = cudart.streams[int(stream_handle)]
            e = self.engine
            src, dst = self.addr[e.in_name], self.addr[e.out_name]     # addresses fixed at enqueue
            assert cudart.kinds[src] == cudart.kinds[dst] == "device"
            self.calls += 1

            def compute():
                x = np.frombuffer(cudart.buffers[src], dtype=np.float32).reshape(e.in_shape).copy()
                y = e.sess.run(None, {e.in_name: x})[0]
                ctypes.memmove(dst, np.ascontiguousarray(y, dtype=np.float32).ctypes.data, y.nbytes)

            stream.push(compute, "engine")
            return True

    class Engine:
        def __init__(self, blob):
            m = onnx.load_from_string(blob)
            self.sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            self.in_name, self.out_name = m.graph.input[0].name, m.graph.output[0].name
            self.in_shape = tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim)
            self.out_shape = tuple(d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim)
            self.num_io_tensors = 2
            self.contexts = []

        def get_tensor_name(self, i):
            return (self.in_name, self.out_name)[i]

        def get_tensor_mode(self, n):
            return TensorIOMode.INPUT if n == self.in_name else TensorIOMode.OUTPUT

        def get_tensor_shape(self, n):
            return self.in_shape if n == self.in_name else self.out_shape

        def get_tensor_dtype(self, n):
            return DataType.FLOAT

        def create_execution_context(self):
            c = Context(self)
            self.contexts.append(c)
            return c

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, blob):
            try:
                return Engine(bytes(blob))
            except Exception:  # noqa: BLE001
                self.logger.log(Severity.ERROR, "Serialization assertion failed: magic tag does not match")
                return None

    class Cache:
        def __init__(self, data):
            self.data = bytes(data) + b"+"

        def serialize(self):
            return self.data

    class Config:
        def __init__(self):
            self.flags, self.pool, self.cache = {BuilderFlag.TF32}, {}, None

        def set_memory_pool_limit(self, kind, n):
            self.pool[kind] = n

        def set_flag(self, f):
            self.flags.add(f)

        def clear_flag(self, f):
            self.flags.discard(f)

        def create_timing_cache(self, data):
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Network:
        def __init__(self, flags):
            self.flags, self.onnx = flags, None

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            trt.built.append({"flags": network.flags, "config_flags": set(config.flags), "pool": dict(config.pool),
                              "onnx": network.onnx})
            return network.onnx

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, blob):
            onnx.checker.check_model(onnx.load_from_string(blob))
            self.network.onnx = bytes(blob)
            return True

        def get_error(self, i):
            return "none"

    for obj in (ILogger, TensorIOMode, DataType, NetworkDefinitionCreationFlag, BuilderFlag, MemoryPoolType,
                Runtime, Builder, OnnxParser, nptype):
        setattr(trt, obj.__name__, obj)
    trt.Logger = ILogger
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install the stand-ins and (re)import the modules that bind them at import time."""
    cudart = _FakeCudart()
    trt = _fake_tensorrt(cudart)
    cuda_pkg, bindings_pkg = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings_pkg.runtime = cudart
    cuda_pkg.bindings = bindings_pkg
    for name, mod in {"tensorrt": trt, "cuda": cuda_pkg, "cuda.bindings": bindings_pkg,
                      "cuda.bindings.runtime": cudart}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for name in ("unet_rt.backends.tensorrt.runtime", "unet_rt.backends.tensorrt.build"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    build = importlib.import_module("unet_rt.backends.tensorrt.build")
    runtime = importlib.import_module("unet_rt.backends.tensorrt.runtime")
    yield types.SimpleNamespace(cudart=cudart, trt=trt, build=build, runtime=runtime)
    for name in ("unet_rt.backends.tensorrt.runtime", "unet_rt.backends.tensorrt.build"):
        sys.modules.pop(name, None)


def _ref_logits(mf, tile, x):
    sess = ort.InferenceSession(export_onnx(mf, tile).SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_plumbing_compile_and_run(fake_gpu, tmp_path):
    g = fake_gpu
    src = _weights(ARCH)
    tile = _tile(ARCH, 1)
    out = geometry.output_size(tile, 2)
    cache = tmp_path / "timing.cache"
    path = tmp_path / "m_trt.plan"
    mf = g.build.compile_model(src, tile, path, precision="fp32", workspace_mb=64, timing_cache=cache)
    assert model_file.detect_kind(path) == "tensorrt"
    meta = model_file.load(path).extra["tensorrt"]
    assert (meta["gpu"], meta["compute_capability"], meta["version"]) == ("Fake GPU 9000", [9, 0], "10.99.0.1")
    b = g.trt.built[-1]
    assert b["flags"] == 1 << 1 and b["pool"] == {0: 64 << 20}      # STRONGLY_TYPED on TRT 10; workspace in bytes
    assert g.trt.BuilderFlag.TF32 not in b["config_flags"]          # fp32 means fp32, not TF32
    assert cache.read_bytes() == b"+"                               # new cache written after the build
    g.build.compile_model(src, tile, path, precision="fp32", timing_cache=cache)
    assert cache.read_bytes() == b"++"                              # ... and read back on the rebuild
    assert mf.extra["tensorrt"]["tile_out"] == out

    runner = g.runtime.TensorRTRunner(path)
    assert runner.info.normalization == src.normalization and runner.info.halo == (tile - out) // 2
    fn = runner.make_tile_fn()
    rng = np.random.default_rng(0)
    tiles = [rng.standard_normal((1, tile, tile)).astype(np.float32) for _ in range(5)]
    ref = [_ref_logits(src, tile, t[None])[0] for t in tiles]
    for t, r in zip(tiles, ref):
        y = fn(t)
        assert y.dtype == np.float32 and y.shape == (2, out, out)
        np.testing.assert_array_equal(y, r)         # same graph, same onnxruntime: bit-identical
    # the pipelined path returns every tile's own result, in order
    got = list(runner.run_many(t[None] for t in tiles))
    assert len(got) == 5
    for y, r in zip(got, ref):
        np.testing.assert_array_equal(y[0], r)
    with pytest.raises(ValueError, match="shape"):
        fn(tiles[0][:, :-1])
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, tile, tile), np.float32))
    runner.close()
    assert not g.cudart.kinds        # every host and device buffer freed


def test_plumbing_fp16_builds_from_the_fp16_graph(fake_gpu, tmp_path):
    g = fake_gpu
    src = _weights(ARCH)
    tile = _tile(ARCH, 1)
    g.build.compile_model(src, tile, tmp_path / "h.plan", precision="fp16")
    b = g.trt.built[-1]
    m = onnx.load_from_string(b["onnx"])
    assert {i.data_type for i in m.graph.initializer} - {onnx.TensorProto.INT64} == {onnx.TensorProto.FLOAT16}
    assert b["flags"] == 1 << 1 and g.trt.BuilderFlag.FP16 not in b["config_flags"]
    g.build.compile_model(src, tile, tmp_path / "w.plan", precision="fp16", weak_fp16=True)   # TRT 10 only
    b = g.trt.built[-1]
    assert g.trt.BuilderFlag.FP16 in b["config_flags"] and b["flags"] == 0
    assert {i.data_type for i in onnx.load_from_string(b["onnx"]).graph.initializer} - {7} == {1}
    assert model_file.load(tmp_path / "h.plan").extra["tensorrt"]["precision"] == "fp16"


def test_plumbing_tensorrt11_rules(fake_gpu, tmp_path):
    g = fake_gpu
    g.trt.__version__ = "11.4.0.106"
    src = _weights(ARCH)
    tile = _tile(ARCH, 1)
    g.build.compile_model(src, tile, tmp_path / "h.plan", precision="fp16")
    assert g.trt.built[-1]["flags"] == 0          # TRT 11: strongly typed always; no deprecated flag
    with pytest.raises(RuntimeError, match="removed BuilderFlag.FP16"):
        g.build.compile_model(src, tile, tmp_path / "w.plan", precision="fp16", weak_fp16=True)
    assert not (tmp_path / "w.plan").exists()


def test_plumbing_refuses_foreign_plans(fake_gpu, tmp_path):
    g = fake_gpu
    src = _weights(ARCH)
    tile = _tile(ARCH, 1)
    path = tmp_path / "m.plan"
    g.build.compile_model(src, tile, path)
    g.trt.__version__ = "10.99.0.2"
    with pytest.raises(PlanMismatchError, match="10.99.0.1"):
        g.runtime.TensorRTRunner(path)
    g.trt.__version__ = "10.99.0.1"
    mf = model_file.load(path)
    mf.extra["tensorrt"]["gpu"] = "Other GPU"
    with pytest.raises(PlanMismatchError, match="exact GPU model"):
        g.runtime.TensorRTRunner(mf)
    with pytest.warns(UserWarning, match="Other GPU"):
        g.runtime.TensorRTRunner(mf, allow_other_gpu=True).close()
    # a corrupt engine inside a well-formed container: TensorRT's refusal is reported
    mf = model_file.load(path)
    mf.tensors["engine"] = np.frombuffer(b"not an engine", np.uint8)
    with pytest.raises(RuntimeError, match="could not deserialize"):
        g.runtime.TensorRTRunner(mf)
    with pytest.raises(ValueError, match="not a TensorRT plan"):
        g.runtime.TensorRTRunner(src)


def test_plumbing_bare_plan_threads_and_cuda_graphs(fake_gpu, tmp_path):
    """A bare plan (geometry from I/O shapes), one context per thread, CUDA-graph replay."""
    g = fake_gpu
    src = _weights(ARCH3)
    tile = _tile(ARCH3, 1)
    m = export_onnx(src, tile)
    # what model_file.load returns for a bare plan (test_bare_plan covers the detection); the
    # stand-in engine's bytes are ONNX, which do not start with TensorRT's tag, so build it here
    bare_mf = ModelFile("tensorrt-bare", {}, {}, [], {"engine": np.frombuffer(m.SerializeToString(), np.uint8)})
    norm = {"mean": [1.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0]}
    fn = g.runtime.make_tile_fn(bare_mf, normalization=norm, cuda_graph=True)
    runner = fn.runner
    assert fn.info is runner.info and (fn.tile_in, fn.tile_out) == (tile, tile)
    assert (runner.info.padding, runner.info.tile_out, runner.info.in_channels, runner.info.classes) == \
        ("same", tile, 3, 3)
    assert runner.info.normalization == norm
    rng = np.random.default_rng(1)
    tiles = [rng.standard_normal((3, tile, tile)).astype(np.float32) for _ in range(8)]
    ref = [_ref_logits(src, tile, t[None])[0] for t in tiles]
    results = {}

    def work(idx):
        for i in idx:
            results[i] = fn(tiles[i])

    threads = [threading.Thread(target=work, args=(range(j, 8, 2),)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))
    for i in range(8):
        np.testing.assert_array_equal(results[i], ref[i])
    engine = runner.engine
    assert len(engine.contexts) == 2                       # one execution context per thread
    # each context captured its graph once (1 warm-up enqueue + 1 captured), then replayed it
    assert sorted(c.calls for c in engine.contexts) == [2, 2]
    assert g.cudart.graph_launches == 8
    got = list(runner.run_many(t[None] for t in tiles))    # pipelined, with graphs on both slots
    for y, r in zip(got, ref):
        np.testing.assert_array_equal(y[0], r)
    runner.close()
    assert not g.cudart.kinds


def test_plumbing_overlap_order(fake_gpu, tmp_path):
    """run_many issues tile i+1's upload before waiting for tile i's result (copy/compute overlap)."""
    g = fake_gpu
    src = _weights(ARCH)
    tile = _tile(ARCH, 1)
    g.build.compile_model(src, tile, tmp_path / "m.plan")
    runner = g.runtime.TensorRTRunner(tmp_path / "m.plan")
    tiles = [np.full((1, 1, tile, tile), i, np.float32) for i in range(4)]
    in_flight_at_first_result = None
    outs = []
    for n, y in enumerate(runner.run_many(iter(tiles))):
        if n == 0:
            st = runner._local.state
            in_flight_at_first_result = [s.busy for s in st.slots]
        outs.append(y)
    # when tile 0's result was handed out, tile 1 (slot 1) had already been issued
    assert in_flight_at_first_result == [False, True]
    ref = [_ref_logits(src, tile, t) for t in tiles]
    for y, r in zip(outs, ref):
        np.testing.assert_array_equal(y, r)
    # abandoning the generator mid-way waits for the work in flight and leaves the runner usable
    gen = runner.run_many(iter(tiles))
    next(gen)
    gen.close()
    assert not any(s.busy for s in runner._local.state.slots)
    np.testing.assert_array_equal(runner.run(tiles[3]), ref[3])
    runner.close()


# --------------------------------------------------------------------------------------------
# 6. real TensorRT (GPU machines only)
# --------------------------------------------------------------------------------------------
def _real_trt():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'unet-rt[tensorrt]' on a GPU machine)")
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    from cuda.bindings import runtime as cudart

    err, n = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or n < 1:
        pytest.skip("no CUDA GPU")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_tensorrt_matches_onnxruntime(tmp_path, precision):
    _real_trt()
    from unet_rt.backends.tensorrt import TensorRTRunner, compile_model

    src = _weights({"in_channels": 1, "classes": 2, "depth": 4, "base": 16, "padding": "valid"})
    path = tmp_path / "m.plan"
    compile_model(src, 572, path, precision=precision, timing_cache=tmp_path / "tc")
    x = np.random.default_rng(0).standard_normal((1, 1, 572, 572)).astype(np.float32)
    ref = _ref_logits(src, 572, x)
    with TensorRTRunner(path) as r:
        y = r.run(x)
        y2 = r.make_tile_fn()(x[0])
    err = np.abs(y - ref).max() / np.abs(ref).max()
    # fp32 with TF32 off: ~1e-5 (fp32 accumulation order); fp16: same bound as the ONNX fp16 tests
    # (2 * 23 layers * 2^-11 = 2.2e-2)
    assert err <= (1e-4 if precision == "fp32" else 2 * 23 * 2.0**-11), err
    np.testing.assert_array_equal(y[0], y2)
