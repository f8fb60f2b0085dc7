"""``unet-rt segment``: images of any size -> class maps, probabilities or instances (one process; with
``--workers/--scheduler`` the same :func:`unet_rt.files.segment_file` runs on dask, see ``workers``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from unet_rt.cli import workers
from unet_rt.cli._common import CLIError, add_engine_args, open_engine

EPILOG = """axes: each input's dimensions are named by an axes string (Y, X; C channels; T, Z stack axes,
  segmented frame by frame). The default comes from the file: OME-TIFF / ImageJ / OME-Zarr
  metadata, the PNG mode (RGB = YXC), else the rank and the model's input channels. An RGB image
  given to a single-channel model is converted to grey (ITU-R 601-2 luma) with a message; other
  channel counts need --channel N.

outputs: -o names a file for a single input (.png, .tif, .ome.tif keep their format; .zarr writes
  an OME-Zarr with the labels in its NGFF labels group, or adds labels/NAME to the input OME-Zarr
  when -o is that same .zarr), else a directory (created; a name with an extension other than
  these must already exist or end with /). In a directory, each output takes its input's name and
  format (PNG -> .png, TIFF -> .tif keeping the pixel size, OME-TIFF -> .ome.tif, zarr -> .tif);
  stacks and probabilities are always TIFF. Class maps are written visible (class k of K as
  k*255/(K-1)); --raw writes the class numbers 0..K-1. -o may not be an input file.

errors: an input that cannot be read or segmented is reported and skipped; the others are still
  written, and the exit status is 1 at the end. Bad arguments or model: status 2, nothing written.
"""


def _axes_arg(s: str) -> str:
    from unet_rt.io.axes import parse_axes

    try:
        return parse_axes(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment PNG/TIFF/zarr/OME images (any size) with a model",
                       description="Segment images of any size with overlap-tile inference and write the class "
                                   "map (or the probabilities).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="image files or directories (PNG, TIFF incl. stacks and OME-TIFF, "
                                             "zarr arrays, OME-Zarr)")
    p.add_argument("-o", "--output", required=True, help="output file (single input) or directory")
    add_engine_args(p)
    p.add_argument("--axes", default=None, type=_axes_arg,
                   help="dimensions of every input, e.g. YX, YXC, ZYX, TYX, CYX, TZCYX (default: from the file)")
    p.add_argument("--channel", type=int, default=None, help="use this channel of a multi-channel image")
    p.add_argument("--level", type=int, default=0, help="OME-Zarr resolution level to segment (default 0: full)")
    p.add_argument("--probabilities", action="store_true", help="write float32 class probabilities (TIFF, K planes)")
    p.add_argument("--instances", action="store_true",
                   help="write instance labels (0 = background, 1..n objects; uint16 PNG or TIFF): marker-controlled "
                        "watershed on the foreground probability with the model's calibrated parameters")
    p.add_argument("--threshold", type=float, default=None,
                   help="foreground probability threshold (overrides the model's calibrated one; default: the "
                        "model's decision, argmax for uncalibrated models)")
    p.add_argument("--raw", action="store_true", help="class numbers 0..K-1 in the output instead of visible grey levels")
    p.add_argument("--overlay", action="store_true",
                   help="also write NAME-overlay.png (a stack: NAME-overlay.tif) with one class tinted")
    p.add_argument("--overlay-class", type=int, default=0, help="class tinted in the overlay (default 0: membrane)")
    p.add_argument("--label-name", default="unet-rt", help="name of the label image in an OME-Zarr output")
    p.add_argument("--measure", default=None, metavar="CSV",
                   help="with --instances: one row per object (unet_rt.measure: area, centroid, bbox, intensities, "
                        "shape; physical units where the image has a pixel size), all inputs in one table")
    p.add_argument("--rois", default=None, metavar="ZIP",
                   help="with --instances: the objects as ImageJ ROIs (a .zip that Fiji's ROI Manager opens)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    workers.add_arguments(p)
    p.set_defaults(func=run)


def options(args):
    """The per-file options of the command line (a user error for a bad combination)."""
    from unet_rt.files import SegmentOptions

    try:
        return SegmentOptions.from_args(args)
    except ValueError as e:
        raise CLIError(str(e)) from None


class _tile_bar:
    """A tqdm bar over the tiles of one image (all frames and TTA passes), shown after 0.5 s."""

    def __init__(self, src: Path, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=None, desc=src.name, unit="tile", leave=False, delay=0.5, disable=quiet)

    def progress(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def run(args) -> int:
    if workers.wanted(args):  # --workers / --scheduler: dask.distributed (cli/workers.py)
        if args.measure or args.rois:
            raise CLIError("--measure/--rois are not available with --workers/--scheduler: segment, then measure "
                           "in Python (unet_rt.measure)")
        return workers.segment(args)
    from tqdm import tqdm

    from unet_rt.files import output_kind, segment_file
    from unet_rt.io.images import list_images, same_file

    opt = options(args)
    inputs = []
    for arg in args.inputs:
        if not Path(arg).exists():
            raise CLIError(f"no such input: {arg}")
        inputs.extend(list_images(arg))
    if not inputs:
        raise CLIError("no input images found in " + ", ".join(args.inputs))
    try:
        kind = output_kind(args.output, len(inputs))
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = Path(args.output)
    if kind != "zarr":
        for src in inputs:
            if same_file(src, out) or (kind == "dir" and (same_file(src.parent, out))):
                raise CLIError(f"-o {args.output} would overwrite the input {src}: choose another output")
    if args.overlay and kind == "zarr":
        raise CLIError("--overlay writes pictures: use a .png/.tif or directory output, not .zarr")
    measured = None
    if args.measure or args.rois:
        from unet_rt.eval.measure import Collector

        try:
            measured = Collector(args.measure, args.rois, args.instances)
        except (ValueError, ImportError) as e:
            raise CLIError(str(e)) from None
    eng = open_engine(args)
    if kind == "dir":
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CLIError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    t0 = time.perf_counter()
    done, failed = [], []
    with tqdm(inputs, desc="segment", unit="img", disable=args.quiet or len(inputs) < 2) as bar:
        for src in bar:
            try:
                with _tile_bar(src, args.quiet) as tiles:
                    done.append(segment_file(eng, src, out, opt, kind=kind, progress=tiles.progress, note=bar.write,
                                             on_result=measured.add if measured is not None else None))
            except (ValueError, TypeError, OSError, ImportError) as e:
                failed.append(src)
                msg = str(e) if str(src) in str(e) else f"{src}: {e}"
                bar.write(f"unet-rt: error: {msg}", file=sys.stderr)
    if measured is not None and done:
        try:
            for f in measured.write():
                if not args.quiet:
                    print(f"wrote {f}")
        except (ValueError, OSError, ImportError) as e:
            raise CLIError(str(e)) from None
    dt = time.perf_counter() - t0
    if not args.quiet and done:
        print(f"segmented {len(done)} image(s) in {dt:.2f} s -> {out}")
    if failed:
        print(f"unet-rt: {len(failed)} of {len(inputs)} input(s) failed: {', '.join(map(str, failed[:5]))}"
              + (" ..." if len(failed) > 5 else ""), file=sys.stderr)
        return 1
    return 0
