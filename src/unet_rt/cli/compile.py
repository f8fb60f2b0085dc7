"""``unet-rt compile``: a weights file -> a fixed-tile ONNX graph or a TensorRT plan.

Wired into ``unet_rt.cli`` as a subcommand through ``add_arguments(parser)`` and ``run(args)``;
``python -m unet_rt.cli.compile`` runs it alone. ``--target onnx`` needs only the ``onnx``
package; ``--target tensorrt`` needs TensorRT and a GPU (and fails cleanly, writing nothing,
without them).
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

__all__ = ["add_parser", "add_arguments", "run", "main"]

DESCRIPTION = "Compile a trained model (unet-rt weights file) for one fixed tile size."
EPILOG = textwrap.dedent("""\
    The tile is the network's input size in pixels; the output tile is smaller by twice the halo
    (92 px per side for the paper's depth-4 valid network: 572 -> 388, 700 -> 516, ... steps of 16).
    Same-padded networks need a tile divisible by 2**depth. Pick the tile that will be used at run
    time: an engine runs only the size it was built for.

    examples:
      unet-rt compile model.plan --target onnx -o unet572.onnx --tile 572
      unet-rt compile model.plan --target tensorrt -o model_trt.plan --tile 700 --precision fp16 \\
          --timing-cache ~/.cache/unet-rt/h100.cache

    A TensorRT plan runs only under the TensorRT version and on the GPU model that built it: build
    it on the machine that will run it. --precision fp16 exports fp16 weights and activations into
    the graph (TensorRT 11 has no FP16 builder flag; strongly typed networks take their precision
    from the graph), with fp32 input and output.
    """)


def add_parser(sub) -> None:
    """``unet-rt compile`` as a subcommand."""
    p = sub.add_parser("compile", help="compile a model into a TensorRT plan (or a fixed-tile ONNX file)",
                       description="Compile a unet-rt weights file for one input tile size: --target onnx writes a "
                                   "static-shape ONNX graph (needs only the onnx package); --target tensorrt builds a "
                                   "TensorRT engine and stores it in a unet-rt container that unet_rt.Engine opens like "
                                   "any model file (needs TensorRT and an NVIDIA GPU; without them it fails and writes "
                                   "nothing).")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = parser.description or DESCRIPTION
    if parser.epilog is None:
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", metavar="MODEL", help="unet-rt weights file (from training/ or 'unet-rt export')")
    parser.add_argument("--target", choices=("tensorrt", "onnx", "bioimageio", "unet-rt", "plan"), required=True,
                        help="onnx: a static-shape ONNX graph; tensorrt: a TensorRT engine in the unet-rt container "
                             "(opens with unet_rt.Engine like any model file); bioimageio: a BioImage Model Zoo "
                             "package (.zip: rdf.yaml, ONNX weights, test tensors); unet-rt: import a bioimage.io "
                             "package (MODEL = the .zip) back into a unet-rt model file (plan: its old name, "
                             "deprecated)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="file to write (atomically)")
    parser.add_argument("--tile", type=int, default=None, metavar="N",
                        help="input tile size in pixels (e.g. 572 or 700 for the paper's network; required "
                             "except for --target unet-rt)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp32 (default) or fp16 weights and activations (I/O stays fp32)")
    parser.add_argument("--batch", type=int, default=1, metavar="B", help="tiles per inference (default 1)")
    trt = parser.add_argument_group("TensorRT only")
    trt.add_argument("--timing-cache", metavar="F",
                     help="TensorRT timing cache file: read if present, updated after the build (rebuilds get faster)")
    trt.add_argument("--workspace-mb", type=int, metavar="N", help="builder workspace limit in MiB (default: TensorRT's)")
    trt.add_argument("--tf32", action="store_true",
                     help="allow TF32 tensor-core math in fp32 engines (faster, ~1e-3 relative error)")
    trt.add_argument("--weak-fp16", action="store_true",
                     help="TensorRT 10 only: build fp16 with the FP16 builder flag on the fp32 graph "
                          "(TensorRT picks per-layer precision) instead of the fp16 graph")
    trt.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    trt.add_argument("--verbose", action="store_true", help="show TensorRT's verbose build log on failure")
    return parser


def _err(msg: str) -> int:
    print(f"unet-rt compile: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from unet_rt.format.model_file import ModelFileError, load

    src, out = Path(args.model), Path(args.output)
    if args.target == "plan":  # the old name of the import target: "plan" is the model file's extension
        print("unet-rt compile: --target plan is deprecated: it is --target unet-rt (import into a unet-rt model "
              "file)", file=sys.stderr)
        args.target = "unet-rt"
    if args.target in ("bioimageio", "unet-rt"):
        from unet_rt.export.bioimageio import cli_run

        return cli_run(args, _err)
    if args.tile is None:
        return _err(f"--target {args.target} needs --tile")
    if args.target == "onnx":
        for opt in ("timing_cache", "workspace_mb"):
            if getattr(args, opt, None) is not None:
                return _err(f"--{opt.replace('_', '-')} only applies to --target tensorrt")
        if getattr(args, "tf32", False) or getattr(args, "weak_fp16", False):
            return _err("--tf32 and --weak-fp16 only apply to --target tensorrt")
    if args.batch < 1:
        return _err(f"--batch must be >= 1, got {args.batch}")
    if args.workspace_mb is not None and args.workspace_mb < 1:
        return _err(f"--workspace-mb must be >= 1, got {args.workspace_mb}")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        return _err("the output would overwrite the input model: choose another -o")
    if not out.parent.is_dir():
        return _err(f"output directory {out.parent} does not exist")
    if args.target == "tensorrt":
        from unet_rt.backends.tensorrt import INSTALL_HINT, available

        if not available():
            return _err(f"--target tensorrt needs TensorRT, which is not installed; nothing was written.\n{INSTALL_HINT}")
    try:
        mf = load(src)
    except (FileNotFoundError, ModelFileError) as e:
        return _err(str(e))
    if mf.kind != "weights":
        return _err(f"{src} holds a {mf.kind!r} model; compile needs a weights file")
    from unet_rt.format import geometry

    depth, padding = int(mf.arch["depth"]), mf.arch.get("padding", "valid")
    try:
        from unet_rt.export.onnx import _check_tile

        _check_tile(args.tile, mf.arch)        # before any GPU work
        if args.target == "onnx":
            from unet_rt.export.onnx import export_onnx

            export_onnx(mf, args.tile, path=out, dtype="float16" if args.precision == "fp16" else "float32",
                        batch=args.batch)
        else:
            from unet_rt.backends.tensorrt import compile_model

            compile_model(mf, args.tile, out, precision=args.precision, batch=args.batch,
                          workspace_mb=args.workspace_mb, timing_cache=args.timing_cache, tf32=args.tf32,
                          weak_fp16=args.weak_fp16, device=args.device, verbose=args.verbose)
    except ImportError as e:
        return _err(str(e))
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        return _err(str(e))
    o = geometry.output_size(args.tile, depth, padding)
    print(f"wrote {out}: {args.target} {args.precision}, tile {args.tile} -> {o} "
          f"(halo {(args.tile - o) // 2}), batch {args.batch}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="unet-rt compile", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
