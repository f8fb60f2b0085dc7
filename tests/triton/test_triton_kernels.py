"""Each Triton kernel alone against PyTorch's own ops (F.conv2d, F.max_pool2d, F.conv_transpose2d,
softmax, argmax) evaluated in float64, over shape sweeps that include sizes below, equal to and not a
multiple of the block sizes. Runs under the Triton interpreter when there is no GPU (conftest.py).

Error model (elementwise, worst case, inputs exactly representable in the storage dtype or not):
  fp32: a dot product of K terms summed in fp32 in any order errs by at most K*u32*sum|w||x|
        (u32 = 2**-24), plus one rounding of the bias add: tol = (K + 2)*u32*(|w|*|x| + |b|).
  fp16: x and w are rounded to fp16 (rel. u16 = 2**-11 each), products and sums in fp32, the output
        rounded to fp16 once more: tol = (2*u16 + (K + 2)*u32)*(|w|*|x| + |b|) + u16*|y|.
  |w|*|x| is the same op run on absolute values in float64, so the bound is per output element.
"""
import pytest
import torch
import torch.nn.functional as F

from unet_rt.backends.triton import engine

U32 = 2.0**-24
U16 = 2.0**-11
HAS_CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if HAS_CUDA else "cpu")
ops = engine._ops(DEV)

SMALL = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}      # forces several M/N/K blocks even on tiny shapes


def pack3x3(w):            # [N, C, 3, 3] -> [9*C, N]
    return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous()


def nhwc(x, contiguous=True):
    v = x.permute(0, 2, 3, 1)
    return v.contiguous() if contiguous else v


def tol_for(abs_ref, y_ref, k, dtype):
    if dtype == torch.float32:
        return (k + 2) * U32 * abs_ref
    return (2 * U16 + (k + 2) * U32) * abs_ref + U16 * y_ref.abs()


def check(got, ref, tol, what):
    err = (got.double() - ref).abs()
    bad = err > tol
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.numel()} elements out of tolerance; "
                           f"max err {err.max().item():.3g}, max tol {tol.max().item():.3g}")


def rnd(*shape, gen):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


# ------------------------------------------------------------------------------------ conv3x3 ---
CONV_CASES = [
    # B, C, N, H, W, pad, relu, config      (C < 16 takes the flattened-K path)
    (1, 1, 4, 3, 3, 0, True, None),         # smallest valid input: a 1x1 output
    (1, 1, 5, 13, 9, 0, True, SMALL),
    (2, 3, 7, 9, 11, 1, True, SMALL),
    (1, 16, 16, 8, 8, 0, False, SMALL),     # exactly one K block per tap, no ReLU
    (1, 17, 20, 10, 7, 1, True, SMALL),     # K and N one past the block
    (2, 33, 17, 6, 9, 0, True, None),
    (1, 20, 3, 5, 5, 1, True, None),        # N smaller than the block
]


@pytest.mark.parametrize("B,C,N,H,W,pad,relu,config", CONV_CASES)
@pytest.mark.parametrize("contiguous", [True, False], ids=["nhwc", "nchw-view"])
def test_conv3x3_fp32(B, C, N, H, W, pad, relu, config, contiguous):
    g = torch.Generator().manual_seed(B * 1000 + C * 31 + N)
    x, w, b = rnd(B, C, H, W, gen=g), rnd(N, C, 3, 3, gen=g), rnd(N, gen=g)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad)
    absref = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs(), padding=pad)
    if relu:
        ref = ref.clamp_min(0)
    y = ops.conv3x3(nhwc(x, contiguous).to(DEV), pack3x3(w).to(DEV), b.to(DEV), pad=pad, relu=relu, config=config)
    assert y.shape == (B, ref.shape[2], ref.shape[3], N) and y.dtype == torch.float32
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol_for(absref, ref, 9 * C, torch.float32), "conv3x3 fp32")


@pytest.mark.parametrize("B,C,N,H,W,pad,config", [
    (1, 1, 4, 6, 6, 0, None),
    (2, 5, 6, 10, 14, 0, SMALL),            # M = 2*8*12 = 192 rows: 12 M blocks
    (1, 17, 9, 8, 6, 1, SMALL),
    (2, 20, 17, 12, 10, 1, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16}),   # M = 240: last M block partial
])
def test_conv3x3_fused_pool(B, C, N, H, W, pad, config):
    g = torch.Generator().manual_seed(7 + C)
    x, w, b = rnd(B, C, H, W, gen=g), rnd(N, C, 3, 3, gen=g), rnd(N, gen=g)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad).clamp_min(0)
    absref = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs(), padding=pad)
    y, p = ops.conv3x3(nhwc(x).to(DEV), pack3x3(w).to(DEV), b.to(DEV), pad=pad, pool=True, config=config)
    tol = tol_for(absref, ref, 9 * C, torch.float32)
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol, "conv3x3+pool: full map")
    # max is exact, so the pooled error is bounded by the pooled tolerance
    check(p.permute(0, 3, 1, 2).cpu(), F.max_pool2d(ref, 2), F.max_pool2d(tol, 2), "conv3x3+pool: pooled map")


@pytest.mark.parametrize("B,C1,C2,N,S,U,pad,config", [
    (1, 4, 4, 4, 14, 10, 0, None),          # decoder conv1 of a width-4 net: skip 14 -> crop 10
    (2, 6, 5, 7, 13, 8, 0, SMALL),          # odd crop (13 - 8 = 5 -> offset 2), unequal channel counts
    (1, 17, 16, 9, 12, 12, 1, SMALL),       # same padding: no crop, zero border on both sources
])
def test_conv3x3_two_sources(B, C1, C2, N, S, U, pad, config):
    g = torch.Generator().manual_seed(C1 + 10 * C2)
    skip, up = rnd(B, C1, S, S, gen=g), rnd(B, C2, U, U, gen=g)
    w, b = rnd(N, C1 + C2, 3, 3, gen=g), rnd(N, gen=g)
    d = (S - U) // 2
    cat = torch.cat([skip[:, :, d:d + U, d:d + U], up], 1).double()        # what the kernel must NOT build
    ref = F.conv2d(cat, w.double(), b.double(), padding=pad).clamp_min(0)
    absref = F.conv2d(cat.abs(), w.double().abs(), b.double().abs(), padding=pad)
    crop = nhwc(skip).to(DEV)[:, d:d + U, d:d + U, :]                         # strided view
    y = ops.conv3x3(crop, pack3x3(w[:, :C1]).to(DEV), b.to(DEV), pad=pad,
                    x2=nhwc(up).to(DEV), w2=pack3x3(w[:, C1:]).to(DEV), config=config)
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol_for(absref, ref, 9 * (C1 + C2), torch.float32), "two-source conv")


@pytest.mark.parametrize("C,N,pad", [(1, 8, 0), (20, 17, 1)])
def test_conv3x3_fp16(C, N, pad):
    g = torch.Generator().manual_seed(C)
    x, w, b = rnd(2, C, 10, 12, gen=g), rnd(N, C, 3, 3, gen=g), rnd(N, gen=g)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad).clamp_min(0)
    absref = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs(), padding=pad)
    xs, ws = nhwc(x).to(DEV, torch.float16), pack3x3(w).to(DEV, torch.float16)
    if pad == 1:
        y, p = ops.conv3x3(xs, ws, b.to(DEV), pad=pad, pool=True, config=SMALL)
    else:
        y, p = ops.conv3x3(xs, ws, b.to(DEV), pad=pad), None
    assert y.dtype == torch.float16
    tol = tol_for(absref, ref, 9 * C, torch.float16)
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol, "conv3x3 fp16")
    if p is not None:
        check(p.permute(0, 3, 1, 2).cpu(), F.max_pool2d(ref, 2), F.max_pool2d(tol, 2), "conv3x3 fp16 pooled")


def test_conv3x3_fp32_input_fp16_storage():
    """The first layer reads the caller's fp32 NCHW tensor and casts it on load to the weights' dtype."""
    g = torch.Generator().manual_seed(3)
    x, w, b = rnd(1, 2, 8, 8, gen=g), rnd(5, 2, 3, 3, gen=g), rnd(5, gen=g)
    ref = F.conv2d(x.double(), w.double(), b.double()).clamp_min(0)
    absref = F.conv2d(x.double().abs(), w.double().abs(), b.double().abs())
    y = ops.conv3x3(x.permute(0, 2, 3, 1).to(DEV), pack3x3(w).to(DEV, torch.float16), b.to(DEV), pad=0)
    assert y.dtype == torch.float16
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol_for(absref, ref, 18, torch.float16), "fp32 in, fp16 storage")


def test_conv3x3_rejects_bad_shapes():
    x = torch.zeros(1, 5, 5, 3, device=DEV)
    with pytest.raises(ValueError, match="do not fit"):
        ops.conv3x3(x, torch.zeros(9 * 4, 8, device=DEV), torch.zeros(8, device=DEV), pad=0)
    with pytest.raises(ValueError, match="at least 3x3"):
        ops.conv3x3(torch.zeros(1, 2, 5, 3, device=DEV), torch.zeros(27, 8, device=DEV), torch.zeros(8, device=DEV), pad=0)
    with pytest.raises(ValueError, match="even output"):
        ops.conv3x3(x, torch.zeros(27, 8, device=DEV), torch.zeros(8, device=DEV), pad=1, pool=True)
    with pytest.raises(ValueError, match="4-d"):
        ops.conv3x3(x[0], torch.zeros(27, 8, device=DEV), torch.zeros(8, device=DEV), pad=0)
    with pytest.raises(ValueError, match="second source"):
        ops.conv3x3(x, torch.zeros(27, 8, device=DEV), torch.zeros(8, device=DEV), pad=0,
                    x2=torch.zeros(1, 4, 5, 2, device=DEV), w2=torch.zeros(18, 8, device=DEV))


# ---------------------------------------------------------------------------------- upconv2x2 ---
@pytest.mark.parametrize("B,CI,CO,H,W,config,dtype", [
    (1, 8, 4, 1, 1, None, torch.float32),
    (2, 6, 3, 5, 7, SMALL, torch.float32),     # N = 12 < block, K = 6 < block
    (1, 34, 17, 4, 9, SMALL, torch.float32),   # K, N (68) not multiples of 16
    (1, 32, 16, 6, 6, None, torch.float16),
])
def test_upconv2x2(B, CI, CO, H, W, config, dtype):
    g = torch.Generator().manual_seed(CI + CO)
    x, w, b = rnd(B, CI, H, W, gen=g), rnd(CI, CO, 2, 2, gen=g), rnd(CO, gen=g)
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), stride=2)
    absref = F.conv_transpose2d(x.double().abs(), w.double().abs(), b.double().abs(), stride=2)
    wp = w.permute(0, 2, 3, 1).reshape(CI, 4 * CO).contiguous()
    y = ops.upconv2x2(nhwc(x).to(DEV, dtype), wp.to(DEV, dtype), b.to(DEV), config=config)
    assert y.shape == (B, 2 * H, 2 * W, CO) and y.dtype == dtype
    check(y.permute(0, 3, 1, 2).cpu(), ref, tol_for(absref, ref, CI, dtype), "upconv2x2")


# ------------------------------------------------------------------------------------ head1x1 ---
@pytest.mark.parametrize("B,C,K,H,W,dtype", [
    (1, 4, 2, 5, 5, torch.float32),
    (2, 3, 1, 7, 3, torch.float32),            # one class: softmax is 1, argmax 0
    (1, 70, 5, 9, 8, torch.float32),           # C beyond one chunk, K not a power of 2
    (1, 16, 3, 11, 13, torch.float16),
])
def test_head1x1(B, C, K, H, W, dtype):
    g = torch.Generator().manual_seed(C + K)
    x, w, b = rnd(B, C, H, W, gen=g), rnd(K, C, 1, 1, gen=g), rnd(K, gen=g)
    xs = x.to(dtype)                                       # the stored activation
    ref = F.conv2d(xs.double(), w.double(), b.double())
    absref = F.conv2d(xs.double().abs(), w.double().abs(), b.double().abs())
    out = ops.head1x1(nhwc(xs).to(DEV), w[:, :, 0, 0].t().contiguous().to(DEV), b.to(DEV),
                      logits=True, probs=True, labels=True, block_m=16)
    tol = (C + 2) * U32 * absref                           # fp32 math on the stored values
    check(out["logits"].cpu(), ref, tol, "head logits")
    # softmax: relative error of exp/sum in fp32 is a few u32; |d softmax| <= |d logits| * max-spread
    check(out["probs"].cpu(), torch.softmax(ref, 1), 8 * U32 + 2 * tol.amax(1, keepdim=True), "head probs")
    lab = out["labels"].cpu().long()
    assert out["labels"].dtype == torch.int32 and lab.shape == (B, H, W)
    top2 = ref.topk(min(2, K), dim=1).values
    clear = (top2[:, 0] - top2[:, -1] > 2 * tol.amax(1)) | (K == 1)          # no near-ties
    assert torch.equal(lab[clear], ref.argmax(1)[clear])


def test_head_only_labels():
    g = torch.Generator().manual_seed(1)
    x, w, b = rnd(1, 4, 6, 6, gen=g), rnd(3, 4, 1, 1, gen=g), rnd(3, gen=g)
    out = ops.head1x1(nhwc(x).to(DEV), w[:, :, 0, 0].t().contiguous().to(DEV), b.to(DEV), logits=False, labels=True)
    assert set(out) == {"labels"}
    assert torch.equal(out["labels"].cpu().long(), F.conv2d(x, w, b).argmax(1))
