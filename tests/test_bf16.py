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

from unet_rt._core import _kernels as K
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
