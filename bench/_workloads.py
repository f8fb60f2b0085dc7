"""Workload constants, the whole-image workloads' overlap-tile grid and the FLOP counts of the paper
network (shared by bench/: test_cpu.py, test_triton.py, gpu_check.py, report.py)."""
from __future__ import annotations

THREADS = 2
PAPER = dict(in_channels=1, classes=2, depth=4, base=64, padding="valid")
# whole-image workloads: name -> (image size, tile of the overlap-tile grid). 512: one 700 tile
# (mirror-padded) -> 512x512 logits; 2048: 2x2 tiles of 1212 (output stride 1024) -> 2048x2048 logits.
IMAGES = {"image512": (512, 700), "image2048": (2048, 1212)}


def image_input(size: int, channels: int = PAPER["in_channels"]):
    """The fixed random input image [C, size, size] float32 (normal, seed 1) every runner gets."""
    import numpy as np

    return np.random.default_rng(1).standard_normal((channels, size, size)).astype(np.float32)


def grid_predict(img, tile: int, fn, arch: dict = PAPER):
    """Overlap-tile prediction of a valid U-Net through the native tiler (the grid Engine runs), with
    ``fn(tile [C, t, t] float32) -> logits [K, o, o] float32`` as the per-tile predictor: logits [K, H, W]."""
    from unet_rt import _core

    c = img.shape[0]
    return _core.tile_predict(img, [0.0] * c, [1.0] * c, arch["depth"], arch["padding"] == "same",
                              arch["classes"], fn, tile=tile, output="logits")


def grid_tiles(size: int, tile: int, arch: dict = PAPER) -> int:
    """Number of tiles of that grid on a size x size image."""
    from unet_rt import _core

    return int(_core.plan_tiles(size, size, depth=arch["depth"], same_padding=arch["padding"] == "same",
                                tile=tile)["tiles"])


def _layers(h: int, w: int, arch: dict = PAPER):
    """(kind, in channels, out channels, out h, out w) of every layer of one valid forward."""
    d, b = arch["depth"], arch["base"]
    cin, sh, sw = arch["in_channels"], h, w
    for l in range(d + 1):
        c = b << l
        yield "conv", cin, c, sh - 2, sw - 2
        yield "conv", c, c, sh - 4, sw - 4
        sh, sw, cin = sh - 4, sw - 4, c
        if l < d:
            sh, sw = sh // 2, sw // 2
    for l in reversed(range(d)):
        c = b << l
        yield "up", 2 * c, c, 2 * sh, 2 * sw
        sh, sw = 2 * sh, 2 * sw
        yield "conv", 2 * c, c, sh - 2, sw - 2
        yield "conv", c, c, sh - 4, sw - 4
        sh, sw = sh - 4, sw - 4
    yield "head", b, arch["classes"], sh, sw


def paper_flops(h: int, w: int, arch: dict = PAPER) -> float:
    """Multiply-adds x 2 of one valid-padded U-Net forward on an h x w tile, as direct convolution
    (convs, up-convs, head): the "effective" FLOP count every runner is compared by."""
    k = {"conv": 9, "up": 1, "head": 1}
    return sum(2.0 * k[t] * ci * co * oh * ow for t, ci, co, oh, ow in _layers(h, w, arch))


def ours_flops(h: int, w: int, arch: dict = PAPER) -> float:
    """The arithmetic our executor actually does on an h x w tile: the 3x3 convs on 16-channel
    blocks as Winograd F(4x4, 3x3) GEMMs (2 * 36 * tiles * IC * OC, channels padded to 16), the first
    conv (on the raw input) direct, up-convs and head direct (transforms not counted)."""
    p16 = lambda c: -(-c // 16) * 16  # noqa: E731
    f = 0.0
    for i, (t, ci, co, oh, ow) in enumerate(_layers(h, w, arch)):
        if t == "conv" and i > 0:
            f += 2.0 * 36 * (-(-oh // 4)) * (-(-ow // 4)) * p16(ci) * p16(co)
        else:
            f += 2.0 * {"conv": 9, "up": 1, "head": 1}[t] * (ci if i == 0 else p16(ci)) * (co if t == "head" else p16(co)) * oh * ow
    return f
