"""Fuzz target for ``unet_rt.export.bioimageio.import_package`` (atheris, coverage-guided).

    make fuzz-bioimageio          # FUZZ_PY_RUNS executions, niced; new inputs in build/fuzz/corpus/bioimageio
    make fuzz-bioimageio-merge    # minimise them into tests/corpus/bioimageio (replayed by make test)
    python tests/fuzz/fuzz_bioimageio.py --replay FILE...   # what make test runs (no atheris needed)
    python tests/fuzz/fuzz_bioimageio.py --seeds DIR        # (re)write the hand-made seeds

An input is either a zip file (it starts with "PK") or a flags byte, an rdf.yaml, a separator and a
weights.onnx, packed as a zip or a folder (flags: the weights as a symbolic link to a file outside
the package, stored or deflated, folder or zip, extra files, bioimageio.yaml as the name; see
tests/_bioimageio_packages.py). For every input the import must either write a model file that
loads, or raise a ValueError with a message and write nothing; and it must not connect anywhere,
open any absolute path outside the package (audit hooks), nor take a byte from the canary files
placed outside the package and in the current directory. libFuzzer's -rss_limit_mb and -timeout
(make fuzz-bioimageio: 1024 MB, 10 s) hold every input to the issue's memory and time bounds.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))          # tests/, for _bioimageio_packages

CANARY = 1234567.5                            # a weight value no honest input here holds
_violations: list = []
_armed = False
_allowed: tuple = ()
WORK: Path
_target = None


def _audit(event: str, args) -> None:
    if not _armed:
        return
    if event.startswith(("socket.", "urllib.", "http.", "ftplib.", "smtplib.")):
        _violations.append((event, repr(args)[:200]))
    elif event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        p = os.fsdecode(args[0])
        if os.path.isabs(p) and not os.path.realpath(p).startswith(_allowed):
            _violations.append((event, p))


def setup() -> None:
    """Imports, the audit hook, the work folder with its canaries; cwd becomes a folder of canaries."""
    global WORK, _allowed, _target
    import numpy as np

    import _bioimageio_packages as P
    from unet_rt.export import bioimageio

    _target = bioimageio.import_package
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    WORK = Path(tempfile.mkdtemp(prefix="unet-rt-fuzz-bmz-", dir=base))
    outside, cwd = WORK / "outside", WORK / "cwd"
    outside.mkdir()
    cwd.mkdir()
    canary = P.tiny_model(seed=7)
    canary.tensors["head.bias"][:] = CANARY
    canary_onnx = P.onnx_bytes(canary)
    (outside / "outside.onnx").write_bytes(canary_onnx)
    for d in (outside, cwd):          # what a relative source or external data would find in the cwd
        (d / "weights.onnx").write_bytes(canary_onnx)
        (d / "secret.bin").write_bytes(np.full(4096, CANARY, np.float32).tobytes())
        (d / "rdf.yaml").write_bytes(P.rdf_yaml(P.rdf()))
    os.chdir(cwd)
    import site
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(), *site.getsitepackages(),
             str(Path(__file__).resolve().parents[2])}
    _allowed = tuple(os.path.realpath(r) + os.sep for r in roots) + (os.path.realpath(WORK / "case") + os.sep,)
    sys.addaudithook(_audit)


def _materialise(data: bytes, case: Path) -> Path:
    import _bioimageio_packages as P

    if not data or data[:2] == b"PK":
        (case / "pkg.zip").write_bytes(data)
        return case / "pkg.zip"
    flags, rdf_data, onnx_data = P.unpack(data)
    rdf_name = "bioimageio.yaml" if flags & P.FLAG_RDF_NAME else "rdf.yaml"
    files = {rdf_name: rdf_data}
    if onnx_data is not None:
        files["weights.onnx"] = onnx_data
    if flags & P.FLAG_EXTRA:
        files["secret.bin"] = b"\x00" * 64
        files["sub/weights.onnx"] = onnx_data or b""
    link_target = str(WORK / "outside" / "outside.onnx")
    if flags & P.FLAG_FOLDER:
        d = case / "pkg"
        for name, b in files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            if name == "weights.onnx" and flags & P.FLAG_SYMLINK:
                os.symlink(link_target, d / name)
            else:
                (d / name).write_bytes(b)
        return d
    if flags & P.FLAG_SYMLINK:
        files["weights.onnx"] = link_target.encode()
    (case / "pkg.zip").write_bytes(P.zip_bytes(files, symlinks=("weights.onnx",) if flags & P.FLAG_SYMLINK else (),
                                               stored=bool(flags & P.FLAG_STORED)))
    return case / "pkg.zip"


def TestOneInput(data: bytes) -> None:
    global _armed
    import numpy as np

    from unet_rt.format import model_file

    case = WORK / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    pkg = _materialise(bytes(data), case)
    out = case / "out" / "model.plan"
    out.parent.mkdir()
    _violations.clear()
    _armed = True
    try:
        _target(pkg, out)
        ok = True
    except ValueError as e:   # PackageError, ModelFileError: the documented refusals
        ok = False
        if not str(e).strip():
            raise AssertionError("a refusal without a message") from e
    finally:
        _armed = False
    if _violations:
        raise AssertionError(f"the import went outside the package: {_violations[:5]}")
    left = sorted(p.name for p in out.parent.iterdir())
    if not ok:
        if left:
            raise AssertionError(f"a refused import left files behind: {left}")
        return
    if left != ["model.plan"]:
        raise AssertionError(f"the import left {left}")
    mf = model_file.load(out)
    for name, t in mf.tensors.items():
        if np.any(t == np.float32(CANARY)):
            raise AssertionError(f"tensor {name} holds bytes of a canary file outside the package")


def write_seeds(d: Path) -> None:
    """The hand-made seeds: honest packages (config, metadata only, folder, zip as is) and one of
    each hostile kind the issue lists (small on disk: the huge ones are declared, not held)."""
    import json

    import onnx

    import _bioimageio_packages as P

    d.mkdir(parents=True, exist_ok=True)
    w = P.onnx_bytes()
    bare = P.onnx_bytes(meta=False)
    y = P.rdf_yaml
    ext = P.onnx_model()
    t = ext.graph.initializer[0]
    t.data_location = onnx.TensorProto.EXTERNAL
    t.ClearField("raw_data")
    for k, v in (("location", "secret.bin"), ("offset", "0"), ("length", str(4 * int(np.prod(t.dims))))):
        t.external_data.add(key=k, value=v)
    undef = P.onnx_model()
    undef.graph.initializer[0].data_type = 0
    seeds = {
        "ok-config": P.pack(y(P.rdf()), w),
        "ok-metadata-only": P.pack(y(P.rdf(unet_rt=False)), w),
        "ok-config-only": P.pack(y(P.rdf()), bare),
        "ok-folder": P.pack(y(P.rdf()), w, P.FLAG_FOLDER),
        "ok-stored-bioimageio-yaml": P.pack(y(P.rdf()), w, P.FLAG_STORED | P.FLAG_RDF_NAME),
        "ok-zip": P.zip_bytes({"rdf.yaml": y(P.rdf()), "weights.onnx": w}),
        "url": P.pack(y(P.rdf(source="http://127.0.0.1:9/weights.onnx")), w),
        "file-url": P.pack(y(P.rdf(source="file:///etc/passwd")), w),
        "absolute": P.pack(y(P.rdf(source=str(Path("/etc/passwd")))), w),
        "dotdot": P.pack(y(P.rdf(source="../outside/outside.onnx")), w, P.FLAG_FOLDER),
        "symlink-zip": P.pack(y(P.rdf()), w, P.FLAG_SYMLINK),
        "symlink-folder": P.pack(y(P.rdf()), w, P.FLAG_SYMLINK | P.FLAG_FOLDER),
        "external-data": P.pack(y(P.rdf(unet_rt=False)), ext.SerializeToString()),
        "undefined-initializer": P.pack(y(P.rdf()), undef.SerializeToString()),
        "depth-1000000": P.pack(y(P.rdf(unet_rt=False)), P.onnx_bytes(meta_over={"unet_rt.arch": json.dumps(
            dict(P.ARCH, depth=1000000))})),
        "arch-list": P.pack(y(P.rdf(unet_rt=False)), P.onnx_bytes(meta_over={"unet_rt.arch": "[1, 2]"})),
        "no-normalization": P.pack(y(P.rdf(unet_rt=False)), P.onnx_bytes(meta_over={"unet_rt.normalization": None})),
        "garbage-weights": P.pack(y(P.rdf()), b"\x08\x96\x01garbage" * 8),
        "billion-laughs": P.pack(P.billion_laughs(), w),
        "declared-2GB": P.declare_size(P.zip_bytes({"rdf.yaml": y(P.rdf()), "weights.onnx": w}), "weights.onnx",
                                       1_900_000_000),
        "config-not-dict": P.pack(y(P.rdf(config=["unet_rt"])), w),
    }
    for name, b in seeds.items():
        (d / name).write_bytes(b)


import numpy as np  # noqa: E402  (used by write_seeds; imported late to keep the module doc first)


def _absolute(arg: str) -> str:
    if not arg.startswith("-"):
        return os.path.abspath(arg)
    for opt in ("-artifact_prefix=", "-exact_artifact_path=", "-dict="):
        if arg.startswith(opt):
            v = arg[len(opt):]
            return opt + os.path.abspath(v) + (os.sep if v.endswith(os.sep) else "")
    return arg


def main(argv: list[str]) -> int:
    if argv[:1] == ["--seeds"]:
        write_seeds(Path(argv[1]))
        return 0
    if argv[:1] == ["--replay"]:
        files = [Path(a).resolve() for a in argv[1:]]
        setup()
        for f in files:
            try:
                TestOneInput(f.read_bytes())
            except BaseException:
                print(f"FAILED on {f}", file=sys.stderr)
                raise
        from _rss import peak_rss

        print(f"ran {len(files)} inputs, peak RSS {peak_rss() >> 20} MiB")
        return 0
    try:
        import atheris
    except ImportError:
        print("the import fuzz target needs atheris, the fuzz extra: .venv/bin/python -m pip install 'unet-rt[fuzz]' (make fuzz-bioimageio installs it)", file=sys.stderr)
        return 1
    with atheris.instrument_imports(include=["unet_rt.export", "zipfile", "yaml"]):
        import zipfile  # noqa: F401

        import yaml  # noqa: F401

        import unet_rt.export.bioimageio  # noqa: F401
        import unet_rt.export.bioimageio_package  # noqa: F401
    argv = [_absolute(a) for a in argv]      # setup() changes the current directory
    setup()
    # libFuzzer runs argv[0] through the shell for -merge=1 and -fork: this interpreter and this file
    atheris.Setup([f"{sys.executable} {os.path.abspath(__file__)}", *argv], TestOneInput)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
