"""Deprecated: use ``unet_rt.export.bioimageio``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.export.bioimageio")
