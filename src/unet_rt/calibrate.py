"""Deprecated: use ``unet_rt.eval.calibrate``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.eval.calibrate")
