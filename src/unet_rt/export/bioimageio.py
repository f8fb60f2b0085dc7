"""BioImage Model Zoo (bioimage.io) packages: export a unet-rt model, import one back.

    unet-rt compile model.plan --target bioimageio --tile 572 -o model.zip
    unet-rt compile model.zip --target unet-rt -o model.plan       # import (our own packages and
                                                                  # any ONNX U-Net named like ours)

The package is an rdf.yaml (model spec 0.5, written by ``bioimageio.spec``) with:
- ONNX weights from :func:`unet_rt.export.onnx.export_onnx` (one fixed tile, logits out);
- the model's normalisation as pre-processing (``fixed_zero_mean_unit_variance`` along the channel
  axis, raw pixel units: 16-bit data stays 16-bit) and softmax as post-processing, so the package
  outputs the same class probabilities as ``Engine.predict``;
- the output size as the input size minus twice the halo (``SizeReference`` offset: the paper's
  unpadded network);
- test tensors computed by unet-rt's own native engine on a mirror-padded tile (so that
  ``bioimageio.core``'s model test, which runs the ONNX weights with onnxruntime, checks the
  export against our runtime), a cover image, and the U-Net paper as citation.

Needs the ``bioimageio`` extra (bioimageio.core, onnx, onnxruntime).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from unet_rt.format import geometry
from unet_rt.format import model_file
from unet_rt.io.images import missing_extra

__all__ = ["export_package", "import_package", "test_package"]

CITATION = ("Ronneberger, O., Fischer, P., Brox, T.: U-Net: Convolutional Networks for Biomedical Image "
            "Segmentation. MICCAI 2015, LNCS 9351, 234-241")
CITATION_DOI = "10.1007/978-3-319-24574-4_28"


def _spec():
    try:
        import bioimageio.spec  # noqa: F401
        from bioimageio.spec.model import v0_5
    except ImportError as e:
        raise missing_extra("bioimageio", "bioimage.io packages", e) from None
    return v0_5


def _test_input(mf: model_file.ModelFile, tile: int, sample: np.ndarray | None) -> np.ndarray:
    """A C x O x O image (O = output tile): a crop of ``sample`` or smooth synthetic blobs."""
    o = geometry.output_size(tile, int(mf.arch["depth"]), mf.arch["padding"])
    c = int(mf.arch["in_channels"])
    mean, std = np.asarray(mf.normalization["mean"]), np.asarray(mf.normalization["std"])
    if sample is not None:
        s = np.asarray(sample, np.float32)
        s = s[None] if s.ndim == 2 else np.moveaxis(s, -1, 0)
        if s.shape[0] != c or s.shape[1] < o or s.shape[2] < o:
            raise ValueError(f"the sample image {sample.shape} does not fit a {c}-channel {o}x{o} test tile")
        y0, x0 = (s.shape[1] - o) // 2, (s.shape[2] - o) // 2
        return np.ascontiguousarray(s[:, y0:y0 + o, x0:x0 + o])
    yy, xx = np.mgrid[0:o, 0:o] / max(o, 1)
    blobs = np.sin(9 * yy) * np.cos(7 * xx)
    return np.stack([mean[i] + 2 * std[i] * blobs for i in range(c)]).astype(np.float32)


def _cover(img_chw: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Input (grey) and the labels tinted on it, side by side (2:1, as bioimage.io recommends)."""
    from PIL import Image

    from unet_rt.io.images import overlay

    grey = img_chw.mean(axis=0)
    left = overlay(grey, np.full(grey.shape, -1), alpha=0)
    right = overlay(grey, labels, cls=0)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def export_package(model_path, tile: int, out, sample: np.ndarray | None = None, name: str | None = None,
                   authors: list[str] | None = None, license: str = "MIT") -> Path:
    """Write a bioimage.io model package (zip) for ``model_path`` at one fixed input ``tile``."""
    v = _spec()
    from bioimageio.spec import save_bioimageio_package

    from unet_rt.engine import Engine
    from unet_rt.export.onnx import OPSET, _check_tile, export_onnx

    mf = model_file.load(model_path)
    if mf.kind != "weights":
        raise ValueError(f"{model_path} holds a {mf.kind!r} model: a bioimage.io package needs a weights file")
    _check_tile(tile, mf.arch)
    a = mf.arch
    depth, padding, c, k = int(a["depth"]), a["padding"], int(a["in_channels"]), int(a["classes"])
    o = geometry.output_size(tile, depth, padding)
    halo = (tile - o) // 2
    img = _test_input(mf, tile, sample)                                  # C x O x O
    # test output from our native engine: one tile, mirror-padded as the tiler does
    eng = Engine(model_path, tile=tile, threads=1)
    probs = eng.predict(np.moveaxis(img, 0, -1) if c > 1 else img[0])     # K x O x O
    x = np.pad(img, ((0, 0), (halo, halo), (halo, halo)), mode="reflect") if halo else img
    tmp = Path(tempfile.mkdtemp(prefix="unet-rt-bioimageio-"))
    np.save(tmp / "test_input.npy", x[None].astype(np.float32))
    np.save(tmp / "test_output.npy", probs[None].astype(np.float32))
    export_onnx(mf, tile, path=tmp / "weights.onnx")
    _cover(x[:, halo:tile - halo, halo:tile - halo], probs.argmax(0), tmp / "cover.png")
    arch_txt = f"depth {depth}, base width {a['base']}, {padding} 3x3 convolutions"
    (tmp / "README.md").write_text(
        f"# {name or Path(model_path).stem}\n\nA U-Net (Ronneberger et al. 2015; {arch_txt}) trained with unet-rt.\n\n"
        f"Input: {c} channel(s) of raw pixel values (the pre-processing normalises them with the training "
        f"mean/std {mf.normalization}); one {tile}x{tile} tile. Output: the probabilities of the classes "
        f"{', '.join(mf.class_names)}, {o}x{o} (the input less a {halo}-pixel halo on each side: segment larger "
        f"images tile by tile with that overlap, as unet-rt's overlap-tile strategy does).\n\n"
        f"Provenance: {json.dumps(mf.provenance)}\n")
    inp_id, out_id = v.TensorId("input"), v.TensorId("output")
    ch = v.AxisId("channel")
    pre = [v.FixedZeroMeanUnitVarianceDescr(kwargs=v.FixedZeroMeanUnitVarianceAlongAxisKwargs(
        mean=[float(m) for m in mf.normalization["mean"]], std=[float(s) for s in mf.normalization["std"]], axis=ch))]
    descr = v.ModelDescr(
        name=name or f"unet-rt U-Net {Path(model_path).stem}",
        description=f"U-Net ({arch_txt}) for {k}-class semantic segmentation of microscopy images, exported by unet-rt.",
        authors=[v.Author(name=n) for n in (authors or ["unet-rt"])],
        cite=[v.CiteEntry(text=CITATION, doi=CITATION_DOI)],
        license=license,
        documentation=v.FileDescr(source=tmp / "README.md"),
        covers=[v.FileDescr(source=tmp / "cover.png")],
        tags=["unet", "segmentation", "2d", "unet-rt", "onnx"],
        inputs=[v.InputTensorDescr(
            id=inp_id, description=f"raw image, {c} channel(s)",
            axes=[v.BatchAxis(size=1), v.ChannelAxis(channel_names=[v.Identifier(f"c{i}") for i in range(c)]),
                  v.SpaceInputAxis(id=v.AxisId("y"), size=tile), v.SpaceInputAxis(id=v.AxisId("x"), size=tile)],
            test_tensor=v.FileDescr(source=tmp / "test_input.npy"),
            preprocessing=pre)],
        outputs=[v.OutputTensorDescr(
            id=out_id, description="class probabilities",
            axes=[v.BatchAxis(size=1), v.ChannelAxis(channel_names=[v.Identifier(_ident(n)) for n in mf.class_names]),
                  v.SpaceOutputAxis(id=v.AxisId("y"), size=v.SizeReference(tensor_id=inp_id, axis_id=v.AxisId("y"),
                                                                           offset=-2 * halo)),
                  v.SpaceOutputAxis(id=v.AxisId("x"), size=v.SizeReference(tensor_id=inp_id, axis_id=v.AxisId("x"),
                                                                           offset=-2 * halo))],
            test_tensor=v.FileDescr(source=tmp / "test_output.npy"),
            postprocessing=[v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=ch))])],
        weights=v.WeightsDescr(onnx=v.OnnxWeightsDescr(source=tmp / "weights.onnx", opset_version=OPSET)),
        config={"unet_rt": {"arch": dict(a), "normalization": mf.normalization, "class_names": list(mf.class_names),
                            "tile": tile, "halo": halo}},
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part.zip")
    save_bioimageio_package(descr, output_path=part)
    part.replace(out)
    return out


def _ident(s: str) -> str:
    t = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(s))
    return t if t and not t[0].isdigit() else "c_" + t


def test_package(path) -> dict:
    """Run bioimageio.core's own model test on a package; returns its summary as a dict."""
    _spec()
    try:
        from bioimageio.core import test_model
    except ImportError as e:
        raise missing_extra("bioimageio", "testing bioimage.io packages", e) from None
    summary = test_model(str(path))
    return {"status": summary.status, "details": [(d.name, d.status, [e.msg for e in d.errors]) for d in summary.details]}


def import_package(path, out) -> Path:
    """A bioimage.io package with ONNX weights of a U-Net named like ours -> a unet-rt model file.

    The architecture is read from the package's ``config.unet_rt`` (our exports) or else from the
    ONNX graph's unet-rt metadata; the weights are the graph's initializers, checked against the
    architecture's expected names and shapes by :func:`unet_rt.format.model_file.save`. Other networks
    (other layer names, batch norm, other heads) are refused with a message."""
    _spec()
    from bioimageio.spec import load_model_description

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise missing_extra("bioimageio", "importing bioimage.io packages", e) from None
    try:
        descr = load_model_description(str(path), perform_io_checks=False)
    except Exception as e:  # bioimageio.spec raises many kinds for files that are not packages
        raise ValueError(f"{path}: not a bioimage.io model package ({type(e).__name__}: {str(e)[:200]})") from None
    if getattr(descr, "weights", None) is None or descr.weights.onnx is None:
        raise ValueError(f"{path}: no ONNX weights in this package (unet-rt imports ONNX U-Nets)")
    from bioimageio.spec.utils import download

    graph = onnx.load_model_from_string(download(descr.weights.onnx.source).read())
    meta = {p.key: p.value for p in graph.metadata_props}
    cfg = (descr.config or {}).get("unet_rt") if isinstance(descr.config, dict) else None
    cfg = dict(cfg or {})
    if not cfg and "unet_rt.arch" in meta:
        cfg = {"arch": json.loads(meta["unet_rt.arch"]), "normalization": json.loads(meta["unet_rt.normalization"]),
               "class_names": json.loads(meta["unet_rt.class_names"])}
    if not cfg.get("arch"):
        raise ValueError(f"{path}: not a unet-rt U-Net (no unet_rt architecture in the package config or the ONNX "
                         f"metadata): its architecture is not one unet-rt can run")
    tensors = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.graph.initializer}
    expected = model_file.expected_shapes(cfg["arch"])
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path}: the ONNX graph lacks weights {missing[:3]}: not this U-Net architecture")
    mf = model_file.ModelFile(kind="weights", arch=dict(cfg["arch"]), normalization=cfg["normalization"],
                              class_names=list(cfg["class_names"]), tensors={n: tensors[n] for n in expected},
                              provenance={"imported_from": "bioimage.io package", "name": descr.name})
    model_file.save(out, mf)
    return Path(out)


def cli_run(args, err) -> int:
    """``unet-rt compile --target bioimageio|unet-rt`` (see unet_rt.cli.compile for the options)."""
    src, out = Path(args.model), Path(args.output)
    if not src.exists():
        return err(f"no such file: {src}")
    if out.exists() and out.resolve() == src.resolve():
        return err("the output would overwrite the input: choose another -o")
    try:
        if args.target == "bioimageio":
            if args.tile is None:
                return err("--target bioimageio needs --tile (the package's fixed input tile)")
            if out.suffix.lower() != ".zip":
                return err(f"-o {out}: a bioimage.io package is a .zip")
            export_package(src, args.tile, out)
            print(f"wrote {out}: bioimage.io model package, ONNX weights, tile {args.tile}")
        else:
            import_package(src, out)
            print(f"wrote {out}: unet-rt model file imported from {src}")
    except (ValueError, OSError, ImportError, model_file.ModelFileError) as e:
        return err(str(e))
    return 0
