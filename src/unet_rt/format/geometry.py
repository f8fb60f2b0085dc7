"""Tile geometry of the U-Net family (docs/architecture.md, "Tiling").

A "valid" network (the paper's: unpadded 3x3 convs) shrinks its input: for depth 4 an input tile of
``I`` pixels gives ``I - 184`` output pixels (a halo of 92 on each side), and ``I`` is valid only if
every 2x2 max-pool sees an even size. A "same" network keeps the size; its input must be divisible
by ``2**depth``. These functions are the single Python source of that arithmetic; the C++ core has
the same formulas (``csrc/core/geometry.h``) and a test checks that the two agree.
"""
from __future__ import annotations

__all__ = ["output_size", "is_valid_input", "halo", "valid_input_sizes", "min_input_size"]


def output_size(size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output size along one axis for an input of ``size`` pixels; raises ValueError if invalid."""
    if padding == "same":
        if size <= 0 or size % (2**depth):
            raise ValueError(f"same-padded depth-{depth} U-Net needs an input divisible by {2**depth}, got {size}")
        return size
    if padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    s = size
    for level in range(depth):
        s -= 4  # two unpadded 3x3 convs
        if s <= 0 or s % 2:
            raise ValueError(f"input size {size} is not valid for a depth-{depth} valid U-Net "
                             f"(size {s} before max-pool {level + 1} must be even and positive)")
        s //= 2
    s -= 4  # bottleneck convs
    if s <= 0:
        raise ValueError(f"input size {size} is too small for a depth-{depth} valid U-Net")
    for _ in range(depth):
        s = 2 * s - 4  # 2x2 up-conv, then two unpadded 3x3 convs
        if s <= 0:
            raise ValueError(f"input size {size} is too small for a depth-{depth} valid U-Net")
    return s


def is_valid_input(size: int, depth: int = 4, padding: str = "valid") -> bool:
    try:
        output_size(size, depth, padding)
        return True
    except ValueError:
        return False


def halo(depth: int = 4, padding: str = "valid") -> int:
    """Pixels lost on each side: 92 for the paper's depth-4 network, 0 for a same-padded one."""
    if padding == "same":
        return 0
    i = min_input_size(depth, padding)
    return (i - output_size(i, depth, padding)) // 2


def min_input_size(depth: int = 4, padding: str = "valid") -> int:
    s = 1
    while not is_valid_input(s, depth, padding):
        s += 1
    return s


def valid_input_sizes(lo: int, hi: int, depth: int = 4, padding: str = "valid") -> list[tuple[int, int]]:
    """All (input, output) sizes with lo <= input <= hi, e.g. (572, 388), (588, 404), ..."""
    return [(i, output_size(i, depth, padding)) for i in range(max(lo, 1), hi + 1)
            if is_valid_input(i, depth, padding)]
