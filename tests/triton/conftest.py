"""tests/triton: the Triton backend. Without a CUDA device the kernels run under Triton's interpreter
on CPU tensors: TRITON_INTERPRET=1 must be set before the kernels' @triton.jit decorators run, so it is
set here, at collection, before anything imports unet_rt.backends.triton.

No __init__.py in this folder on purpose: with one, pytest would import it as a package named
``triton`` and shadow the real Triton.
"""
import os

import pytest

torch = pytest.importorskip("torch", reason="the triton backend needs torch")

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="the triton backend needs triton (pip install 'unet-rt[triton]')")

DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (this machine has none): "
                                "bf16, autotuning and compiled-kernel checks run only on real hardware")


@pytest.fixture(scope="session")
def device():
    return DEVICE
