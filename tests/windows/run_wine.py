"""make test-windows: the Windows build (MinGW-w64, cmake/toolchains/mingw-w64-x86_64.cmake) run under
Wine on this Linux machine, checked against the Linux build of the same sources.

  1. configure and build build/windows (unet_rt.dll, the C API test programs of tests/c/), install it
     as a CMake package into build/windows/prefix and build examples/cpp against that package;
  2. run tests/c/c_api_errors and tests/c/c_api_acquisition under Wine (the latter reports the ISA
     tier and the cache sizes: they must be the Linux build's on this machine);
  3. run the acquisition example on the shipped samples (data/samples/image, 8-bit images given to the
     example as 16-bit frames) with the shipped model: its labels must equal the Python Engine's (the
     Linux build) byte for byte.

Ends with "N passed, N failed"; exit status 1 if anything failed. Run from the repository root with the
development venv's Python (make test-windows does).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "windows"
PREFIX = BUILD / "prefix"
EXAMPLE = BUILD / "example"
TOOLCHAIN = ROOT / "cmake" / "toolchains" / "mingw-w64-x86_64.cmake"
MODEL = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
SAMPLES = ["25", "26", "27"]
JOBS = os.environ.get("JOBS", "2")

results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    return ok


def sh(cmd, timeout=1800, env=None, cwd=None):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def wine_env() -> dict:
    env = dict(os.environ)
    env.setdefault("WINEPREFIX", str(BUILD / "wineprefix"))
    # Wine's own fixme/err chatter off; heap checking on: freed blocks are overwritten, so that a use
    # after free crashes every time (it caught thread_local destructors running on freed emulated-TLS
    # storage: platform_win32.cc)
    env["WINEDEBUG"] = "-all,warn+heap"
    env["WINEDLLOVERRIDES"] = "mscoree,mshtml="  # no Mono/Gecko installer dialogs on the first run
    env.pop("DISPLAY", None)
    return env


def wine(args, timeout=900, isa=None):
    """Runs a Windows program; path arguments become Windows paths on Wine's Z: drive (the Linux root).
    isa: the tier to force (UNET_RT_ISA, read by the library as on Linux)."""
    exe = shutil.which("wine64") or shutil.which("wine")
    args = [a if not isinstance(a, Path) else "Z:" + str(a.resolve()).replace("/", "\\") for a in args]
    env = wine_env()
    if isa:
        env["UNET_RT_ISA"] = isa
    return sh([exe, *args], timeout=timeout, env=env)


def build() -> bool:
    cmake = [sys.executable, "-m", "cmake"] if shutil.which("cmake") is None else ["cmake"]
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    r = sh([*cmake, "-S", ROOT, "-B", BUILD, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}", "-DCMAKE_BUILD_TYPE=Release",
            "-DUNET_RT_C_TESTS=ON", *gen])
    if not check("configure (MinGW-w64 toolchain)", r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]):
        return False
    r = sh(["nice", *cmake, "--build", BUILD, "-j", JOBS, "--target", "unet_rt", "c_api_errors", "c_api_acquisition"],
           timeout=3600)
    if not check("build unet_rt.dll and the C API tests", r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]):
        return False
    r = sh([*cmake, "--install", BUILD, "--prefix", PREFIX])
    if not check("install the CMake package", r.returncode == 0 and (PREFIX / "include/unet_rt/unet_rt.hpp").is_file(),
                 r.stderr[-2000:]):
        return False
    r = sh([*cmake, "-S", ROOT / "examples" / "cpp", "-B", EXAMPLE, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
            f"-DCMAKE_PREFIX_PATH={PREFIX}", "-DCMAKE_BUILD_TYPE=Release", *gen])
    if r.returncode == 0:
        r = sh(["nice", *cmake, "--build", EXAMPLE, "-j", JOBS], timeout=1800)
    if not check("build examples/cpp against the installed package (find_package)", r.returncode == 0,
                 r.stdout[-3000:] + r.stderr[-3000:]):
        return False
    # the application ships the DLL next to its .exe (the Windows loader's first place to look)
    dll = next(PREFIX.glob("bin/*unet_rt*.dll"))
    for d in (BUILD, EXAMPLE):
        shutil.copy2(dll, d / dll.name)
    # exports: exactly the C API (unet_rt_*), as the ELF build's version script gives on Linux
    objdump = shutil.which("x86_64-w64-mingw32-objdump")
    if objdump:
        r = sh([objdump, "-p", dll])
        names = []
        if "[Ordinal/Name Pointer] Table" in r.stdout:
            table = r.stdout.split("[Ordinal/Name Pointer] Table", 1)[1]
            for line in table.splitlines()[1:]:
                if not line.strip():
                    break
                names.append(line.split()[-1])
        check("the DLL exports only unet_rt_* functions", bool(names) and all(n.startswith("unet_rt_") for n in names)
              and "unet_rt_segment" in names, f"{len(names)} exports: {names[:8]}")
        deps = [line.split(":", 1)[1].strip() for line in r.stdout.splitlines() if "DLL Name:" in line]
        mingw = [d for d in deps if d.lower().startswith(("libstdc++", "libgcc", "libwinpthread"))]
        check("the DLL needs no MinGW runtime DLL", not mingw, f"imports {deps}")
    return True


def test_models(tmp: Path) -> dict:
    """The models of tests/test_cpp_example.py: a small trained-architecture net, a truncated copy, a
    TensorRT container and a missing path."""
    import torch

    from unet_rt.format import model_file
    from unet_rt.train.model import UNet, to_model_file

    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base=4, padding="valid", dropout=0).eval()
    good = tmp / "good.plan"
    model_file.save(good, to_model_file(net, {"mean": [2048.0], "std": [1200.0]}, ["background", "cell"]))
    corrupt = tmp / "corrupt.plan"
    corrupt.write_bytes(good.read_bytes()[:-10])
    trt = tmp / "trt.plan"
    model_file.save(trt, model_file.ModelFile("tensorrt", net.arch, {"mean": [0.0], "std": [1.0]}, ["a", "b"],
                                              {"engine": np.frombuffer(b"ftrt0000", np.uint8)}))
    return {"good": good, "corrupt": corrupt, "trt": trt, "missing": tmp / "missing.plan"}


def c_api_tests(models: dict) -> None:
    from unet_rt import _core

    r = wine([BUILD / "c_api_errors.exe", models["good"], models["corrupt"], models["trt"], models["missing"]])
    check("tests/c/c_api_errors under Wine", r.returncode == 0 and "ALL OK" in r.stdout,
          f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    r = wine([BUILD / "c_api_acquisition.exe", models["good"]])
    check("tests/c/c_api_acquisition under Wine", r.returncode == 0 and "ALL OK" in r.stdout,
          f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.startswith(("isa ", "caches ")))
    cpu = _core.cpu_info()
    print(f"     Windows build under Wine: isa {lines.get('isa')}, caches {lines.get('caches')} "
          f"(Linux build: isa {cpu['isa']}, caches {cpu['caches']})")
    check("the ISA tier chosen at run time under Wine is the Linux build's", lines.get("isa") == cpu["isa"],
          f"{lines.get('isa')} vs {cpu['isa']}")
    if "avx2" in cpu["available_isas"] and cpu["isa"] != "avx2":
        r2 = wine([BUILD / "c_api_acquisition.exe", models["good"]], isa="avx2")
        check("tests/c/c_api_acquisition under Wine on the AVX2 tier (UNET_RT_ISA=avx2)",
              r2.returncode == 0 and "ALL OK" in r2.stdout and "isa avx2" in r2.stdout.splitlines(),
              f"rc {r2.returncode}\n{r2.stdout[-3000:]}\n{r2.stderr[-3000:]}")
    if "caches" in lines:
        win = [int(v) for v in lines["caches"].split()]
        check("cache sizes (GetLogicalProcessorInformation under Wine) are the Linux build's",
              win == [cpu["caches"][k] for k in ("l1d", "l2", "l3")], f"{win} vs {cpu['caches']}")


def acquisition_on_samples(tmp: Path, isa: str | None, samples: list[str]) -> None:
    """The example on the shipped samples under Wine (the tier the CPU gets, or `isa` forced), labels
    against the Python Engine of the Linux build with the same tier."""
    from PIL import Image

    from unet_rt import _core

    images = [np.asarray(Image.open(ROOT / "data" / "samples" / "image" / f"{s}.png")) for s in samples]
    if not check("shipped samples are 8-bit single-channel images of one size",
                 all(i.dtype == np.uint8 and i.ndim == 2 and i.shape == images[0].shape for i in images)):
        return
    h, w = images[0].shape
    frames = tmp / "samples.u16"
    np.stack(images).astype("<u2").tofile(frames)
    out = tmp / "labels.u8"
    tier = isa or _core.cpu_info()["isa"]
    r = wine([EXAMPLE / "acquisition.exe", MODEL, len(images), h, w, out, 2, 0, 2, frames], timeout=1800, isa=isa)
    ok = check(f"examples/cpp acquisition.exe on the shipped samples under Wine ({tier} kernels)",
               r.returncode == 0 and f"{len(images)} segmented, 0 dropped" in r.stdout and f"({tier} kernels," in r.stdout,
               f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    if not ok:
        return
    rec = np.fromfile(out, np.uint8).reshape(len(images), 4 + h * w)
    saved = os.environ.get("UNET_RT_ISA")
    os.environ["UNET_RT_ISA"] = tier  # the Linux engine on the same tier
    try:
        engine = _core.Engine(str(MODEL), threads=2)
    finally:
        if saved is None:
            os.environ.pop("UNET_RT_ISA")
        else:
            os.environ["UNET_RT_ISA"] = saved
    for f, labels in zip(rec[:, :4].copy().view("<i4")[:, 0], rec[:, 4:].reshape(len(images), h, w)):
        linux = engine.segment(images[int(f)][None])
        diff = int((labels != linux).sum())
        check(f"sample {samples[int(f)]}.png, {tier}: Windows labels equal the Linux build's byte for byte",
              linux.dtype == np.uint8 and labels.tobytes() == linux.tobytes(), f"{diff} pixels differ")


def _core_isas() -> list[str]:
    from unet_rt import _core

    return _core.cpu_info()["available_isas"]


def main() -> int:
    print(f"make test-windows: MinGW-w64 build in {BUILD.relative_to(ROOT)}, run under "
          f"{sh([shutil.which('wine64') or shutil.which('wine'), '--version']).stdout.strip()}", flush=True)
    if build():
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            c_api_tests(test_models(tmp))
            acquisition_on_samples(tmp, None, SAMPLES)  # the tier chosen at run time (avx512 on AVX-512 CPUs)
            if _core_isas()[-1] != "avx2" and "avx2" in _core_isas():
                acquisition_on_samples(tmp, "avx2", SAMPLES[:1])  # and the AVX2 tier, forced
    passed = sum(ok for _, ok, _ in results)
    failed = len(results) - passed
    for name, ok, detail in results:
        if not ok:
            print(f"\nFAILED: {name}\n{detail}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
