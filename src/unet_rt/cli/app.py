"""The ``unet-rt`` command line: segment, info, evaluate, compile, train, export.

Run ``unet-rt COMMAND --help`` for each command's options.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from unet_rt import __version__

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/unet_rt
DEFAULT_MODEL = PACKAGE_DIR / "models" / "isbi2012-unet16.plan"


def _default_model() -> str | None:
    return str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None


def _err(msg: str) -> int:
    print(f"unet-rt: error: {msg}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------ segment
class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_engine_args(p):
    p.add_argument("-m", "--model", default=_default_model(),
                   help="model file (default: the shipped ISBI 2012 model%s)" % ("" if _default_model() else ", not installed"))
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "triton", "tensorrt"],
                   help="auto: cpu for weights, tensorrt for a TensorRT plan")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--tile", type=int, default=None, help="input tile size (default: chosen per image)")
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (8x slower)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="CPU arithmetic: fp32 (default, exact) or bf16 (faster on CPUs with AVX512-BF16; "
                        "labels agree with fp32 on >= 99.5%% of pixels of the shipped model's test images)")


def _open_engine(args):
    from unet_rt.engine import Engine

    if not args.model:
        raise CLIError("no model given (-m) and no shipped default model installed")
    try:
        return Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile,
                      precision=args.precision)
    except (ValueError, FileNotFoundError, ImportError, OSError) as e:
        raise CLIError(str(e)) from None


SEGMENT_EPILOG = """axes: each input's dimensions are named by an axes string (Y, X; C channels; T, Z stack axes,
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


def _instances_image(labels: np.ndarray, single_out: Path | None) -> np.ndarray:  # noqa: E302
    """Instance labels as written: uint16 (PNG) when they fit, else int32 (TIFF only)."""
    if labels.max(initial=0) <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    if single_out is not None and single_out.suffix.lower() == ".png":
        raise ValueError(f"{int(labels.max())} instances do not fit a 16-bit PNG: use a .tif output")
    return labels


def _add_segment(sub):
    p = sub.add_parser("segment", help="segment PNG/TIFF/zarr/OME images (any size) with a model",
                       description="Segment images of any size with overlap-tile inference and write the class "
                                   "map (or the probabilities).",
                       epilog=SEGMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="image files or directories (PNG, TIFF incl. stacks and OME-TIFF, "
                                             "zarr arrays, OME-Zarr)")
    p.add_argument("-o", "--output", required=True, help="output file (single input) or directory")
    _add_engine_args(p)
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
    from unet_rt.cli import workers as dask_cli

    dask_cli.add_arguments(p)
    p.set_defaults(func=cmd_segment)


def _axes_arg(s: str) -> str:
    from unet_rt.io.axes import parse_axes

    try:
        return parse_axes(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _output_kind(out_arg: str, n_inputs: int) -> str:
    """'file', 'zarr' or 'dir' for the -o argument; an unknown extension is an error."""
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
        raise CLIError(f"-o {out_arg}: unknown output extension {ext!r} (use .png, .tif, .ome.tif, .zarr, or a "
                       f"directory: one whose name has a dot must exist already or be written with a trailing /)")
    if n_inputs > 1:
        raise CLIError(f"-o {out_arg} names one {ext} file but there are {n_inputs} inputs: give a directory")
    if out.exists() and out.is_dir() and kind == "file":
        raise CLIError(f"-o {out_arg} is a directory, not a {ext} file")
    return kind


def _dest_name(src: Path, img, stack: bool, probabilities: bool) -> str:
    from unet_rt.io.images import is_zarr

    name = src.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg", ".bmp", ".ome.zarr", ".zarr"):
        if low.endswith(ext):
            name = name[:-len(ext)]
            break
    if img is not None and img.kind == "ome-tiff":
        return name + ".ome.tif"
    tiff = stack or probabilities or is_zarr(src) or src.suffix.lower() in (".tif", ".tiff")
    return name + (".tif" if tiff else ".png")


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


def _segment_one(eng, src: Path, args, out: Path, kind: str, bar) -> Path:
    """Segment one input and write its outputs; raises ValueError/OSError/TypeError for this input."""
    from unet_rt.io.axes import to_frames
    from unet_rt.io.images import open_image, overlay, visible_labels, write_image, write_ome_zarr

    img = open_image(src, level=args.level)
    axes = args.axes or img.axes
    if args.axes and len(args.axes) != img.data.ndim:
        raise ValueError(f"--axes {args.axes} names {len(args.axes)} dimensions but the image has shape {img.data.shape}")
    fr = to_frames(img.data, axes, eng.in_channels, channel=args.channel,
                   rgb=img.rgb if not args.axes else None)
    for note in fr.notes:
        bar.write(f"{src}: {note}")
    data = fr.data
    stack = fr.is_stack
    lab_axes = fr.stack_axes + "YX"
    with _tile_bar(src, args.quiet) as tiles:
        if args.probabilities:
            res = eng.predict(data, tta=args.tta, axes="TCYX", progress=tiles.progress)   # N x K x H x W
            labels = res.argmax(1).astype(np.uint8)
        elif args.instances:
            labels = eng.instances(data, tta=args.tta, axes="TCYX", progress=tiles.progress)  # N x H x W int32
            res = labels
        else:
            labels = eng.segment(data, tta=args.tta, threshold=args.threshold, axes="TCYX",
                                 progress=tiles.progress)                                   # N x H x W
            res = labels
    px = {a: v for a, v in img.pixel_size.items() if a in lab_axes}
    if getattr(args, "_measured", None) is not None:  # --measure / --rois (unet_rt.eval.measure)
        args._measured.add(src, labels, data, px, stack)
    if kind == "zarr":
        if args.probabilities:
            raise ValueError("an OME-Zarr output holds label images: write --probabilities to a .tif")
        lab = _instances_image(labels, None) if args.instances else labels
        write_ome_zarr(out, {args.label_name: fr.unflatten(lab)}, image=img, axes=lab_axes)
        return out
    dst = out if kind == "file" else out / _dest_name(src, img, stack, args.probabilities)
    if args.probabilities:
        if dst.suffix.lower() == ".png":
            raise ValueError("probabilities are float32: use a .tif output")
        write_image(dst, fr.unflatten(res), axes=fr.stack_axes + "CYX", pixel_size=px,
                    channel_names=list(eng.class_names))
    else:
        if stack and dst.suffix.lower() == ".png":
            raise ValueError(f"a stack of {labels.shape[0]} frames does not fit in a PNG: use a .tif output")
        if args.instances:
            out_labels = _instances_image(labels, dst)
        else:
            out_labels = labels if args.raw else visible_labels(labels, eng.classes)
        write_image(dst, fr.unflatten(out_labels), axes=lab_axes, pixel_size=px)
    if args.overlay:
        grey = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        ov = overlay(grey, labels, cls=args.overlay_class)            # N x H x W x 3
        stem = dst.name[:-len(".ome.tif")] if dst.name.lower().endswith(".ome.tif") else dst.stem
        if stack:
            write_image(dst.with_name(stem + "-overlay.tif"), fr.unflatten(ov), axes=lab_axes + "C", pixel_size=px)
        else:
            write_image(dst.with_name(stem + "-overlay.png"), ov[0])
    return dst


def cmd_segment(args) -> int:
    from unet_rt.cli import workers as dask_cli

    if dask_cli.wanted(args):  # --workers / --scheduler: dask.distributed (src/unet_rt/cli/workers.py)
        if args.measure or args.rois:
            raise CLIError("--measure/--rois are not available with --workers/--scheduler: segment, then measure "
                           "in Python (unet_rt.measure)")
        return dask_cli.segment(args)
    from tqdm import tqdm

    from unet_rt.io.images import list_images, same_file

    inputs = []
    for arg in args.inputs:
        if not Path(arg).exists():
            raise CLIError(f"no such input: {arg}")
        inputs.extend(list_images(arg))
    if not inputs:
        raise CLIError("no input images found in " + ", ".join(args.inputs))
    kind = _output_kind(args.output, len(inputs))
    out = Path(args.output)
    if kind != "zarr":
        for src in inputs:
            if same_file(src, out) or (kind == "dir" and (same_file(src.parent, out))):
                raise CLIError(f"-o {args.output} would overwrite the input {src}: choose another output")
    if args.overlay and kind == "zarr":
        raise CLIError("--overlay writes pictures: use a .png/.tif or directory output, not .zarr")
    if args.measure or args.rois:
        from unet_rt.eval.measure import Collector

        try:
            args._measured = Collector(args.measure, args.rois, args.instances)
        except (ValueError, ImportError) as e:
            raise CLIError(str(e)) from None
    eng = _open_engine(args)
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
                done.append(_segment_one(eng, src, args, out, kind, bar))
            except (ValueError, TypeError, OSError, ImportError) as e:
                failed.append(src)
                msg = str(e) if str(src) in str(e) else f"{src}: {e}"
                bar.write(f"unet-rt: error: {msg}", file=sys.stderr)
    if getattr(args, "_measured", None) is not None and done:
        try:
            for f in args._measured.write():
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


# ------------------------------------------------------------------------------ info
def cmd_info(args) -> int:
    from unet_rt.format import model_file

    try:
        kind = model_file.detect_kind(args.model)
        mf = model_file.load(args.model, tensors=False)
    except (ValueError, FileNotFoundError) as e:
        return _err(str(e))
    d = {"path": args.model, "kind": kind, "arch": mf.arch, "normalization": mf.normalization,
         "class_names": mf.class_names, "provenance": mf.provenance, "decision": mf.decision or "argmax (uncalibrated)",
         **mf.extra}
    if kind == "weights":
        from unet_rt.format.geometry import halo, valid_input_sizes

        a = mf.arch
        d["halo"] = halo(a["depth"], a["padding"])
        d["tile_sizes"] = [f"{i}->{o}" for i, o in valid_input_sizes(1, 1100, a["depth"], a["padding"])][:8]
        from unet_rt.format.model_file import expected_shapes

        d["parameters"] = int(sum(np.prod(s) for s in expected_shapes(a).values()))
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        for k, v in d.items():
            print(f"{k:>14}: {v}")
    return 0


# ------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    from unet_rt.eval import metrics
    from unet_rt.engine import Engine
    from unet_rt.io.images import list_images, read_image

    root = Path(args.data)
    if not (root / "image").is_dir() or not (root / "label").is_dir():
        return _err(f"{root} must hold image/ and label/ directories")
    imgs = list_images(root / "image")
    labs = {p.stem: p for p in list_images(root / "label")}
    if args.slices:
        from unet_rt.io.images import select_slices

        imgs = select_slices(imgs, args.slices)
    if not imgs:
        return _err(f"no images in {root / 'image'}")
    eng = None
    if args.instances and args.baseline:
        return _err("--instances evaluates a model's instances: it does not go with --baseline")
    if not args.baseline:
        if not args.model:
            return _err("no model given (-m)")
        try:
            eng = Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile,
                         precision=args.precision)
        except (ValueError, FileNotFoundError, ImportError) as e:
            return _err(str(e))
    missing = [p.name for p in imgs if p.stem not in labs]
    if missing:
        return _err(f"no label in {root / 'label'} for {', '.join(missing[:5])}")
    from tqdm import tqdm

    probs, truths, decisions, instances = [], [], [], []
    for p in tqdm(imgs, desc="predict", unit="img", disable=args.json or len(imgs) < 2):
        img, lab = read_image(p), read_image(labs[p.stem])
        dec = eng.segment(img, tta=args.tta) if eng else otsu_segment(img)
        probs.append(eng.predict(img, tta=args.tta)[1] if eng else dec.astype(np.float32))  # p(cell)
        truths.append(lab)
        decisions.append(dec)
        if args.instances:  # the model's calibrated watershed, not the class map's components
            instances.append(eng.instances(img, tta=args.tta))
    bar = tqdm(total=len(imgs), desc="score", unit="img", disable=args.json or len(imgs) < 2)
    report = metrics.evaluate_stack(probs, truths, decisions, [p.name for p in imgs], warping=not args.no_warping,
                                    progress=lambda done, total: bar.update(done - bar.n),
                                    instances=instances if args.instances else None)
    bar.close()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(metrics.format_report(report, per_image=args.per_image)))
    return 0


def otsu_threshold(img: np.ndarray) -> float:
    """Otsu's threshold (numpy): maximises the between-class variance of the histogram."""
    x = np.asarray(img, np.float64).ravel()
    hist, edges = np.histogram(x, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[np.argmax(between)])


def otsu_segment(img: np.ndarray) -> np.ndarray:
    """Baseline: pixels brighter than Otsu's threshold are cells (class 1)."""
    return (np.asarray(img) > otsu_threshold(img)).astype(np.uint8)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="the ISBI 2012 challenge's scores and the decision's errors on labelled data",
                       description="Evaluate on DATA/image + DATA/label (binary labels: >0 = cell). Scores the "
                                   "probability map p(cell) by the ISBI 2012 challenge's protocol (Arganda-Carreras "
                                   "et al. 2015; best over thresholds 0.0-1.0 for the stack): V_rand and V_info after "
                                   "border thinning, the foreground-restricted Rand error and the pixel error "
                                   "(1 - max F-scores; the U-Net paper's figures) and the splits-and-mergers warping "
                                   "error (Jain et al. 2010). Then the decision (the class map the model returns): "
                                   "fraction of wrong pixels, adapted Rand error of the connected cells (as "
                                   "skimage.metrics.adapted_rand_error, label-0 pixels ignored), IoU, Dice. "
                                   "Definitions: src/unet_rt/eval/metrics.py.")
    p.add_argument("--data", required=True, help="directory with image/ and label/")
    p.add_argument("--slices", default=None,
                   help="which slices, e.g. 25-29 (file numbers for files named N.png, else positions in natural order)")
    p.add_argument("--baseline", choices=["otsu"], default=None, help="evaluate a plain Otsu threshold instead")
    p.add_argument("--per-image", action="store_true", help="also print each image's scores")
    p.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest score)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--instances", action="store_true",
                   help="Rand error of Engine.instances (the model's calibrated watershed) instead of the connected "
                        "components of the class map")
    _add_engine_args(p)
    p.set_defaults(func=cmd_evaluate)


# ------------------------------------------------------------------------------ calibrate
def cmd_calibrate(args) -> int:
    from unet_rt.eval.calibrate import calibrate_file

    if not args.model:
        return _err("no model given")
    try:
        d = calibrate_file(args.model, args.data, args.slices, output=args.output, write=bool(args.output),
                           tta=args.tta, dense=args.dense, progress=not args.quiet, threads=args.threads,
                           tile=args.tile)
    except (ValueError, FileNotFoundError) as e:
        return _err(str(e))
    print(json.dumps(d, indent=1))
    c = d["calibration"]
    print(f"validation ({c['images']} images): pixel error {c['pixel_error']:.4f} at threshold {d['threshold']} "
          f"(argmax {c['pixel_error_argmax']:.4f}); instances Rand error {c['rand_error']:.4f} "
          f"(connected components {c['rand_error_connected_components']:.4f})", file=sys.stderr)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print("not written: pass -o FILE (a new model file, or the model itself to update it in place)",
              file=sys.stderr)
    return 0


def _add_calibrate(sub):
    p = sub.add_parser("calibrate", help="choose a model's threshold and instance parameters on validation data",
                       description="Choose the foreground threshold (minimum pixel error) and the instance "
                                   "post-processing parameters (minimum adapted Rand error of the watershed instances) "
                                   "by a grid search on validation images DATA/image + DATA/label (binary masks or "
                                   "instance images), and store them in the model file's decision metadata, which "
                                   "Engine.segment / Engine.instances / the C API then apply. Use validation slices "
                                   "only, never the test slices.")
    p.add_argument("model", help="model file to calibrate")
    p.add_argument("--data", required=True, help="directory with image/ and label/")
    p.add_argument("--slices", default=None,
                   help="validation slices, e.g. 23-24 (file numbers for files named N.png, else positions)")
    p.add_argument("-o", "--output", default=None,
                   help="write the calibrated model file here (may be MODEL itself: updated atomically in place); "
                        "without -o the decision is only printed")
    p.add_argument("--tta", action="store_true", help="calibrate on test-time-augmented probabilities")
    p.add_argument("--dense", action="store_true",
                   help="densely packed cells (EM): objects may extend over the boundaries between them (a partition); "
                        "default: objects within the segmentation's foreground (right for sparse objects)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--tile", type=int, default=None, help="input tile size (default: chosen per image)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate)


# ------------------------------------------------------------------------------ compile / train / export
def _add_compile(sub):
    from unet_rt.cli import compile as compile_cli

    p = sub.add_parser("compile", help="compile a model into a TensorRT plan (or a fixed-tile ONNX file)",
                       description="Compile a unet-rt weights file for one input tile size: --target onnx writes a "
                                   "static-shape ONNX graph (needs only the onnx package); --target tensorrt builds a "
                                   "TensorRT engine and stores it in a unet-rt container that unet_rt.Engine opens like "
                                   "any model file (needs TensorRT and an NVIDIA GPU; without them it fails and writes "
                                   "nothing).")
    compile_cli.add_arguments(p)
    p.set_defaults(func=compile_cli.run)


TRAIN_HELP = "train a U-Net (the trainer of src/unet_rt/train/train.py; needs the train extra)"


def _add_train(sub, wanted: bool):
    """The train command's options are the trainer's own parser (unet_rt.train.train.build_parser); it
    imports torch, so it is built only when the command line asks for ``train``."""
    p = sub.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP + ".",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_train)
    if wanted:
        try:
            from unet_rt.train.train import build_parser
        except ImportError as e:
            raise CLIError(f"training needs the train extra: pip install 'unet-rt[train]' ({e})") from None
        build_parser(p)


def cmd_train(args) -> int:
    from unet_rt.train.train import main as train_main

    return train_main(args.argv[args.argv.index("train") + 1:])


def cmd_export(args) -> int:
    try:
        from unet_rt.train.export import main as export_main
    except ImportError as e:
        raise CLIError(f"export needs the train extra: pip install 'unet-rt[train]' ({e})") from None
    return export_main([args.run, "-o", args.output] + (["--last"] if args.last else []))


def _add_export(sub):
    p = sub.add_parser("export", help="turn a training run's checkpoint into a runtime model file")
    p.add_argument("run", help="run directory (holding checkpoint.safetensors/.json)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--last", action="store_true", help="export the last checkpoint, not the best validated one")
    p.set_defaults(func=cmd_export)


def _add_info(sub):
    p = sub.add_parser("info", help="show a model file's architecture, normalisation and provenance")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def _command_word(argv: list) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unet-rt", description="U-Net segmentation for microscopy (Ronneberger et al. 2015): "
                                "train, export, segment, evaluate, compile.")
    p.add_argument("--version", action="version", version=f"unet-rt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_segment(sub)
    _add_info(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_compile(sub)
    _add_train(sub, wanted=_command_word(argv) == "train")
    _add_export(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        p = build_parser(argv)
        args = p.parse_args(argv)
        args.argv = argv
        if not getattr(args, "func", None):
            p.print_help()
            return 2
        return int(args.func(args) or 0)
    except CLIError as e:
        return _err(str(e))
    except KeyboardInterrupt:
        print("unet-rt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
