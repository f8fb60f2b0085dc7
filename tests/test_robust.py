"""Issue 12: hostile and unlucky inputs. Each test here failed (or hung, or crashed) before its fix;
hangs and crashes are run in a subprocess with a timeout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from unet_rt.format import model_file

_core = pytest.importorskip("unet_rt._core")
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def py(code: str, timeout: float = 60, env=None, shell_prefix: str = "") -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (cwd tests/); a hang fails the test at `timeout`."""
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    if shell_prefix:
        cmd = ["bash", "-c", shell_prefix + ' exec "$0" "$@"', *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, cwd=TESTS,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the interpreter and any child it forked
        p.communicate()
        pytest.fail(f"hung for {timeout} s")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


# ---- threads --------------------------------------------------------------------------------------

def test_thread_start_failure_is_an_error_not_a_hang(model):
    # Every thread gets a 2 GiB stack (ulimit -s) under a 3 GiB address-space limit set after the
    # imports: the pool's second worker cannot start. Before: stuck in pthread_cond_destroy.
    r = py(f"""
        import resource, numpy as np
        from unet_rt import _core
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        vm = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (vm + 3 * 2**30, hard))
        try:
            _core.Engine({str(model)!r}, threads=4)
        except RuntimeError as e:
            print("ERROR", e)
        else:
            print("NO ERROR")
        """, timeout=60, shell_prefix="ulimit -s 2097152;")
    assert r.returncode == 0, r.stderr
    assert "ERROR cannot start 4 threads" in r.stdout, r.stdout + r.stderr


def test_threads_clamped_with_a_message(model, capfd):
    e = _core.Engine(str(model), threads=100000)
    limit = 4 * (os.cpu_count() or 1)
    assert e.info["threads"] == limit
    assert "threads=100000 is more than 4 x the" in capfd.readouterr().err
    t = time.perf_counter()
    e.segment(np.zeros((1, 64, 64), np.uint8))
    assert time.perf_counter() - t < 5  # was 31 s with 10 000 threads


def test_fork_child_runs_the_engine(model):
    # Before: the child waited forever for the parent's workers.
    r = py(f"""
        import os, numpy as np
        from unet_rt import _core
        e = _core.Engine({str(model)!r}, threads=2)
        img = np.arange(80 * 70, dtype=np.uint16).reshape(1, 80, 70) % 251
        ref = e.segment(img)
        pid = os.fork()
        if pid == 0:
            ok = (e.segment(img) == ref).all()
            del e
            os._exit(0 if ok else 3)
        _, st = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(st))
        """, timeout=60)
    assert "child 0" in r.stdout, r.stdout + r.stderr


def _native_build():
    build = ROOT / "build" / "capi-test"
    if shutil.which("cmake") is None:
        pytest.skip("cmake is needed")
    subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_PYTHON=OFF",
                    "-DUNET_RT_SHARED=ON", "-DUNET_RT_C_TESTS=ON"], check=True, capture_output=True, timeout=300)
    r = subprocess.run(["nice", "cmake", "--build", build, "-j", "2", "--target", "thread_pool_test"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build / "thread_pool_test"


@pytest.fixture(scope="module")
def pool_test():
    return _native_build()


@pytest.mark.parametrize("case", ["start-failure", "worker-throws", "caller-throws", "fork", "fork-mutex", "clamp"])
def test_thread_pool(pool_test, case):
    """Exceptions on any thread reach the caller (before: terminate on a worker; the caller
    unwound while workers still ran the job); start failure and fork: no hang."""
    try:
        r = subprocess.run([pool_test, case], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: hung")
    assert r.returncode == 0 and f"OK {case}" in r.stdout, r.stdout + r.stderr


# ---- model files -----------------------------------------------------------------------------------

def test_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.plan"
    os.mkfifo(fifo)
    r = py(f"""
        from unet_rt import _core, Engine
        from unet_rt.format import model_file
        for f in (_core.read_model, model_file.detect_kind, model_file.load, Engine, _core.Engine):
            try:
                f({str(fifo)!r})
            except OSError as e:
                print(f.__name__, type(e).__name__, e)
        """, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5 and all("not a regular file" in line for line in lines), r.stdout
    assert not any("FileNotFoundError" in line for line in lines)


def test_directory_is_refused(tmp_path):
    with pytest.raises(OSError, match="not a regular file"):
        _core.read_model(str(tmp_path))
    with pytest.raises(OSError, match="not a regular file"):
        model_file.load(tmp_path)


def test_rewrite_during_load_never_crashes(tmp_path):
    # Before: the reader mmapped the file; truncating it while it loads killed the process (SIGBUS).
    # The writer is another process (read_model holds the GIL), rewriting the file in place.
    model = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"  # 7.7 MB: a wide window
    target = tmp_path / "live.plan"
    shutil.copy(model, target)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        path, data = sys.argv[1], open(sys.argv[2], "rb").read()
        while True:
            with open(path, "r+b") as f:
                f.truncate(len(data) // 3); time.sleep(0.0005)
                f.seek(len(data) // 3); f.write(data[len(data) // 3:]); f.flush()
            time.sleep(0.005)
        """), str(target), str(model)])
    try:
        r = py(f"""
            import time
            from unet_rt import _core
            ok = bad = 0
            end = time.time() + 4
            while time.time() < end:
                try:
                    _core.read_model({str(target)!r}); ok += 1
                except ValueError:
                    bad += 1
            print("loads", ok, "errors", bad)
            """, timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert r.returncode == 0, f"died with {r.returncode}: {r.stderr[-2000:]}"
    assert "loads" in r.stdout


def _keys_header(n: int) -> bytes:
    hdr = {f"t{i:06d}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(n)}
    hdr["__metadata__"] = {"format": "unet-rt"}
    text = json.dumps(hdr).encode()
    return len(text).to_bytes(8, "little") + text


def test_many_keys_parse_fast():
    data = _keys_header(80000)  # 4.5 MB header; the 80 000 keys took 18.6 s (quadratic)
    t = time.perf_counter()
    with pytest.raises(ValueError):
        _core.read_model_bytes(data)
    assert time.perf_counter() - t < 3
    dup = data.replace(b'"t079999"', b'"t000001"')
    with pytest.raises(ValueError, match='duplicate key "t000001"'):
        _core.read_model_bytes(dup)


def test_deep_nesting_python_side(tmp_path):
    p = tmp_path / "deep.plan"
    text = b"{\"a\": " + b"[" * 100000 + b"]" * 100000 + b"}"
    p.write_bytes(len(text).to_bytes(8, "little") + text)
    for f in (model_file.detect_kind, model_file.load):
        with pytest.raises(model_file.ModelFileError, match="nest(ed|ing) deeper than 64"):
            f(p)
    with pytest.raises(ValueError, match="nesting deeper than 64"):
        _core.read_model(str(p))


def test_numel_times_element_size_cannot_wrap():
    # 2^61 elements x 8 bytes wraps to 0 in 64 bits: a zero-byte tensor would pass the size check.
    from _model_bytes import metadata, tiny_arch

    hdr = {"__metadata__": metadata(tiny_arch()),
           "x": {"dtype": "F64", "shape": [2**31, 2**30], "data_offsets": [0, 0]}}
    text = json.dumps(hdr).encode()
    with pytest.raises(ValueError, match="absurd shape"):
        _core.read_model_bytes(len(text).to_bytes(8, "little") + text)


# ---- sizes near INT_MAX, bounded caches, non-finite outputs -----------------------------------------

@pytest.mark.parametrize("h, w", [(2**31 - 1, 1), (1, 2**31 - 1), (2**20 + 1, 8)])
def test_huge_sides_are_refused(h, w):
    with pytest.raises(ValueError, match="not supported"):
        _core.plan_tiles(h, w)


def test_largest_side_plans_quickly():
    t = time.perf_counter()
    p = _core.plan_tiles(2**20, 700, max_tile=1024)
    assert p["x"]["out_start"][0] == 0 and sum(p["y"]["out_size"]) >= 2**20
    assert time.perf_counter() - t < 10


def test_plan_cache_and_arena_are_bounded(model):
    e = _core.Engine(str(model), threads=1)
    # 30 image sizes -> 30+ tile shapes; the executor keeps at most 16 plans
    for i in range(30):
        e.segment(np.zeros((1, 20 + 16 * i, 30), np.uint8))
    assert e.info["cached_plans"] <= 16
    big = e.info["arena_bytes"]
    for i in range(17):  # small shapes only: the big plans (and their arena) are dropped
        e.segment(np.zeros((1, 10 + i, 10), np.uint8))
    assert 0 < e.info["arena_bytes"] < big


def test_overflowing_weights_give_an_error_not_garbage(tmp_path):
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet, to_model_file

    net = UNet(1, 2, depth=1, base=4, dropout=0).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1e30)
    path = tmp_path / "huge.plan"
    model_file.save(path, to_model_file(net, {"mean": [0.0], "std": [1.0]}, ["a", "b"]))
    e = _core.Engine(str(path), threads=1)
    img = np.full((1, 40, 40), 100, np.uint8)
    for call in (e.predict, e.segment):
        with pytest.raises(FloatingPointError, match="NaN or Inf"):
            call(img)
    with pytest.raises(FloatingPointError):
        e.predict(img, logits=True)
