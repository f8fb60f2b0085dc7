"""unet-rt: U-Net segmentation for microscopy — inference runtime.

    >>> import unet_rt
    >>> labels = unet_rt.Engine("model.plan").segment(img)
"""
__version__ = "0.1.0"
