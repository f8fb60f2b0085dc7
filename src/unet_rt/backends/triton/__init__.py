"""Triton GPU backend (issue 4): ``TritonUNet`` and ``make_tile_fn`` (see engine.py, README.md).

Imported only when ``Engine(..., backend="triton")`` is chosen: it needs torch and triton.
"""
from unet_rt.backends.triton.engine import TritonUNet, make_tile_fn

__all__ = ["TritonUNet", "make_tile_fn"]
