"""Shared fixtures of the CPU benchmarks (README: Speed; docs/speed.md): the paper network with random He weights,
its model file, and every runner — ours and the peers — behind one call signature, so that each
benchmark can run them interleaved in one process and report ratios.

Runners take a normalised float32 tile [C, h, w] and return float32 logits [K, oh, ow]:
    ours       unet_rt native executor (csrc/), 2 threads, precision fp32 or bf16
    torch      PyTorch eager fp32 (unet_rt.train.model.UNet), torch.set_num_threads(2)
    ort        ONNX Runtime fp32, default graph optimisations, intra-op threads 2
    ov-default OpenVINO CPU plugin, default config (bf16 inference on CPUs with AVX-512 BF16!)
    ov-f32     OpenVINO CPU plugin with INFERENCE_PRECISION_HINT = f32
Image workloads run every runner through the same overlap-tile grid (see test_cpu.py).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from _workloads import PAPER, THREADS  # noqa: E402


@pytest.fixture(scope="session")
def paper_net():
    """(torch UNet in eval mode, weights dict name -> float32 array); He init, fixed seed."""
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet

    torch.manual_seed(0)
    net = UNet(**{k: PAPER[k] for k in ("in_channels", "classes", "depth", "base", "padding")}).eval()
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return net, weights


@pytest.fixture(scope="session")
def paper_model_file(paper_net, tmp_path_factory):
    from unet_rt.format import model_file

    _, weights = paper_net
    path = tmp_path_factory.mktemp("model") / "paper.plan"
    mf = model_file.ModelFile("weights", dict(PAPER), {"mean": [0.0], "std": [1.0]}, ["background", "cell"], weights,
                              {"source": "bench: random He weights, seed 0"})
    model_file.save(path, mf)
    return path


def _onnx_model(paper_net, model_path, tile: int):
    # >>> SWITCH POINT (ONNX export) <<< helper X's unet_rt.export.onnx.export_onnx(model_file, tile)
    # is the project's exporter (static shapes, no Shape/Gather crops); it is used when present,
    # else torch.onnx.export of the reference model (dynamo=False, static shapes too).
    try:
        from unet_rt.format import model_file
        from unet_rt.export.onnx import export_onnx

        return export_onnx(model_file.load(model_path), tile), "unet_rt.export.onnx"
    except ImportError:
        pass
    import io

    import onnx
    import torch

    net, _ = paper_net
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, PAPER["in_channels"], tile, tile), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])
    return onnx.load_from_string(buf.getvalue()), "torch.onnx.export(dynamo=False)"


class Runners:
    """Lazily built per-tile-size runners (ONNX Runtime and OpenVINO need static shapes)."""

    def __init__(self, paper_net, model_path):
        self.paper_net = paper_net
        self.model_path = model_path
        self._onnx: dict[int, bytes] = {}
        self._sessions: dict[tuple[str, int], object] = {}
        self.notes: dict[str, str] = {}
        self._ours: dict = {}

    # -- ours ----------------------------------------------------------------------------------
    def ours(self, precision: str = "fp32"):
        """The executor alone on one tile (the tile572 workload)."""
        if precision not in self._ours:
            from unet_rt import _kernels as K

            _, weights = self.paper_net
            net = K.Network(PAPER, weights, threads=THREADS, precision=precision)
            self._ours[precision] = net
            self.notes[f"ours-{precision}"] = (f"unet_rt native executor, isa {net.isa}, precision {net.precision}, "
                                               f"kernel {net.kernel}, {net.threads} threads")
        net = self._ours[precision]
        return lambda x: net.forward(x)

    # -- peers ---------------------------------------------------------------------------------
    def torch(self):
        import torch

        torch.set_num_threads(THREADS)
        net, _ = self.paper_net
        self.notes["torch"] = f"torch {torch.__version__} eager fp32, {torch.get_num_threads()} threads"

        def run(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)[None])[0].numpy()
        return run

    def onnx_bytes(self, tile: int) -> bytes:
        if tile not in self._onnx:
            model, how = _onnx_model(self.paper_net, self.model_path, tile)
            self._onnx[tile] = model.SerializeToString()
            self.notes["onnx"] = how
        return self._onnx[tile]

    def ort(self, tile: int):
        ort = pytest.importorskip("onnxruntime")
        key = ("ort", tile)
        if key not in self._sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = THREADS
            self._sessions[key] = ort.InferenceSession(self.onnx_bytes(tile), so, providers=["CPUExecutionProvider"])
            self.notes["ort"] = (f"onnxruntime {ort.__version__} fp32, default optimisations, {THREADS} threads"
                                 + (" (no ISA cap: its MLAS kernels use the best this CPU has)"
                                    if os.environ.get("UNET_RT_ISA") else ""))
        s = self._sessions[key]
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x[None]})[0][0]

    def openvino(self, tile: int, f32: bool):
        ov = pytest.importorskip("openvino")
        tag = "ov-f32" if f32 else "ov-default"
        key = (tag, tile)
        if key not in self._sessions:
            import tempfile

            core = ov.Core()
            with tempfile.TemporaryDirectory() as d:   # OpenVINO reads ONNX from a file
                path = os.path.join(d, f"unet{tile}.onnx")
                with open(path, "wb") as f:
                    f.write(self.onnx_bytes(tile))
                model = core.read_model(path)
            cfg = {"INFERENCE_NUM_THREADS": THREADS}
            if f32:
                cfg["INFERENCE_PRECISION_HINT"] = "f32"
            compiled = core.compile_model(model, "CPU", cfg)
            prec = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            cap = os.environ.get("ONEDNN_MAX_CPU_ISA")  # OpenVINO's CPU plugin honours oneDNN's ISA cap
            self.notes[tag] = (f"openvino {ov.__version__}, inference precision {prec}, {THREADS} threads"
                               + (f", ONEDNN_MAX_CPU_ISA={cap}" if cap else ""))
            self._sessions[key] = compiled
        compiled = self._sessions[key]
        req = compiled.create_infer_request()

        def run(x):
            return np.array(req.infer({0: x[None]})[compiled.output(0)][0], copy=True)
        return run

    def drop(self, tile: int):
        for key in [k for k in self._sessions if k[1] == tile]:
            del self._sessions[key]
        self._onnx.pop(tile, None)


@pytest.fixture(scope="session")
def runners(paper_net, paper_model_file):
    return Runners(paper_net, paper_model_file)


@pytest.fixture(scope="session")
def rounds():
    """Interleaved rounds per workload: UNET_RT_BENCH_ROUNDS (default 3; the 2048 image uses 1/3 of it)."""
    return max(1, int(os.environ.get("UNET_RT_BENCH_ROUNDS", "3")))
