"""Deprecated: use ``unet_rt.format.geometry``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.format.geometry")
