"""The CPU network executor (csrc/src/network.cc) against the PyTorch reference U-Net.

Error model (fp32, written once here and used by every case): each conv output is a sum of n = 9*C
products; with a different summation order than PyTorch's, the rounding error of one layer is about
u*sqrt(n) relative to the layer's output scale (random walk, u = 2^-24), and the errors of the L
layers add up roughly linearly through the ReLU network. The reference is PyTorch in float64, so
the bound covers our rounding only:  |ours - ref64| <= SAFETY * L * u * sqrt(9*Cmax) * max|ref64|.
SAFETY = 8 leaves room for the tails of the random walk; a wrong weight, crop or layout gives
errors of order max|ref| and fails by orders of magnitude. The Winograd F(4x4,3x3) path (default for
every 16-channel-blocked conv) adds transform rounding with coefficients up to 8 (A^T) and 5 (B^T);
measured on the paper network it is 1.4x the direct path's error (7.9e-6 vs 5.5e-6 relative), so
it gets a factor WINO = 4 on top.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from unet_rt.train.model import UNet  # noqa: E402
from unet_rt import _kernels as K  # noqa: E402

U = 2.0**-24
SAFETY = 8.0
WINO = 4.0
ISAS = K.available_isas()


def _tolerance(arch: dict, ref: np.ndarray, winograd: bool = True) -> float:
    layers = 5 * arch["depth"] + 3          # 2 convs per level + up-conv per decoder level + head
    cmax = 2 * arch["base"] * 2 ** arch["depth"]   # widest conv fan-in (decoder conv1 at the bottom is 2*C)
    return (WINO if winograd else 1.0) * SAFETY * layers * U * math.sqrt(9 * cmax) * float(np.abs(ref).max())


def _make(arch: dict, seed: int = 0):
    torch.manual_seed(seed)
    net = UNet(**arch).eval()
    # He init leaves biases at zero; give them values so the bias path is tested too.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return net, weights


def _ref64(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.double()(torch.from_numpy(x.astype(np.float64))[None])[0].numpy()


# (arch, tile h, tile w): depth 1-2, widths 4-16 (12: not a multiple of the 16-channel block),
# in_channels 1-3, classes 2-5, valid and same padding, non-square tiles.
SMALL = [
    (dict(in_channels=3, classes=3, depth=2, base=8, padding="valid"), 60, 76),
    (dict(in_channels=1, classes=2, depth=1, base=4, padding="valid"), 28, 44),
    (dict(in_channels=2, classes=5, depth=1, base=12, padding="valid"), 44, 28),
    (dict(in_channels=1, classes=2, depth=1, base=4, padding="same"), 16, 22),
    (dict(in_channels=3, classes=3, depth=2, base=16, padding="same"), 32, 44),
]


@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("arch,h,w", SMALL, ids=[f"{a['padding']}-d{a['depth']}-b{a['base']}-{h}x{w}" for a, h, w in SMALL])
def test_matches_pytorch(arch, h, w, isa, winograd):
    net, weights = _make(arch)
    x = np.random.default_rng(1).standard_normal((arch["in_channels"], h, w)).astype(np.float32)
    ref = _ref64(net, x)
    ours = K.Network(arch, weights, threads=2, isa=isa, winograd=winograd)
    assert ours.isa == isa
    y = ours.forward(x)
    assert y.shape == ref.shape == (arch["classes"], ours.output_size(h), ours.output_size(w))
    assert y.dtype == np.float32
    err = float(np.abs(y - ref).max())
    tol = _tolerance(arch, ref, winograd)
    assert err <= tol, (err, tol)
    # probabilities = softmax over classes of the logits (same rounding story, values in [0, 1])
    p = ours.forward(x, probabilities=True)
    e = np.exp(ref - ref.max(axis=0, keepdims=True))
    pref = e / e.sum(axis=0, keepdims=True)
    assert float(np.abs(p - pref).max()) <= tol
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)


def test_threads_and_plan_cache_are_deterministic():
    # Every output element is computed by one thread in a fixed order: results must not depend on
    # the thread count, on other tile shapes run in between (plan cache, reused arena) or on repeats.
    arch, h, w = SMALL[0]
    _, weights = _make(arch)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((arch["in_channels"], h, w)).astype(np.float32)
    x2 = rng.standard_normal((arch["in_channels"], h + 16, w + 32)).astype(np.float32)
    n1 = K.Network(arch, weights, threads=1)
    n2 = K.Network(arch, weights, threads=2)
    a = n1.forward(x)
    b = n2.forward(x)
    n2.forward(x2)
    c = n2.forward(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    assert n1.threads == 1 and n2.threads == 2


def test_default_threads_use_every_core():
    import os
    arch, _, _ = SMALL[1]
    _, weights = _make(arch)
    assert K.Network(arch, weights).threads == (os.cpu_count() or 1)


def test_isas_agree():
    # The same network on every ISA: SIMD vs scalar reference, identical plans and packing.
    arch, h, w = SMALL[4]
    net, weights = _make(arch, seed=3)
    x = np.random.default_rng(3).standard_normal((arch["in_channels"], h, w)).astype(np.float32)
    ref = _ref64(net, x)
    for wino in (True, False):
        outs = {isa: K.Network(arch, weights, threads=2, isa=isa, winograd=wino).forward(x) for isa in ISAS}
        for isa, y in outs.items():
            assert float(np.abs(y - outs["ref"]).max()) <= 2 * _tolerance(arch, ref, wino), (isa, wino)


def test_workspace_bytes_is_honest():
    # Paper network at 572: level 0 holds conv1's output (64 x 570^2) while conv2 writes its
    # output (64 x 568^2); both must fit. Everything alive at once can never exceed all tensors.
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    from unet_rt.format.model_file import expected_shapes
    weights = {k: np.zeros(s, np.float32) for k, s in expected_shapes(arch).items()}
    n = K.Network(arch, weights, threads=1, winograd=False)
    ws = n.workspace_bytes(572, 572)
    lower = 4 * 64 * (570**2 + 568**2)
    # upper: the sum of every activation tensor of the network
    total, s, sizes = 572**2, 572, []
    for l in range(5):
        c = 64 * 2**l
        sizes += [c * (s - 2) ** 2, c * (s - 4) ** 2]
        s -= 4
        if l < 4:
            s //= 2
            sizes.append(c * s * s)
    for l in reversed(range(4)):
        c = 64 * 2**l
        s *= 2
        sizes += [c * s * s, c * (s - 2) ** 2, c * (s - 4) ** 2]
        s -= 4
    upper = 4 * (total + sum(sizes))
    assert lower <= ws < upper, (lower, ws, upper)
    assert n.workspace_bytes(572, 572) == ws          # planned once, cached
    assert n.workspace_bytes(188, 188) < ws
    # Winograd adds one band buffer (<= 8 MB of transformed input, or one 24-tile work unit of the
    # widest layer) and per-thread GEMM scratch: more than direct, by less than 16 MB + slack.
    nw = K.Network(arch, weights, threads=2, winograd=True)
    assert ws < nw.workspace_bytes(572, 572) < ws + 32 * 2**20


def test_bad_input():
    arch, h, w = SMALL[0]
    _, weights = _make(arch)
    n = K.Network(arch, weights, threads=1)
    with pytest.raises(ValueError, match="not valid"):
        n.forward(np.zeros((3, h + 1, w), np.float32))
    with pytest.raises(ValueError, match="channels"):
        n.forward(np.zeros((1, h, w), np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        n.forward(np.zeros((h, w), np.float32))
    with pytest.raises(ValueError, match="missing tensor 'head.bias'"):
        K.Network(arch, {k: v for k, v in weights.items() if k != "head.bias"})
    bad = dict(weights)
    bad["enc.1.conv2.weight"] = np.zeros((16, 16, 3, 1), np.float32)
    with pytest.raises(ValueError, match="enc.1.conv2.weight.*shape"):
        K.Network(arch, bad)
    with pytest.raises(ValueError, match="unexpected tensor 'extra'"):
        K.Network(arch, {**weights, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="unknown ISA"):
        K.Network(arch, weights, isa="sse9")
    with pytest.raises(ValueError, match="architecture"):
        K.Network({**arch, "depth": 0}, weights)


def test_paper_network_572_parity():
    # The paper network (1 in, 2 classes, base 64, depth 4) on one 572 tile, random He weights,
    # against PyTorch fp32 (the stated target: max |err| <= 1e-4 * max |logit|), on the default
    # (Winograd) path. ~10 s on 2 busy cores, most of it PyTorch.
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    net, weights = _make(arch, seed=4)
    x = np.random.default_rng(4).standard_normal((1, 572, 572)).astype(np.float32)
    torch.set_num_threads(2)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)[None])[0].numpy()
    y = K.Network(arch, weights, threads=2).forward(x)
    assert y.shape == (2, 388, 388)
    assert float(np.abs(y - ref).max()) <= 1e-4 * float(np.abs(ref).max())


def test_mixed_winograd_and_direct(monkeypatch):
    # UNET_RT_WINOGRAD_MAX_CHANNELS: convs with more output channels run direct (a memory knob:
    # Winograd's transformed weights are 4x the size). Here levels 0-1 are Winograd, level 2 direct.
    arch, h, w = SMALL[0]                       # widths 8, 16, 32
    net, weights = _make(arch, seed=5)
    x = np.random.default_rng(5).standard_normal((arch["in_channels"], h, w)).astype(np.float32)
    ref = _ref64(net, x)
    monkeypatch.setenv("UNET_RT_WINOGRAD_MAX_CHANNELS", "16")
    y = K.Network(arch, weights, threads=2).forward(x)
    assert float(np.abs(y - ref).max()) <= _tolerance(arch, ref, True)
    monkeypatch.setenv("UNET_RT_WINOGRAD", "0")
    y0 = K.Network(arch, weights, threads=2).forward(x)
    np.testing.assert_array_equal(y0, K.Network(arch, weights, threads=2, winograd=False).forward(x))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_raw_tap_layers_equal_transformed_and_take_less_memory(monkeypatch, precision):
    # UNET_RT_WINOGRAD_RAW_MB=N: Winograd convs whose transformed weights exceed N MB keep the 3x3
    # taps and transform them per band and group (docs/speed.md: Memory). Same output, bit for bit;
    # the executor holds a quarter (fp32) or half (bf16) of the Winograd weight bytes.
    arch = dict(in_channels=1, classes=2, depth=2, base=32, padding="valid")
    net, weights = _make(arch, seed=6)
    x = np.random.default_rng(6).standard_normal((1, 124, 124)).astype(np.float32)
    out, size = {}, {}
    for mb in ("1e9", "0"):
        monkeypatch.setenv("UNET_RT_WINOGRAD_RAW_MB", mb)
        n = K.Network(arch, weights, threads=2, precision=precision)
        out[mb], size[mb] = n.forward(x), n.weight_bytes
    np.testing.assert_array_equal(out["0"], out["1e9"])
    ratio = (9 * 4) / (36 * (2 if n.precision == "bf16" else 4))
    assert size["0"] < (ratio + 0.1) * size["1e9"], size
    assert float(np.abs(out["0"] - _ref64(net, x)).max()) <= (_tolerance(arch, _ref64(net, x)) if n.precision == "fp32"
                                                               else 0.25 * float(np.abs(_ref64(net, x)).max()))


@pytest.mark.parametrize("isa", [i for i in ("avx2", "avx512") if i in K.available_isas()] or ["ref"])
def test_gemm_passes_and_private_band_size_keep_the_output(monkeypatch, isa):
    # UNET_RT_WINOGRAD_KC_BLOCKS (input blocks per pass of the fp32 GEMM; default from L1) and
    # UNET_RT_WINOGRAD_PRIVATE_KB (default 3/4 of L2) change the blocking, never the sums: bit for bit.
    arch = dict(in_channels=1, classes=2, depth=2, base=32, padding="valid")
    _, weights = _make(arch, seed=7)
    x = np.random.default_rng(7).standard_normal((1, 124, 124)).astype(np.float32)
    monkeypatch.setenv("UNET_RT_ISA", isa)
    ref = K.Network(arch, weights, threads=2).forward(x)
    for var, value in (("UNET_RT_WINOGRAD_KC_BLOCKS", "0"), ("UNET_RT_WINOGRAD_KC_BLOCKS", "1"),
                       ("UNET_RT_WINOGRAD_KC_BLOCKS", "3"), ("UNET_RT_WINOGRAD_PRIVATE_KB", "64")):
        monkeypatch.setenv(var, value)
        np.testing.assert_array_equal(K.Network(arch, weights, threads=2).forward(x), ref, err_msg=f"{var}={value}")
        monkeypatch.delenv(var)
