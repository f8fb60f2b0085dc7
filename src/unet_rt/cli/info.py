"""``unet-rt info MODEL``: a model file's architecture, normalisation, decision and provenance."""
from __future__ import annotations

import json

import numpy as np

from unet_rt.cli._common import err


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show a model file's architecture, normalisation and provenance")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from unet_rt.format import model_file

    try:
        mf = model_file.load(args.model, tensors=False)
    except (ValueError, OSError) as e:
        return err(str(e))
    kind = mf.kind
    d = {"path": args.model, "kind": kind, "arch": mf.arch, "normalization": mf.normalization,
         "class_names": mf.class_names, "provenance": mf.provenance, "decision": mf.decision or "argmax (uncalibrated)",
         **mf.extra}
    if kind == "weights":
        from unet_rt.format.geometry import halo, valid_input_sizes
        from unet_rt.format.model_file import expected_shapes

        a = mf.arch
        d["halo"] = halo(a["depth"], a["padding"])
        d["tile_sizes"] = [f"{i}->{o}" for i, o in valid_input_sizes(1, 1100, a["depth"], a["padding"])][:8]
        d["parameters"] = int(sum(np.prod(s) for s in expected_shapes(a).values()))
    try:  # the machine as the native runtime sees it: kernels chosen, tiers available, cache sizes (bytes)
        from unet_rt import _core

        d["cpu"] = _core.cpu_info()
    except ImportError:  # pragma: no cover - a source tree without the compiled core
        pass
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        for k, v in d.items():
            print(f"{k:>14}: {v}")
    return 0
