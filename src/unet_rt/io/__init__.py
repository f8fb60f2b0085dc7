"""Image input and output (``images``: PNG, TIFF, OME-TIFF, zarr, OME-Zarr with axes and pixel sizes),
axis handling (``axes``) and labelled data sets with the ``--slices`` rule (``dataset``). The names below
are the public API: ``from unet_rt.io import read_image``."""
from unet_rt.io.dataset import load_pairs, parse_slices, select_slices
from unet_rt.io.images import (ImageData, is_zarr, list_images, missing_extra, open_image, overlay, read_image,
                               same_file, visible_labels, write_image, write_ome_zarr)

__all__ = ["ImageData", "open_image", "read_image", "write_image", "write_ome_zarr", "list_images", "overlay",
           "visible_labels", "parse_slices", "select_slices", "load_pairs", "missing_extra", "same_file", "is_zarr"]
