"""The bf16 Winograd path (precision="bf16"): kernels against a float64 truth with a bf16 error
model, the SIMD tier against the scalar bf16 reference, the executor's fallback, and the label
agreement with fp32 on the shipped model.

Error model: the bf16 kernels round V = B^T d B (computed in fp32) and U = G g G^T to bf16 (relative
error <= 2^-8 each, round to nearest even), multiply exactly in fp32 and accumulate in fp32. So per
output element |y - exact| <= (2 * 2^-8 + 2^-16 + gamma_(IC+30)) * |A|^T [sum_c |U_c| . |V_c|] |A|
(+ the fp32 bound on the bias), the same absolute-value pipeline as test_kernels' Winograd bound.
"""
from __future__ import annotations

import numpy as np
import pytest

from unet_rt import _kernels as K
from test_kernels import WINO_CASES, _check, _conv_case, _gamma, _winograd_abs

U_BF16 = 2.0**-8
BF16_ISAS = [i for i in K.available_isas() if K.bf16_kernels(i)]   # ref always; avx512 with AVX512-BF16
SIMD_BF16 = [i for i in BF16_ISAS if i != "ref"]
NO_SIMD_BF16 = "this CPU has no AVX512-BF16 (the bf16 SIMD tier cannot run here)"


def _bf16_case(case):
    chans, oc, oh, ow, band, nt = case
    offs = [(1, 2)] + [(0, 0)] * (len(chans) - 1)
    xs, w, b, pre, _ = _conv_case(chans, oc, oh, ow, offs)
    cat = np.concatenate([x[:, dy:dy + oh + 2, dx:dx + ow + 2] for x, (dy, dx) in zip(xs, offs)]).astype(np.float64)
    wabs = _winograd_abs(np.abs(cat), np.abs(w).astype(np.float64), oh, ow)
    bound = (2 * U_BF16 + U_BF16**2 + _gamma(sum(chans) + 30)) * wabs + _gamma(2) * np.abs(b)[:, None, None]
    inputs = [(x, dy, dx) for x, (dy, dx) in zip(xs, offs)]
    return inputs, w, b, pre, bound, wabs


@pytest.mark.parametrize("isa", BF16_ISAS)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-{c[2]}x{c[3]}-band{c[4]}-nt{c[5]}")
def test_winograd_bf16_error_model(case, ocg, isa):
    inputs, w, b, pre, bound, wabs = _bf16_case(case)
    oh, ow, band, nt = case[2], case[3], case[4], case[5]
    y = K.conv3x3_winograd(inputs, w, b, oh, ow, relu=False, isa=isa, ocg=ocg, band=band, nt=nt, precision="bf16")
    _check(y, pre, bound)
    # the bf16 path really rounds: its error is far above what fp32 Winograd makes on the same data
    y32 = K.conv3x3_winograd(inputs, w, b, oh, ow, relu=False, isa=isa, ocg=ocg, band=band, nt=nt)
    e16, e32 = np.abs(y - pre).max(), np.abs(y32 - pre).max()
    assert e16 > 20 * e32, (e16, e32)
    yr = K.conv3x3_winograd(inputs, w, b, oh, ow, relu=True, isa=isa, ocg=ocg, band=band, nt=nt, precision="bf16")
    np.testing.assert_array_equal(yr, np.maximum(y, 0))


@pytest.mark.skipif(not SIMD_BF16, reason=NO_SIMD_BF16)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-{c[2]}x{c[3]}")
def test_winograd_bf16_simd_vs_ref(case, ocg):
    # Same bf16-rounded V and U in both: they differ only by fp32 accumulation order (and the
    # transforms' fp32 rounding before the bf16 rounding, which can flip a bf16 ulp).
    inputs, w, b, pre, bound, wabs = _bf16_case(case)
    oh, ow, band, nt = case[2], case[3], case[4], case[5]
    ys = {i: K.conv3x3_winograd(inputs, w, b, oh, ow, relu=False, isa=i, ocg=ocg, band=band, nt=nt, precision="bf16")
          for i in ("ref", SIMD_BF16[0])}
    diff = np.abs(ys["ref"] - ys[SIMD_BF16[0]])
    assert float((diff - (2 * U_BF16 * 0.5 + 2 * _gamma(sum(case[0]) + 30)) * wabs).max()) <= 0


@pytest.mark.parametrize("isa", BF16_ISAS)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("ic,oc,h,w", [(16, 16, 3, 5), (20, 12, 2, 30), (64, 32, 5, 13), (32, 48, 1, 1)])
def test_upconv2x2_bf16(ic, oc, h, w, ocg, isa):
    """The bf16 up-conv: inputs and weights rounded to bf16 (relative 2^-9 each), products exact,
    fp32 sums; within (2u + u^2 + gamma_(IC+1)) * sum |x||w| (+ the bias's rounding) of the float64
    truth, really rounding (far above fp32's error), and the SIMD tier close to the scalar one."""
    from test_kernels import _rand, _up_np

    x, wt, b = _rand(ic, h, w), _rand(ic, oc, 2, 2), _rand(oc)
    exact = _up_np(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64))
    absum = _up_np(np.abs(x).astype(np.float64), np.abs(wt).astype(np.float64), 0 * np.abs(b).astype(np.float64))
    bound = (2 * U_BF16 + U_BF16**2 + _gamma(ic + 1)) * absum + _gamma(ic + 1) * np.abs(b)[:, None, None]
    y = K.upconv2x2(x, wt, b, isa=isa, ocg=ocg, precision="bf16")
    _check(y, exact, bound)
    y32 = K.upconv2x2(x, wt, b, isa=isa, ocg=ocg)
    assert np.abs(y - exact).max() > 20 * np.abs(y32 - exact).max()
    if isa != "ref":
        yr = K.upconv2x2(x, wt, b, isa="ref", ocg=ocg, precision="bf16")
        assert float((np.abs(y - yr) - 2 * _gamma(ic + 1) * absum - _gamma(2) * np.abs(b)[:, None, None]).max()) <= 0


AMX = "avx512" in K.available_isas() and K.bf16_kernels("avx512") == "amx_bf16"
NO_AMX = "no AMX tier on this CPU (AMX-TILE/AMX-BF16, OS permission, self-check): the AVX512-BF16 tier runs"


def test_amx_tier_only_where_it_runs(monkeypatch):
    """The bf16 GEMM is AMX's where the CPU, the OS and the self-check allow it, else vdpbf16ps, and
    info says why not AMX; UNET_RT_AMX=0 forces the AVX512-BF16 tier."""
    if not SIMD_BF16:
        pytest.skip(NO_SIMD_BF16)
    from unet_rt import Engine

    kernel = Engine(SHIPPED, threads=1, precision="bf16").info
    if AMX:
        assert kernel["kernel"].endswith("_amx") and "amx_note" not in kernel, kernel
    else:
        assert kernel["kernel"].endswith("_avx512bf16") and kernel["amx_note"], kernel
    monkeypatch.setenv("UNET_RT_AMX", "0")
    assert K.bf16_kernels("avx512") == "avx512_bf16"
    assert Engine(SHIPPED, threads=1, precision="bf16").info["kernel"].endswith("_avx512bf16")


@pytest.mark.skipif(not AMX, reason=NO_AMX)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-{c[2]}x{c[3]}")
def test_amx_vs_avx512bf16(case, ocg, monkeypatch):
    # Same bf16 V and U (the same transforms): the tiers differ only in the fp32 summation order.
    inputs, w, b, pre, bound, wabs = _bf16_case(case)
    oh, ow, band, nt = case[2], case[3], case[4], case[5]
    kw = dict(relu=False, isa="avx512", ocg=ocg, band=band, nt=nt, precision="bf16")
    y_amx = K.conv3x3_winograd(inputs, w, b, oh, ow, **kw)
    monkeypatch.setenv("UNET_RT_AMX", "0")
    y_vnni = K.conv3x3_winograd(inputs, w, b, oh, ow, **kw)
    assert float((np.abs(y_amx - y_vnni) - 2 * _gamma(sum(case[0]) + 30) * wabs).max()) <= 0


def test_bf16_tiers():
    assert K.bf16_kernels("ref") == "ref_bf16"
    if "avx2" in K.available_isas():
        assert K.bf16_kernels("avx2") is None
        with pytest.raises(ValueError, match="bf16 needs"):
            K.conv3x3_winograd([(np.zeros((16, 6, 6), np.float32), 0, 0)], np.zeros((16, 16, 3, 3), np.float32),
                               np.zeros(16, np.float32), 4, 4, isa="avx2", precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        K.conv3x3_winograd([(np.zeros((16, 6, 6), np.float32), 0, 0)], np.zeros((16, 16, 3, 3), np.float32),
                           np.zeros(16, np.float32), 4, 4, precision="fp16")


# --- the executor and the Engine -------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "unet_rt" / "models" / "isbi2012-unet16.plan"
SAMPLES = [ROOT / "data" / "samples" / "image" / f"{i}.png" for i in range(25, 30)]


def test_shipped_model_bf16_labels_agree_with_fp32():
    """The error budget on a trained model: bf16 labels = fp32 labels on >= 99.5% of the pixels of
    ISBI 2012 images 25-29 (Winograd amplifies input rounding; random-weight logits say little)."""
    from unet_rt import Engine
    from unet_rt.io.images import read_image

    e32, e16 = Engine(SHIPPED, threads=2), Engine(SHIPPED, threads=2, precision="bf16")
    if e16.info["precision"] != "bf16":
        pytest.skip(f"bf16 falls back to fp32 on this CPU: {e16.info.get('precision_note')}")
    assert e16.info["kernel"].startswith("conv3x3_wino_gemm_bf16_")
    agree, total, differs = 0, 0, False
    for p in SAMPLES:
        img = read_image(p)
        l32, l16 = e32.segment(img), e16.segment(img)
        agree += int((l32 == l16).sum())
        total += l32.size
        p32, p16 = e32.predict(img), e16.predict(img)
        differs |= bool(np.abs(p32 - p16).max() > 0)
    assert differs          # bf16 really ran (the probabilities are not bit-identical to fp32)
    assert agree / total >= 0.995, f"bf16 labels agree with fp32 on {agree / total:.4%} of pixels"


def test_precision_fallback_is_reported(monkeypatch):
    from unet_rt import Engine

    if "avx2" not in K.available_isas():
        pytest.skip("needs an AVX2 CPU (the fallback is shown on the avx2 tier, which has no bf16 GEMM)")
    monkeypatch.setenv("UNET_RT_ISA", "avx2")
    info = Engine(SHIPPED, threads=1, precision="bf16").info
    assert info["precision"] == "fp32" and "bf16 needs" in info["precision_note"]
    monkeypatch.delenv("UNET_RT_ISA")
    assert Engine(SHIPPED, threads=1).info["precision"] == "fp32"
    with pytest.raises(ValueError, match="precision"):
        Engine(SHIPPED, precision="fp16")


def test_network_profile_rows():
    from unet_rt.format import model_file

    mf = model_file.load(SHIPPED)
    net = K.Network(dict(mf.arch), {k: np.asarray(v, np.float32) for k, v in mf.tensors.items()}, threads=1)
    net.set_profile(True)
    x = np.random.default_rng(0).standard_normal((1, 188, 188)).astype(np.float32)
    net.forward(x)
    rows = net.profile()
    phases = {r["phase"] for r in rows}
    isa = net.isa
    assert {"reorder_f32", f"pool2x2_f32_{isa}", f"head1x1_f32_{isa}", f"conv3x3_wino_in_f32_{isa}",
            f"conv3x3_wino_out_f32_{isa}", f"upconv2x2_f32_{isa}"} <= phases, phases
    assert any(p.startswith("conv3x3_wino_gemm_f32_") for p in phases)
    layers = [r["layer"] for r in rows]
    assert layers[0] == "input" and layers[-1] == "head" and "enc.0.conv1" in layers
    # a Winograd GEMM's flops: 2 * 36 * tiles * IC * OC (channels padded to 16), the arithmetic done
    g = next(r for r in rows if r["layer"] == "enc.0.conv2" and r["phase"].startswith("conv3x3_wino_gemm"))
    c0 = int(mf.arch["base"])
    oh = 188 - 4
    tiles = (-(-oh // 4)) ** 2
    assert g["flops"] == 2 * 36 * tiles * (-(-c0 // 16) * 16) ** 2
    assert all(r["seconds"] >= 0 for r in rows)


def test_engine_profile_sums_the_tiles_of_a_call():
    """Engine(..., profile=True).profile(): the executor's rows summed over every tile of the calls
    since the last profile(); the flops equal one tile's count times the number of tiles."""
    import time

    from unet_rt import Engine

    e = Engine(SHIPPED, threads=1, tile=284, profile=True)
    img = np.random.default_rng(0).integers(0, 255, (300, 300)).astype(np.uint8)
    t = time.perf_counter()
    e.segment(img)
    wall = time.perf_counter() - t
    rows = e.profile()
    tiles = e._native.plan(300, 300)["tiles"]
    assert tiles > 1
    net_rows = {}
    one = Engine(SHIPPED, threads=1, tile=284, profile=True)
    one.segment(np.zeros((20, 20), np.uint8))            # a one-tile call: the per-tile counts
    for r in one.profile():
        net_rows[(r["layer"], r["phase"])] = r
    assert [(r["layer"], r["phase"]) for r in rows] == list(net_rows)
    for r in rows:
        ref = net_rows[(r["layer"], r["phase"])]
        assert r["mb"] == pytest.approx(tiles * ref["mb"]), r
        if ref["gflops"] > 0:
            assert r["gflops"] * r["ms"] == pytest.approx(tiles * ref["gflops"] * ref["ms"], rel=1e-9), r
    assert sum(r["ms"] for r in rows) <= 1e3 * wall and sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert e.profile() == []                               # reset by the previous call
    e.segment(img)
    e.segment(img)
    two = e.profile(reset=False)
    assert sum(r["mb"] for r in two) == pytest.approx(2 * sum(r["mb"] for r in rows))
    assert len(e.profile()) == len(rows)
    with pytest.raises(RuntimeError, match="profile=True"):
        Engine(SHIPPED, threads=1).profile()


def test_cli_precision_bf16(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "25.png"
    r = subprocess.run([sys.executable, "-m", "unet_rt", "segment", str(SAMPLES[0]), "-o", str(out), "--precision",
                        "bf16", "--threads", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from unet_rt import Engine
    from unet_rt.io.images import read_image

    labels = read_image(out)
    ref = Engine(SHIPPED, threads=2).segment(read_image(SAMPLES[0]))
    assert labels.shape == ref.shape and np.mean((labels > 0) == (ref > 0)) >= 0.995
    r = subprocess.run([sys.executable, "-m", "unet_rt", "segment", str(SAMPLES[0]), "-o", str(tmp_path / "x.png"),
                        "--precision", "fp16"], capture_output=True, text=True)
    assert r.returncode != 0 and "precision" in r.stderr and not (tmp_path / "x.png").exists()


MEM_BF16 = r'''
import sys
import numpy as np
from unet_rt import _core
from _rss import peak_rss
e = _core.Engine(sys.argv[1], precision="bf16")
img = np.random.default_rng(0).integers(0, 255, (1, 2048, 2048)).astype(np.uint8)
e.predict(np.zeros((1, 8, 8), np.uint8))
out = e.predict(img)
pl = e.plan(2048, 2048)
print(e.info["precision"], e.info["memory_budget_mb"], pl["tiles"], peak_rss() - out.nbytes)
'''


@pytest.mark.slow
def test_paper_network_2048_bf16_peak_memory(paper_net_file):
    """bf16 keeps the Winograd weights in bf16 (232 MB instead of 463 MB for the paper network), so the
    default activation budget grows (605 MB: 8 tiles instead of the 15 smaller ones that fully
    transformed fp32 weights allowed) and the whole process still peaks within 1 GB beyond the output."""
    import os
    import subprocess
    import sys

    if not SIMD_BF16:
        pytest.skip(NO_SIMD_BF16)
    p = paper_net_file
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", MEM_BF16, str(p)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": here}, cwd=here)
    assert r.returncode == 0, r.stderr
    prec, budget, tiles, beyond_output = r.stdout.split()
    assert prec == "bf16" and int(budget) > 384 and int(tiles) < 15, r.stdout
    assert int(beyond_output) < 2**30, f"peak RSS beyond the output: {int(beyond_output) / 2**20:.0f} MB"
    print(f"bf16 2048x2048: budget {budget} MB, {tiles} tiles, peak RSS beyond the output {int(beyond_output) / 2**20:.0f} MB")


def test_bench_flop_count_matches_the_executor():
    """bench/_workloads.ours_flops (the "% of peak" numerator) = the executor's own profile count."""
    import sys

    from unet_rt.format import model_file

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _workloads import ours_flops, paper_flops
    finally:
        sys.path.pop(0)
    mf = model_file.load(SHIPPED)
    net = K.Network(dict(mf.arch), {k: np.asarray(v, np.float32) for k, v in mf.tensors.items()}, threads=1)
    net.set_profile(True)
    net.forward(np.zeros((1, 188, 188), np.float32))
    assert sum(r["flops"] for r in net.profile()) == ours_flops(188, 188, dict(mf.arch))
    assert 2.0 < paper_flops(700, 700) / ours_flops(700, 700) < 4.0   # Winograd: ~4x fewer multiplies in the GEMMs
