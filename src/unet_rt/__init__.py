"""unet-rt: U-Net segmentation for microscopy — inference runtime.

    >>> import unet_rt
    >>> labels = unet_rt.Engine("model.plan").segment(img)

Layout (docs/architecture.md): ``engine`` (the public Engine) over the compiled core ``_core``;
``format`` (model file, architecture geometry), ``io`` (images, axes), ``backends`` (triton,
tensorrt), ``export`` (onnx, bioimageio), ``eval`` (metrics, calibration, measurements), ``scale`` (dask),
``cli``, ``napari``, ``train`` (the PyTorch trainer, behind the ``[train]`` extra).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unet-rt")  # the one version source: pyproject.toml's [project] version
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

from unet_rt.engine import BACKENDS, Engine  # noqa: E402
from unet_rt.format.model_file import ModelFileError  # noqa: E402
from unet_rt.eval.measure import measure, write_measurements, write_rois  # noqa: E402

__all__ = ["Engine", "BACKENDS", "ModelFileError", "measure", "write_measurements", "write_rois", "__version__"]
