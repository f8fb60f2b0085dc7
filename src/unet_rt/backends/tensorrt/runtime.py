"""Run a TensorRT plan on tiles: the TensorRT backend's per-tile function.

Needs TensorRT and cuda-python (``pip install 'unet-rt[tensorrt]'``) and an NVIDIA GPU.
NOT YET RUN ON A GPU (see README.md in this folder); its CUDA plumbing is exercised on the CPU by
tests/test_tensorrt.py with stand-in ``tensorrt``/``cudart`` modules, which checks our buffer,
stream and shape logic, not TensorRT.

CUDA runtime: cuda-python's ``cuda.bindings.runtime`` (no torch). Per runner:

- the engine is deserialized once (after ``plan.check_compat`` accepted the container's version and
  GPU metadata; a bare plan is checked by TensorRT itself, which refuses a foreign one);
- each thread that calls it gets its own execution context, CUDA streams, pinned host buffers and
  device buffers (``threading.local``), so several threads can feed one GPU;
- ``run`` copies a tile to the device, enqueues the engine and copies the logits back, all
  asynchronously on the thread's stream, then waits once;
- ``run_many`` pipelines a stream of tiles over two buffer slots and three streams (host->device,
  compute, device->host): the upload of tile i+1 and the download of tile i-1 overlap the
  computation of tile i;
- ``cuda_graph=True`` captures the engine's launch once per buffer slot (after one warm-up
  enqueue, as TensorRT requires) and replays the graph instead of enqueueing.

The plug into the shared overlap-tile code is ``make_tile_fn``: ``fn(tile [C, t, t] float32) ->
logits [K, o, o] float32`` on normalised input.
"""
from __future__ import annotations

import ctypes
import threading
import warnings
from pathlib import Path

import numpy as np

from unet_rt.format import model_file as _mf
from unet_rt.backends.tensorrt._deps import cuda_call, import_cudart, import_tensorrt
from unet_rt.backends.tensorrt.container import PlanInfo, check_compat, plan_info

__all__ = ["TensorRTRunner", "make_tile_fn"]

trt = import_tensorrt()
cudart = import_cudart()


def _ck(result, what):
    return cuda_call(cudart, result, what)


class _Logger(trt.ILogger):
    def __init__(self):
        trt.ILogger.__init__(self)
        self.messages: list[str] = []

    def log(self, severity, msg):
        if int(severity) <= int(trt.ILogger.Severity.WARNING):
            self.messages.append(str(msg))


def _pinned_view(ptr: int, shape, dtype) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = (ctypes.c_uint8 * nbytes).from_address(int(ptr))
    return np.frombuffer(buf, dtype=np.uint8).view(dtype).reshape(shape)


class _Slot:
    """One set of buffers: pinned host in/out, device in/out, and (optionally) a captured graph."""

    def __init__(self, in_shape, in_dtype, out_shape, out_dtype):
        self.in_bytes = int(np.prod(in_shape)) * np.dtype(in_dtype).itemsize
        self.out_bytes = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
        self.h_in = _ck(cudart.cudaMallocHost(self.in_bytes), "cudaMallocHost")
        self.h_out = _ck(cudart.cudaMallocHost(self.out_bytes), "cudaMallocHost")
        self.d_in = _ck(cudart.cudaMalloc(self.in_bytes), "cudaMalloc")
        self.d_out = _ck(cudart.cudaMalloc(self.out_bytes), "cudaMalloc")
        self.host_in = _pinned_view(self.h_in, in_shape, in_dtype)
        self.host_out = _pinned_view(self.h_out, out_shape, out_dtype)
        self.in_ready = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.computed = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.out_ready = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.graph = None
        self.graph_exec = None
        self.busy = False           # work issued whose result has not been collected

    def free(self):
        if self.graph_exec is not None:
            cudart.cudaGraphExecDestroy(self.graph_exec)
        if self.graph is not None:
            cudart.cudaGraphDestroy(self.graph)
        for ev in (self.in_ready, self.computed, self.out_ready):
            cudart.cudaEventDestroy(ev)
        cudart.cudaFree(self.d_in)
        cudart.cudaFree(self.d_out)
        self.host_in = self.host_out = None
        cudart.cudaFreeHost(self.h_in)
        cudart.cudaFreeHost(self.h_out)


class _ThreadState:
    """A thread's execution context, streams and two buffer slots."""

    def __init__(self, runner: "TensorRTRunner"):
        _ck(cudart.cudaSetDevice(runner.device), "cudaSetDevice")
        self.context = runner.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self.h2d = _ck(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.compute = _ck(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.d2h = _ck(cudart.cudaStreamCreate(), "cudaStreamCreate")
        r = runner
        self.slots = [_Slot(r.in_shape, r.in_dtype, r.out_shape, r.out_dtype) for _ in range(2)]
        self.cuda_graph = runner.cuda_graph
        self.in_name, self.out_name = runner.in_name, runner.out_name

    def _bind(self, slot: _Slot):
        if not self.context.set_tensor_address(self.in_name, int(slot.d_in)):
            raise RuntimeError(f"TensorRT refused the address of input {self.in_name!r}")
        if not self.context.set_tensor_address(self.out_name, int(slot.d_out)):
            raise RuntimeError(f"TensorRT refused the address of output {self.out_name!r}")

    def _enqueue(self, slot: _Slot):
        """Run the engine on slot's device buffers, on the compute stream."""
        if self.cuda_graph:
            if slot.graph_exec is None:
                self._bind(slot)
                # TensorRT: enqueue once before capturing, so that lazy set-up is not captured
                if not self.context.execute_async_v3(int(self.compute)):
                    raise RuntimeError("TensorRT execution failed")
                _ck(cudart.cudaStreamSynchronize(self.compute), "cudaStreamSynchronize")
                mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
                _ck(cudart.cudaStreamBeginCapture(self.compute, mode), "cudaStreamBeginCapture")
                ok = self.context.execute_async_v3(int(self.compute))
                slot.graph = _ck(cudart.cudaStreamEndCapture(self.compute), "cudaStreamEndCapture")
                if not ok:
                    raise RuntimeError("TensorRT execution failed during CUDA-graph capture")
                slot.graph_exec = _ck(cudart.cudaGraphInstantiate(slot.graph, 0), "cudaGraphInstantiate")
            _ck(cudart.cudaGraphLaunch(slot.graph_exec, self.compute), "cudaGraphLaunch")
        else:
            self._bind(slot)
            if not self.context.execute_async_v3(int(self.compute)):
                raise RuntimeError("TensorRT execution failed")

    def issue(self, slot: _Slot):
        """Upload slot.host_in, compute, download into slot.host_out: all asynchronous."""
        _ck(cudart.cudaMemcpyAsync(slot.d_in, slot.h_in, slot.in_bytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.h2d), "cudaMemcpyAsync H2D")
        _ck(cudart.cudaEventRecord(slot.in_ready, self.h2d), "cudaEventRecord")
        _ck(cudart.cudaStreamWaitEvent(self.compute, slot.in_ready, 0), "cudaStreamWaitEvent")
        self._enqueue(slot)
        _ck(cudart.cudaEventRecord(slot.computed, self.compute), "cudaEventRecord")
        _ck(cudart.cudaStreamWaitEvent(self.d2h, slot.computed, 0), "cudaStreamWaitEvent")
        _ck(cudart.cudaMemcpyAsync(slot.h_out, slot.d_out, slot.out_bytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.d2h), "cudaMemcpyAsync D2H")
        _ck(cudart.cudaEventRecord(slot.out_ready, self.d2h), "cudaEventRecord")
        slot.busy = True

    def collect(self, slot: _Slot) -> np.ndarray:
        _ck(cudart.cudaEventSynchronize(slot.out_ready), "cudaEventSynchronize")
        slot.busy = False
        return slot.host_out.copy()

    def free(self):
        for s in (self.h2d, self.compute, self.d2h):
            cudart.cudaStreamSynchronize(s)
        for slot in self.slots:
            slot.free()
        for s in (self.h2d, self.compute, self.d2h):
            cudart.cudaStreamDestroy(s)
        self.context = None


class TensorRTRunner:
    """A deserialized TensorRT plan, ready to run tiles from any number of threads.

    ``source``: a path (unet-rt container of kind "tensorrt", or a bare plan from trtexec) or a
    loaded ``ModelFile``. For a bare plan give ``normalization`` (else the identity, with a warning)
    and optionally ``class_names``.
    """

    def __init__(self, source, *, normalization: dict | None = None, class_names: list | None = None,
                 device: int = 0, cuda_graph: bool = False, allow_other_gpu: bool = False):
        from unet_rt.backends.tensorrt.build import device_info

        mf = source if isinstance(source, _mf.ModelFile) else _mf.load(Path(source))
        if mf.kind not in ("tensorrt", "tensorrt-bare"):
            raise ValueError(f"{source}: a {mf.kind!r} model file, not a TensorRT plan "
                             f"(compile one with: unet-rt compile MODEL --target tensorrt -o model.plan --tile N)")
        self.device, self.cuda_graph = int(device), bool(cuda_graph)
        gpu, cc = device_info(self.device)
        self.notes: list[str] = []
        if mf.kind == "tensorrt":
            self.notes = check_compat(mf.extra.get("tensorrt", {}), trt.__version__, gpu, cc,
                                      allow_other_gpu=allow_other_gpu)
            for n in self.notes:
                warnings.warn(n, UserWarning, stacklevel=2)
        self._logger = _Logger()
        self._runtime = trt.Runtime(self._logger)
        blob = mf.tensors["engine"]
        self.engine = self._runtime.deserialize_cuda_engine(np.ascontiguousarray(blob, dtype=np.uint8).tobytes())
        if self.engine is None:
            why = "; ".join(self._logger.messages[-5:]) or "no message"
            raise RuntimeError(f"TensorRT {trt.__version__} could not deserialize this plan on a {gpu} "
                               f"(was it built by another TensorRT version or for another GPU? rebuild it here): {why}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"a U-Net plan has one input and one output, this one has inputs {ins} and outputs {outs}")
        self.in_name, self.out_name = ins[0], outs[0]
        self.in_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.in_name))
        self.out_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.out_name))
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.in_name)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out_name)))
        if min(self.in_shape + self.out_shape) < 1:
            raise ValueError(f"the plan has dynamic shapes {self.in_shape} -> {self.out_shape}: "
                             f"build it for one fixed tile size")
        self.info: PlanInfo = plan_info(mf, io_shapes=(self.in_shape, self.out_shape, self.in_name, self.out_name),
                                        normalization=normalization, class_names=class_names)
        if mf.kind == "tensorrt":
            i = self.info
            want_in, want_out = (i.batch, i.in_channels, i.tile_in, i.tile_in), (i.batch, i.classes, i.tile_out, i.tile_out)
            if self.in_shape != want_in or self.out_shape != want_out:
                raise _mf.ModelFileError(f"engine I/O shapes {self.in_shape} -> {self.out_shape} disagree with the "
                                         f"file's metadata {want_in} -> {want_out}")
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    # -- per-thread state -------------------------------------------------------------------
    def _state(self) -> _ThreadState:
        st = getattr(self._local, "state", None)
        if st is None:
            if self.engine is None:
                raise RuntimeError("this TensorRT runner is closed")
            st = _ThreadState(self)
            self._local.state = st
            with self._lock:
                self._states.append(st)
        return st

    def _check_batch(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != self.in_shape:
            raise ValueError(f"expected input of shape {self.in_shape}, got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"expected floating-point input, got {x.dtype}")
        return x

    # -- running ----------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch ``x`` of shape ``in_shape`` (normalised): float32 ``out_shape``."""
        x = self._check_batch(x)
        st = self._state()
        slot = st.slots[0]
        if slot.busy:
            st.collect(slot)
        np.copyto(slot.host_in, x, casting="same_kind")
        st.issue(slot)
        return st.collect(slot).astype(np.float32, copy=False)

    def run_many(self, batches):
        """Yield the logits of each batch of an iterable, overlapping copies with computation."""
        st = self._state()
        pending: list[_Slot] = []
        try:
            for i, x in enumerate(batches):
                x = self._check_batch(x)
                slot = st.slots[i % 2]
                if slot.busy:                    # its previous tile (i - 2) is the oldest pending one
                    assert pending[0] is slot
                    yield st.collect(pending.pop(0)).astype(np.float32, copy=False)
                np.copyto(slot.host_in, x, casting="same_kind")
                st.issue(slot)
                pending.append(slot)
            while pending:
                yield st.collect(pending.pop(0)).astype(np.float32, copy=False)
        finally:
            for slot in pending:                 # abandoned generator: wait, so that buffers are reusable
                st.collect(slot)

    def make_tile_fn(self):
        """``fn(tile [C, t, t] float32) -> logits [K, o, o] float32`` for the shared overlap-tile code."""
        b, c, t, _ = self.in_shape
        _, k, o, _ = self.out_shape

        def tile_fn(tile: np.ndarray) -> np.ndarray:
            tile = np.asarray(tile)
            if tile.shape != (c, t, t):
                raise ValueError(f"TensorRT plan expects a tile of shape {(c, t, t)}, got {tile.shape}")
            if b == 1:
                return self.run(tile[None])[0]
            batch = np.zeros(self.in_shape, dtype=np.float32)
            batch[0] = tile
            return self.run(batch)[0]

        tile_fn.tile_in, tile_fn.tile_out = t, o
        tile_fn.info, tile_fn.runner = self.info, self
        return tile_fn

    def close(self):
        with self._lock:
            states, self._states = self._states, []
        for st in states:
            st.free()
        self._local = threading.local()
        self.engine = None

    def __del__(self):
        try:
            if getattr(self, "engine", None) is not None:
                self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown: CUDA may already be gone)
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_tile_fn(source, *, normalization=None, class_names=None, device: int = 0, cuda_graph: bool = False,
                 allow_other_gpu: bool = False):
    """``fn(tile [C, t, t] float32) -> logits [K, o, o] float32`` for a plan (path or ModelFile).

    ``fn.info`` is the plan's ``PlanInfo`` (tile_in/tile_out/halo, depth, padding, normalization,
    class_names): what the overlap-tile code needs besides ``fn``. ``fn.runner`` is the
    ``TensorRTRunner`` behind it (kept alive by the function; ``fn.runner.close()`` frees the GPU).
    """
    runner = TensorRTRunner(source, normalization=normalization, class_names=class_names, device=device,
                            cuda_graph=cuda_graph, allow_other_gpu=allow_other_gpu)
    return runner.make_tile_fn()
