"""Tile geometry: the Python formulas (unet_rt.format.geometry) and the C++ ones (csrc/core/geometry.h) agree."""
import pytest

from unet_rt.format import geometry

_core = pytest.importorskip("unet_rt._core")


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_python_and_cpp_agree(depth, padding):
    for size in range(1, 400 if depth < 5 else 800):
        py_ok = geometry.is_valid_input(size, depth, padding)
        try:
            cpp = _core.output_size(size, depth, padding == "same")
        except ValueError:
            cpp = None
        assert (cpp is not None) == py_ok, (size, depth, padding)
        if py_ok:
            assert cpp == geometry.output_size(size, depth, padding)


def test_paper_numbers():
    assert geometry.output_size(572) == 388 and geometry.output_size(700) == 516
    assert geometry.halo(4) == 92 and geometry.halo(4, "same") == 0
    assert geometry.min_input_size(4) == 188 and geometry.output_size(188) == 4
