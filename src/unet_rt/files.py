"""Segmenting files: :func:`segment_file` turns one input file into its outputs, with every option of
``unet-rt segment`` gathered in one :class:`SegmentOptions`.

It is the one implementation behind the single-process CLI, ``unet-rt segment --workers/--scheduler``
(one task per file, on the workers) and the napari widget, so an option means the same everywhere::

    from unet_rt import Engine
    from unet_rt.files import SegmentOptions, segment_file

    eng = Engine("model.plan")
    written = segment_file(eng, "slice.tif", "out/", SegmentOptions(overlay=True))   # [out/slice.tif, ...]

``out`` is a directory (each output takes its input's name, see :func:`output_path`), a single file
(``.png``, ``.tif``, ``.ome.tif``) or a ``.zarr`` (OME-Zarr labels); :func:`output_kind` tells which
from the ``-o`` argument. What is written is written atomically, so an interrupted call leaves no
half-written file; ``skip_existing`` (the resume of ``--workers``) skips an input only when all of its
outputs exist *and read back*.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["SegmentOptions", "segment_file", "output_kind", "output_path"]


@dataclass(frozen=True)
class SegmentOptions:
    """What ``unet-rt segment`` does with each input (the engine's own options — model, backend,
    threads, tile, precision — belong to the :class:`unet_rt.Engine`)."""

    axes: str | None = None         # the input's dimensions, e.g. "YX", "TYX", "YXC" (None: from the file)
    channel: int | None = None      # use this channel of a multi-channel image
    level: int = 0                  # OME-Zarr resolution level
    tta: bool = False               # mean over the 8 rotations/flips
    threshold: float | None = None  # foreground threshold (None: the model's decision)
    probabilities: bool = False     # write float32 class probabilities (TIFF, K planes)
    instances: bool = False         # write instance labels (uint16 PNG or int32 TIFF)
    raw: bool = False               # class numbers 0..K-1 instead of visible grey levels
    overlay: bool = False           # also write NAME-overlay.png (stacks: NAME-overlay.tif)
    overlay_class: int = 0          # class tinted in the overlay
    label_name: str = "unet-rt"     # the label image's name in an OME-Zarr output

    def __post_init__(self):
        if self.probabilities and self.instances:
            raise ValueError("--instances and --probabilities exclude each other")
        if self.axes is not None:
            from unet_rt.io.axes import parse_axes

            object.__setattr__(self, "axes", parse_axes(self.axes))

    @classmethod
    def from_args(cls, args) -> SegmentOptions:
        """The options of a parsed ``unet-rt segment`` command line (an argparse namespace)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def output_kind(out_arg: str, n_inputs: int) -> str:
    """'file', 'zarr' or 'dir' for an ``-o`` argument; ValueError for an unknown extension or a file
    named for several inputs."""
    from unet_rt.io.images import OUTPUT_EXT, is_zarr

    out = Path(out_arg)
    if out_arg.endswith(("/", "\\")) or (out.is_dir() and not is_zarr(out)):
        return "dir"
    ext = out.suffix.lower()
    if ext == ".zarr":
        kind = "zarr"
    elif ext in OUTPUT_EXT:
        kind = "file"
    elif ext == "":
        return "dir"
    else:
        raise ValueError(f"-o {out_arg}: unknown output extension {ext!r} (use .png, .tif, .ome.tif, .zarr, or a "
                         f"directory: one whose name has a dot must exist already or be written with a trailing /)")
    if n_inputs > 1:
        raise ValueError(f"-o {out_arg} names one {ext} file but there are {n_inputs} inputs: give a directory")
    if out.exists() and out.is_dir() and kind == "file":
        raise ValueError(f"-o {out_arg} is a directory, not a {ext} file")
    return kind


def output_path(src: Path, out: Path, kind: str, image_kind: str | None, stack: bool, probabilities: bool) -> Path:
    """Where the main output of ``src`` goes: ``out`` itself for a 'file' or 'zarr' output; in a
    directory, the input's name with its format (PNG -> .png; TIFF, zarr, stacks and probabilities
    -> .tif; OME-TIFF -> .ome.tif)."""
    from unet_rt.io.images import is_zarr

    if kind != "dir":
        return out
    name = src.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg", ".bmp", ".ome.zarr", ".zarr"):
        if low.endswith(ext):
            name = name[:-len(ext)]
            break
    if image_kind == "ome-tiff":
        return out / (name + ".ome.tif")
    tiff = stack or probabilities or is_zarr(src) or src.suffix.lower() in (".tif", ".tiff")
    return out / (name + (".tif" if tiff else ".png"))


def _overlay_path(dst: Path, stack: bool) -> Path:
    stem = dst.name[:-len(".ome.tif")] if dst.name.lower().endswith(".ome.tif") else dst.stem
    return dst.with_name(stem + ("-overlay.tif" if stack else "-overlay.png"))


def _instances_image(labels: np.ndarray, dst: Path | None) -> np.ndarray:
    """Instance labels as written: uint16 (PNG) when they fit, else int32 (TIFF only)."""
    if labels.max(initial=0) <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    if dst is not None and dst.suffix.lower() == ".png":
        raise ValueError(f"{int(labels.max())} instances do not fit a 16-bit PNG: use a .tif output")
    return labels


def _reads_back(path: Path) -> bool:
    """Whether an output exists and decodes completely (a truncated file does not)."""
    from unet_rt.io.images import read_image

    if not path.is_file():
        return False
    try:
        read_image(path)
    except (ValueError, OSError):
        return False
    return True


def _open(src: Path, level: int):
    """The input with its metadata; any failure to decode it is a ValueError naming the file."""
    from unet_rt.io.images import open_image

    try:
        return open_image(src, level=level)
    except (FileNotFoundError, ImportError, ValueError):
        raise
    except Exception as e:  # a corrupt zarr or TIFF raises its library's own error types
        raise ValueError(f"{src}: cannot read the image ({type(e).__name__}: {e})") from None


def segment_file(engine, src, out, options: SegmentOptions | None = None, *, kind: str = "dir",
                 progress: Callable[[int, int], bool | None] | None = None,
                 note: Callable[[str], None] | None = None, skip_existing: bool = False,
                 on_result: Callable[..., None] | None = None) -> list[Path]:
    """Segment the image file ``src`` with ``engine`` (a :class:`unet_rt.Engine`) and write its outputs
    into ``out`` (``kind``: 'dir', 'file' or 'zarr', see :func:`output_kind`).

    Returns the paths written (the main output first, then the overlay), or ``[]`` when
    ``skip_existing`` and every output of ``src`` already exists and reads back. ``progress(done, total)``
    follows the tiles; ``note(text)`` receives what was converted (e.g. RGB to grey);
    ``on_result(src, labels, frames, pixel_size, stack)`` sees each result before it is written (the
    CLI's ``--measure/--rois``: labels N x H x W, frames N x C x H x W). Raises ValueError,
    TypeError, OSError or ImportError (a missing extra) for this input; nothing is half-written."""
    from unet_rt.io.axes import to_frames
    from unet_rt.io.images import overlay, visible_labels, write_image, write_ome_zarr

    opt = options or SegmentOptions()
    src, out = Path(src), Path(out)
    if kind not in ("dir", "file", "zarr"):
        raise ValueError(f"kind must be 'dir', 'file' or 'zarr', got {kind!r}")
    if kind == "zarr" and opt.probabilities:
        raise ValueError("an OME-Zarr output holds label images: write --probabilities to a .tif")
    if kind == "zarr" and opt.overlay:
        raise ValueError("--overlay writes pictures: use a .png/.tif or directory output, not .zarr")
    img = _open(src, opt.level)
    if opt.axes and len(opt.axes) != img.data.ndim:
        raise ValueError(f"--axes {opt.axes} names {len(opt.axes)} dimensions but the image has shape {img.data.shape}")
    fr = to_frames(img.data, opt.axes or img.axes, engine.in_channels, channel=opt.channel,
                   rgb=img.rgb if not opt.axes else None)
    stack = fr.is_stack
    dst = output_path(src, out, kind, img.kind, stack, opt.probabilities)
    if kind != "zarr":
        if opt.probabilities and dst.suffix.lower() == ".png":
            raise ValueError("probabilities are float32: use a .tif output")
        if stack and not opt.probabilities and dst.suffix.lower() == ".png":
            raise ValueError(f"a stack of {fr.data.shape[0]} frames does not fit in a PNG: use a .tif output")
    outputs = [dst] + ([_overlay_path(dst, stack)] if opt.overlay else [])
    if skip_existing and kind != "zarr" and all(_reads_back(p) for p in outputs):
        return []
    for text in fr.notes:
        if note is not None:
            note(f"{src}: {text}")
    data = fr.data
    lab_axes = fr.stack_axes + "YX"
    if opt.probabilities:
        res = engine.predict(data, tta=opt.tta, axes="TCYX", progress=progress)        # N x K x H x W
        labels = res.argmax(1).astype(np.uint8)
    elif opt.instances:
        labels = engine.instances(data, tta=opt.tta, axes="TCYX", progress=progress)   # N x H x W int32
        res = labels
    else:
        labels = engine.segment(data, tta=opt.tta, threshold=opt.threshold, axes="TCYX", progress=progress)
        res = labels
    px = {a: v for a, v in img.pixel_size.items() if a in lab_axes}
    if on_result is not None:
        on_result(src, labels, data, px, stack)
    if kind == "zarr":
        lab = _instances_image(labels, None) if opt.instances else labels
        write_ome_zarr(out, {opt.label_name: fr.unflatten(lab)}, image=img, axes=lab_axes)
        return [out]
    if opt.probabilities:
        write_image(dst, fr.unflatten(res), axes=fr.stack_axes + "CYX", pixel_size=px,
                    channel_names=list(engine.class_names))
    else:
        if opt.instances:
            out_labels = _instances_image(labels, dst)
        else:
            out_labels = labels if opt.raw else visible_labels(labels, engine.classes)
        write_image(dst, fr.unflatten(out_labels), axes=lab_axes, pixel_size=px)
    if opt.overlay:
        grey = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        ov = overlay(grey, labels, cls=opt.overlay_class)            # N x H x W x 3
        if stack:
            write_image(outputs[1], fr.unflatten(ov), axes=lab_axes + "C", pixel_size=px)
        else:
            write_image(outputs[1], ov[0])
    return outputs
