"""The platform layer (csrc/core/platform.h) on this Linux machine, against readings no one here wrote:
the kernel's CPU flags (/proc/cpuinfo, which also drops what the OS does not enable), the kernel's cache
sizes (sysfs) and glibc's CPUID-based ones (os.sysconf). The Windows side runs under Wine
(make test-windows)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_core = pytest.importorskip("unet_rt._core")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
linux_x86 = pytest.mark.skipif(not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
                               reason="Linux x86-64 readings")


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError("no flags line in /proc/cpuinfo")


@linux_x86
def test_isa_tiers_follow_the_kernels_cpu_flags():
    flags = cpu_flags()
    isas = _core.cpu_info()["available_isas"]
    assert isas[0] == "ref"
    assert ("avx2" in isas) == ({"avx2", "fma", "f16c"} <= flags)
    assert ("avx512" in isas) == ({"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags)
    if "UNET_RT_ISA" not in os.environ:
        assert _core.cpu_info()["isa"] == isas[-1]  # the best tier is chosen


def sysfs_caches() -> dict[str, int]:
    out = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind, level, size = ((d / n).read_text().strip() for n in ("type", "level", "size"))
        if kind in ("Data", "Unified"):
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            out.setdefault({"1": "l1d", "2": "l2", "3": "l3"}[level], int(size.rstrip("KMG")) * mult)
    return out


@linux_x86
def test_cache_sizes_are_the_kernels():
    expected = sysfs_caches()
    if not expected:  # pragma: no cover - containers without the cache directory
        pytest.skip("no /sys/devices/system/cpu/cpu0/cache here")
    caches = _core.cpu_info()["caches"]
    assert caches["source"] == "sysfs"
    assert {k: caches[k] for k in expected} == expected
    assert caches["l1d"] >= 4096 and caches["l2"] > caches["l1d"]


@linux_x86
def test_cpuid_cache_reading_agrees_with_glibc():
    """The CPUID path (what the platform layer falls back to where the OS says nothing) against glibc's
    own CPUID reading (getconf)."""
    _kernels = pytest.importorskip("unet_rt._kernels")
    if shutil.which("getconf") is None:  # pragma: no cover
        pytest.skip("no getconf")
    ours = dict(zip(("LEVEL1_DCACHE_SIZE", "LEVEL2_CACHE_SIZE", "LEVEL3_CACHE_SIZE"), _kernels.cache_sizes_from_cpuid()))
    compared = 0
    for name, value in ours.items():
        r = subprocess.run(["getconf", name], capture_output=True, text=True)
        theirs = int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else 0
        if theirs > 0:
            assert value == theirs, (name, value, theirs)
            compared += 1
    if not compared:  # pragma: no cover
        pytest.skip("glibc reports no cache sizes here")


def test_blocking_follows_the_caches():
    # the executor's blocking from the cache sizes read at run time (executor/winograd.h): a pass of
    # the fp32 Winograd GEMM reads kc * ocg floats of U, about half of L1; a private band 3/4 of L2
    info = _core.cpu_info()
    c, b = info["caches"], info["blocking"]
    l1 = c["l1d"] or 32 * 1024
    l2 = c["l2"] or 1 << 20
    for ocg in (16, 32):
        kc = b["wino_gemm_pass_channels"][f"ocg{ocg}"]
        assert kc % 16 == 0 and kc >= 16
        assert kc * ocg * 4 <= max(l1 // 2, 16 * ocg * 4) < (kc + 16) * ocg * 4
    assert b["wino_private_band_kb"] == pytest.approx(0.75 * l2 / 1024)


def test_engine_info_and_cli_report_the_caches(tmp_path):
    from unet_rt.engine import Engine

    info = Engine(MODEL, threads=1).info
    assert info["caches"] == _core.cpu_info()["caches"]
    r = subprocess.run([sys.executable, "-m", "unet_rt", "info", str(MODEL), "--json"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cpu = json.loads(r.stdout)["cpu"]
    assert cpu == json.loads(json.dumps(_core.cpu_info()))
    assert cpu["isa"] in cpu["available_isas"]
