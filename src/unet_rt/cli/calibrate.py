"""``unet-rt calibrate MODEL``: choose a model's threshold and instance parameters on validation data."""
from __future__ import annotations

import json
import sys

from unet_rt.cli._common import err


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="choose a model's threshold and instance parameters on validation data",
                       description="Choose the foreground threshold (minimum fraction of wrong pixels) and the "
                                   "instance post-processing parameters (minimum adapted Rand error of the watershed "
                                   "instances) by a grid search on validation images DATA/image + DATA/label (binary "
                                   "masks or instance images), and store them in the model file's decision metadata, "
                                   "which Engine.segment / Engine.instances / the C API then apply. Use validation "
                                   "slices only, never the test slices.")
    p.add_argument("model", help="model file to calibrate")
    p.add_argument("--data", required=True, help="directory with image/ and label/")
    p.add_argument("--slices", default=None,
                   help="validation slices, e.g. 23-24 (file numbers for files named N.png, else positions from 0)")
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
    p.set_defaults(func=run)


def run(args) -> int:
    from unet_rt.eval.calibrate import calibrate_file

    if not args.model:
        return err("no model given")
    try:
        d = calibrate_file(args.model, args.data, args.slices, output=args.output, write=bool(args.output),
                           tta=args.tta, dense=args.dense, progress=not args.quiet, threads=args.threads,
                           tile=args.tile)
    except (ValueError, FileNotFoundError) as e:
        return err(str(e))
    print(json.dumps(d, indent=1))
    c = d["calibration"]
    print(f"validation ({c['images']} images): wrong pixels {c['wrong_pixel_fraction']:.4f} at threshold "
          f"{d['threshold']} (argmax {c['wrong_pixel_fraction_argmax']:.4f}); instances Rand error "
          f"{c['rand_error']:.4f} (connected components {c['rand_error_connected_components']:.4f})", file=sys.stderr)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print("not written: pass -o FILE (a new model file, or the model itself to update it in place)",
              file=sys.stderr)
    return 0
