"""``unet-rt train`` and ``unet-rt export``: the trainer's commands (``unet_rt.train``, the ``[train]`` extra).
The only place outside ``unet_rt.train`` that imports the trainer (``make lint`` checks it)."""
from __future__ import annotations

import argparse

from unet_rt.cli._common import CLIError

HELP = "train a U-Net (the trainer of src/unet_rt/train/train.py; needs the train extra)"


def add_parsers(sub, wanted: bool) -> None:
    """The train command's options are the trainer's own parser (unet_rt.train.train.build_parser); it
    imports torch, so it is built only when the command line asks for ``train`` (``wanted``)."""
    p = sub.add_parser("train", help=HELP, description=HELP + ".", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run_train)
    if wanted:
        try:
            from unet_rt.train.train import build_parser
        except ImportError as e:
            raise CLIError(f"training needs the train extra: pip install 'unet-rt[train]' ({e})") from None
        build_parser(p)
    p = sub.add_parser("export", help="turn a training run's checkpoint into a runtime model file")
    p.add_argument("run", help="run directory (holding checkpoint.safetensors/.json)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--last", action="store_true", help="export the last checkpoint, not the best validated one")
    p.set_defaults(func=run_export)


def run_train(args) -> int:
    from unet_rt.train.train import main as train_main

    return train_main(args.argv[args.argv.index("train") + 1:])


def run_export(args) -> int:
    try:
        from unet_rt.train.export import main as export_main
    except ImportError as e:
        raise CLIError(f"export needs the train extra: pip install 'unet-rt[train]' ({e})") from None
    return export_main([args.run, "-o", args.output] + (["--last"] if args.last else []))
