"""Small bioimage.io packages, honest and hostile, built with numpy + onnx (no torch): shared by
tests/test_bioimageio_hostile.py and the import fuzz target (tests/fuzz/fuzz_bioimageio.py)."""
from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib

import numpy as np

from unet_rt.format import geometry, model_file

ARCH = dict(in_channels=1, classes=2, depth=1, base=2, padding="valid")
NORM = {"mean": [100.0], "std": [40.0]}
NAMES = ["background", "cell"]


def tile_for(arch: dict) -> int:
    return next(i for i, o in geometry.valid_input_sizes(8, 400, arch["depth"], arch["padding"]) if o >= 1)


def tiny_model(arch: dict | None = None, seed: int = 0) -> model_file.ModelFile:
    arch = dict(arch or ARCH)
    rng = np.random.default_rng(seed)
    shapes = model_file.expected_shapes(arch)
    tensors = {k: (rng.standard_normal(s) * 0.3).astype(np.float32) for k, s in shapes.items()}
    return model_file.ModelFile(kind="weights", arch=arch, normalization=dict(NORM), class_names=list(NAMES),
                                tensors=tensors)


def onnx_model(mf: model_file.ModelFile | None = None, meta: bool = True, meta_over: dict | None = None):
    """The ModelProto of export_onnx; ``meta=False`` drops the unet_rt metadata, ``meta_over``
    replaces (value str) or removes (value None) metadata entries."""
    from unet_rt.export.onnx import export_onnx

    mf = mf or tiny_model()
    m = export_onnx(mf, tile_for(mf.arch))
    props = {p.key: p.value for p in m.metadata_props} if meta else {}
    for k, v in (meta_over or {}).items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    return m


def onnx_bytes(mf=None, meta: bool = True, meta_over: dict | None = None) -> bytes:
    return onnx_model(mf, meta, meta_over).SerializeToString()


def rdf(source="weights.onnx", unet_rt: bool = True, mf: model_file.ModelFile | None = None, **extra) -> dict:
    """A valid model description (spec 0.5, as bioimageio.spec validates it) whose ONNX weights
    are ``source``, with the model's ``config.unet_rt`` when ``unet_rt``; ``extra`` keys replace
    the description's. Its other files are those of :func:`package_files`."""
    mf = mf or tiny_model()
    a = mf.arch
    tile = tile_for(a)
    halo = (tile - geometry.output_size(tile, a["depth"], a["padding"])) // 2
    space = [{"id": ax, "type": "space", "size": tile} for ax in ("y", "x")]
    out_space = [{"id": ax, "type": "space", "size": {"tensor_id": "input", "axis_id": ax, "offset": -2 * halo}}
                 for ax in ("y", "x")]
    d = {"type": "model", "format_version": "0.5.4", "name": "tiny unet-rt U-Net",
         "description": "a tiny U-Net for the tests", "authors": [{"name": "unet-rt tests"}],
         "cite": [{"text": "Ronneberger et al. 2015", "doi": "10.1007/978-3-319-24574-4_28"}], "license": "MIT",
         "documentation": "README.md",
         "inputs": [{"id": "input", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["c0"]}, *space],
                     "test_tensor": {"source": "test_input.npy"}}],
         "outputs": [{"id": "output", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": list(NAMES)},
                                               *out_space], "test_tensor": {"source": "test_output.npy"}}],
         "weights": {"onnx": {"source": source, "opset_version": 17}}}
    if unet_rt:
        d["config"] = {"unet_rt": {"arch": dict(a), "normalization": mf.normalization,
                                   "class_names": list(mf.class_names)}}
    d.update(extra)
    return d


def package_files(rdf_d: dict | None = None, weights: bytes | None = None) -> dict:
    """name -> bytes of a whole package: rdf.yaml, weights.onnx (unless ``weights`` is b""), test
    tensors, README.md."""
    mf = tiny_model()
    tile = tile_for(mf.arch)
    o = geometry.output_size(tile, mf.arch["depth"], mf.arch["padding"])
    files = {"rdf.yaml": rdf_yaml(rdf_d if rdf_d is not None else rdf()), "README.md": b"# tiny\n",
             "test_input.npy": _npy(np.zeros((1, 1, tile, tile), np.float32)),
             "test_output.npy": _npy(np.full((1, 2, o, o), 0.5, np.float32))}
    if weights != b"":
        files["weights.onnx"] = weights if weights is not None else onnx_bytes()
    return files


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def rdf_yaml(d: dict) -> bytes:
    return json.dumps(d, indent=1).encode()   # JSON is YAML


def zip_bytes(files: dict, symlinks: tuple = (), stored: bool = False) -> bytes:
    """A zip of ``files`` (name -> bytes); names in ``symlinks`` get a symbolic link's mode."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, data)
    return buf.getvalue()


def declare_size(zdata: bytes, name: str, size: int) -> bytes:
    """The zip with entry ``name``'s uncompressed size declared as ``size`` in its central
    directory (a small file claiming to hold a huge one)."""
    b = bytearray(zdata)
    key = name.encode()
    i = 0
    while True:
        i = b.find(b"PK\x01\x02", i)
        assert i >= 0, name
        n = struct.unpack_from("<H", b, i + 28)[0]
        if bytes(b[i + 46:i + 46 + n]) == key:
            struct.pack_into("<I", b, i + 24, size)
            return bytes(b)
        i += 4


def zip_with_huge_entry(files: dict, name: str, size: int, fill: bytes = b"\0", prefix: bytes = b"",
                        crc: bool = False) -> bytes:
    """A zip of ``files`` (stored) plus ``name`` holding ``prefix`` and ``size`` bytes of ``fill``,
    truly: its deflate stream is one fully flushed 1 MiB block repeated (about 1 KB per MiB, built
    in milliseconds). Its CRC is computed only if ``crc`` (else 0: an import that read the entry
    whole would fail on it only after the damage)."""
    mib = 1 << 20
    assert size % mib == 0 and mib % len(fill) == 0 and len(prefix) + size < 1 << 32
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(fill * (mib // len(fill))) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(fill * (mib // len(fill))) + c.flush(zlib.Z_FULL_FLUSH)
    assert again == block                  # the stream restarts at every full flush
    stream = head + block * (size // mib) + c.flush()
    check = 0
    if crc:
        check, chunk = zlib.crc32(prefix), fill * (mib // len(fill))
        for _ in range(size // mib):
            check = zlib.crc32(chunk, check)
    entries = [(n, 0, b, zlib.crc32(b), len(b)) for n, b in files.items()] + \
        [(name, 8, stream, check, len(prefix) + size)]
    out, central = bytearray(), bytearray()
    for n, method, data, crc, usize in entries:
        nb = n.encode()
        off = len(out)
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), usize, len(nb), 0)
        out += nb + data
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data), usize,
                               len(nb), 0, 0, 0, 0, 0, off) + nb
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def billion_laughs(levels: int = 9, width: int = 10, prefix: bytes = b"type: model\n") -> bytes:
    """``prefix`` (block YAML) and 10^9 strings in under 1 KB of aliases of aliases."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return prefix + ("\n".join(lines) + "\n").encode()


# ---- the fuzz target's input format ------------------------------------------------------------
# raw zip: the bytes themselves (they start with "PK"); else: one flags byte, rdf.yaml, SEP, weights.onnx

SEP = b"\x00--weights.onnx--\x00"
FLAG_SYMLINK, FLAG_STORED, FLAG_FOLDER, FLAG_EXTRA, FLAG_RDF_NAME = 1, 2, 4, 8, 16


def pack(rdf_data: bytes, onnx_data: bytes | None, flags: int = 0) -> bytes:
    return bytes([flags & 0xFF]) + rdf_data + (SEP + onnx_data if onnx_data is not None else b"")


def unpack(data: bytes):
    """-> (flags, rdf bytes, onnx bytes or None)."""
    flags, rest = data[0], data[1:]
    rdf_data, sep, onnx_data = rest.partition(SEP)
    return flags, rdf_data, (onnx_data if sep else None)


# ---- a subprocess that imports a list of packages and reports (tests/test_bioimageio_hostile.py) -------------

def run_cases(cases_json: str) -> None:
    """For each case {"name", "path", "out"}: import it, print one JSON line {name, ok, message,
    seconds, opened, written}; ``opened`` lists the canary files and the absolute paths outside
    ``allowed`` that the import opened, and the network calls it made (audit hooks). Last line:
    {"peak_rss": bytes}."""
    import os
    import sys
    import time

    from _rss import peak_rss
    from unet_rt.export.bioimageio import import_package

    spec = json.loads(open(cases_json).read())
    allowed = tuple(os.path.realpath(p) + os.sep for p in spec["allowed"])
    canaries = {os.path.realpath(p) for p in spec["canaries"]}
    events: list = []
    armed = [False]

    def hook(event, args):
        if not armed[0]:
            return
        if event.startswith(("socket.", "urllib.", "http.")):
            events.append(f"{event} {args!r}"[:200])
        elif event == "open" and args and isinstance(args[0], (str, bytes)):
            p = os.fsdecode(args[0])   # relative: to the cwd, or to a folder fd (the folder reader's openat)
            r = os.path.realpath(p)
            if r in canaries or (os.path.isabs(p) and not r.startswith(allowed)):
                events.append(f"open {r}")

    sys.addaudithook(hook)
    for case in spec["cases"]:
        events.clear()
        t0 = time.perf_counter()
        armed[0] = True
        try:
            import_package(case["path"], case["out"])
            ok, msg = True, ""
        except ValueError as e:
            ok, msg = False, str(e)
        finally:
            armed[0] = False
        print(json.dumps({"name": case["name"], "ok": ok, "message": msg, "seconds": time.perf_counter() - t0,
                          "opened": list(events), "written": os.path.exists(case["out"])}), flush=True)
    print(json.dumps({"peak_rss": peak_rss()}), flush=True)


if __name__ == "__main__":
    import sys

    run_cases(sys.argv[1])
