"""Hostile bioimage.io packages (issue 20, rows 1-8): the import reads only the package, refuses with
a message, stays within 1 GB and 10 s, and never goes to the network or outside the package.

Every crafted package is imported in one subprocess (tests/_bioimageio_packages.py run_cases) that
records, with audit hooks, every network call and every open of a canary file or of an absolute
path outside the package; a local HTTP server on 127.0.0.1 (it stops by itself) counts requests and
serves honest weights, so that a fetch would succeed if the import tried one. Huge files are
declared in the zip's directory, not held on disk."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("yaml")

import _bioimageio_packages as P  # noqa: E402
from unet_rt.format import model_file  # noqa: E402

HERE = Path(__file__).resolve().parent
GB = 1 << 30


@pytest.fixture(scope="module")
def server():
    """An HTTP server on 127.0.0.1 serving honest weights and counting requests; it shuts itself
    down after 300 s whatever happens (and at the end of the module)."""
    body = P.onnx_bytes()
    hits: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stopper = threading.Timer(300, httpd.shutdown)
    stopper.daemon = True
    stopper.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    stopper.cancel()
    httpd.shutdown()
    httpd.server_close()


def _zip(d: Path, name: str, files: dict, **kw) -> Path:
    p = d / f"{name}.zip"
    p.write_bytes(P.zip_bytes(files, **kw))
    return p


def _ext_data(location: str) -> bytes:
    import onnx

    m = P.onnx_model()
    t = next(t for t in m.graph.initializer if t.name == "head.bias")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.ClearField("raw_data")
    for k, v in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(t.dims))))):
        t.external_data.add(key=k, value=v)
    return m.SerializeToString()


def _cases(d: Path, url: str, outside: Path) -> dict:
    """name -> (package path, expected: None for a successful import, else a piece of the message).
    Each package is a whole, valid bioimage.io model description (bioimageio.spec accepts it) but
    for the one hostile thing it holds."""
    r = P.rdf
    cases = {}

    def add(name, path, expect):
        cases[name] = (path, expect)

    def pkg(name, rdf_d=None, weights=None, extra=None, **kw):
        files = P.package_files(rdf_d, weights)
        files.update(extra or {})
        return _zip(d, name, files, **kw)

    # row 1: URLs (the package itself, its weights, and every other field)
    add("url-weights", pkg("url", r(source=f"{url}/weights.onnx"), b""), "is a URL")
    add("url-package", f"{url}/pkg.zip", "a URL")
    everywhere = r(documentation=f"{url}/README.md", covers=[f"{url}/cover.png"], git_repo=f"{url}/repo")
    everywhere["inputs"][0]["test_tensor"]["source"] = f"{url}/in.npy"
    everywhere["outputs"][0]["test_tensor"]["source"] = f"{url}/out.npy"
    everywhere["weights"]["torchscript"] = {"source": "/etc/passwd", "pytorch_version": "2.0"}
    add("urls-in-other-fields", pkg("urls", everywhere), None)
    # row 2: absolute paths outside the package
    add("absolute-outside", pkg("abs", r(source=str(outside)), b""), "absolute path")
    add("absolute-etc-passwd", pkg("passwd", r(source="/etc/passwd"), b""), "absolute path")
    # row 3: ONNX external data (the cwd holds secret.bin)
    add("external-data", pkg("ext", weights=_ext_data("secret.bin")), "external data")
    ext_rdf = r()
    ext_rdf["weights"]["onnx"]["external_data"] = {"source": "secret.bin"}
    add("external-data-rdf", pkg("ext-rdf", ext_rdf), "external data")
    # row 4: an architecture that would take minutes and gigabytes to enumerate
    deep = P.onnx_bytes(meta_over={"unet_rt.arch": json.dumps(dict(P.ARCH, depth=1_000_000))})
    add("depth-1000000", pkg("deep", r(unet_rt=False), deep), "depth = 1000000")
    add("depth-1000000-config", pkg("deep-cfg", r(config={"unet_rt": {"arch": dict(P.ARCH, depth=1_000_000),
                                                                     "normalization": P.NORM}})), "depth = 1000000")
    # row 5: a 2 MB zip holding a 1.9 GB weights.onnx; one declaring it; one over the weights cap by 1 MiB
    honest = P.zip_bytes(P.package_files())
    add("weights-1.9GB", _write(d / "huge.zip", P.zip_with_huge_entry(P.package_files(weights=b""), "weights.onnx",
                                                                        1900 << 20)), f"{1900 << 20} bytes")
    add("weights-declared-1.9GB", _write(d / "decl.zip", P.declare_size(honest, "weights.onnx", 1_900_000_000)),
        "1900000000 bytes")
    add("weights-over-cap", _write(d / "cap.zip", P.zip_with_huge_entry(P.package_files(weights=b""), "weights.onnx",
                                                                        201 << 20)), f"{201 << 20} bytes")
    # a protobuf bomb under the cap: 64 MiB of empty graph nodes (2 bytes each, ~100 once parsed)
    add("onnx-32M-empty-nodes", _write(d / "pbnodes.zip", P.zip_with_huge_entry(
        P.package_files(weights=b""), "weights.onnx", 64 << 20, b"\x0a\x00", b"\x3a" + P.varint(64 << 20), crc=True)),
        "protobuf fields")
    # ... and one whose directory understates it: reading stops at the declared size
    add("weights-understated", _write(d / "under.zip", P.declare_size(honest, "weights.onnx", 100)),
        "cannot read it from the zip")
    # row 6: billion laughs, a 300 MB rdf.yaml (declared), one just over the cap, too many nodes
    add("billion-laughs", pkg("laughs", extra={"rdf.yaml": P.billion_laughs(prefix=_block_yaml(r()))}),
        "YAML nodes")
    no_rdf = P.package_files()
    del no_rdf["rdf.yaml"]
    add("rdf-300MB", _write(d / "rdf300.zip", P.zip_with_huge_entry(no_rdf, "rdf.yaml", 300 << 20, b"#")),
        f"{300 << 20} bytes")
    add("rdf-declared-300MB", _write(d / "rdfdecl.zip", P.declare_size(honest, "rdf.yaml", 300_000_000)),
        "300000000 bytes")
    add("rdf-over-cap", pkg("rdfbig", r(description="x" * 300_000)), "262144")
    add("rdf-many-nodes", pkg("nodes", r(tags=["t"] * 25_000)), "YAML nodes")
    add("rdf-recursive-alias", pkg("rec", extra={"rdf.yaml": b"type: model\na: &a [1, *a]\n"}), "refers to itself")
    add("rdf-deep", pkg("deepyaml", extra={"rdf.yaml": b"type: model\nk: " + b"[" * 200 + b"]" * 200 + b"\n"}),
        "nested")
    add("rdf-python-tag", pkg("tag", extra={"rdf.yaml": b"type: model\nk: !!python/object/apply:os.system [id]\n"}),
        "not valid YAML")
    # row 7: what used to be tracebacks
    add("garbage-weights", pkg("garbage", weights=b"\x08\x96\x01" + b"\xff" * 64), "not an ONNX model")
    add("symlink-entry", pkg("link", weights=str(outside).encode(), symlinks=("weights.onnx",)), "symbolic link")
    folder = _folder(d / "linkdir", P.package_files(weights=b""))
    os.symlink(outside, folder / "weights.onnx")
    add("symlink-folder", folder, "symbolic link")
    sub = d / "subdir"
    _folder(sub / "pkg", P.package_files(r(source="../outside.onnx"), b""))
    (sub / "outside.onnx").write_bytes(outside.read_bytes())
    add("dotdot-folder", sub / "pkg", "leaves the package")
    add("dotdot-zip", pkg("dotdot", r(source="../weights.onnx")), "leaves the package")
    add("file-url", pkg("fileurl", r(source=f"file://{outside}")), "is a URL")
    add("no-normalization", pkg("nonorm", r(unet_rt=False), P.onnx_bytes(meta_over={"unet_rt.normalization": None})),
        "no unet_rt.normalization")
    add("arch-missing-key", pkg("nobase", r(unet_rt=False), P.onnx_bytes(meta_over={"unet_rt.arch": json.dumps(
        {k: v for k, v in P.ARCH.items() if k != "base"})})), "'arch' metadata has no 'base'")
    add("arch-list", pkg("archlist", r(unet_rt=False), P.onnx_bytes(meta_over={"unet_rt.arch": "[1, 2, 3]"})),
        "not an object")
    add("config-missing-normalization", pkg("cfgnonorm", r(config={"unet_rt": {"arch": P.ARCH}})),
        "normalization needs 1 finite means")
    undef = P.onnx_model()
    undef.graph.initializer[0].data_type = 0
    add("undefined-initializer", pkg("undef", weights=undef.SerializeToString()), "data type UNDEFINED")
    short = P.onnx_model()
    next(t for t in short.graph.initializer if t.name == "head.bias").raw_data = b"\x00" * 4
    add("short-initializer", pkg("short", weights=short.SerializeToString()), "cannot be read")
    add("not-a-zip", _write(d / "junk.zip", b"PK\x03\x04 not really"), "not a zip file")
    add("not-a-model", pkg("dataset", dict(r(), type="dataset")), "expected 'model'")
    add("rdf-not-mapping", pkg("list", extra={"rdf.yaml": b"- 1\n- 2\n"}), "not a YAML mapping")
    add("no-rdf", _zip(d, "nordf", no_rdf), "no rdf.yaml")
    add("duplicate-entries", _write(d / "dup.zip", _duplicate_zip(P.package_files())), "two zip entries")
    add("source-not-string", pkg("srcint", r(source=12)), "must be a file name")
    add("source-missing", pkg("srcnone", r(source="nowhere.onnx")), "no such file")
    fifo = d / "fifo.zip"
    os.mkfifo(fifo)
    add("fifo", fifo, "not a regular file")
    # row 8: config.unet_rt of rdf.yaml is read (the ONNX has no unet_rt metadata)
    add("config-only", pkg("cfg", weights=P.onnx_bytes(meta=False)), None)
    add("honest-folder", _folder(d / "honest", P.package_files()), None)
    add("honest-metadata-only", pkg("meta", r(unet_rt=False)), None)
    return cases


def _block_yaml(d: dict) -> bytes:
    import yaml

    return yaml.safe_dump(d, sort_keys=False).encode()


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _folder(d: Path, files: dict) -> Path:
    d.mkdir(parents=True)
    for n, b in files.items():
        (d / n).write_bytes(b)
    return d


def _duplicate_zip(files: dict) -> bytes:
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zipfile warns about the duplicate name
        with zipfile.ZipFile(buf, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
            z.writestr("weights.onnx", b"the other one")
    return buf.getvalue()


@pytest.fixture(scope="module")
def results(tmp_path_factory, server):
    url, hits = server
    d = tmp_path_factory.mktemp("hostile")
    outside_dir = tmp_path_factory.mktemp("outside")
    outside = outside_dir / "outside.onnx"
    outside.write_bytes(P.onnx_bytes(P.tiny_model(seed=5)))      # a valid model the package does not contain
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "secret.bin").write_bytes(np.full(64, 7.25, np.float32).tobytes())
    cases = _cases(d, url, outside)
    outs = tmp_path_factory.mktemp("outs")
    spec = {"allowed": [d, outs, sys.prefix, sys.base_prefix, *sys.path[1:]],
            "canaries": [str(outside), str(cwd / "secret.bin"), "/etc/passwd"],
            "cases": [{"name": n, "path": str(p), "out": str(outs / f"{n}.plan")} for n, (p, _) in cases.items()]}
    spec["allowed"] = [str(a) for a in spec["allowed"] if str(a) and Path(str(a)).is_absolute()]
    (d / "cases.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(HERE))
    r = subprocess.run([sys.executable, str(HERE / "_bioimageio_packages.py"), str(d / "cases.json")], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    got = {x["name"]: x for x in lines if "name" in x}
    return {"cases": cases, "got": got, "peak_rss": lines[-1]["peak_rss"], "hits": hits, "outs": outs,
            "stderr": r.stderr}


def test_every_case_ran(results):
    assert set(results["got"]) == set(results["cases"])


@pytest.mark.parametrize("name", [
    "url-weights", "url-package", "urls-in-other-fields", "absolute-outside", "absolute-etc-passwd", "external-data",
    "external-data-rdf", "depth-1000000", "depth-1000000-config", "weights-1.9GB", "weights-declared-1.9GB",
    "weights-over-cap", "onnx-32M-empty-nodes", "weights-understated", "billion-laughs", "rdf-300MB",
    "rdf-declared-300MB", "rdf-over-cap", "rdf-many-nodes", "rdf-recursive-alias", "rdf-deep",
    "rdf-python-tag", "garbage-weights", "symlink-entry", "symlink-folder", "dotdot-folder", "dotdot-zip", "file-url",
    "no-normalization", "arch-missing-key", "arch-list", "config-missing-normalization", "undefined-initializer",
    "short-initializer", "not-a-zip", "not-a-model", "rdf-not-mapping", "no-rdf", "duplicate-entries",
    "source-not-string", "source-missing", "fifo", "config-only", "honest-folder", "honest-metadata-only"])
def test_hostile_package(results, name):
    """A clear message (or, for honest packages, a model), within 10 s, nothing opened outside the
    package, nothing written on refusal."""
    got, expect = results["got"][name], results["cases"][name][1]
    assert got["opened"] == [], got["opened"]
    assert got["seconds"] < 10, got["seconds"]
    if expect is None:
        assert got["ok"], got["message"]
        assert got["written"]
    else:
        assert not got["ok"], f"imported a hostile package ({name})"
        assert expect in got["message"], got["message"]
        assert "Traceback" not in got["message"]
        assert not got["written"]


def test_no_network_no_canary_bounded_memory(results):
    assert results["hits"] == [], results["hits"]           # the local server never saw a request
    assert results["peak_rss"] < 1 * GB, results["peak_rss"]
    assert "Traceback" not in results["stderr"]


def test_config_unet_rt_is_read(results):
    """Row 8: the ONNX of "config-only" has no unet_rt metadata: arch, normalisation and class names
    come from rdf.yaml's config.unet_rt, and the weights are the package's."""
    mf = model_file.load(results["outs"] / "config-only.plan")
    honest = P.tiny_model()
    assert mf.arch == dict(honest.arch) and mf.class_names == honest.class_names
    assert mf.normalization == honest.normalization
    for n, t in honest.tensors.items():
        assert np.array_equal(mf.tensors[n], t), n


def test_config_wins_over_metadata(tmp_path):
    """When both are present the package's config.unet_rt is used (its class names here)."""
    from unet_rt.export.bioimageio import import_package

    mf = P.tiny_model()
    mf.class_names = ["bg", "membrane"]
    pkg = _zip(tmp_path, "p", P.package_files(P.rdf(mf=mf)))
    import_package(pkg, tmp_path / "m.plan")
    assert model_file.load(tmp_path / "m.plan").class_names == ["bg", "membrane"]


def test_cli_refuses_with_a_message(tmp_path):
    """`unet-rt compile PKG.zip --target plan` on a hostile package: exit 2, the reason, no output."""
    pkg = _zip(tmp_path, "p", P.package_files(P.rdf(source="/etc/passwd")))
    r = subprocess.run([sys.executable, "-m", "unet_rt", "compile", str(pkg), "--target", "plan", "-o",
                        str(tmp_path / "m.plan")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "absolute path" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "m.plan").exists()


def test_caps_are_stated():
    """The caps the docstring and docs/ecosystem.md state are the ones the code applies."""
    from unet_rt.export import bioimageio, bioimageio_package as bp

    doc = bioimageio.import_package.__doc__
    text = (HERE.parent / "docs" / "ecosystem.md").read_text()
    for value in (f"{bp.MAX_RDF_BYTES // 1024} KiB", f"{bp.MAX_YAML_NODES:,}", f"{bp.MAX_ENTRIES:,}",
                  f"{bp.MAX_ENTRY_BYTES >> 20} MiB", f"{bp.MAX_TOTAL_BYTES >> 30} GiB",
                  f"{bioimageio.MAX_WEIGHTS_BYTES >> 20} MiB"):
        assert value in doc and value in text, value


def test_fuzz_corpus_replays():
    """The import fuzz target's corpus (tests/corpus/bioimageio, `make fuzz-bioimageio`) runs clean
    through the target's own checks, in one process under 1 GB."""
    files = sorted((HERE / "corpus" / "bioimageio").iterdir())
    assert len(files) >= 10
    r = subprocess.run([sys.executable, str(HERE / "fuzz" / "fuzz_bioimageio.py"), "--replay", *map(str, files)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"ran {len(files)} inputs" in r.stdout
    assert int(r.stdout.split("peak RSS ")[1].split()[0]) < 1024


@pytest.mark.parametrize("blocked", ["yaml", "onnx"])
def test_import_names_its_extra(tmp_path, blocked):
    """Without PyYAML or onnx (both in the bioimageio extra) the import stops with the extra's name."""
    pkg = _zip(tmp_path, "p", P.package_files())
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from unet_rt.cli import main\n"
            f"sys.exit(main(['compile', {str(pkg)!r}, '--target', 'plan', '-o', {str(tmp_path / 'm.plan')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "pip install 'unet-rt[bioimageio]'" in r.stderr and "Traceback" not in r.stderr, \
        r.stderr
    assert not (tmp_path / "m.plan").exists()
