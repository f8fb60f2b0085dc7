"""Scale-out with dask: lazy ``predict`` / ``segment`` / ``instances`` over blocks of huge images,
bit for bit the whole-image Engine's results (``pip install 'unet-rt[dask]'``; docs/dask.md)."""
import warnings

from unet_rt.scale.blocks import BlockGrid, block_grid, instances, predict, segment
from unet_rt.scale.blocks import block_plan  # noqa: F401  (deprecated alias of block_grid; warns when called)

__all__ = ["segment", "predict", "instances", "block_grid", "BlockGrid"]


def __getattr__(name: str):
    if name == "BlockPlan":  # deprecated alias of BlockGrid
        warnings.warn("unet_rt.scale.BlockPlan is deprecated: use BlockGrid", DeprecationWarning, stacklevel=2)
        return BlockGrid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
