"""unet-rt: U-Net segmentation for microscopy — inference runtime.

    >>> import unet_rt
    >>> labels = unet_rt.Engine("model.plan").segment(img)
"""
__version__ = "0.1.0"

from .engine import BACKENDS, Engine  # noqa: E402
from .model_file import ModelFileError  # noqa: E402

__all__ = ["Engine", "BACKENDS", "ModelFileError", "__version__"]
