"""Deprecated: use ``unet_rt.backends.tensorrt``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.backends.tensorrt")
