"""``unet-rt segment ... --workers N | --scheduler tcp://host:8786``: segmentation on dask.distributed.

Two modes, chosen by the inputs:

* **one zarr array** (plain zarr, or the full-resolution level of an OME-Zarr image): the labels are
  computed block by block (``unet_rt.scale.segment``) and written into a zarr array at ``-o`` whose
  chunks are exactly the blocks, one task per chunk. zarr writes each chunk to a temporary file and
  renames it; a rerun skips the chunks that exist and decode (one that does not, e.g. truncated by a
  full disk or a copy cut short, is computed again). For an OME-Zarr input, ``-o`` is the
  image itself (or ``IMAGE.zarr/labels/NAME``) and the labels become the NGFF label image
  ``labels/NAME`` beside it, with the image's axes and scale (written with ``ome-zarr``).
  ``--instances`` writes int32 object labels instead (``unet_rt.scale.instances``: objects joined across
  blocks; a rerun recomputes every block's local instances, which the join needs, but writes only
  the missing chunks).
* **many files** (directories, globs, lists): one task per file, one output per input in the ``-o``
  directory, each written by ``unet_rt.files.segment_file`` on a worker, the function the
  single-process CLI runs, with the same options (so the files are the same, metadata included);
  an input whose outputs exist and read back is skipped.

Each worker opens the model once (``unet_rt.scale._engine``); the model path must be readable on
the workers. The progress bar follows the distributed client's futures.
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unet_rt.scale import blocks as ud

LABEL_NAME = "unet-rt"
_WRITE_EMPTY: Any = {"write_empty_chunks": True}  # background-only chunks are written too: they count as done


def add_arguments(p) -> None:
    """The scale-out options of ``unet-rt segment``."""
    g = p.add_argument_group("distributed (needs the dask extra: pip install 'unet-rt[dask]')")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run on a local dask cluster of N worker processes (--threads threads each, default 1)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing dask.distributed cluster, e.g. tcp://host:8786 (the model path "
                        "and the images must be readable on its workers)")
    g.add_argument("--block", type=int, default=2048, metavar="PX",
                   help="zarr input: output block (= output chunk) side in pixels, rounded to whole tiles "
                        "(default 2048)")
    g.add_argument("--halo", type=int, default=128, metavar="PX",
                   help="zarr input with --instances: context around each block for the watershed, in pixels "
                        "(default 128; objects crossing blocks are joined either way, see docs/dask.md)")


def wanted(args) -> bool:
    return bool(getattr(args, "workers", None) or getattr(args, "scheduler", None))


def _err(msg: str) -> int:
    print(f"unet-rt: error: {msg}", file=sys.stderr)
    return 2


def _client(args):
    try:
        import distributed
    except ImportError as e:
        raise ImportError("--workers/--scheduler need dask.distributed: pip install 'unet-rt[dask]'") from e
    if args.scheduler:
        return distributed.Client(args.scheduler), None
    import logging

    # quiet: the workers' shutdown chatter (heartbeats cut by the close) is not the user's business
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads or 1,
                                       processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL)
    return distributed.Client(cluster), cluster


def _expand(inputs) -> list[Path]:
    from unet_rt.io.images import list_images

    out: list[Path] = []
    for a in inputs:
        if not Path(a).exists() and any(c in a for c in "*?["):
            out.extend(Path(p) for p in sorted(glob.glob(a, recursive=True)))
        else:
            out.extend(list_images(a))
    return out


# ------------------------------------------------------------------ zarr input
def _open_zarr_input(path: Path):
    """-> (zarr array, NGFF multiscales dict or None, the image's root group or None), checked as
    open_image checks them (unet_rt.io.images.open_zarr_input)."""
    from unet_rt.io.images import open_zarr_input

    return open_zarr_input(path)


def _axes_names(ms) -> list[str] | None:
    if not ms or "axes" not in ms:
        return None
    return [a["name"] if isinstance(a, dict) else str(a) for a in ms["axes"]]


def _spatial_view(arr, names, in_channels: int):
    """The dask array with the model's layout: (T|Z, Y, X) or (Y, X) (+ C last); the kept axes' names."""
    import dask.array as da

    x = da.from_zarr(arr)
    names = names or [f"dim{i}" for i in range(x.ndim)]
    if in_channels > 1 and "c" in names:
        ci = names.index("c")
        x = da.moveaxis(x, ci, -1)
        names = names[:ci] + names[ci + 1:] + ["c"]
    core = 3 if in_channels > 1 else 2
    keep = [i for i in range(x.ndim) if i >= x.ndim - core or x.shape[i] != 1]
    x = x[tuple(slice(None) if i in keep else 0 for i in range(x.ndim))]
    names = [n for i, n in enumerate(names) if i in keep]
    if x.ndim > core + 1:
        raise ValueError(f"image of shape {arr.shape} has more than one non-singleton axis besides the image "
                         f"plane: the 2-D model runs over (T|Z, Y, X)")
    return x, [n for n in names if n != "c"]


def _label_target(src: Path, out: Path, root) -> tuple[Path, str]:
    """OME-Zarr input: (the image's labels group, label name) for -o."""
    src, out = src.resolve(), out.resolve()
    if out == src:
        return src / "labels", LABEL_NAME
    if out.parent.name == "labels" and out.parent.parent == src:
        return out.parent, out.name
    raise ValueError(f"OME-Zarr input: -o must be the image itself ({src}: labels go to labels/{LABEL_NAME}) "
                     f"or {src}/labels/NAME")


def _create_output(out: Path, shape, chunks, run: dict, ngff: tuple | None, dtype=np.uint8):
    """The output array (created, or reopened for a resume after checking it is this run's)."""
    import zarr

    if ngff is not None:
        labels_dir, name, ms, names, fmt_version, zarr_format = ngff
        target = labels_dir / name
    else:
        target = out
    if target.exists():
        a = zarr.open_array(str(target / "0") if ngff else str(target), mode="r+")
        prev = a.attrs.get("unet-rt")
        if prev != run or tuple(a.shape) != tuple(shape) or tuple(a.chunks) != tuple(chunks):
            raise ValueError(f"{target} exists from another run (model, tile, block or output differ): delete it or "
                             f"choose another output")
        return a
    if ngff is None:
        a = zarr.create_array(str(target), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                              config=_WRITE_EMPTY)
        a.attrs["unet-rt"] = run
        return a
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    fmt = format_from_version(fmt_version)
    labels = zarr.open_group(str(labels_dir), mode="a", zarr_format=zarr_format)
    g = labels.create_group(name)
    a = g.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                       config=_WRITE_EMPTY)
    a.attrs["unet-rt"] = run
    # the image's axes and level-0 scale, without the channel axis
    axes = [ax for ax in ms["axes"] if (ax["name"] if isinstance(ax, dict) else ax) in names]
    keep = [i for i, ax in enumerate(ms["axes"]) if (ax["name"] if isinstance(ax, dict) else ax) in names]
    ct = ms["datasets"][0].get("coordinateTransformations") or [{"type": "scale", "scale": [1.0] * len(ms["axes"])}]
    ct = [{**t, t["type"]: [t[t["type"]][i] for i in keep]} for t in ct if t.get("type") in ("scale", "translation")]
    write_multiscales_metadata(g, [{"path": "0", "coordinateTransformations": ct}], fmt=fmt, axes=axes, name=name)
    write_label_metadata(labels, name, fmt=fmt, source={"image": "../../"})
    return a


def _write_block(block: np.ndarray, path: str, region: tuple) -> int:
    import zarr

    zarr.open_array(path, mode="r+")[tuple(slice(a, b) for a, b in region)] = block
    return int(block.size)


def _done(a, path: Path, idx: tuple) -> bool:
    """Whether chunk idx is written: its file exists and decodes (a truncated or corrupt chunk, e.g. from
    a full disk or a copy cut short, is computed again)."""
    if not (path / a.metadata.encode_chunk_key(idx)).is_file():
        return False
    try:
        a.blocks[idx]
    except Exception:  # the codecs' own error types: whatever does not decode is not done
        return False
    return True


def segment_zarr(src: Path, args, client, progress) -> int:
    import dask

    arr, ms, root = _open_zarr_input(src)
    meta = ud._model_info(str(Path(args.model).resolve()))
    x, names = _spatial_view(arr, _axes_names(ms), int(meta["arch"]["in_channels"]))
    spatial = x.ndim - (1 if int(meta["arch"]["in_channels"]) > 1 else 0)
    if spatial == 3:
        x = x.rechunk({0: 1})  # one plane per task and per chunk
    if args.instances:  # int32 object labels, joined across blocks (the merge needs every block's summary)
        lab = ud.instances(x, args.model, tile=args.tile, block=args.block, halo=args.halo, threads=args.threads)
    else:
        lab = ud.segment(x, args.model, tile=args.tile, block=args.block, threads=args.threads)
    chunks = tuple(c[0] for c in lab.chunks)
    tile = ud._resolve_tile(args.tile, int(meta["arch"]["depth"]), args.block, meta["arch"]["padding"] == "same")
    run = {"model": str(Path(args.model).resolve()), "tile": tile, "block": args.block}
    if args.instances:
        run.update(instances=True, halo=args.halo)
    out = Path(args.output)
    ngff = None
    if ms is not None:
        import zarr

        labels_dir, name = _label_target(src, out, root)
        fmt_version = (dict(root.attrs).get("ome", {}).get("version") or ms.get("version") or "0.4")
        ngff = (labels_dir, name, ms, names, fmt_version, root.metadata.zarr_format)
        del zarr
    a = _create_output(out, lab.shape, chunks, run, ngff, dtype=lab.dtype)
    apath = Path(a.store.root) / a.path if hasattr(a.store, "root") else out
    blocks = lab.to_delayed()
    todo = []
    bounds = [np.cumsum((0,) + c) for c in lab.chunks]
    for idx in np.ndindex(blocks.shape):
        if _done(a, apath, idx):
            continue
        region = tuple((int(b[i]), int(b[i + 1])) for b, i in zip(bounds, idx))
        todo.append(dask.delayed(_write_block)(blocks[idx], str(apath), region))
    total = int(np.prod(blocks.shape))
    if not args.quiet:
        print(f"{src}: {total} chunk(s) of {chunks}, {total - len(todo)} already written; tile {tile}", file=sys.stderr)
    futures = client.compute(todo)
    progress(futures, f"segment {src.name}", "chunk")
    client.gather(futures)
    if not args.quiet:
        print(f"wrote {apath}")
    return 0


# ------------------------------------------------------------------ many files
def _segment_file(src: str, out: str, model: str, threads, tile: int, precision: str, options) -> list[str]:
    """One task: ``unet_rt.files.segment_file`` on a worker, with the worker's cached engine; an input whose
    outputs exist and read back is skipped (returns [])."""
    from unet_rt.files import segment_file

    eng = ud._engine(model, "cpu", threads, tile, precision=precision)
    return [str(p) for p in segment_file(eng, src, out, options, kind="dir", skip_existing=True)]


def segment_files(inputs: list[Path], args, client, progress) -> int:
    from unet_rt.files import SegmentOptions

    try:
        opt = SegmentOptions.from_args(args)
    except ValueError as e:
        return _err(str(e))
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        return _err(f"{out} is a file: with --workers/--scheduler, -o is a directory (one output per input)")
    out.mkdir(parents=True, exist_ok=True)
    stems: dict[str, list[Path]] = {}
    for s in inputs:
        stems.setdefault(s.stem, []).append(s)
    clash = [v for v in stems.values() if len(v) > 1]
    if clash:
        return _err(f"inputs share a name, their outputs would collide: {', '.join(map(str, clash[0]))}")
    model = str(Path(args.model).resolve())
    futures = client.map(_segment_file, [str(s) for s in inputs], out=str(out), model=model, threads=args.threads,
                         tile=args.tile or 0, precision=args.precision, options=opt, pure=False)
    failed = progress(futures, "segment", "img")
    skipped = 0
    for f, s in zip(futures, inputs):
        if f.status == "error":
            exc = f.exception()
            print(f"unet-rt: error: {exc if str(s) in str(exc) else f'{s}: {exc}'}", file=sys.stderr)
        elif not f.result():
            skipped += 1
    if failed:
        print(f"unet-rt: {failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"segmented {len(inputs) - skipped} image(s) ({skipped} already done) -> {out}")
    return 0


# ------------------------------------------------------------------ entry point (from cli.segment)
def segment(args) -> int:
    """``unet-rt segment`` with --workers/--scheduler."""
    try:
        import distributed  # noqa: F401
        import dask.array  # noqa: F401
    except ImportError:
        return _err("--workers/--scheduler need dask and dask.distributed: pip install 'unet-rt[dask]'")
    from tqdm import tqdm

    if not args.model:
        return _err("no model given (-m) and no shipped default model installed")
    if args.workers is not None and args.workers < 1:
        return _err("--workers must be >= 1")
    if args.instances and args.probabilities:
        return _err("--instances and --probabilities exclude each other")
    if args.halo < 0:
        return _err("--halo must be >= 0")
    if args.backend not in ("auto", "cpu"):
        return _err("--workers/--scheduler run the cpu backend")
    try:
        inputs = _expand(args.inputs)
    except OSError as e:
        return _err(str(e))
    missing = [str(p) for p in inputs if not p.exists()]
    if missing or not inputs:
        return _err(f"no such input: {', '.join(missing[:5])}" if missing else "no input images found")

    def progress(futures, desc, unit) -> int:
        from distributed import as_completed

        failed = 0
        with tqdm(total=len(futures), desc=desc, unit=unit, disable=args.quiet) as bar:
            for f in as_completed(futures):
                failed += f.status == "error"
                bar.update(1)
        return failed

    zarr_in = len(inputs) == 1 and (inputs[0].suffix.lower() == ".zarr" or inputs[0].is_dir())
    if zarr_in:
        unsupported = [flag for flag, on in (("--probabilities", args.probabilities), ("--tta", args.tta),
                                              ("--overlay", args.overlay), ("--threshold", args.threshold is not None),
                                              ("--axes", args.axes), ("--channel", args.channel is not None),
                                              ("--level", args.level),
                                              ("--precision bf16", args.precision != "fp32")) if on]
        if unsupported:
            return _err(f"a zarr input with --workers/--scheduler writes its labels chunk by chunk: "
                        f"{', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not available there "
                        f"(segment it without --workers, or give files)")
    try:
        client, cluster = _client(args)
    except (OSError, ImportError, ValueError) as e:
        return _err(f"cannot reach the dask scheduler: {e}")
    try:
        if zarr_in:
            return segment_zarr(inputs[0], args, client, progress)
        return segment_files(inputs, args, client, progress)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        return _err(str(e))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
