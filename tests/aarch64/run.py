"""`make test-aarch64`: cross-compile the C/C++ test programs for 64-bit ARM Linux with Debian's
g++-aarch64-linux-gnu (cmake/toolchains/aarch64-linux-gnu.cmake) and run them under Debian's qemu-user
(qemu-aarch64 -L /usr/aarch64-linux-gnu), where the kernels' dispatch picks the neon tier:

  kernel_test         every kernel family of the ref and neon tiers against float64 references
                      (tests/c/kernel_test.cc: the tolerances of tests/test_kernels.py)
  c_api_errors        the C API's error paths (tests/c/c_api_errors.c)
  c_api_acquisition   the C API for acquisition software; its info.isa must be "neon"
  thread_pool_test    the thread pool's failure cases (tests/test_robust.py runs them natively)
  fuzz_*_replay       the fuzz corpus tests/corpus/ through the plain fuzz drivers

Missing tools are installed with apt-get (as root; otherwise the command to run is printed).
Only correctness means anything under qemu: nothing here is timed. Ends with "N passed, N failed".
Usage: python tests/aarch64/run.py [BUILD_DIR] [-j JOBS]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSROOT = "/usr/aarch64-linux-gnu"
TOOLS = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user"}
TARGETS = ["kernel_test", "c_api_errors", "c_api_acquisition", "thread_pool_test", "fuzz_model_reader_replay",
           "fuzz_image_replay", "fuzz_tiler_replay"]
POOL_CASES = ["start-failure", "worker-throws", "caller-throws", "fork", "clamp"]
# Cases qemu-user cannot run (they pass natively, tests/test_robust.py): reported as skipped, with why.
QEMU_SKIPS = {
    "start-failure": "asks for 1 TiB thread stacks; qemu-user maps guest memory page by page and hangs",
    "fork": "forks a process with running threads and starts threads in the child; qemu-user does not "
            "support fork() in multithreaded guests (assertion in its TCG cpu loop)",
}


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        sys.exit(f"test-aarch64: missing {', '.join(missing)}; install them with: sudo apt-get update && "
                 f"sudo {' '.join(cmd)}")
    print(f"test-aarch64: installing {' '.join(missing)} with apt-get (Debian packages)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run([*cmd, "-q", "-o", "DPkg::Lock::Timeout=600"], check=True, env=env)


def build(bdir: Path, jobs: int) -> None:
    subprocess.run(["cmake", "-S", ROOT, "-B", bdir, f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/toolchains/aarch64-linux-gnu.cmake",
                    "-DCMAKE_BUILD_TYPE=Release", "-DUNET_RT_PYTHON=OFF", "-DUNET_RT_SHARED=ON", "-DUNET_RT_C_TESTS=ON"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["nice", "cmake", "--build", bdir, "-j", str(jobs), "--target", *TARGETS], check=True)


def models(d: Path) -> dict:
    """The model files the C API programs take: a small valid-padding 1-channel, 2-class model (random
    weights), a truncated copy, a TensorRT-kind file and a missing path (as tests/test_cpp_example.py)."""
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from unet_rt.format import model_file

    arch = dict(in_channels=1, classes=2, depth=3, base=4, padding="valid")
    rng = np.random.default_rng(0)
    tensors = {k: (rng.standard_normal(s) * (2.0 / max(1, int(np.prod(s[1:])))) ** 0.5).astype(np.float32)
               for k, s in model_file.expected_shapes(arch).items()}
    good = d / "good.plan"
    model_file.save(good, model_file.ModelFile("weights", arch, {"mean": [2048.0], "std": [1200.0]},
                                               ["background", "cell"], tensors))
    corrupt = d / "corrupt.plan"
    corrupt.write_bytes(good.read_bytes()[:-10])
    trt = d / "trt.plan"
    model_file.save(trt, model_file.ModelFile("tensorrt", arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"],
                                              {"engine": np.frombuffer(b"ftrt0000", np.uint8)}))
    return {"good": good, "corrupt": corrupt, "trt": trt, "missing": d / "missing.plan"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build" / "aarch64"))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()
    bdir = Path(args.build)
    ensure_tools()
    build(bdir, args.jobs)
    qemu = ["qemu-aarch64", "-L", SYSROOT]
    passed = failed = skipped = 0

    def run(name: str, cmd: list, expect: list[str], timeout: int = 900) -> None:
        nonlocal passed, failed
        try:
            r = subprocess.run(qemu + [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
            ok = r.returncode == 0 and all(e in r.stdout for e in expect)
            out = r.stdout + r.stderr
        except subprocess.TimeoutExpired:
            ok, out = False, f"timed out after {timeout} s"
        summary = next((ln for ln in out.splitlines() if ln.startswith("kernel_test: ") and "passed" in ln), "")
        print(f"{'PASS' if ok else 'FAIL'} {name}{'  (' + summary + ')' if summary else ''}", flush=True)
        if not ok:
            print("\n".join(ln for ln in out.splitlines() if not ln.startswith("ok "))[-4000:], flush=True)
        passed += ok
        failed += not ok

    with tempfile.TemporaryDirectory() as tmp:
        m = models(Path(tmp))
        run("kernel_test (ref + neon vs float64)", [bdir / "kernel_test"], ["kernel_test: ISAs ref neon; best neon", " 0 failed"])
        run("c_api_errors", [bdir / "c_api_errors", m["good"], m["corrupt"], m["trt"], m["missing"]], ["ALL OK"])
        run("c_api_acquisition (info.isa == neon)", [bdir / "c_api_acquisition", m["good"]],
            ["ok   info.isa is neon on aarch64", "ALL OK"])
        for case in POOL_CASES:
            if case in QEMU_SKIPS:
                print(f"SKIP thread_pool_test {case}: {QEMU_SKIPS[case]}", flush=True)
                skipped += 1
                continue
            run(f"thread_pool_test {case}", [bdir / "thread_pool_test", case], [f"OK {case}"], timeout=120)
        for target in ("model_reader", "image", "tiler"):
            files = sorted((ROOT / "tests" / "corpus" / target).iterdir())
            run(f"fuzz_{target}_replay ({len(files)} corpus files)", [bdir / f"fuzz_{target}_replay", *files],
                [f"ran {len(files)} inputs"])
    if skipped:
        print(f"({skipped} skipped: qemu-user limits, see above)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
