"""Imports of the optional GPU dependencies, with errors that say how to install them."""
from __future__ import annotations

INSTALL_HINT = (
    "The TensorRT backend needs NVIDIA's TensorRT Python package and cuda-python: on a machine with an "
    "NVIDIA GPU and driver, run\n"
    "    pip install 'unet-rt[tensorrt]'\n"
    "(TensorRT's wheels are on PyPI as 'tensorrt'; if pip finds none for your platform, follow NVIDIA's "
    "TensorRT installation guide). The CPU backend needs none of this."
)


def import_tensorrt():
    """``import tensorrt`` or an ImportError that says how to install it."""
    try:
        import tensorrt  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(f"TensorRT is not installed ({e}). {INSTALL_HINT}") from e
    return tensorrt


def import_cudart():
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
    except ImportError:
        try:
            from cuda import cudart  # noqa: PLC0415  (cuda-python < 12.6)
        except ImportError as e:
            raise ImportError(f"cuda-python is not installed ({e}). {INSTALL_HINT}") from e
    return cudart


def tensorrt_available() -> bool:
    """True if ``import tensorrt`` would work (without importing it)."""
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("tensorrt") is not None


def cuda_call(cudart, result, what: str):
    """Unpack a cuda-python call's ``(err, *values)`` tuple; raise RuntimeError unless err is cudaSuccess."""
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        try:
            name = cudart.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, (bytes, bytearray)) else str(name)
        except Exception:  # noqa: BLE001  (best effort only: the error itself is what matters)
            name = str(err)
        raise RuntimeError(f"CUDA call {what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values
