"""Export a training run to the runtime model file (and optionally ONNX).

    python -m unet_rt.train.export runs/isbi -o model.plan          # best validated weights (best.plan)
    python -m unet_rt.train.export runs/isbi -o model.plan --last   # the last checkpoint
    unet-rt compile model.plan --target onnx --tile 572 -o model.onnx   # fixed-tile ONNX
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unet_rt.format import model_file


def export_run(run: Path, output: Path, last: bool = False) -> Path:
    run = Path(run)
    if not (run / "checkpoint.json").exists():
        raise FileNotFoundError(f"{run}: no checkpoint.json (not a training run directory)")
    if not last and (run / "best.plan").exists():
        mf = model_file.load(run / "best.plan")
    else:
        import torch  # noqa: F401  (safetensors.torch needs it)
        from safetensors.torch import load_file

        from unet_rt.train.model import UNet, to_model_file
        from unet_rt.train.train import _provenance

        state = json.loads((run / "checkpoint.json").read_text())
        cfg = state["config"]
        t = load_file(str(run / "checkpoint.safetensors"))
        sd = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
        c0 = sd["enc.0.conv1.weight"].shape[1]
        net = UNet(c0, sd["head.weight"].shape[0], cfg["depth"], cfg["base"], cfg["padding"],
                   norm=cfg.get("norm", "none"))
        net.load_state_dict(sd)
        mf = to_model_file(net, cfg["normalization"], cfg["class_names"].split(","), _provenance(cfg, state))
    model_file.save(output, mf)
    return Path(output)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unet_rt.train.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="training run directory")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--last", action="store_true", help="the last checkpoint instead of the best validated weights")
    a = p.parse_args(argv)
    try:
        out = export_run(Path(a.run), Path(a.output), a.last)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
