"""Deprecated: use ``unet_rt.io.axes``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.io.axes")
