"""Deprecated: use ``unet_rt.backends.tensorrt.container`` (the unet-rt container of a TensorRT engine)."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.backends.tensorrt.container")
