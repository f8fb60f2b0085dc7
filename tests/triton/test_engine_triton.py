"""unet_rt.Engine(backend="triton"): the Triton kernels driven through the shared native tiler
(_core.tile_predict), against the CPU backend on the same model (interpreter on CPU here)."""
import numpy as np
import torch

import unet_rt
from unet_rt.train.model import UNet, to_model_file
from unet_rt.format import model_file


def test_engine_triton_matches_cpu_backend(tmp_path, device):
    torch.manual_seed(0)
    path = tmp_path / "m.plan"
    model_file.save(path, to_model_file(UNet(1, 2, depth=2, base=4).eval(), {"mean": [100.0], "std": [40.0]}, ["a", "b"]))
    img = np.random.default_rng(0).integers(0, 255, (23, 30)).astype(np.uint8)
    cpu = unet_rt.Engine(path)
    tri = unet_rt.Engine(path, backend="triton", device=device, dtype=torch.float32, tile=60)
    # tiles of 60 -> 20 outputs: a 23 x 30 image needs 2 x 2 tiles, so the tiler really tiles
    p_cpu, p_tri = cpu.predict(img), tri.predict(img)
    assert p_tri.shape == (2, 23, 30)
    # both fp32 (the interpreter computes in fp32): probabilities agree to ~1e-6; 1e-4 leaves room
    # for different summation orders (Winograd on the CPU side) over 9*8 terms per output
    assert np.abs(p_cpu - p_tri).max() < 1e-4
    assert tri.info["backend"] == "triton"
