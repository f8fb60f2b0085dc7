"""bench/gpu_check.py (`make gpu-check`) on a machine without a GPU: what can be checked on the CPU.

The command line (--help, argument errors before anything else), the no-GPU message and status (the
script and `make gpu-check`, which must stop before `make install`), the parity / timing logic of
run_workload driven by tiny torch CPU callables and a wall-clock or scripted measure, the interleaving
order and the time budget, the pytest runner and its JUnit parsing on real pytest runs, and the table
and JSON writers on synthetic rows. No GPU number is produced or checked here.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check as gc  # noqa: E402
from _gpu import time_rounds  # noqa: E402

torch = pytest.importorskip("torch")
HAS_GPU = torch.cuda.is_available()
if not HAS_GPU:
    # test_contenders_glue_on_the_cpu runs the Triton kernels under the interpreter, which must be chosen
    # before Triton is first imported (as tests/triton/conftest.py does for the whole session)
    os.environ.setdefault("TRITON_INTERPRET", "1")
no_gpu_here = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour on a machine without a GPU")


def run_script(*args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=kw.pop("cwd", ROOT), **kw)


# ------------------------------------------------------------------------------- command line ---
def test_help_says_what_it_runs_how_long_and_what_it_writes():
    r = run_script("--help")
    assert r.returncode == 0, r.stderr
    h = " ".join(r.stdout.split())
    for words in ("GPU-only tests", "Triton", "TensorRT", "PyTorch eager", "512x512", "2048x2048",
                  "gpu-check.json", "gpu-check.md", "--time-budget", "default 400", "--skip-tests", "--sizes",
                  "--rounds", "--out", "status 3"):
        assert words in h, words


@pytest.mark.parametrize("args,message", [
    (["--sizes", "300"], "invalid choice: 300"),
    (["--sizes"], "expected at least one argument"),
    (["--rounds", "0"], "must be > 0"),
    (["--rounds", "two"], "expected a number"),
    (["--warmup", "-1"], "must be >= 0"),
    (["--time-budget", "-5"], "must be > 0"),
    (["--time-budget", "nan"], "must be > 0"),
    (["--time-budget", "inf"], "must be > 0"),
    (["--tests-timeout", "0"], "must be > 0"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_argument_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        gc.parse_args(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(SystemExit) as e:
        gc.parse_args(["--out", str(f)])
    assert e.value.code == 2 and "is not a folder" in capsys.readouterr().err


def test_defaults_and_duplicate_sizes():
    a = gc.parse_args([])
    assert a.sizes == [512, 2048] and a.rounds >= gc.MIN_ROUNDS and a.time_budget < 8 * 60
    assert a.tests_timeout < a.time_budget and not a.skip_tests
    assert gc.parse_args(["--sizes", "2048", "512", "2048"]).sizes == [2048, 512]


def test_argument_errors_come_before_the_gpu_check():
    r = run_script("--rounds", "0")
    assert r.returncode == 2 and "must be > 0" in r.stderr and "no GPU" not in r.stderr


# ------------------------------------------------------------------------------------- no GPU ---
def test_gpu_missing_names_what_is_missing():
    assert "no torch" in gc.gpu_missing(None)

    def fake(cuda_version, available, count):
        return types.SimpleNamespace(__version__="9.9", version=types.SimpleNamespace(cuda=cuda_version),
                                     cuda=types.SimpleNamespace(is_available=lambda: available,
                                                                device_count=lambda: count))
    assert "CPU-only build" in gc.gpu_missing(fake(None, False, 0))
    assert "no CUDA device" in gc.gpu_missing(fake("12.8", False, 0))
    assert "no CUDA device" in gc.gpu_missing(fake("12.8", True, 0))
    assert gc.gpu_missing(fake("12.8", True, 1)) is None


@no_gpu_here
@pytest.mark.parametrize("extra", [["--skip-tests", "--sizes", "512"], ["--probe"]])
def test_no_gpu_stops_at_once_with_one_line(tmp_path, extra):
    out = tmp_path / "gc"
    r = run_script("--out", str(out), *extra)
    assert r.returncode == gc.NO_GPU_STATUS
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines == [f"gpu-check: no GPU, nothing run: {gc.gpu_missing(torch)}"], r.stderr
    assert not out.exists()                          # nothing else was done


@no_gpu_here
def test_no_torch_at_all(tmp_path):
    """torch not importable (blocked in sys.modules): the message says so."""
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            f"sys.argv = [{str(SCRIPT)!r}, '--out', {str(tmp_path / 'gc')!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == gc.NO_GPU_STATUS, r.stderr
    assert r.stderr.strip() == f"gpu-check: no GPU, nothing run: {gc.gpu_missing(None)}"


def _make_is_safe() -> str | None:
    """Why running `make gpu-check` here could rebuild something (then the test skips), or None."""
    if shutil.which("make") is None:
        return "no make"
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        return "no .venv in the repository root"
    q = subprocess.run(["make", "-q", "-C", str(ROOT), ".venv/.deps-stamp"], capture_output=True, timeout=60)
    if q.returncode != 0:
        return "the .venv dependencies are out of date: make would reinstall them"
    return None


@no_gpu_here
def test_make_gpu_check_stops_before_install():
    why = _make_is_safe()
    if why:
        pytest.skip(why)
    t = time.monotonic()
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "gpu-check"], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "gpu-check: no GPU, nothing run:" in r.stderr
    assert "pip install" not in r.stdout + r.stderr       # the probe comes before `make install`
    assert time.monotonic() - t < 60


# ----------------------------------------------------------------------- parity and timing logic ---
class Recorder:
    """Tiny CPU contenders: a 3x3 convolution, in fp32 or on fp16-rounded inputs and weights."""

    def __init__(self):
        torch.manual_seed(0)
        self.w = torch.randn(2, 1, 3, 3)
        self.calls: list = []

    def fn(self, name, kind="fp32"):
        def run(x):
            self.calls.append(name)
            xt, w = torch.from_numpy(x)[None], self.w
            if kind == "fp16":
                xt, w = xt.half().float(), w.half().float()
            y = torch.nn.functional.conv2d(xt, w)[0].numpy()
            if kind == "wrong":
                y = y + 0.01 * abs(y).max()
            return y
        return run


WORKLOAD = dict(workload="image16", image=16, tile=16, tiles=1, flops=2.0 * 9 * 2 * 14 * 14)


def _x():
    import numpy as np

    return np.random.default_rng(0).standard_normal((1, 16, 16)).astype(np.float32)


def wall_ms(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1e3


def test_run_workload_parity_failure_excludes_the_contender():
    rec = Recorder()
    x = _x()
    ref = rec.fn("ref")(x)

    def unavailable():
        raise gc.Unavailable("tensorrt not installed (pip install 'unet-rt[tensorrt]')")

    def broken_build():
        raise RuntimeError("engine build failed\nmore detail")

    contenders = [gc.Contender("triton", "fp32", lambda: rec.fn("triton32")),
                  gc.Contender("triton", "fp16", lambda: rec.fn("triton16", "fp16")),
                  gc.Contender("tensorrt", "fp32", unavailable),
                  gc.Contender("tensorrt", "fp16", broken_build),
                  gc.Contender("bad", "fp32", lambda: rec.fn("bad", "wrong")),
                  gc.Contender("torch-eager", "fp32", lambda: rec.fn("eager32"))]
    rec.calls.clear()
    lines: list = []
    rows = gc.run_workload(WORKLOAD, x, ref, contenders, rounds=4, warmup=1, measure=wall_ms, sync=None,
                           log=lines.append)
    assert len(lines) == len(contenders) + 1 and lines[-1] == "image16: timing 3 contenders, 4 rounds"
    assert lines[0].startswith("image16 triton fp32: parity ok (") and lines[4].startswith("image16 bad fp32: parity-failed")
    by = {(r["contender"], r["precision"]): r for r in rows}
    assert len(rows) == len(contenders)
    bad = by[("bad", "fp32")]
    assert bad["status"] == "parity-failed" and bad["median_ms"] is None and bad["rounds"] == 0
    assert bad["parity_error"] > gc.TOLERANCE["fp32"] and "not timed" in bad["note"]
    assert rec.calls.count("bad") == 1                  # the parity call only: never warmed up or timed
    for name in ("triton32", "triton16", "eager32"):
        assert rec.calls.count(name) == 1 + 1 + 4       # parity + warm-up + rounds, alike
    t16 = by[("triton", "fp16")]
    assert t16["status"] == "ok" and 0 < t16["parity_error"] <= gc.TOLERANCE["fp16"]
    assert by[("triton", "fp32")]["parity_error"] <= gc.TOLERANCE["fp32"]
    assert by[("tensorrt", "fp32")]["status"] == "unavailable"
    assert by[("tensorrt", "fp32")]["note"].startswith("tensorrt not installed")
    err = by[("tensorrt", "fp16")]
    assert err["status"] == "error" and err["note"] == "build failed: RuntimeError: engine build failed"
    for r in rows:
        assert (r["median_ms"] is not None) == (r["status"] == "ok")
        assert (r["tflops"] is not None) == (r["status"] == "ok")
    e32, t32 = by[("torch-eager", "fp32")], by[("triton", "fp32")]
    assert t32["ratio_vs_baseline"] == pytest.approx(e32["median_ms"] / t32["median_ms"])
    assert e32["ratio_vs_baseline"] is None and t16["ratio_vs_baseline"] is None   # no fp16 baseline here
    assert gc.exit_status({"rows": rows}) == 1           # a parity failure and an error


def test_run_workload_records_a_contender_that_raises_when_run_and_closes_all():
    rec, closed = Recorder(), []
    x = _x()

    def crashing():
        def f(img):
            raise ValueError("CUDA error: an illegal memory access")
        f.close = lambda: closed.append("crash")
        return f

    def good():
        f = rec.fn("g")
        g = lambda img: f(img)  # noqa: E731
        g.close = lambda: closed.append("good")
        return g

    rows = gc.run_workload(WORKLOAD, x, rec.fn("ref")(x), [gc.Contender("a", "fp32", crashing),
                                                          gc.Contender("b", "fp32", good)],
                           rounds=3, warmup=0, measure=wall_ms, sync=None)
    assert rows[0]["status"] == "error" and "illegal memory access" in rows[0]["note"]
    assert rows[1]["status"] == "ok"
    assert sorted(closed) == ["crash", "good"]


def test_nan_or_wrong_shape_fails_parity():
    import numpy as np

    ref = np.ones((2, 4, 4), np.float32)
    y = ref.copy()
    y[0, 0, 0] = np.nan
    assert gc.parity_error(y, ref) == math.inf
    assert gc.parity_error(ref[:, :3], ref) == math.inf
    assert gc.parity_error(ref * 1.0005, ref) == pytest.approx(5e-4, rel=1e-3)
    rows = gc.run_workload(WORKLOAD, ref, ref, [gc.Contender("n", "fp16", lambda: (lambda img: y))],
                           rounds=3, warmup=0, measure=wall_ms, sync=None)
    assert rows[0]["status"] == "parity-failed" and rows[0]["parity_error"] == "inf"
    json.dumps(rows, allow_nan=False)                    # JSON-safe


def test_interleaving_order_warmup_and_rotation():
    log = []
    fns = {n: (lambda n=n: log.append(n)) for n in "abc"}
    measured = []

    def measure(f):
        f()
        measured.append(log[-1])
        return 1.0

    synced = []
    times, done = time_rounds(fns, rounds=4, warmup=2, measure=measure, sync=lambda: synced.append(len(log)))
    assert done == 4 and {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert log[:6] == list("abcabc") and synced == [6]   # warm-up alike, then one sync before timing
    assert measured == list("abc" "bca" "cab" "abc")      # each round starts one contender later


def test_budget_stops_timing_and_says_so():
    """A scripted clock: the deadline passes after 2 (then 4) rounds."""
    rec = Recorder()
    x = _x()
    ref = rec.fn("ref")(x)

    def run(rounds_allowed):
        t = {"now": 0.0}

        def clock():
            return t["now"]

        def measure(f):
            f()
            t["now"] += 0.5               # two contenders per round: one second per round
            return 1.0
        cs = [gc.Contender("triton", "fp32", lambda: rec.fn("t"), min_left_s=0),
              gc.Contender("torch-eager", "fp32", lambda: rec.fn("e"), min_left_s=0)]
        return gc.run_workload(WORKLOAD, x, ref, cs, rounds=10, warmup=0, measure=measure, sync=None,
                               deadline=float(rounds_allowed) - 0.5, clock=clock)

    short = run(2)
    assert all(r["status"] == "budget" and r["median_ms"] is None and r["rounds"] == 2 for r in short)
    assert "ran out after 2 of 10 rounds" in short[0]["note"]
    partial = run(4)
    assert all(r["status"] == "ok" and r["rounds"] == 4 and "4 of 10 rounds" in r["note"] for r in partial)
    # nothing left: contenders are not even built
    built = []
    rows = gc.run_workload(WORKLOAD, x, ref, [gc.Contender("triton", "fp32", lambda: built.append(1))],
                           rounds=3, warmup=0, measure=wall_ms, sync=None, deadline=0.0, clock=lambda: 1.0)
    assert rows[0]["status"] == "budget" and rows[0]["note"] == gc.BUDGET_SPENT and not built


# --------------------------------------------------------------------------------- GPU tests run ---
def _write_tests(d: Path) -> Path:
    """A small pytest suite whose outcomes are known (2 pass + the slow one, 1 fails, 1 errors in setup, 1
    skips): the input of run_gpu_tests' counting, not tests of this project."""
    f = d / "test_sample.py"
    f.write_text("import pytest, time\n"
                 "def test_ok(): pass\n"
                 "def test_ok2(): pass\n"
                 "def test_bad(): pytest.fail('a failure the runner must count')\n"
                 "@pytest.mark.skip(reason='no')\n"
                 "def test_skipped(): pass\n"
                 "@pytest.fixture\n"
                 "def broken(): raise RuntimeError('setup')\n"
                 "def test_error(broken): pass\n"
                 "def test_slow():\n"
                 "    import os\n"
                 "    if os.environ.get('SLOW'):\n"
                 "        open(os.environ['SLOW'], 'w').close()\n"
                 "        time.sleep(60)\n")
    return f


def test_run_gpu_tests_counts_real_pytest_results(tmp_path, monkeypatch):
    f = _write_tests(tmp_path)
    monkeypatch.setattr(gc, "GPU_TESTS", [str(f)])
    # a relative out folder (the default is one): regression, pytest runs in tests/ and once wrote its
    # report there
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    rec = gc.run_gpu_tests(Path("rel"), timeout=120)
    assert rec["status"] == "failed" and rec["returncode"] == 1
    assert (rec["passed"], rec["failed"], rec["errors"], rec["skipped"]) == (3, 1, 1, 1)
    assert sorted(i.split("::")[-1] for i in rec["failed_ids"]) == ["test_bad", "test_error"]
    assert (tmp_path / "rel" / "tests.xml").exists() and (tmp_path / "rel" / "tests.log").read_text().strip()


def test_run_gpu_tests_timeout(tmp_path, monkeypatch):
    f = _write_tests(tmp_path)
    monkeypatch.setattr(gc, "GPU_TESTS", [str(f)])
    started = tmp_path / "slow-started"
    monkeypatch.setenv("SLOW", str(started))
    t = time.monotonic()
    rec = gc.run_gpu_tests(tmp_path, timeout=8)
    assert rec["status"] == "timed out" and time.monotonic() - t < 40
    if started.exists():   # (on a very loaded machine pytest may not even have got there in 8 s)
        # interrupted like Ctrl-C: pytest still reported the tests that finished before the slow one
        assert (rec["passed"], rec["failed"], rec["errors"], rec["skipped"]) == (2, 1, 1, 1)
    assert gc.exit_status({"tests": rec, "rows": []}) == 1
    assert "GPU tests: timed out after 8 s; before that: " in gc.format_table({"tests": rec, "rows": []})


# ---------------------------------------------------------------------------------- the report ---
def synthetic_result():
    w = dict(workload="image512", image=512, tile=700, tiles=1, flops=4.9e11)
    c = {n: gc.Contender(n.split("/")[0], n.split("/")[1], lambda: None)
         for n in ("triton/fp32", "triton/fp16", "tensorrt/fp32", "torch-eager/fp32", "torch-eager/fp16")}
    rows = [gc.new_row(w, c["triton/fp32"], status="ok", parity_error=2e-5, median_ms=20.0, rounds=10),
            gc.new_row(w, c["triton/fp16"], status="parity-failed", parity_error=0.3,
                       note="max rel. error 0.3 > 0.05 vs PyTorch fp32: not timed"),
            gc.new_row(w, c["tensorrt/fp32"], status="unavailable",
                       note="tensorrt not installed (pip install 'unet-rt[tensorrt]')"),
            gc.new_row(w, c["torch-eager/fp32"], status="ok", parity_error=0.0, median_ms=30.0, rounds=10),
            gc.new_row(w, c["torch-eager/fp16"], status="budget", note=gc.BUDGET_SPENT)]
    gc.add_ratios(rows)
    env = {"device": "Test Device", "compute_capability": "9.0", "driver": "1.2", "cuda": "12.8", "torch": "2.13.0",
           "triton": "3.9.0", "tensorrt": None, "unet_rt": "0"}
    tests = {"status": "failed", "passed": 5, "failed": 1, "errors": 0, "skipped": 2, "wall_s": 12.5,
             "failed_ids": ["triton.test_x::test_y"]}
    return {"schema": 1, "environment": env, "tests": tests, "rows": rows, "budget_s": 420.0,
            "budget_exhausted": True}


def test_ratios_and_flops():
    rows = synthetic_result()["rows"]
    assert rows[0]["ratio_vs_baseline"] == pytest.approx(30.0 / 20.0)
    assert rows[0]["tflops"] == pytest.approx(4.9e11 / 0.020 / 1e12)
    assert rows[3]["ratio_vs_baseline"] is None and rows[3]["tflops"] == pytest.approx(4.9e11 / 0.030 / 1e12)
    for r in rows[1], rows[2], rows[4]:
        assert r["ratio_vs_baseline"] is None and r["tflops"] is None and r["median_ms"] is None


def test_table_and_json(tmp_path):
    result = synthetic_result()
    js, md = gc.write_outputs(result, tmp_path / "new" / "dir")
    assert json.loads(js.read_text()) == json.loads(json.dumps(result))
    text = md.read_text()
    assert text == gc.format_table(result)
    assert text.startswith("# gpu-check: Test Device")
    assert "tensorrt" not in text.splitlines()[2]        # a version that is None is left out of the header
    assert "GPU tests: 5 passed, 1 failed, 0 errors, 2 skipped (12.5 s)" in text
    assert "- failed: triton.test_x::test_y" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| image512")]
    assert len(table) == 5
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
    assert all(len(c) == 8 for c in cells)
    header = [c.strip() for c in text.splitlines()[[i for i, ln in enumerate(text.splitlines())
                                                    if ln.startswith("| workload")][0]].strip("|").split("|")]
    assert header[4:6] == ["median ms", "torch-eager / this"]
    tri32, tri16, trt, e32, e16 = cells
    assert tri32[0] == "image512 (1×700 tile)"
    assert tri32[3] == "2.00e-05 ≤ 0.001" and tri32[4] == "20.00" and tri32[5] == "1.50" and tri32[6] == "24.5"
    assert tri32[7] == "10 rounds"
    assert tri16[3] == "3.00e-01 > 0.05 FAIL" and tri16[4] == "—" and tri16[5] == "—" and "not timed" in tri16[7]
    assert trt[4] == "—" and trt[7].startswith("tensorrt not installed")
    assert e32[4] == "30.00" and e32[5] == "—"
    assert e16[4] == "—" and e16[7] == gc.BUDGET_SPENT
    assert "time budget (420 s) ran out" in text


def test_table_without_tests_and_after_a_timeout():
    r = synthetic_result()
    r["tests"] = None
    assert "GPU tests: not run (--skip-tests)" in gc.format_table(r)
    r["tests"] = {"status": "timed out", "timeout_s": 150.0, "wall_s": 165.0}     # killed before any report
    assert "GPU tests: timed out after 150 s; before that: 0 passed, 0 failed" in gc.format_table(r)


def test_exit_status():
    assert gc.exit_status({"tests": None, "rows": []}) == 0
    assert gc.exit_status({"tests": {"status": "passed"}, "rows": [{"status": "ok"}, {"status": "budget"},
                                                                   {"status": "unavailable"}]}) == 0
    assert gc.exit_status({"tests": {"status": "failed"}, "rows": []}) == 1
    assert gc.exit_status({"tests": None, "rows": [{"status": "error"}]}) == 1


def test_write_outputs_leaves_nothing_half_written(tmp_path):
    result = synthetic_result()
    gc.write_outputs(result, tmp_path)
    before = (tmp_path / "gpu-check.json").read_text()
    result["rows"][0]["median_ms"] = float("nan")        # not JSON: the write fails ...
    with pytest.raises(ValueError):
        gc.write_outputs(result, tmp_path)
    assert (tmp_path / "gpu-check.json").read_text() == before     # ... and the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check.json", "gpu-check.md"]


@no_gpu_here
def test_contenders_glue_on_the_cpu(tmp_path):
    """The real contender builders (eager fp32/fp16, Triton under its interpreter, TensorRT absent here)
    on a tiny network through the real overlap-tile grid, parity against eager fp32: the glue that
    measure_all runs on a GPU, run here with device='cpu' and wall-clock times (not reported)."""
    pytest.importorskip("triton")
    if gc.importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("checks the 'tensorrt not installed' row")
    from unet_rt.train.model import UNet, to_model_file

    from _workloads import grid_tiles

    arch = dict(in_channels=1, classes=2, depth=1, base=2, padding="valid")    # the interpreter is slow
    torch.manual_seed(0)
    net = UNet(1, 2, 1, 2, "valid").eval()
    mf = to_model_file(net, {"mean": [0.0], "std": [1.0]}, ["bg", "fg"])
    tile, size = 28, 12                                  # 28 -> 12 outputs: one tile (the interpreter is slow)
    assert grid_tiles(size, tile, arch) == 1
    cs = gc.gpu_contenders(torch, net, mf, tile, tmp_path / "trt", device="cpu", arch=arch)
    assert [(c.name, c.precision) for c in cs] == [(n, p) for n in ("triton", "tensorrt", "torch-eager")
                                                   for p in ("fp32", "fp16")]
    kw = dict(rounds=gc.MIN_ROUNDS, warmup=0, trt_dir=tmp_path / "trt", device="cpu", arch=arch, mf=mf,
              measure=wall_ms, sync=None)
    rows = gc.measure_all(torch, [("tiny", size, tile)], net=net, deadline=time.monotonic() + 600, **kw)
    assert [(r["contender"], r["precision"]) for r in rows] == [(c.name, c.precision) for c in cs]
    assert all(r["workload"] == "tiny" and r["tiles"] == 1 and r["image"] == size for r in rows)
    by = {(r["contender"], r["precision"]): r for r in rows}
    for key in [("triton", "fp32"), ("triton", "fp16"), ("torch-eager", "fp32"), ("torch-eager", "fp16")]:
        assert by[key]["status"] == "ok", by[key]["note"]
        assert by[key]["parity_error"] <= gc.TOLERANCE[key[1]]
    assert by[("triton", "fp32")]["parity_error"] < 1e-5   # fp32 = fp32: summation order only
    assert by[("triton", "fp16")]["parity_error"] > 0      # fp16 storage really differs
    for p in ("fp32", "fp16"):
        assert by[("tensorrt", p)]["status"] == "unavailable"
        assert by[("tensorrt", p)]["note"].startswith("tensorrt not installed")
    assert not (tmp_path / "trt").exists()

    # the budget already spent: nothing is built or run, every row says so
    late = gc.measure_all(torch, [("tiny", size, tile)], net=net, deadline=time.monotonic() - 1, **kw)
    assert all(r["status"] == "budget" and r["note"] == gc.BUDGET_SPENT for r in late)

    class Boom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("CUDA out of memory\ndetails")

    bad = gc.measure_all(torch, [("tiny", size, tile)], net=Boom(), deadline=time.monotonic() + 600, **kw)
    assert len(bad) == 6 and all(r["status"] == "error" and r["median_ms"] is None for r in bad)
    assert bad[0]["note"] == "the reference (PyTorch eager fp32) failed: RuntimeError: CUDA out of memory"



def test_a_contender_failing_in_a_timed_round_is_named():
    rec = Recorder()
    x = _x()
    n = {"calls": 0}

    def flaky():
        f = rec.fn("flaky")

        def run(img):
            n["calls"] += 1
            if n["calls"] == 3:                            # parity, warm-up, then the first timed round
                raise RuntimeError("CUDA error: out of memory")
            return f(img)
        return run

    cs = [gc.Contender("triton", "fp16", flaky), gc.Contender("torch-eager", "fp16", lambda: rec.fn("e", "fp16"))]
    rows = gc.run_workload(WORKLOAD, x, rec.fn("ref")(x), cs, rounds=5, warmup=1, measure=wall_ms, sync=None)
    assert rows[0]["status"] == "error" and rows[0]["note"] == ("run failed while timing: RuntimeError: "
                                                                "CUDA error: out of memory")
    assert rows[1]["status"] == "error" and rows[1]["note"] == "not timed: triton fp16 failed during the rounds"
    assert all(r["median_ms"] is None and r["ratio_vs_baseline"] is None for r in rows)
