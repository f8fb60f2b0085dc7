"""Every CPU kernel family, every ISA, against a float64 numpy reference and against the scalar
`ref` kernel (XNNPACK style: sizes below, equal to, above and multiples of each ISA's register tile).

Register tiles (csrc/kernels/simd_impl.h): AVX-512 NX = 12 pixels x 32 channels (ocg 32) or 24 x 16;
AVX2 NX = 6 x 16 or 3 x 32; NEON (aarch64; tests/c/kernel_test.cc runs these checks there under qemu)
5 x 16 or 3 x 32. Widths 1..NX+1, 2NX, 2NX+1 hit the full tile, every remainder tile and
the one-pixel case. Channel counts cover < 16, 16, not a multiple of 16 and several groups.

Error bound (rigorous, per output element): a sum of n fp32 products computed in any order, with
or without FMA, differs from the exact sum by at most gamma_n * sum |w*x| with gamma_n = n*u/(1-n*u),
u = 2^-24 (Higham, Accuracy and Stability, §3.1). We check |ours - exact| <= gamma_(n+1) * (|b| +
sum |w||x|) with n the number of terms, computed by the same numpy code on |w| and |x|.
"""
from __future__ import annotations

import numpy as np
import pytest

from unet_rt import _kernels as K

U = 2.0**-24
ISAS = K.available_isas()
SIMD = [i for i in ISAS if i != "ref"]
RNG = np.random.default_rng(1234)


def _gamma(n: int) -> float:
    return n * U / (1 - n * U)


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _conv_np(x64, w64, b64, oh, ow):
    # x: [C, >= oh+kh-1, >= ow+kw-1]  w: [OC, C, kh, kw] -> [OC, oh, ow], float64
    oc, c, kh, kw = w64.shape
    y = np.broadcast_to(b64[:, None, None], (oc, oh, ow)).copy()
    for ky in range(kh):
        for kx in range(kw):
            y += np.einsum("oc,chw->ohw", w64[:, :, ky, kx], x64[:, ky:ky + oh, kx:kx + ow])
    return y


def _check(y, exact, bound):
    assert y.shape == exact.shape
    err = np.abs(y.astype(np.float64) - exact)
    worst = float((err - bound).max())
    assert worst <= 0, f"max err {err.max():.3g}, exceeds the bound by {worst:.3g}"


# --- conv3x3 (+ bias + ReLU; one or two inputs, crop offsets, small first-layer blocks) -----------

CONV_CASES = [
    # (input channels per input, OC, oh, ow, cbs, offsets)
    ([1], 16, 3, 1, [1], [(0, 0)]),
    ([3], 32, 2, 11, [3], [(0, 0)]),
    ([3], 20, 2, 12, [3], [(1, 2)]),
    ([16], 16, 2, 5, [16], [(0, 0)]),
    ([16], 32, 2, 6, [16], [(0, 0)]),
    ([16], 32, 1, 7, [16], [(0, 0)]),
    ([17], 48, 2, 13, [16], [(0, 0)]),
    ([20], 2, 1, 23, [16], [(0, 0)]),
    ([32], 64, 2, 24, [16], [(0, 0)]),
    ([5], 32, 1, 25, [5], [(0, 0)]),
    ([16, 16], 32, 2, 12, [16, 16], [(2, 2), (0, 0)]),     # decoder conv1: cropped skip + up-sampled
    ([12, 12], 16, 2, 14, [16, 16], [(4, 4), (0, 0)]),
    ([8, 24], 48, 1, 49, [16, 16], [(1, 0), (0, 1)]),
]


def _conv_case(chans, oc, oh, ow, offs):
    xs = [_rand(c, oh + 2 + dy + 3, ow + 2 + dx + 1) for c, (dy, dx) in zip(chans, offs)]
    w = _rand(oc, sum(chans), 3, 3) * 0.3
    b = _rand(oc)
    cat = np.concatenate([x[:, dy:dy + oh + 2, dx:dx + ow + 2] for x, (dy, dx) in zip(xs, offs)]).astype(np.float64)
    pre = _conv_np(cat, w.astype(np.float64), b.astype(np.float64), oh, ow)
    bound = _gamma(9 * sum(chans) + 1) * _conv_np(np.abs(cat), np.abs(w).astype(np.float64),
                                                    np.abs(b).astype(np.float64), oh, ow)
    return xs, w, b, pre, bound


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-{c[2]}x{c[3]}")
def test_conv3x3(case, ocg, isa):
    chans, oc, oh, ow, cbs, offs = case
    xs, w, b, pre, bound = _conv_case(chans, oc, oh, ow, offs)
    inputs = [(x, dy, dx) for x, (dy, dx) in zip(xs, offs)]
    for relu in (True, False):
        y = K.conv3x3(inputs, w, b, oh, ow, relu=relu, isa=isa, ocg=ocg, cbs=cbs)
        exact = np.maximum(pre, 0) if relu else pre
        _check(y, exact, bound)   # ReLU is 1-Lipschitz: the bound carries over


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("ow", [1, 2, 3, 5, 6, 7, 11, 12, 13, 23, 24, 25, 36, 37])
def test_conv3x3_width_sweep_vs_ref(ow, isa):
    # SIMD against the scalar reference over every remainder tile of both register-tile shapes.
    xs, w, b, pre, bound = _conv_case([16, 16], 32, 1, ow, [(1, 1), (0, 0)])
    inputs = [(xs[0], 1, 1), (xs[1], 0, 0)]
    for ocg in (16, 32):
        ref = K.conv3x3(inputs, w, b, 1, ow, relu=False, isa="ref", ocg=ocg)
        y = K.conv3x3(inputs, w, b, 1, ow, relu=False, isa=isa, ocg=ocg)
        _check(ref, pre, bound)
        _check(y, pre, bound)
        np.testing.assert_allclose(y, ref, rtol=0, atol=float(2 * bound.max()))


def test_conv3x3_bad_args():
    x = _rand(3, 6, 6)
    with pytest.raises(ValueError, match="input channels"):
        K.conv3x3([(x, 0, 0)], _rand(16, 4, 3, 3), _rand(16), 4, 4)
    with pytest.raises(ValueError, match="too small"):
        K.conv3x3([(x, 1, 0)], _rand(16, 3, 3, 3), _rand(16), 4, 4)
    with pytest.raises(ValueError, match="ocg"):
        K.conv3x3([(x, 0, 0)], _rand(16, 3, 3, 3), _rand(16), 4, 4, ocg=8)


# --- upconv2x2 ---------------------------------------------------------------------------------

def _up_np(x, w, b):
    # x: [IC, H, W]  w: [IC, OC, 2, 2] (ConvTranspose2d) -> [OC, 2H, 2W], float64
    ic, h, wd = x.shape
    oc = w.shape[1]
    y = np.empty((oc, 2 * h, 2 * wd))
    for a in range(2):
        for c in range(2):
            y[:, a::2, c::2] = np.einsum("io,ihw->ohw", w[:, :, a, c], x) + b[:, None, None]
    return y


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("ic,oc,h,w", [(16, 16, 2, 1), (16, 8, 3, 5), (20, 32, 2, 6), (32, 48, 1, 7),
                                       (64, 32, 2, 12), (16, 64, 1, 13), (48, 16, 2, 24), (16, 32, 1, 25)])
def test_upconv2x2(ic, oc, h, w, ocg, isa):
    x, wt, b = _rand(ic, h, w), _rand(ic, oc, 2, 2), _rand(oc)
    exact = _up_np(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64))
    bound = _gamma(ic + 1) * _up_np(np.abs(x).astype(np.float64), np.abs(wt).astype(np.float64),
                                    np.abs(b).astype(np.float64))
    _check(K.upconv2x2(x, wt, b, isa=isa, ocg=ocg), exact, bound)


# --- pool2x2 (exact: max involves no rounding) ---------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c,h,w", [(16, 2, 2), (5, 3, 7), (33, 8, 6), (16, 9, 25), (64, 4, 48)])
def test_pool2x2(c, h, w, isa):
    x = _rand(c, h, w)
    oh, ow = h // 2, w // 2
    exact = x[:, :2 * oh, :2 * ow].reshape(c, oh, 2, ow, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(K.pool2x2(x, isa=isa), exact)


# --- head1x1 (+ softmax) -----------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c,k,h,w", [(4, 2, 3, 5), (16, 2, 2, 7), (64, 2, 3, 17), (70, 3, 1, 9), (16, 1, 2, 3),
                                     (32, 17, 2, 4)])
def test_head1x1(c, k, h, w, isa):
    x, wt, b = _rand(c, h, w), _rand(k, c, 1, 1), _rand(k)
    w64 = wt[:, :, 0, 0].astype(np.float64)
    logits = np.einsum("kc,chw->khw", w64, x.astype(np.float64)) + b[:, None, None]
    bound = _gamma(c + 1) * (np.einsum("kc,chw->khw", np.abs(w64), np.abs(x).astype(np.float64))
                             + np.abs(b)[:, None, None])
    _check(K.head1x1(x, wt, b, isa=isa), logits, bound)
    # softmax: inputs off by <= bound.max() change each probability by <= 2*that (softmax is
    # 1-Lipschitz per logit in the max norm, twice over the max-shift), plus exp/div rounding.
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    p = e / e.sum(axis=0, keepdims=True)
    got = K.head1x1(x, wt, b, probabilities=True, isa=isa)
    assert float(np.abs(got - p).max()) <= 2 * float(bound.max()) + 8 * k * U


# --- dispatch and peak probe -------------------------------------------------------------------

def test_dispatch():
    assert ISAS[0] == "ref"
    assert K.best_isa() == ISAS[-1]
    with pytest.raises(ValueError, match="unknown ISA"):
        K.pool2x2(_rand(16, 2, 2), isa="sse9")
    # a known tier of another architecture: refused with the reason (x86 tiers on aarch64, neon on x86)
    other = "avx2" if "neon" in ISAS else "neon"
    with pytest.raises(ValueError, match=f"does not support {other}"):
        K.pool2x2(_rand(16, 2, 2), isa=other)


def test_peak_probe_is_plausible():
    # Any x86-64 core of the last decade sustains well over 1 GFLOP/s of fp32 FMAs; the probe
    # must report a finite positive number that scales with nothing absurd (< 10 TFLOP/s per core).
    g = K.peak_gflops(1, 0.05)
    assert g > 1.0 and g < 10_000.0, g


def test_bf16_peak_probes_the_tiers_own_arithmetic(monkeypatch):
    """The bf16 peak is AMX's tdpbf16ps where the bf16 GEMM is AMX's, vdpbf16ps otherwise (UNET_RT_AMX=0):
    one AMX core does 1024 bf16 flops a cycle, vdpbf16ps 64 or 128, so the AMX figure is several times
    larger (measured on a Xeon with AMX: 3037 vs 103 GFLOP/s); 0 without a bf16 tier."""
    best = K.available_isas()[-1]
    if K.bf16_kernels(best) in (None, "ref_bf16"):
        assert K.peak_gflops(1, 0.05, bf16=True) == 0.0
        return
    if K.bf16_kernels(best) != "amx_bf16":
        pytest.skip("no AMX tier on this CPU: the bf16 peak is the vdpbf16ps probe alone")
    amx = K.peak_gflops(1, 0.05, bf16=True)
    monkeypatch.setenv("UNET_RT_AMX", "0")
    vdp = K.peak_gflops(1, 0.05, bf16=True)
    assert amx > 4 * vdp, (amx, vdp)


# --- conv3x3 by Winograd F(4x4, 3x3) ------------------------------------------------------------
# Error model (first-order forward error of a bilinear algorithm, Higham §22 / Demmel et al.): the
# computed y = A^T [sum_c (G g_c G^T) . (B^T d_c B)] A differs from the exact convolution by at most
# gamma_K * |A|^T [sum_c (|G||g_c||G|^T) . (|B|^T |d_c| |B|)] |A| (+ the bias rounding), with
# K = IC + 30 rounding steps on the longest path (6 + 6 per transform side, IC in the sum, rounding of
# U). The absolute-value pipeline is computed below in float64, per output pixel.
# The executor's F(4x4, 3x3) matrices, points 0, 1, -1, 1/2, -2 (csrc/kernels/simd_impl.h)
BT = np.array([[1, -1.5, -2, 1.5, 1, 0], [0, -1, 0.5, 2.5, 1, 0], [0, 1, -2.5, 0.5, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 0.5, -1, -0.5, 1, 0], [0, 1, -1.5, -2, 1.5, 1]], float)
G = np.array([[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, -1 / 3],
              [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 0.5, -2, 0], [0, 1, 1, 0.25, 4, 0], [0, 1, -1, 0.125, -8, 1]], float)


def test_winograd_matrices_are_exact():
    """y = A^T [(G g) . (B^T d)] is the 4-output correlation of d (6) with g (3), exactly (1-D, hence 2-D)."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        d, g = rng.standard_normal(6), rng.standard_normal(3)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), [d[i:i + 3] @ g for i in range(4)], rtol=0, atol=1e-13)


def _winograd_abs(x, w, oh, ow):
    # |A|^T [sum_c |U_c| . |V_c|] |A| per output pixel; x: [C, >= oh+2, >= ow+2] (float64, >= 0)
    c = x.shape[0]
    th, tw = -(-oh // 4), -(-ow // 4)
    xp = np.zeros((c, 4 * th + 2, 4 * tw + 2))
    xp[:, :oh + 2, :ow + 2] = x[:, :oh + 2, :ow + 2]
    d = np.lib.stride_tricks.sliding_window_view(xp, (6, 6), axis=(1, 2))[:, ::4, ::4]   # [C, th, tw, 6, 6]
    v = np.einsum("ar,cyxrs,bs->cyxab", np.abs(BT), d, np.abs(BT))
    u = np.einsum("ai,ocij,bj->ocab", np.abs(G), w, np.abs(G))
    m = np.einsum("ocab,cyxab->oyxab", u, v)
    y = np.einsum("ka,oyxab,lb->oykxl", np.abs(AT), m, np.abs(AT)).reshape(w.shape[0], 4 * th, 4 * tw)
    return y[:, :oh, :ow]


WINO_CASES = [
    # (input channels per input, OC, oh, ow, band (0: all tiles), nt)
    ([16], 16, 4, 4, 0, 12),
    ([16], 32, 1, 1, 0, 1),
    ([16], 32, 5, 13, 2, 5),
    ([32], 16, 8, 50, 0, 12),      # 13 tiles per row: one full work unit of 12 + a 1-tile remainder
    ([16], 48, 3, 97, 7, 24),      # 25 tiles: 24 + 1
    ([20, 12], 32, 9, 10, 3, 2),   # two inputs (crop-and-concat), channels not multiples of 16
    ([64], 64, 13, 17, 1, 13),
    ([48], 32, 9, 40, 0, 24),      # 3 input blocks, 30 tiles (AMX's 16-row C tiles: 16 + 14)
    ([16, 32], 32, 6, 70, 0, 24),  # two inputs of 1 and 2 blocks, 36 tiles (16 + 16 + 4)
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("ocg", [16, 32])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-{c[2]}x{c[3]}-band{c[4]}-nt{c[5]}")
def test_conv3x3_winograd(case, ocg, isa):
    chans, oc, oh, ow, band, nt = case
    offs = [(1, 2)] + [(0, 0)] * (len(chans) - 1)
    xs, w, b, pre, _ = _conv_case(chans, oc, oh, ow, offs)
    cat = np.concatenate([x[:, dy:dy + oh + 2, dx:dx + ow + 2] for x, (dy, dx) in zip(xs, offs)]).astype(np.float64)
    bound = _gamma(sum(chans) + 30) * (_winograd_abs(np.abs(cat), np.abs(w).astype(np.float64), oh, ow)
                                       + np.abs(b).astype(np.float64)[:, None, None])
    inputs = [(x, dy, dx) for x, (dy, dx) in zip(xs, offs)]
    for relu in (True, False):
        y = K.conv3x3_winograd(inputs, w, b, oh, ow, relu=relu, isa=isa, ocg=ocg, band=band, nt=nt)
        _check(y, np.maximum(pre, 0) if relu else pre, bound)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", WINO_CASES[2:], ids=lambda c: f"ic{'+'.join(map(str, c[0]))}-oc{c[1]}-band{c[4]}")
def test_winograd_schedules_agree_bit_for_bit(case, isa, precision):
    """Weights kept as 3x3 taps and transformed per band and group on the fly (the executor's large
    layers, a quarter of the memory) give exactly what weights transformed at load time give: the
    same kernel (Kernels::wino_wt) computes U both ways. Private bands give the same too."""
    chans, oc, oh, ow, band, nt = case
    if precision == "bf16" and not K.bf16_kernels(isa):
        pytest.skip(f"{isa} has no bf16 table on this CPU")
    offs = [(1, 2)] + [(0, 0)] * (len(chans) - 1)
    xs, w, b, pre, _ = _conv_case(chans, oc, oh, ow, offs)
    inputs = [(x, dy, dx) for x, (dy, dx) in zip(xs, offs)]
    for ocg in (16, 32):
        kw = dict(isa=isa, ocg=ocg, band=band, nt=nt, precision=precision)
        ref = K.conv3x3_winograd(inputs, w, b, oh, ow, raw_taps=False, **kw)
        np.testing.assert_array_equal(K.conv3x3_winograd(inputs, w, b, oh, ow, raw_taps=True, **kw), ref)
        # private bands (each band through all three phases on one thread, the executor's small
        # layers): the same sums in the same order
        for pb in (1, 5, 10**6):
            np.testing.assert_array_equal(K.conv3x3_winograd(inputs, w, b, oh, ow, private_band=pb, **kw), ref)
        # the fp32 GEMM in passes of kc_blocks input blocks (partial sums through M in fp32: the same
        # FMAs in the same order), alone and with the other schedules; -1: the executor's L1-sized choice
        for kc in (1, 3, -1):
            for extra in ({}, {"raw_taps": True}, {"private_band": 5}):
                np.testing.assert_array_equal(
                    K.conv3x3_winograd(inputs, w, b, oh, ow, kc_blocks=kc, **extra, **kw), ref)
