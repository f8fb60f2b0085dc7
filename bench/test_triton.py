"""Triton backend on a GPU: ours vs PyTorch eager (cuDNN) and torch.compile, same run, interleaved.

    pytest bench/test_triton.py --benchmark-only --benchmark-json=bench-triton.json

Workload: the paper network (depth 4, base 64, 1 -> 2 classes, valid) on one 572x572 tile (-> 388),
batch 1 and 4, fp16 (and bf16 where the GPU has it). Each round runs every contender once (the first
one rotating: _gpu.time_rounds), timed with CUDA events; the reported numbers are the medians and the
ratios peer / ours (> 1: ours is faster). pytest-benchmark's own timing (the `benchmark` fixture)
records ours alone for the JSON.
Skipped, with the reason, on machines without a CUDA GPU: nothing here runs on the interpreter.
"""
import pytest

import _gpu
from _gpu import interleaved
from _workloads import paper_flops

torch = pytest.importorskip("torch", reason="the triton backend needs torch")
pytest.importorskip("triton", reason="the triton backend needs triton")

if not torch.cuda.is_available():
    pytestmark = pytest.mark.skip(reason="GPU benchmark: needs a CUDA device (this machine has none); "
                                  "the interpreter (TRITON_INTERPRET=1) is ~0.01 GFLOP/s and says nothing about speed")

def paper_net(dtype):
    return _gpu.paper_net(dtype=dtype, device="cuda")


DTYPES = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp16", "bf16"])
def test_paper_tile_vs_torch(benchmark, dtype, batch):
    if dtype == torch.bfloat16 and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("this GPU has no bfloat16")
    from unet_rt.backends.triton import TritonUNet

    net, mf = paper_net(dtype)
    ours = TritonUNet(mf, device="cuda", dtype=dtype)
    x32 = torch.randn(batch, 1, 572, 572, device="cuda")
    xd = x32.to(dtype).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(net)

    with torch.no_grad():
        ref = net(xd).float()
        got = ours.forward(x32)
        # sanity before timing: same network, same precision class (fp16/bf16 storage, fp32 accumulation)
        rel = ((got - ref).abs().max() / ref.abs().max()).item()
        assert rel < (0.05 if dtype == torch.float16 else 0.2), f"ours differs from eager by {rel:.3g} (relative)"
        fns = {
            "ours": lambda: ours.forward(x32),
            "torch_eager": lambda: net(xd),
            "torch_compile": lambda: compiled(xd),
        }
        compiled(xd)                                      # compile outside the timed rounds
        med = interleaved(fns)
    flops = batch * paper_flops(572, 572)
    info = {f"{k}_ms": v for k, v in med.items()}
    info.update({f"ratio_{k}_over_ours": med[k] / med["ours"] for k in med if k != "ours"})
    info.update({f"{k}_tflops": flops / (v * 1e-3) / 1e12 for k, v in med.items()})
    info["device"] = torch.cuda.get_device_name()
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))
    with torch.no_grad():
        benchmark.pedantic(lambda: (ours.forward(x32), torch.cuda.synchronize()), rounds=10, warmup_rounds=2)
