import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import pytest



@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_model_file(tmp_path_factory):
    """A depth-2, base-4 valid U-Net with random He weights, saved as a runtime model file."""
    torch = pytest.importorskip("torch")
    from training.model import UNet, to_model_file
    from unet_rt import model_file

    torch.manual_seed(0)
    net = UNet(in_channels=1, classes=2, depth=2, base=4).eval()
    path = tmp_path_factory.mktemp("models") / "small.plan"
    model_file.save(path, to_model_file(net, {"mean": [100.0], "std": [50.0]}, ["background", "cell"]))
    return path


os.environ.setdefault("OMP_NUM_THREADS", "2")
