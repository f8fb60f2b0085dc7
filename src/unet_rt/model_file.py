"""Deprecated: use ``unet_rt.format.model_file``."""
from unet_rt._deprecated import alias

alias(__name__, "unet_rt.format.model_file")
