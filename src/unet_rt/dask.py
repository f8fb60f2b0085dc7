"""Deprecated: use ``unet_rt.scale``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.scale")
