import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def paper_net_file(tmp_path):
    """The paper's network (depth 4, base 64) with random N(0, 0.05) weights as a model file, written
    with numpy only (the memory tests measure processes that must not hold torch)."""
    from unet_rt.format import model_file

    p = tmp_path / "paper.plan"
    arch = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
    rng = np.random.default_rng(0)
    tensors = {k: (rng.standard_normal(s, dtype=np.float32) * 0.05) for k, s in model_file.expected_shapes(arch).items()}
    model_file.save(p, model_file.ModelFile("weights", arch, {"mean": [128.0], "std": [64.0]}, ["a", "b"], tensors))
    return p


@pytest.fixture(scope="session")
def save_unet():
    """Factory: save_unet(path, cin=1, classes=2, depth=2, base=4, seed=0, mean=100, std=40)
    writes a random-weight (He init) reference U-Net as a runtime model file; returns (net, norm)."""
    torch = pytest.importorskip("torch")
    from unet_rt.train.model import UNet, to_model_file
    from unet_rt.format import model_file

    def save(path, cin=1, classes=2, depth=2, base=4, seed=0, mean=100.0, std=40.0, names=None):
        torch.manual_seed(seed)
        net = UNet(cin, classes, depth=depth, base=base, dropout=0).eval()
        norm = {"mean": [mean] * cin, "std": [std] * cin}
        model_file.save(path, to_model_file(net, norm, names or [f"c{k}" for k in range(classes)]))
        return net, norm

    return save


@pytest.fixture(scope="session")
def model(tmp_path_factory, save_unet):
    """The default small model file (save_unet's defaults: 1 -> 2 classes, depth 2, base 4), read-only
    for the tests that take it; a module that needs another model defines its own `model`."""
    p = tmp_path_factory.mktemp("model") / "m.plan"
    save_unet(p)
    return p
