"""Build a TensorRT engine from the fixed-tile ONNX export and store it in a unet-rt container.

Needs TensorRT (``pip install 'unet-rt[tensorrt]'``) and a GPU. NOT YET RUN ON A GPU: written
against TensorRT's documented Python API for versions 10 and 11 (see README.md in this folder).

Precision:
- ``fp32``: the fp32 ONNX. TF32 tensor-core math is switched off unless ``tf32=True`` (TensorRT
  enables it by default on Ampere and later, which would cost fp32 parity ~1e-3).
- ``fp16``: the fp16 ONNX (fp16 weights and activations, fp32 I/O, ``onnx_export`` dtype="float16").
  TensorRT 11 networks are always strongly typed (its FP16 builder flag was removed), so the
  precision must be in the graph; on TensorRT 10 the same graph is parsed into a network created
  with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, giving the same numerics on both versions.
  ``weak_fp16=True`` (TensorRT 10 only) instead parses the fp32 ONNX and sets ``BuilderFlag.FP16``,
  letting TensorRT pick a precision per layer.
"""
from __future__ import annotations

import os
from pathlib import Path

from unet_rt.format.model_file import ModelFile, atomic_write, save
from unet_rt.backends.tensorrt._deps import cuda_call, import_cudart, import_tensorrt
from unet_rt.backends.tensorrt.container import PRECISIONS, make_container

__all__ = ["build_engine", "compile_model", "device_info"]

trt = import_tensorrt()


class _Logger(trt.ILogger):
    """Keeps TensorRT's warnings and errors so that a failed build can say why."""

    def __init__(self, min_severity=None):
        trt.ILogger.__init__(self)
        self.min = min_severity if min_severity is not None else trt.ILogger.Severity.WARNING
        self.messages: list[str] = []

    def log(self, severity, msg):  # called by TensorRT
        if int(severity) <= int(self.min):
            self.messages.append(f"[{severity.name if hasattr(severity, 'name') else severity}] {msg}")


def _major() -> int:
    return int(str(trt.__version__).split(".")[0])


def device_info(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, (major, minor) compute capability) of a CUDA device, via cuda-python."""
    cudart = import_cudart()
    cuda_call(cudart, cudart.cudaSetDevice(device), f"cudaSetDevice({device}) (is there an NVIDIA GPU and driver?)")
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip(), (int(prop.major), int(prop.minor))


def build_engine(onnx_bytes: bytes, *, strongly_typed: bool = True, fp16_flag: bool = False, tf32: bool = False,
                 workspace_mb: int | None = None, timing_cache: str | os.PathLike | None = None,
                 verbose: bool = False) -> bytes:
    """Serialized engine for an ONNX graph with static shapes. Raises RuntimeError with TensorRT's log."""
    logger = _Logger(trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING)
    builder = trt.Builder(logger)
    major = _major()
    if fp16_flag and major >= 11:
        raise RuntimeError("TensorRT 11 removed BuilderFlag.FP16 (networks are strongly typed): "
                           "build fp16 from the fp16 ONNX instead (the default)")
    flags = 0
    if strongly_typed and major == 10:
        # TensorRT 10: opt in; TensorRT 11: always strongly typed (the flag is deprecated and ignored).
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError("TensorRT's ONNX parser rejected the graph:\n  " + "\n  ".join(errs + logger.messages))
    config = builder.create_builder_config()
    if workspace_mb is not None:
        if workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    # ignore_mismatch=False: a cache from another GPU / TensorRT version is not merged
    if not config.set_timing_cache(cache, False):
        logger.messages.append("[WARNING] timing cache not usable (other GPU or TensorRT version): starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build the engine:\n  " + "\n  ".join(logger.messages[-30:]))
    if cache_path is not None:
        atomic_write(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


def compile_model(model_file: ModelFile, tile: int, out_path, *, precision: str = "fp32", batch: int = 1,
                  workspace_mb: int | None = None, timing_cache=None, tf32: bool = False, weak_fp16: bool = False,
                  device: int = 0, verbose: bool = False) -> ModelFile:
    """Export ``model_file`` (kind "weights") to ONNX for ``tile``, build the engine, save the container.

    The output file is written atomically: on any failure nothing is left at ``out_path``.
    """
    from unet_rt.export.onnx import export_onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if weak_fp16 and precision != "fp16":
        raise ValueError("weak_fp16 only applies to precision='fp16'")
    gpu, cc = device_info(device)
    onnx_dtype = "float16" if precision == "fp16" and not weak_fp16 else "float32"
    model = export_onnx(model_file, tile, dtype=onnx_dtype, batch=batch)
    engine = build_engine(model.SerializeToString(), strongly_typed=not weak_fp16, fp16_flag=weak_fp16,
                          tf32=tf32, workspace_mb=workspace_mb, timing_cache=timing_cache, verbose=verbose)
    mf = make_container(model_file, engine, tile_in=tile, precision=precision, version=trt.__version__,
                        gpu=gpu, compute_capability=cc, batch=batch)
    save(out_path, mf)
    return mf
