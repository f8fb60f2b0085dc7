"""napari plugin (npe2 manifest ``src/unet_rt/napari/napari.yaml``): a reader and the "Segment with unet-rt" widget.

- Reader: PNG, TIFF (ImageJ/OME pixel sizes become the layer scale), OME-Zarr (the image, and every
  label image of its NGFF ``labels`` group as a Labels layer). Files that ``unet-rt segment``
  wrote open as Labels layers when their name says so (``*-labels*``, ``*.labels.*``) or they are
  a zarr's labels.
- Widget: ``segment_with_unet_rt`` (a plain function; napari's magicgui builds its form from the
  signature) runs ``unet_rt.Engine`` on the chosen Image layer and returns a Labels layer with
  the image's scale. napari is needed only to show them (``pip install 'unet-rt[napari]'``);
  the functions themselves need only the runtime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_rt.io.images import is_zarr, open_image

_EXT = (".tif", ".tiff", ".png")


def get_reader(path):
    """npe2 reader hook: a reader function for paths we read, else None."""
    if isinstance(path, list):
        return None
    p = Path(path)
    if is_zarr(p) or p.suffix.lower() in _EXT:
        return read_layers
    return None


def _scale(img) -> tuple | None:
    axes = img.axes.replace("C", "") if img.rgb else img.axes
    if not img.pixel_size:
        return None
    return tuple(float(img.pixel_size.get(a, (1.0, None))[0]) for a in axes)


def read_layers(path) -> list:
    """[(data, kwargs, layer_type)] for napari."""
    p = Path(path)
    img = open_image(p)
    name = p.name.split(".")[0]
    kw = {"name": name}
    sc = _scale(img)
    if sc:
        kw["scale"] = sc
    looks_like_labels = "-labels" in p.name or ".labels." in p.name
    if looks_like_labels and np.issubdtype(img.data.dtype, np.integer):
        layers = [(img.data, kw, "labels")]
    else:
        if img.rgb:
            kw["rgb"] = True
        elif "C" in img.axes:
            kw["channel_axis"] = img.axes.index("C")
            kw["name"] = img.channel_names or [f"{name} c{i}" for i in range(img.data.shape[img.axes.index('C')])]
            if sc:
                kw["scale"] = tuple(s for a, s in zip(img.axes, sc) if a != "C")
        layers = [(img.data, kw, "image")]
    if img.kind == "ome-zarr" and (p / "labels").is_dir():
        for lab in sorted(q for q in (p / "labels").iterdir() if q.is_dir()):
            li = open_image(lab)
            lkw = {"name": lab.name}
            lsc = _scale(li)
            if lsc:
                lkw["scale"] = lsc
            layers.append((li.data, lkw, "labels"))
    return layers


def segment_with_unet_rt(image: "napari.types.ImageData", model: Path = Path(""),  # noqa: F821
                         tile: int = 0, tta: bool = False, threads: int = 0) -> "napari.types.LabelsData":  # noqa: F821
    """Segment the image layer with a unet-rt model file (empty: the shipped ISBI 2012 model).
    tile 0: chosen per image; tta: average over the 8 rotations/flips (8x slower). 2-D images
    and stacks (frames segmented one by one); an RGB layer is converted to grey for a
    single-channel model."""
    from unet_rt.engine import Engine
    from unet_rt.format.model_file import SHIPPED_MODEL

    path = Path(model) if str(model) not in ("", ".") else SHIPPED_MODEL
    eng = Engine(path, tile=tile or None, threads=threads or None)
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and eng.in_channels == 1:
        axes = "YXC"
    elif eng.in_channels > 1:
        axes = "ZYXC"[4 - a.ndim:]
    else:
        axes = "TZYX"[4 - a.ndim:]
    if a.dtype not in (np.uint8, np.uint16, np.float32):
        a = a.astype(np.float32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the RGB -> grey note: the docstring says so
        return eng.segment(a, tta=tta, axes=axes)
