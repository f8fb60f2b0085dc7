"""What the ``unet-rt`` commands share: the user-error type, the engine options and the shipped model."""
from __future__ import annotations

import sys

from unet_rt.format.model_file import SHIPPED_MODEL as DEFAULT_MODEL  # the shipped model (src/unet_rt/models/)


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def default_model() -> str | None:
    return str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None


def err(msg: str) -> int:
    print(f"unet-rt: error: {msg}", file=sys.stderr)
    return 2


def add_engine_args(p) -> None:
    """-m, --backend, --threads, --tile, --tta, --precision."""
    p.add_argument("-m", "--model", default=default_model(),
                   help="model file (default: the shipped ISBI 2012 model%s)" % ("" if default_model() else ", not installed"))
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "triton", "tensorrt"],
                   help="auto: cpu for weights, tensorrt for a TensorRT plan")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--tile", type=int, default=None, help="input tile size (default: chosen per image)")
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (8x slower)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="CPU arithmetic: fp32 (default, exact) or bf16 (faster on CPUs with AVX512-BF16; "
                        "labels agree with fp32 on >= 99.5%% of pixels of the shipped model's test images)")


def open_engine(args):
    """The Engine of the parsed engine options; a bad model or option is a CLIError."""
    from unet_rt.engine import Engine

    if not args.model:
        raise CLIError("no model given (-m) and no shipped default model installed")
    try:
        return Engine(args.model, backend=args.backend, threads=args.threads, tile=args.tile,
                      precision=args.precision)
    except (ValueError, FileNotFoundError, ImportError, OSError) as e:
        raise CLIError(str(e)) from None
