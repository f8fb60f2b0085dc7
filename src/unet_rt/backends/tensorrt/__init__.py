"""TensorRT backend of unet-rt (optional extra: ``pip install 'unet-rt[tensorrt]'``).

Nothing else in ``unet_rt`` imports this package. Importing it is cheap and never needs TensorRT,
so that its pure parts (``plan``: container metadata, compatibility checks) and the ``compile``
command's ``--target onnx`` work everywhere; the parts that need TensorRT are reached lazily::

    from unet_rt.backends.tensorrt import TensorRTRunner, make_tile_fn, compile_model, build_engine

and raise an ``ImportError`` that says how to install TensorRT when it is missing. (A package
whose ``__init__`` raised could not hold the CLI module: Python imports the package first.)
``require()`` raises that same ImportError up front; ``available()`` just tells.
"""
from __future__ import annotations

from unet_rt.backends.tensorrt._deps import INSTALL_HINT, import_tensorrt, tensorrt_available
from unet_rt.backends.tensorrt.container import PlanInfo, PlanMismatchError, check_compat, geometry_from_io_shapes

__all__ = ["available", "require", "INSTALL_HINT", "PlanInfo", "PlanMismatchError", "check_compat",
           "geometry_from_io_shapes", "TensorRTRunner", "make_tile_fn", "compile_model", "build_engine"]

_LAZY = {"TensorRTRunner": "runtime", "make_tile_fn": "runtime", "compile_model": "build",
         "build_engine": "build", "device_info": "build"}


def available() -> bool:
    """True if the ``tensorrt`` Python package can be imported (a GPU is another matter)."""
    return tensorrt_available()


def require():
    """Import TensorRT now, or raise ImportError with installation instructions."""
    return import_tensorrt()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"unet_rt.backends.tensorrt.{_LAZY[name]}")   # ImportError with the hint
        return getattr(module, name)
    raise AttributeError(f"module 'unet_rt.backends.tensorrt' has no attribute {name!r}")
