"""``unet-rt evaluate``: the ISBI 2012 challenge's scores and the decision's errors on labelled data."""
from __future__ import annotations

import json

import numpy as np

from unet_rt.cli._common import add_engine_args, err


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="the ISBI 2012 challenge's scores and the decision's errors on labelled data",
                       description="Evaluate on DATA/image + DATA/label (binary labels: >0 = cell). Scores the "
                                   "probability map p(cell) by the ISBI 2012 challenge's protocol (Arganda-Carreras "
                                   "et al. 2015; best over thresholds 0.0-1.0 for the stack): V_rand and V_info after "
                                   "border thinning, the foreground-restricted Rand error and the pixel error "
                                   "(1 - max F-scores; the U-Net paper's figures) and the splits-and-mergers warping "
                                   "error (Jain et al. 2010). Then the decision (the class map the model returns): "
                                   "fraction of wrong pixels, adapted Rand error of the connected cells (as "
                                   "skimage.metrics.adapted_rand_error, label-0 pixels ignored), IoU, Dice. "
                                   "Definitions: src/unet_rt/eval/ (challenge.py, classmap.py).")
    p.add_argument("--data", required=True, help="directory with image/ and label/")
    p.add_argument("--slices", default=None,
                   help="which slices, e.g. 25-29 (file numbers for files named N.png, else positions from 0 in "
                        "natural order, a stack's pages counting one each)")
    p.add_argument("--baseline", choices=["otsu"], default=None, help="evaluate a plain Otsu threshold instead")
    p.add_argument("--per-image", action="store_true", help="also print each image's scores")
    p.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest score)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--instances", action="store_true",
                   help="Rand error of Engine.instances (the model's calibrated watershed) instead of the connected "
                        "components of the class map")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from unet_rt.engine import Engine
    from unet_rt.eval.baseline import otsu_segment
    from unet_rt.eval.report import evaluate_stack, format_report
    from unet_rt.io.dataset import load_pairs

    if args.instances and args.baseline:
        return err("--instances evaluates a model's instances: it does not go with --baseline")
    try:
        pairs = load_pairs(args.data, args.slices)
    except (ValueError, OSError) as e:
        return err(str(e))
    eng = None
    if not args.baseline:
        if not args.model:
            return err("no model given (-m)")
        try:
            eng = Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile,
                         precision=args.precision)
        except (ValueError, FileNotFoundError, ImportError) as e:
            return err(str(e))
    probs, truths, decisions, instances = [], [], [], []
    for _, img, lab in tqdm(pairs, desc="predict", unit="img", disable=args.json or len(pairs) < 2):
        dec = eng.segment(img, tta=args.tta) if eng else otsu_segment(img)
        probs.append(eng.predict(img, tta=args.tta)[1] if eng else dec.astype(np.float32))  # p(cell)
        truths.append(lab)
        decisions.append(dec)
        if args.instances and eng is not None:  # the model's calibrated watershed, not the components
            instances.append(eng.instances(img, tta=args.tta))
    bar = tqdm(total=len(pairs), desc="score", unit="img", disable=args.json or len(pairs) < 2)
    report = evaluate_stack(probs, truths, decisions, [n for n, _, _ in pairs], warping=not args.no_warping,
                            progress=lambda done, total: bar.update(done - bar.n),
                            instances=instances if args.instances else None)
    bar.close()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(format_report(report, per_image=args.per_image)))
    return 0
