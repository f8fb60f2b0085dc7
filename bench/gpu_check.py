"""One command for a machine with a CUDA GPU: run the GPU-only tests, then time the GPU backends.

    python bench/gpu_check.py [--out out/gpu-check] [--sizes 512 2048] [--rounds 10] [--skip-tests]
    make gpu-check                       # the same, after `make install`, into out/gpu-check/

1. Checks for torch with CUDA and a visible device. Without one it prints one line saying what is
   missing (no torch / a CPU-only build of torch / no device) and exits with status 3 at once,
   having done nothing else (``--probe`` stops after this check, with status 0 when a GPU is there).
2. Runs the GPU-only tests (GPU_TESTS: tests/triton, which run on CUDA where a GPU is present, and the
   real-TensorRT test of tests/test_tensorrt.py) under pytest with a timeout; records passed / failed /
   skipped (tests.log, tests.xml).
3. For each workload — the paper network (depth 4, base 64, 1 -> 2 classes, valid padding, random He
   weights, seed 0) on a whole random 512x512 or 2048x2048 image through the shared overlap-tile code
   (``_core.tile_predict``, the grid ``Engine`` runs: one 700 tile for 512, 2x2 tiles of 1212 for 2048;
   bench/_workloads.py IMAGES) — the contenders, each a per-tile function behind that same grid:
       triton      fp32 / fp16   unet_rt.backends.triton.make_tile_fn (fp32 = IEEE fp32 dots, no TF32)
       tensorrt    fp32 / fp16   a plan built here by compile_model for the grid's tile (TF32 off for
                                 fp32), run by TensorRTRunner; "tensorrt not installed" when it is not
       torch-eager fp32 / fp16   PyTorch eager, channels-last, cudnn.benchmark on, TF32 off
   Parity first: each contender's first whole-image output against PyTorch eager fp32 (TF32 off), as
   max |y - ref| / max |ref| <= TOLERANCE[precision] (fp32 1e-3, fp16 0.05). A contender that fails
   (or raises) gets a row saying so and is not timed. Then every passing contender is timed
   interleaved: ``--warmup`` untimed rounds alike, then ``--rounds`` rounds, each calling every
   contender once (the first rotating), each call between two CUDA events; medians, the ratio
   torch-eager / this at the same precision (> 1: faster than eager) and effective TFLOP/s (direct-
   convolution FLOPs of the tiles run / time).
4. A wall-clock budget (``--time-budget``, default 400 s, so that the whole command stays under 8
   minutes): the tests get at most ``--tests-timeout`` of it (then they are interrupted like Ctrl-C and
   the finished ones counted); a contender is not built once it is spent (a TensorRT engine not with
   less than 90 s left), and timing stops at the first round boundary past it (rows and table say so;
   fewer than MIN_ROUNDS rounds give no number). A build or round under way is finished: the overrun
   is at most one TensorRT build beyond 90 s plus one round. How long builds and Triton's autotuning
   take on a given GPU has not been measured.
5. Writes OUT/gpu-check.json (device, driver / CUDA / cuDNN / torch / triton / tensorrt versions, the test
   results, every row) and OUT/gpu-check.md (the table, also printed). TensorRT plans and the timing
   cache stay in OUT/trt/ (a second run rebuilds the plans faster from the cache).

Exit status: 0 done; 1 done, but a test or a parity check failed or a contender raised; 2 bad arguments;
3 no GPU. No number is ever written for a contender that was not timed.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _gpu import cuda_measure, cuda_sync, time_rounds  # noqa: E402
from _workloads import IMAGES, PAPER, grid_predict, grid_tiles, image_input, paper_flops  # noqa: E402

NO_GPU_STATUS = 3
SIZES = {size: (name, tile) for name, (size, tile) in IMAGES.items()}
PRECISIONS = ("fp32", "fp16")
TOLERANCE = {"fp32": 1e-3, "fp16": 0.05}     # max |y - ref| / max |ref| against PyTorch fp32 (TF32 off)
MIN_ROUNDS = 3                               # fewer timed rounds than this: no number is reported
BASELINE = "torch-eager"                     # the peer every ratio is taken against, at the same precision
# relative to tests/ (pytest runs there, so that the installed package is imported, as in `make test`)
GPU_TESTS = ["triton", "test_tensorrt.py::test_real_tensorrt_matches_onnxruntime"]
INTERRUPT_GRACE_S = 15.0


class Unavailable(Exception):
    """A contender that cannot run here (a package is not installed): a row with the reason, no number."""


@dataclass
class Contender:
    name: str
    precision: str
    build: Callable[[], Callable]     # -> fn(image [C, H, W] float32) -> logits [K, H, W]; may raise Unavailable
    min_left_s: float = 5.0           # not built with less of the budget left


# ------------------------------------------------------------------------------------------ arguments ---
def _positive(kind):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not (v > 0) or (isinstance(v, float) and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    return parse


def _non_negative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu_check.py",
        description="On a machine with a CUDA GPU: run the GPU-only tests (tests/triton and the real-TensorRT "
                    "test), then time Triton and TensorRT (fp32, fp16) against PyTorch eager (cuDNN) on the "
                    "paper U-Net over whole 512x512 and 2048x2048 images, parity with PyTorch fp32 asserted "
                    "first. Writes OUT/gpu-check.json and OUT/gpu-check.md (the table, also printed). Keeps "
                    "to about --time-budget seconds (default 400; an engine build or a round under way is "
                    "finished) plus start-up. Without torch+CUDA and a "
                    "device it says what is missing and exits with status 3 at once.",
        epilog="Exit status: 0 done; 1 a test or parity check failed or a contender raised; 2 bad arguments; "
               "3 no GPU. Details: the docstring of bench/gpu_check.py.")
    p.add_argument("--out", type=Path, default=Path("out/gpu-check"),
                   help="output folder (default out/gpu-check; TensorRT plans go to OUT/trt/)")
    p.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES), metavar="N",
                   help=f"image sizes to time, of {sorted(SIZES)} (default all)")
    p.add_argument("--rounds", type=_positive(int), default=10,
                   help=f"timed interleaved rounds per workload (default 10; fewer than {MIN_ROUNDS} done "
                        f"within the budget give no number)")
    p.add_argument("--warmup", type=_non_negative_int, default=2,
                   help="untimed rounds before them, every contender alike (default 2; the parity call "
                        "comes before these)")
    p.add_argument("--time-budget", type=_positive(float), default=400.0, metavar="SECONDS",
                   help="wall-clock budget for the tests and the timing together (default 400)")
    p.add_argument("--tests-timeout", type=_positive(float), default=150.0, metavar="SECONDS",
                   help="at most this much of the budget for the GPU tests (default 150)")
    p.add_argument("--skip-tests", action="store_true", help="time only; do not run the GPU tests")
    p.add_argument("--probe", action="store_true",
                   help="only check for torch with CUDA and a device (status 0 if found, 3 if not)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = parser()
    a = p.parse_args(argv)
    if a.out.exists() and not a.out.is_dir():
        p.error(f"--out {a.out} exists and is not a folder")
    a.sizes = list(dict.fromkeys(a.sizes))
    return a


# -------------------------------------------------------------------------------------------- probe ---
def gpu_missing(torch) -> str | None:
    """What is missing for a GPU run, in one line (``torch``: the module, or None if it does not
    import); None when torch sees a CUDA device."""
    if torch is None:
        return ("no torch: this check needs PyTorch with CUDA (`make install` puts torch 2.13.0 into .venv; "
                "on Linux x86-64 PyPI's default torch wheel is the CUDA build)")
    if getattr(torch.version, "cuda", None) is None:
        return (f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None): install a CUDA "
                f"build of torch 2.13.0 (PyPI's default wheel on Linux x86-64)")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        return (f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
                f"(no NVIDIA driver loaded, or CUDA_VISIBLE_DEVICES hides it)")
    return None


def probe():
    """(torch module or None, the reason there is no GPU or None)."""
    try:
        import torch
    except ModuleNotFoundError as e:
        if e.name != "torch":
            return None, f"torch does not import ({_short(e)})"
        return None, gpu_missing(None)
    except (ImportError, OSError) as e:          # e.g. a CUDA build whose libraries do not load
        return None, f"torch does not import ({_short(e)})"
    return torch, gpu_missing(torch)


# ------------------------------------------------------------------------------------------- tests ---
def parse_junit(path: Path) -> dict:
    """passed / failed / errors / skipped counts and the failed test ids of a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    failed = []
    for case in root.iter("testcase"):
        if case.get("name") is None:          # the test under way when pytest was interrupted: no outcome
            continue
        tid = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        if "failure" in tags:
            counts["failed"] += 1
            failed.append(tid)
        elif "error" in tags:
            counts["errors"] += 1
            failed.append(tid)
        elif "skipped" in tags:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failed_ids": failed}


def run_gpu_tests(out: Path, timeout: float) -> dict:
    """pytest on GPU_TESTS (in tests/, like `make test`) with a timeout; -> the result record."""
    out = out.resolve()                    # pytest runs in tests/: no path relative to here
    xml, log = out / "tests.xml", out / "tests.log"
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *GPU_TESTS]
    rec = {"command": "cd tests && python " + " ".join(cmd[1:]).replace(str(xml), "OUT/tests.xml"),
           "timeout_s": round(timeout, 1)}
    t0 = time.monotonic()
    with open(log, "w") as logf:
        # SIGINT back to its default in the child: started as a background job of a non-interactive
        # shell, we inherit it ignored, and pytest would then ignore the Ctrl-C below
        proc = subprocess.Popen(cmd, cwd=ROOT / "tests", stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # its own session: pytest and whatever it started. Ctrl-C first, so that pytest reports
            # the tests it finished; killed if it is still there after INTERRUPT_GRACE_S.
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
    rec["wall_s"] = round(time.monotonic() - t0, 1)
    if rc is None:
        if xml.exists():
            rec.update(parse_junit(xml))
        rec.update(status="timed out", note=f"stopped after {timeout:.0f} s; the counts are of the tests that "
                                            f"finished (tests.log)")
    elif xml.exists():
        rec.update(parse_junit(xml), status="passed" if rc == 0 else "failed", returncode=rc)
    else:
        rec.update(status="failed", returncode=rc, note="pytest wrote no report (see tests.log)")
    return rec


# ------------------------------------------------------------------------------ parity and timing ---
def parity_error(y, ref) -> float:
    """max |y - ref| / max |ref|; inf for a shape mismatch or a non-finite value."""
    import numpy as np

    y, ref = np.asarray(y, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if y.shape != ref.shape:
        return math.inf
    if y.size == 0:
        return 0.0
    diff, scale = float(np.abs(y - ref).max()), float(np.abs(ref).max())
    err = diff / scale if scale > 0 else diff           # an all-zero reference: the absolute error
    return err if math.isfinite(err) else math.inf


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:300]


BUDGET_SPENT = "not run: the time budget was spent"


class _TimingFailure(Exception):
    def __init__(self, key, error: BaseException):
        super().__init__(f"{key}: {error}")
        self.key, self.error = key, error


def _guarded(key, fn, x):
    """fn(x) as a zero-argument call whose exception says which contender raised."""
    def call():
        try:
            return fn(x)
        except Exception as e:
            raise _TimingFailure(key, e) from e
    return call


def new_row(workload: dict, c: Contender, **kw) -> dict:
    """One table row: the workload's fields, the contender, and nothing measured yet."""
    row = dict(workload, contender=c.name, precision=c.precision, tolerance=TOLERANCE[c.precision], status=None,
               parity_error=None, median_ms=None, rounds=0, ratio_vs_baseline=None, tflops=None, note="")
    row.update(kw)
    return row


def _build_and_check(c: Contender, row: dict, x, ref, closers: list, deadline, clock):
    """Build ``c`` and check its parity, filling ``row``; -> the function to time, or None."""
    if deadline is not None and deadline - clock() < c.min_left_s:
        row.update(status="budget", note=BUDGET_SPENT)
        return None
    try:
        fn = c.build()
    except Unavailable as e:
        row.update(status="unavailable", note=str(e))
        return None
    except Exception as e:  # noqa: BLE001  (recorded in the row; the other contenders still run)
        row.update(status="error", note=f"build failed: {_short(e)}")
        return None
    closers.append(getattr(fn, "close", None))
    try:
        y = fn(x)
    except Exception as e:  # noqa: BLE001
        row.update(status="error", note=f"run failed: {_short(e)}")
        return None
    err = parity_error(y, ref)
    row["parity_error"] = err if math.isfinite(err) else "inf"
    if not err <= TOLERANCE[c.precision]:
        row.update(status="parity-failed",
                   note=f"max rel. error {err:.3g} > {TOLERANCE[c.precision]:g} vs PyTorch fp32: not timed")
        return None
    return fn


def run_workload(workload: dict, x, ref, contenders: list, *, rounds: int, warmup: int,
                 measure: Callable = cuda_measure, sync: Callable | None = cuda_sync,
                 deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None) -> list:
    """Build each contender, check its parity on ``x`` against ``ref``, time the ones that pass.

    ``workload``: fields copied into every row (name, image, tile, tiles, flops). Returns one row
    per contender; only rows with status "ok" carry a time. ``log``: progress lines, if given.
    """
    rows, fns, closers = [], {}, []
    for c in contenders:
        row = new_row(workload, c)
        rows.append(row)
        fn = _build_and_check(c, row, x, ref, closers, deadline, clock)
        if fn is not None:
            fns[(c.name, c.precision)] = fn
        if log is not None:
            what = row["status"] or f"parity ok ({row['parity_error']:.2e})"
            log(f"{workload['workload']} {c.name} {c.precision}: {what} {row['note']}".rstrip())
    try:
        if fns:
            if log is not None:
                log(f"{workload['workload']}: timing {len(fns)} contenders, {rounds} rounds")
            try:
                times, done = time_rounds({k: _guarded(k, f, x) for k, f in fns.items()}, rounds=rounds,
                                          warmup=warmup, measure=measure, sync=sync, deadline=deadline, clock=clock)
            except _TimingFailure as e:              # one contender raised in a round: no times for any
                culprit = f"{e.key[0]} {e.key[1]}"
                for row in rows:
                    key = (row["contender"], row["precision"])
                    if key == e.key:
                        row.update(status="error", note=f"run failed while timing: {_short(e.error)}")
                    elif key in fns:
                        row.update(status="error", note=f"not timed: {culprit} failed during the rounds")
                fns = {}
                times, done = {}, 0
            for row in rows:
                key = (row["contender"], row["precision"])
                if key not in fns:
                    continue
                row["rounds"] = done
                if done < MIN_ROUNDS:
                    row.update(status="budget", note=f"the time budget ran out after {done} of {rounds} rounds "
                                                     f"(< {MIN_ROUNDS}): not timed")
                    continue
                row.update(status="ok", median_ms=statistics.median(times[key]))
                if done < rounds:
                    row["note"] = f"the time budget ran out: {done} of {rounds} rounds"
    finally:
        for close in closers:
            if close is not None:
                close()
    add_ratios(rows)
    return rows


def add_ratios(rows: list) -> list:
    """ratio_vs_baseline = median of BASELINE (same workload and precision) / this row's median, and
    effective TFLOP/s, for rows that were timed."""
    base = {(r["workload"], r["precision"]): r["median_ms"] for r in rows
            if r["contender"] == BASELINE and r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            continue
        b = base.get((r["workload"], r["precision"]))
        if r["contender"] != BASELINE and b is not None:
            r["ratio_vs_baseline"] = b / r["median_ms"]
        if r.get("flops"):
            r["tflops"] = r["flops"] / (r["median_ms"] * 1e-3) / 1e12
    return rows


# ------------------------------------------------------------------------------------------ report ---
def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def format_table(result: dict) -> str:
    """The Markdown report: a header (device, versions, tests) and one table row per contender."""
    env, tests = result.get("environment", {}), result.get("tests")
    lines = [f"# gpu-check: {env.get('device', '?')}", ""]
    vers = ", ".join(f"{k} {env[k]}" for k in ("compute_capability", "driver", "cuda", "cudnn", "torch",
                                                 "triton", "tensorrt", "unet_rt") if env.get(k) is not None)
    if vers:
        lines += [vers, ""]
    if tests is None:
        lines += ["GPU tests: not run (--skip-tests)", ""]
    else:
        t = tests
        head = f"timed out after {t['timeout_s']:g} s; before that: " if t.get("status") == "timed out" else ""
        lines += [f"GPU tests: {head}{t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
                  f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped ({t.get('wall_s', 0):g} s)"]
        lines += [f"- failed: {i}" for i in t.get("failed_ids", [])]
        if t.get("note"):
            lines.append(f"- {t['note']}")
        lines.append("")
    lines += [f"| workload | contender | precision | parity (max rel. err ≤ tol) | median ms | {BASELINE} / this "
              f"| TFLOP/s | note |", "|---|---|---|---|---:|---:|---:|---|"]
    for r in result.get("rows", []):
        pe = r["parity_error"]
        parity = "—" if pe is None else f"{pe if isinstance(pe, str) else format(pe, '.2e')} ≤ {r['tolerance']:g}"
        if r["status"] == "parity-failed":
            parity = parity.replace("≤", ">") + " FAIL"
        wl = f"{r['workload']} ({r['tiles']}×{r['tile']} tile{'s' if r['tiles'] != 1 else ''})"
        ms = _fmt(r["median_ms"], ".2f") if r["status"] == "ok" else "—"
        note = r["note"] or ("" if r["status"] == "ok" else r["status"])
        if r["status"] == "ok" and r["rounds"]:
            note = (note + "; " if note else "") + f"{r['rounds']} rounds"
        lines.append(f"| {wl} | {r['contender']} | {r['precision']} | {parity} | {ms} | "
                     f"{_fmt(r['ratio_vs_baseline'], '.2f')} | {_fmt(r['tflops'], '.1f')} | {note} |")
    if result.get("failure"):
        lines += ["", f"Timing stopped: {result['failure']}"]
    if result.get("budget_exhausted"):
        lines += ["", f"The time budget ({result['budget_s']:g} s) ran out: rows marked so were not (fully) timed."]
    lines += ["", f"Parity: max |y - ref| / max |ref| against PyTorch eager fp32 (TF32 off) on the same image. "
                  f"Times: medians of CUDA-event times of one whole image through the overlap-tile grid, "
                  f"contenders interleaved; {BASELINE} / this > 1 means faster than {BASELINE}."]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: Path) -> tuple[Path, Path]:
    """OUT/gpu-check.json and OUT/gpu-check.md, each written whole or not at all."""
    from unet_rt.format.model_file import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "gpu-check.json", out / "gpu-check.md"
    js_text = json.dumps(result, indent=2, allow_nan=False) + "\n"      # both made before either is written
    md_text = format_table(result)
    atomic_write(js, js_text.encode())
    atomic_write(md, md_text.encode())
    return js, md


def exit_status(result: dict) -> int:
    t = result.get("tests") or {}
    bad_tests = t.get("status") in ("failed", "timed out")
    bad_rows = any(r["status"] in ("parity-failed", "error") for r in result.get("rows", []))
    return 1 if bad_tests or bad_rows or result.get("failure") else 0


# --------------------------------------------------------------------------------- GPU contenders ---
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    driver = None
    if shutil.which("nvidia-smi"):
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (subprocess.SubprocessError, OSError, IndexError):
            driver = None
    return {"device": torch.cuda.get_device_name(0), "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "device_count": torch.cuda.device_count(),
            "driver": driver or "unknown (no nvidia-smi)", "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__, "triton": _version("triton"),
            "tensorrt": _version("tensorrt"), "cuda_python": _version("cuda-python"),
            "unet_rt": _version("unet-rt"), "python": platform.python_version(), "host_cpu": platform.machine()}


def gpu_contenders(torch, net32, mf, tile: int, trt_dir: Path, *, device: str = "cuda", arch: dict = PAPER) -> list:
    """The six contenders of one workload: fn(image) -> logits through the overlap-tile grid of ``tile``.
    ``net32``: the fp32 torch UNet on ``device``; ``mf``: its ModelFile. (``device="cpu"`` with a tiny
    ``arch`` is how the tests drive this glue without a GPU: Triton then runs under its interpreter.)"""
    import copy

    import numpy as np

    dtypes = {"fp32": torch.float32, "fp16": torch.float16}

    def eager(prec):
        def build():
            net = copy.deepcopy(net32).to(dtype=dtypes[prec]).to(memory_format=torch.channels_last)

            def tile_fn(t):
                xt = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))[None].to(device)
                with torch.inference_mode():
                    y = net(xt.to(dtypes[prec]).contiguous(memory_format=torch.channels_last))
                return y[0].float().cpu().numpy()
            return lambda img: grid_predict(img, tile, tile_fn, arch)
        return build

    def triton(prec):
        def build():
            if importlib.util.find_spec("triton") is None:
                raise Unavailable("triton not installed (pip install 'unet-rt[triton]')")
            from unet_rt.backends.triton import make_tile_fn

            tile_fn = make_tile_fn(mf, device=device, dtype=dtypes[prec])
            return lambda img: grid_predict(img, tile, tile_fn, arch)
        return build

    def tensorrt(prec):
        def build():
            from unet_rt.backends import tensorrt as trt_backend

            if not trt_backend.available():
                raise Unavailable("tensorrt not installed (pip install 'unet-rt[tensorrt]')")
            from unet_rt.backends.tensorrt import compile_model, make_tile_fn

            trt_dir.mkdir(parents=True, exist_ok=True)
            plan = trt_dir / f"paper-{tile}-{prec}.plan"
            compile_model(mf, tile, plan, precision=prec, timing_cache=trt_dir / "timing.cache")
            tile_fn = make_tile_fn(plan)

            def run(img):
                return grid_predict(img, tile, tile_fn, arch)
            run.close = tile_fn.runner.close
            return run
        return build

    out = []
    for prec in PRECISIONS:
        out.append(Contender("triton", prec, triton(prec)))
    from unet_rt.backends import tensorrt as trt_backend

    for prec in PRECISIONS:   # an engine build takes a while; "not installed" is said whatever the budget
        out.append(Contender("tensorrt", prec, tensorrt(prec), min_left_s=90.0 if trt_backend.available() else 0.0))
    for prec in PRECISIONS:
        out.append(Contender(BASELINE, prec, eager(prec)))
    return out


def measure_all(torch, workloads: list, *, rounds: int, warmup: int, deadline: float, trt_dir: Path,
                device: str = "cuda", arch: dict = PAPER, net=None, mf=None, measure: Callable = cuda_measure,
                sync: Callable | None = cuda_sync, log: Callable[[str], None] | None = None) -> list:
    """Rows of every workload (name, image size, tile): the reference (PyTorch eager fp32), then
    run_workload over gpu_contenders. Defaults: the paper network on CUDA; the tests pass a tiny
    ``net`` / ``mf`` / ``arch`` on the CPU with a wall-clock ``measure``."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False          # fp32 means fp32: the reference and the eager contender
    torch.backends.cuda.matmul.allow_tf32 = False
    if net is None:
        import _gpu

        net, mf = _gpu.paper_net(dtype=torch.float32, device=device)
    rows = []
    for name, size, tile in workloads:
        tiles = grid_tiles(size, tile, arch)
        workload = dict(workload=name, image=size, tile=tile, tiles=tiles,
                        flops=tiles * paper_flops(tile, tile, arch))
        x = image_input(size, arch["in_channels"])
        contenders = gpu_contenders(torch, net, mf, tile, trt_dir, device=device, arch=arch)
        if time.monotonic() >= deadline:
            rows += [new_row(workload, c, status="budget", note=BUDGET_SPENT) for c in contenders]
            continue
        reference = next(c for c in contenders if c.name == BASELINE and c.precision == "fp32")
        try:
            ref = reference.build()(x)          # PyTorch eager fp32, TF32 off: the parity reference
        except Exception as e:  # noqa: BLE001  (recorded; the next workload still runs)
            rows += [new_row(workload, c, status="error", note=f"the reference (PyTorch eager fp32) failed: "
                                                              f"{_short(e)}") for c in contenders]
            continue
        rows += run_workload(workload, x, ref, contenders, rounds=rounds, warmup=warmup, measure=measure,
                             sync=sync, deadline=deadline, log=log)
        del contenders, ref
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch, missing = probe()
    if missing:
        print(f"gpu-check: no GPU, nothing run: {missing}", file=sys.stderr)
        return NO_GPU_STATUS
    if args.probe:
        print(f"gpu-check: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})")
        return 0
    t0 = time.monotonic()
    deadline = t0 + args.time_budget
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(torch)
    print(f"gpu-check: {env['device']}, budget {args.time_budget:g} s", flush=True)
    tests = None
    if not args.skip_tests:
        print(f"gpu-check: running the GPU tests ({' '.join(GPU_TESTS)}) ...", flush=True)
        tests = run_gpu_tests(args.out, max(1.0, min(args.tests_timeout, deadline - time.monotonic())))
        print(f"gpu-check: tests {tests['status']} ({tests['wall_s']:g} s)", flush=True)
    workloads = [(SIZES[size][0], size, SIZES[size][1]) for size in args.sizes]
    try:
        rows = measure_all(torch, workloads, rounds=args.rounds, warmup=args.warmup, deadline=deadline,
                           trt_dir=args.out / "trt", log=lambda m: print(f"gpu-check: {m}", flush=True))
    except Exception as e:  # noqa: BLE001  (the test results are still written, with what went wrong)
        rows = []
        failure = _short(e)
        print(f"gpu-check: timing failed: {failure}", file=sys.stderr)
    else:
        failure = None
    result = {"schema": 1, "started": started, "environment": env,
              "settings": {"sizes": args.sizes, "rounds": args.rounds, "warmup": args.warmup,
                           "tolerance": TOLERANCE, "min_rounds": MIN_ROUNDS, "network": PAPER},
              "budget_s": args.time_budget, "wall_s": round(time.monotonic() - t0, 1),
              "budget_exhausted": any(r["status"] == "budget" or "budget" in r["note"] for r in rows),
              "tests": tests, "rows": rows, "failure": failure}
    js, md = write_outputs(result, args.out)
    print(format_table(result))
    print(f"gpu-check: wrote {js} and {md}")
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
