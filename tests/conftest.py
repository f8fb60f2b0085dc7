import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def save_unet():
    """Factory: save_unet(path, cin=1, classes=2, depth=2, base=4, seed=0, mean=100, std=40)
    writes a random-weight (He init) reference U-Net as a runtime model file; returns (net, norm)."""
    torch = pytest.importorskip("torch")
    from training.model import UNet, to_model_file
    from unet_rt import model_file

    def save(path, cin=1, classes=2, depth=2, base=4, seed=0, mean=100.0, std=40.0, names=None):
        torch.manual_seed(seed)
        net = UNet(cin, classes, depth=depth, base=base, dropout=0).eval()
        norm = {"mean": [mean] * cin, "std": [std] * cin}
        model_file.save(path, to_model_file(net, norm, names or [f"c{k}" for k in range(classes)]))
        return net, norm

    return save
