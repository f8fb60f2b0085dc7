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

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE_DIR / "models" / "isbi2012-unet16.plan"


def _default_model() -> str | None:
    return str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None


def _err(msg: str) -> int:
    print(f"unet-rt: error: {msg}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------ segment
def _add_engine_args(p):
    p.add_argument("-m", "--model", default=_default_model(),
                   help="model file (default: the shipped ISBI 2012 model%s)" % ("" if _default_model() else ", not installed"))
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "triton", "tensorrt"],
                   help="auto: cpu for weights, tensorrt for a TensorRT plan")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--tile", type=int, default=None, help="input tile size (default: chosen per image)")
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (8x slower)")


def cmd_segment(args) -> int:
    from tqdm import tqdm

    from .engine import Engine
    from .io import list_images, overlay, read_image, write_image

    if not args.model:
        return _err("no model given (-m) and no shipped default model installed")
    inputs = [p for arg in args.inputs for p in list_images(arg)]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        return _err(f"no such input: {', '.join(missing[:5])}")
    if not inputs:
        return _err("no input images found")
    out = Path(args.output)
    single_file = len(inputs) == 1 and out.suffix.lower() in (".png", ".tif", ".tiff")
    if not single_file:
        if out.exists() and not out.is_dir():
            return _err(f"{out} is a file: with several inputs, -o must be a directory")
    try:
        eng = Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile)
    except (ValueError, FileNotFoundError, ImportError) as e:
        return _err(str(e))
    t0 = time.perf_counter()
    n_px = 0
    for src in tqdm(inputs, desc="segment", unit="img", disable=args.quiet or len(inputs) < 2):
        try:
            img = read_image(src)
            if args.probabilities:
                res = eng.predict(img, tta=args.tta)
            elif args.instances:
                res = _instances_image(eng.instances(img, tta=args.tta), out if single_file else None)
            else:
                res = eng.segment(img, tta=args.tta, threshold=args.threshold)
        except (ValueError, TypeError) as e:
            return _err(f"{src}: {e}")
        n_px += img.shape[0] * img.shape[1] if img.ndim == 2 or eng.in_channels > 1 else int(np.prod(img.shape))
        stack = res.ndim == (4 if args.probabilities else 3)
        if single_file:
            dst = out
        else:
            ext = ".tif" if (stack or args.probabilities) else ".png"
            dst = out / (src.stem + ext)
        if args.probabilities and dst.suffix.lower() == ".png":
            return _err("probabilities are float32: use a .tif output")
        labels = res
        if not args.probabilities and not args.instances and args.scale:
            res = (res * (255 // max(eng.classes - 1, 1))).astype(np.uint8)
        write_image(dst, res)
        if args.overlay and not stack and not args.probabilities:
            write_image(dst.with_name(dst.stem + "-overlay.png"), overlay(img, labels, cls=args.overlay_class))
    dt = time.perf_counter() - t0
    if not args.quiet:
        print(f"segmented {len(inputs)} image(s), {n_px / 1e6:.2f} Mpx in {dt:.2f} s "
              f"({n_px / 1e6 / max(dt, 1e-9):.2f} Mpx/s) -> {out}")
    return 0


def _instances_image(labels: np.ndarray, single_out: Path | None) -> np.ndarray:
    """Instance labels as written: uint16 (PNG) when they fit, else int32 (TIFF only)."""
    if labels.max(initial=0) <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    if single_out is not None and single_out.suffix.lower() == ".png":
        raise ValueError(f"{int(labels.max())} instances do not fit a 16-bit PNG: use a .tif output")
    return labels


def _add_segment(sub):
    p = sub.add_parser("segment", help="segment PNG/TIFF/zarr images (any size) with a model",
                       description="Segment images of any size with overlap-tile inference. Writes the "
                                   "class map (0..K-1) as PNG (single images) or TIFF (stacks).")
    p.add_argument("inputs", nargs="+", help="image files or directories (PNG, TIFF incl. stacks, zarr)")
    p.add_argument("-o", "--output", required=True, help="output file (single input) or directory")
    _add_engine_args(p)
    p.add_argument("--probabilities", action="store_true", help="write float32 class probabilities (K x H x W TIFF)")
    p.add_argument("--instances", action="store_true",
                   help="write instance labels (0 = background, 1..n objects; uint16 PNG or TIFF): marker-controlled "
                        "watershed on the foreground probability with the model's calibrated parameters")
    p.add_argument("--threshold", type=float, default=None,
                   help="foreground probability threshold (overrides the model's calibrated one; default: the "
                        "model's decision, argmax for uncalibrated models)")
    p.add_argument("--scale", action="store_true", help="spread class values over 0..255 in the PNG (viewable)")
    p.add_argument("--overlay", action="store_true", help="also write NAME-overlay.png (image with one class tinted)")
    p.add_argument("--overlay-class", type=int, default=0, help="class tinted in the overlay (default 0: membrane)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_segment)


# ------------------------------------------------------------------------------ info
def cmd_info(args) -> int:
    from . import model_file

    try:
        kind = model_file.detect_kind(args.model)
        mf = model_file.load(args.model, tensors=False)
    except (ValueError, FileNotFoundError) as e:
        return _err(str(e))
    d = {"path": args.model, "kind": kind, "arch": mf.arch, "normalization": mf.normalization,
         "class_names": mf.class_names, "provenance": mf.provenance, "decision": mf.decision or "argmax (uncalibrated)",
         **mf.extra}
    if kind == "weights":
        from .geometry import halo, valid_input_sizes

        a = mf.arch
        d["halo"] = halo(a["depth"], a["padding"])
        d["tile_sizes"] = [f"{i}->{o}" for i, o in valid_input_sizes(1, 1100, a["depth"], a["padding"])][:8]
        from .model_file import expected_shapes

        d["parameters"] = int(sum(np.prod(s) for s in expected_shapes(a).values()))
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        for k, v in d.items():
            print(f"{k:>14}: {v}")
    return 0


# ------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args) -> int:
    from . import metrics
    from .engine import Engine
    from .io import list_images, read_image

    root = Path(args.data)
    if not (root / "image").is_dir() or not (root / "label").is_dir():
        return _err(f"{root} must hold image/ and label/ directories")
    imgs = list_images(root / "image")
    labs = {p.stem: p for p in list_images(root / "label")}
    if args.slices:
        from .io import select_slices

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
            eng = Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile)
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
                                   "Definitions: unet_rt/metrics.py.")
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
    from .calibrate import calibrate_file

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
    from .tensorrt import cli as compile_cli

    p = sub.add_parser("compile", help="compile a model into a TensorRT plan (or a fixed-tile ONNX file)",
                       description="Compile a unet-rt weights file for one input tile size: --target onnx writes a "
                                   "static-shape ONNX graph (needs only the onnx package); --target tensorrt builds a "
                                   "TensorRT engine and stores it in a unet-rt container that unet_rt.Engine opens like "
                                   "any model file (needs TensorRT and an NVIDIA GPU; without them it fails and writes "
                                   "nothing).")
    compile_cli.add_arguments(p)
    p.set_defaults(func=compile_cli.run)


def cmd_train(args) -> int:
    try:
        from training.train import main as train_main
    except ImportError as e:
        return _err(f"training needs the train extra (pip install 'unet-rt[train]'): {e}")
    return train_main(args.train_args)


def cmd_export(args) -> int:
    try:
        from training.export import main as export_main
    except ImportError as e:
        return _err(f"export needs the train extra (pip install 'unet-rt[train]'): {e}")
    return export_main([args.run, "-o", args.output] + (["--last"] if args.last else []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="unet-rt", description="U-Net segmentation for microscopy (Ronneberger et al. 2015): "
                                "train, export, segment, evaluate, benchmark.")
    p.add_argument("--version", action="version", version=f"unet-rt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_segment(sub)
    pi = sub.add_parser("info", help="show a model file's architecture, normalisation and provenance")
    pi.add_argument("model")
    pi.add_argument("--json", action="store_true")
    pi.set_defaults(func=cmd_info)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_compile(sub)
    pt = sub.add_parser("train", help="train a U-Net (python -m training.train; see unet-rt train --help)", add_help=False)
    pt.add_argument("train_args", nargs=argparse.REMAINDER)
    pt.set_defaults(func=cmd_train)
    pe = sub.add_parser("export", help="turn a training run's checkpoint into a runtime model file")
    pe.add_argument("run", help="run directory (holding checkpoint.safetensors/.json)")
    pe.add_argument("-o", "--output", required=True, help="model file to write")
    pe.add_argument("--last", action="store_true", help="export the last checkpoint, not the best validated one")
    pe.set_defaults(func=cmd_export)
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
