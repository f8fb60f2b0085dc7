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

Needs the ``bioimageio`` extra (bioimageio.core, onnx, onnxruntime; the import needs only onnx and
PyYAML: it reads the package itself, see :func:`import_package`).
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
    # the package's files are staged in a temporary folder that goes away whatever happens
    with tempfile.TemporaryDirectory(prefix="unet-rt-bioimageio-") as tmp_name:
        tmp = Path(tmp_name)
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
        try:
            save_bioimageio_package(descr, output_path=part)
            part.replace(out)
        finally:
            part.unlink(missing_ok=True)
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

    ``path`` is a local package: a ``.zip``, or a folder holding ``rdf.yaml`` (or that rdf.yaml).
    The architecture, normalisation and class names are read from the package's ``config.unet_rt``
    in rdf.yaml (our exports write it) or else from the ONNX graph's unet-rt metadata
    (``unet_rt.arch``, ``unet_rt.normalization``, ``unet_rt.class_names``); they are validated as
    a model file's are before anything is computed from them. The weights are the graph's
    initializers, checked against the architecture's expected names and shapes. Other networks
    (other layer names, batch norm, other heads) are refused with a message.

    The import reads only the package (see :mod:`unet_rt.export.bioimageio_package`): never the
    network, never a file outside it. The weights ``source`` must name a regular file inside the
    package (no URL, absolute path, ``..`` or link); ONNX external data is refused. Caps, checked
    before reading: rdf.yaml 256 KiB and 20,000 YAML nodes with aliases expanded (nesting 64); the
    zip at most 10,000 entries, each at most 256 MiB and all together 1 GiB uncompressed; the ONNX
    weights at most ``MAX_WEIGHTS_BYTES`` (200 MiB: the paper's U-Net is 124 MB in float32), at
    most 200,000 protobuf fields, checked on the wire before parsing (``MAX_ONNX_FIELDS``). An import
    at the weights cap peaks under 1 GB of memory.
    Every refusal is a ``ValueError`` with the reason; nothing is written unless the import succeeds.
    """
    from unet_rt.export.bioimageio_package import PackageError, check_source, open_package

    with open_package(path) as pkg:
        rdf = pkg.rdf()
        where = f"{pkg.where}: {pkg.rdf_name()}"
        if rdf.get("type") != "model":
            raise PackageError(f"{where}: not a bioimage.io model package (type {_short(rdf.get('type'))}, "
                               f"expected 'model')")
        weights = rdf.get("weights")
        onnx_entry = weights.get("onnx") if isinstance(weights, dict) else None
        if onnx_entry is None:
            raise PackageError(f"{where}: no ONNX weights in this package (unet-rt imports ONNX U-Nets)")
        if not isinstance(onnx_entry, dict):
            raise PackageError(f"{where}: weights.onnx must be a mapping with a 'source'")
        if onnx_entry.get("external_data") is not None:
            raise PackageError(f"{where}: ONNX weights with external data are not supported: unet-rt imports a "
                               f"package whose weights.onnx holds all its tensors")
        cfg = _rdf_config(rdf, where)
        source = check_source(onnx_entry.get("source"), f"{where}: weights.onnx source")
        box = [pkg.read(source, MAX_WEIGHTS_BYTES)]   # handed over in a list: freed as soon as it is parsed
        name = rdf.get("name") if isinstance(rdf.get("name"), str) else None
        name = name[:200].encode("utf-8", "replace").decode("utf-8") if name else None
        where = f"{pkg.where}: {source}"
    mf = _model_from_onnx(box, cfg, where, name)
    model_file.save(out, mf)
    return Path(out)


MAX_WEIGHTS_BYTES = 200 * 1024 * 1024    # peak memory of an import ~ 4x this (safetensors' copies)


def _short(x, n: int = 80) -> str:
    r = repr(x)
    return r if len(r) <= n else r[:n] + "..."


def _rdf_config(rdf: dict, where: str) -> dict | None:
    """``config.unet_rt`` of rdf.yaml (None when absent)."""
    from unet_rt.export.bioimageio_package import PackageError

    config = rdf.get("config")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise PackageError(f"{where}: config must be a mapping, got {_short(config)}")
    cfg = config.get("unet_rt")
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise PackageError(f"{where}: config.unet_rt must be a mapping, got {_short(cfg)}")
    return cfg


MAX_ONNX_FIELDS = 200_000        # protobuf fields in weights.onnx (a U-Net's has a few thousand)


def _check_onnx_wire(data: bytes, desc, where: str) -> None:
    """Walk the protobuf wire format of ``data`` (schema: ``desc``) without building anything and
    refuse what would parse into far more memory than its size: more than ``MAX_ONNX_FIELDS``
    fields (millions of empty nodes, strings or unpacked numbers: 2 bytes each on the wire, ~100 in
    memory), packed integers worth more than MAX_WEIGHTS_BYTES once unpacked, nesting deeper than
    32, or a truncated message. Raw tensor data (``raw_data``) is one field whatever its size."""
    from unet_rt.export.bioimageio_package import PackageError

    fd = desc.fields_by_number[next(iter(desc.fields_by_number))].__class__
    message, text = fd.TYPE_MESSAGE, (fd.TYPE_STRING, fd.TYPE_BYTES)
    varints = (fd.TYPE_INT32, fd.TYPE_INT64, fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_SINT32, fd.TYPE_SINT64,
               fd.TYPE_ENUM, fd.TYPE_BOOL)
    buf = memoryview(data)
    count = [0, 0]     # fields, bytes of memory once parsed (estimated)

    def bad(msg):
        return PackageError(f"{where}: not an ONNX model ({msg})")

    def varint(i: int, end: int) -> tuple[int, int]:
        v = shift = 0
        while True:
            if i >= end or shift > 63:
                raise bad("truncated or overlong varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v, i
            shift += 7

    def walk(d, i: int, end: int, depth: int) -> None:
        if depth > 32:
            raise bad("messages nested deeper than 32")
        while i < end:
            key, i = varint(i, end)
            wt, f = key & 7, (d.fields_by_number.get(key >> 3) if d is not None else None)
            count[0] += 1
            if count[0] > MAX_ONNX_FIELDS:
                raise PackageError(f"{where}: more than {MAX_ONNX_FIELDS} protobuf fields in the ONNX file: not a "
                                   f"U-Net unet-rt imports (and it would take far more memory than its size)")
            if wt == 0:
                _, i = varint(i, end)
                count[1] += 8
            elif wt in (1, 5):
                i += 8 if wt == 1 else 4
                count[1] += 8
            elif wt == 2:
                n, i = varint(i, end)
                j = i + n
                if j > end:
                    raise bad("a field runs past its message")
                if f is not None and f.type == message:
                    count[1] += 64
                    walk(f.message_type, i, j, depth + 1)
                elif f is None or f.type in text:
                    count[1] += 32 + n
                else:                                   # packed numbers
                    count[1] += n * (8 if f.type in varints else 1)
                i = j
            else:
                raise bad(f"wire type {wt}")
            if count[1] > MAX_WEIGHTS_BYTES + (64 << 20):
                raise PackageError(f"{where}: the ONNX file would take more than "
                                   f"{(MAX_WEIGHTS_BYTES >> 20) + 64} MiB once parsed: not a U-Net unet-rt imports")
        if i != end:
            raise bad("a field runs past its message")

    walk(desc, 0, len(buf), 0)



def _checked_metadata(arch: str, norm: str, names: str, where: str) -> tuple[dict, dict, list]:
    """``arch``, ``normalization`` and ``class_names`` (JSON texts) checked by the native model reader:
    a file holding only the metadata, which the reader checks before the tensors (so a complaint about
    the tensors alone means the metadata passed). Returns them parsed."""
    import struct

    from unet_rt.export.bioimageio_package import PackageError

    head = {"__metadata__": {"format": "unet-rt", "format_version": "1", "kind": "weights", "arch": arch,
                             "normalization": norm, "class_names": names, "provenance": "{}"}}
    try:
        h = json.dumps(head).encode("utf-8")
    except UnicodeEncodeError:
        raise PackageError(f"{where}: a class name holds an unpaired surrogate") from None
    try:
        model_file.native().read_model_bytes(struct.pack("<Q", len(h)) + h, where)
    except model_file.ModelFileError as e:
        if "weights do not match the architecture" not in str(e):
            raise PackageError(str(e)) from None
    return json.loads(arch), json.loads(norm), list(json.loads(names))

def _model_from_onnx(box: list, cfg: dict | None, where: str, name: str | None) -> model_file.ModelFile:
    """The model file of the ONNX bytes in ``box`` (emptied, so that they are freed once parsed)."""
    from unet_rt.export.bioimageio_package import PackageError

    data = box.pop()

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise missing_extra("bioimageio", "importing bioimage.io packages", e) from None
    _check_onnx_wire(data, onnx.ModelProto.DESCRIPTOR, where)
    graph = onnx.ModelProto()
    try:
        graph.ParseFromString(data)   # not onnx.load*: those read external data from the current directory
    except Exception as e:  # google.protobuf.message.DecodeError (and RuntimeError from some backends)
        raise PackageError(f"{where}: not an ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    del data
    meta = {p.key: p.value for p in graph.metadata_props}
    if cfg is not None:
        what = "config.unet_rt of rdf.yaml"
        try:
            texts = [json.dumps(v, allow_nan=False) for v in
                     (cfg.get("arch"), cfg.get("normalization"), cfg.get("class_names", []))]
        except (TypeError, ValueError, RecursionError) as e:
            raise PackageError(f"{where}: {what}: not JSON data ({e})") from None
    elif "unet_rt.arch" in meta:
        what = "the ONNX metadata"
        if "unet_rt.normalization" not in meta:
            raise PackageError(f"{where}: the ONNX metadata has unet_rt.arch but no unet_rt.normalization")
        texts = [meta["unet_rt.arch"], meta["unet_rt.normalization"], meta.get("unet_rt.class_names", "[]")]
    else:
        raise PackageError(f"{where}: not a unet-rt U-Net (no unet_rt architecture in the package config or the "
                           f"ONNX metadata): its architecture is not one unet-rt can run")
    # validated by the native reader (the one validator of model files) before any shape is computed
    arch, norm, names = _checked_metadata(*texts, where=f"{where}: {what}")
    expected = model_file.expected_shapes(arch)
    inits = {}
    for t in graph.graph.initializer:
        if t.name in expected:
            if t.name in inits:
                raise PackageError(f"{where}: two initializers named {t.name!r}")
            inits[t.name] = t
    missing = sorted(set(expected) - set(inits))
    if missing:
        raise PackageError(f"{where}: the ONNX graph lacks weights {missing[:3]}: not this U-Net architecture")
    tp = onnx.TensorProto
    ok_types = {tp.FLOAT: "float32", tp.FLOAT16: "float16", tp.DOUBLE: "float64", tp.BFLOAT16: "bfloat16"}
    tensors = {}
    for n, shape in expected.items():
        t = inits[n]
        if t.data_location == tp.EXTERNAL or len(t.external_data):
            raise PackageError(f"{where}: initializer {n} keeps its data outside the ONNX file (external data): "
                               f"not supported, unet-rt reads only the package's weights.onnx")
        if t.data_type not in ok_types:
            kind = tp.DataType.Name(t.data_type) if t.data_type in tp.DataType.values() else t.data_type
            raise PackageError(f"{where}: initializer {n} has data type {kind}, expected one of "
                               f"{sorted(ok_types.values())}")
        if tuple(t.dims) != shape:
            raise PackageError(f"{where}: initializer {n} has shape {tuple(t.dims)[:8]}, expected {shape}: not this "
                               f"U-Net architecture")
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:  # ValueError/TypeError from data of the wrong length or kind
            raise PackageError(f"{where}: initializer {n} cannot be read ({type(e).__name__}: {str(e)[:200]})") \
                from None
        if a.shape != shape:
            raise PackageError(f"{where}: initializer {n} holds {a.size} values for shape {shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            tensors[n] = a.astype(np.float32, copy=False)
        t.Clear()                     # drop the proto's copy as we go: peak memory ~ 2x the weights
    return model_file.ModelFile(kind="weights", arch=arch, normalization=norm, class_names=names, tensors=tensors,
                                provenance={"imported_from": "bioimage.io package", "name": name})


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
