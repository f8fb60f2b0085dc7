"""The whole Triton U-Net against the PyTorch reference (unet_rt.train.model.UNet, run in float64).

Small members of the family (the interpreter runs ~0.01 GFLOP/s): depth 2, width 4 on a 60x60 valid
tile (-> 20x20) and a 32x32 same-padded one, plus odd family members (depth 1/3, base 3, 3 input
channels, 5 classes). GPU-only checks (bf16, autotuned compiled kernels, the paper network) skip here.

Error model for a network of L weight layers (convs, up-convs, head) whose largest dot product has
K_max terms, with |ref|_max the largest reference logit:
  fp32: each layer adds a relative error of about sqrt(K)*u32 (random-sign rounding of a K-term sum;
        He-initialised layers keep the signal scale ~1), and errors add up over layers:
        tol = L * sqrt(K_max) * u32 * |ref|_max. (Measured errors sit ~10-20x below it.)
  fp16: every stored activation and every weight is rounded to fp16 (relative u16 = 2**-11 each) and
        that, not the fp32 accumulation, dominates: tol = 2 * L * u16 * |ref|_max.
Labels (argmax) must agree wherever the reference's top-2 margin exceeds 2 * tol.
"""
import math

import numpy as np
import pytest
import torch

from unet_rt.train.model import UNet, to_model_file
from unet_rt.format import geometry
from unet_rt.format import model_file as mfmod
from unet_rt.backends.triton import TritonUNet, make_tile_fn

U32 = 2.0**-24
U16 = 2.0**-11
HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none on this machine): "
                                "bf16 and compiled/autotuned kernels are checked on real hardware only")


def make_net(cin=1, k=2, depth=2, base=4, padding="valid", seed=0):
    torch.manual_seed(seed)
    net = UNet(cin, k, depth, base, padding).eval()
    with torch.no_grad():      # non-zero biases, so a dropped or misplaced bias cannot pass unseen
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    mf = to_model_file(net, {"mean": [0.0] * cin, "std": [1.0] * cin}, [f"c{i}" for i in range(k)])
    return net, mf


def reference(net, x):
    with torch.no_grad():
        return net.double()(x.double())


def layers_and_kmax(cin, depth, base):
    layers = 2 * (depth + 1) + 3 * depth + 1
    kmax = 9 * 2 * base * 2 ** (depth - 1)             # the widest decoder conv1 (2 sources)
    kmax = max(kmax, 9 * base * 2**depth, 9 * cin)     # the bottleneck conv2
    return layers, kmax


def tolerance(ref, dtype, cin, depth, base):
    L, kmax = layers_and_kmax(cin, depth, base)
    scale = ref.abs().max().item()
    if dtype == torch.float32:
        return L * math.sqrt(kmax) * U32 * scale
    return 2 * L * U16 * scale


def check_net(net, mf, x, dtype, cin, depth, base):
    ref = reference(net, x).cpu()
    tn = TritonUNet(mf, device=DEV, dtype=dtype)
    out = tn.forward(x.to(DEV), probs=True, labels=True)
    y = out["logits"]
    assert y.dtype == torch.float32 and tuple(y.shape) == tuple(ref.shape)
    assert y.shape[-1] == geometry.output_size(x.shape[-1], depth, mf.arch["padding"])
    tol = tolerance(ref, dtype, cin, depth, base)
    err = (y.cpu().double() - ref).abs().max().item()
    assert err <= tol, f"max |err| {err:.3g} > tol {tol:.3g} ({dtype})"
    probs = out["probs"].cpu().double()
    assert (probs - torch.softmax(ref, 1)).abs().max().item() <= 2 * tol + 1e-6
    top2 = ref.topk(min(2, ref.shape[1]), dim=1).values
    clear = top2[:, 0] - top2[:, -1] > 2 * tol
    if ref.shape[1] == 1:
        clear = torch.ones_like(clear)       # one class: the label is always 0
    lab = out["labels"].cpu().long()
    assert torch.equal(lab[clear], ref.argmax(1)[clear])
    assert clear.float().mean() > 0.5        # the label check is not vacuous
    return err, tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("padding,size", [("valid", 60), ("same", 32)])
def test_unet_depth2_width4(padding, size, dtype):
    net, mf = make_net(padding=padding)
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    check_net(net, mf, x, dtype, 1, 2, 4)


@pytest.mark.parametrize("cin,k,depth,base,padding,size,batch", [
    (3, 5, 1, 3, "valid", 20, 2),      # odd width, RGB input, 5 classes, batch of 2, depth 1
    (2, 1, 3, 2, "same", 16, 1),       # depth 3, one class, same padding
    (1, 3, 3, 2, "valid", 92, 1),      # depth 3 valid: smallest input 92 -> 4
])
def test_unet_family(cin, k, depth, base, padding, size, batch):
    net, mf = make_net(cin, k, depth, base, padding, seed=cin + depth)
    x = torch.randn(batch, cin, size, size, generator=torch.Generator().manual_seed(2))
    check_net(net, mf, x, torch.float32, cin, depth, base)


def test_non_square_input():
    net, mf = make_net(padding="valid")
    x = torch.randn(1, 1, 44, 60, generator=torch.Generator().manual_seed(3))     # 44 -> 4, 60 -> 20
    check_net(net, mf, x, torch.float32, 1, 2, 4)


def test_tile_fn_and_model_file_path(tmp_path):
    """make_tile_fn: the shared tiler's contract, [C, t, t] float32 -> [K, o, o] float32 logits."""
    net, mf = make_net(padding="valid", seed=5)
    path = tmp_path / "m.plan"
    mfmod.save(path, mf)
    fn = make_tile_fn(path, device=DEV, dtype=torch.float32)
    tile = np.random.default_rng(0).standard_normal((1, 60, 60)).astype(np.float32)
    out = fn(tile)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 20, 20)
    ref = reference(net, torch.from_numpy(tile)[None])[0].numpy()
    tol = tolerance(torch.from_numpy(ref), torch.float32, 1, 2, 4)
    assert np.abs(out - ref).max() <= tol
    with pytest.raises(ValueError, match=r"\[C, t, t\]"):
        fn(tile[0])
    with pytest.raises(ValueError, match="not valid"):
        fn(tile[:, :58, :58])
    bad = tile.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad)


def test_bad_inputs():
    _, mf = make_net(padding="valid")
    tn = TritonUNet(mf, device=DEV, dtype=torch.float32)
    with pytest.raises(ValueError, match="input channels"):
        tn.forward(torch.zeros(1, 2, 60, 60))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        tn.forward(torch.zeros(1, 60, 60))
    with pytest.raises(ValueError, match="not valid"):
        tn.forward(torch.zeros(1, 1, 62, 60))
    with pytest.raises(ValueError, match="empty"):
        tn.forward(torch.zeros(0, 1, 60, 60))
    with pytest.raises(TypeError, match="floating"):
        tn.forward(torch.zeros(1, 1, 60, 60, dtype=torch.int32))
    _, mf_same = make_net(padding="same")
    with pytest.raises(ValueError, match="divisible by 4"):
        TritonUNet(mf_same, device=DEV, dtype=torch.float32).forward(torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="dtype"):
        TritonUNet(mf, device=DEV, dtype=torch.float64)
    with pytest.raises(TypeError, match="ModelFile or a path"):
        TritonUNet(42, device=DEV)


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU (interpreter) refusal of bf16")
def test_bf16_refused_on_cpu():
    _, mf = make_net()
    with pytest.raises(ValueError, match="bfloat16"):
        TritonUNet(mf, device="cpu", dtype=torch.bfloat16)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_gpu():
    _, mf = make_net()
    with pytest.raises(RuntimeError, match="no CUDA device"):
        TritonUNet(mf, device="cuda")


# ------------------------------------------------------------------------- GPU-only (skipped) ---
@needs_cuda
def test_unet_bf16_cuda():
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("this GPU has no bfloat16")
    net, mf = make_net(padding="valid")
    x = torch.randn(2, 1, 92, 92, generator=torch.Generator().manual_seed(4))
    ref = reference(net, x)
    y = TritonUNet(mf, device="cuda", dtype=torch.bfloat16).forward(x.cuda())
    # bf16: u = 2**-8, same model as fp16 with u16 -> 2**-8
    L, _ = layers_and_kmax(1, 2, 4)
    tol = 2 * L * 2.0**-8 * ref.abs().max().item()
    assert (y.cpu().double() - ref).abs().max().item() <= tol


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_paper_network_cuda(dtype):
    """The paper's depth-4 base-64 network on one 572 tile, autotuned kernels, vs the reference."""
    net, mf = make_net(1, 2, 4, 64, "valid")
    x = torch.randn(1, 1, 572, 572, generator=torch.Generator().manual_seed(5))
    check_net(net.cuda(), mf, x.cuda(), dtype, 1, 4, 64)
