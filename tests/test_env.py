"""The executor's environment variables (csrc/core/env.cc reads them all, when an engine is built):
the engine's reported ISA and the executor's kernels follow the same reading."""
import pytest

from unet_rt import Engine
from unet_rt import _kernels as K

from test_bf16 import SHIPPED


def test_isa_variable_is_read_when_an_engine_is_built(monkeypatch):
    if "avx2" not in K.available_isas():
        pytest.skip("needs an AVX2 CPU")
    monkeypatch.setenv("UNET_RT_ISA", "avx2")
    info = Engine(SHIPPED, threads=1).info
    assert info["isa"] == "avx2" and info["kernel"].endswith("_avx2")
    monkeypatch.setenv("UNET_RT_ISA", "ref")
    info = Engine(SHIPPED, threads=1).info
    assert info["isa"] == "ref" and info["kernel"].endswith("_ref")
    monkeypatch.delenv("UNET_RT_ISA")
    best = K.available_isas()[-1]
    info = Engine(SHIPPED, threads=1).info
    assert info["isa"] == best and info["kernel"].endswith("_" + best)
    monkeypatch.setenv("UNET_RT_ISA", "sse9")
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        Engine(SHIPPED, threads=1)
