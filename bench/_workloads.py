"""Workload constants and the FLOP count of the paper network (shared by bench/ and report.py)."""
from __future__ import annotations

THREADS = 2
PAPER = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")


def paper_flops(h: int, w: int, arch: dict = PAPER) -> float:
    """Multiply-adds x 2 of one valid-padded U-Net forward on an h x w tile (convs, up-convs, head)."""
    d, b = arch["depth"], arch["base"]
    f, cin, sh, sw = 0.0, arch["in_channels"], h, w
    for l in range(d + 1):
        c = b << l
        f += 2 * 9 * cin * c * (sh - 2) * (sw - 2) + 2 * 9 * c * c * (sh - 4) * (sw - 4)
        sh, sw, cin = sh - 4, sw - 4, c
        if l < d:
            sh, sw = sh // 2, sw // 2
    for l in reversed(range(d)):
        c = b << l
        f += 2 * (2 * c) * c * 4 * sh * sw           # 2x2 stride-2 up-conv
        sh, sw = 2 * sh, 2 * sw
        f += 2 * 9 * (2 * c) * c * (sh - 2) * (sw - 2) + 2 * 9 * c * c * (sh - 4) * (sw - 4)
        sh, sw = sh - 4, sw - 4
    return f + 2 * b * arch["classes"] * sh * sw
