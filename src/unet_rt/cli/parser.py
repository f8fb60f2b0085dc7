"""The ``unet-rt`` command line: one module per command (``segment``, ``info``, ``evaluate``,
``calibrate``, ``compile``, ``train`` with ``export``); ``unet-rt COMMAND --help`` for each one's options."""
from __future__ import annotations

import argparse
import sys

from unet_rt import __version__
from unet_rt.cli import calibrate, compile, evaluate, info, segment, train
from unet_rt.cli._common import CLIError, err


def _command_word(argv: list) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unet-rt", description="U-Net segmentation for microscopy (Ronneberger et al. 2015): "
                                "train, export, segment, evaluate, compile.")
    p.add_argument("--version", action="version", version=f"unet-rt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    segment.add_parser(sub)
    info.add_parser(sub)
    evaluate.add_parser(sub)
    calibrate.add_parser(sub)
    compile.add_parser(sub)
    train.add_parsers(sub, wanted=_command_word(argv) == "train")
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
        return err(str(e))
    except KeyboardInterrupt:
        print("unet-rt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
