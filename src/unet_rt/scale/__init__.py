"""Scale-out with dask: lazy ``predict`` / ``segment`` / ``instances`` over blocks of huge images,
bit for bit the whole-image Engine's results (``pip install 'unet-rt[dask]'``; docs/dask.md)."""
from unet_rt.scale.blocks import BlockPlan, block_plan, instances, predict, segment

__all__ = ["segment", "predict", "instances", "block_plan", "BlockPlan"]
