"""Host-side launchers of the Triton kernels: shape checks, output allocation, launch configs.

All activations are *logical* NHWC tensors ``[B, H, W, C]`` of any strides (a channel stride of 1 is
the fast path): a cropped skip is a slice view, the network input is ``x_nchw.permute(0, 2, 3, 1)``.

Launch configs: on CUDA, ``triton.autotune`` over a short list per GPU generation (Ampere sm8x,
Hopper sm9x+; anything older gets the Ampere list). Under the interpreter (TRITON_INTERPRET=1, CPU
tensors) one fixed config is used — autotuning there would only multiply the (slow) run time.
"""
from __future__ import annotations

import functools

import torch
import triton
from triton import knobs

from unet_rt.backends.triton import kernels as K

INTERPRET = bool(knobs.runtime.interpret)   # fixed when kernels.py was imported


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# ------------------------------------------------------------------------------------ configs ---
def _cfg(bm, bn, bk, warps, stages):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages)


# Ampere (A100: 164 KiB shared memory / SM, mma.sync): moderate tiles, 3-4 stages of cp.async pipelining.
GEMM_CONFIGS_AMPERE = [
    _cfg(128, 64, 32, 4, 4),
    _cfg(128, 128, 32, 8, 3),
    _cfg(64, 64, 32, 4, 4),
    _cfg(256, 64, 32, 8, 3),
    _cfg(128, 64, 64, 4, 3),
    _cfg(64, 32, 32, 4, 4),     # small-N layers (base width 32) and the first layer
]
# Hopper (H100/H200: 228 KiB shared memory / SM, wgmma wants BLOCK_M >= 64 per warpgroup): bigger
# tiles and K steps of 64.
GEMM_CONFIGS_HOPPER = [
    _cfg(128, 128, 64, 8, 3),
    _cfg(128, 256, 64, 8, 3),
    _cfg(256, 128, 64, 8, 3),
    _cfg(128, 64, 64, 4, 4),
    _cfg(64, 128, 64, 4, 4),
    _cfg(64, 64, 64, 4, 4),
    _cfg(128, 32, 32, 4, 4),    # small-N layers and the first layer
]


def _prune_gemm(configs, named_args, **kwargs):
    """Drop configs whose N or K tile is far larger than the layer (pure waste), keep at least one."""
    n = int(named_args["N"]) if "N" in named_args else 4 * int(named_args["CO"])
    if "C1" in named_args:
        c1, c2 = int(named_args["C1"]), int(named_args["C2"])
        kdim = 9 * c1 if c1 < 16 else max(c1, c2)       # FLAT_K layers see K = 9*C1
    else:
        kdim = int(named_args["CI"])
    keep = [c for c in configs
            if c.kwargs["BLOCK_N"] <= max(32, _pow2(n)) and c.kwargs["BLOCK_K"] <= max(16, _pow2(kdim))]
    return keep or configs[-1:]


@functools.lru_cache(maxsize=None)
def _tuned(kind: str, major: int):
    configs = GEMM_CONFIGS_HOPPER if major >= 9 else GEMM_CONFIGS_AMPERE
    if kind == "conv":
        return triton.autotune(configs=configs, key=["B", "OH", "OW", "C1", "C2", "N"],
                               prune_configs_by={"early_config_prune": _prune_gemm})(K.conv3x3_kernel)
    return triton.autotune(configs=configs, key=["B", "H", "W", "CI", "CO"],
                           prune_configs_by={"early_config_prune": _prune_gemm})(K.upconv2x2_kernel)


def _interp_config(n: int, kdim: int) -> dict:
    # Big tiles = few programs: the interpreter's cost is per program and per op, not per FLOP.
    return {"BLOCK_M": 64, "BLOCK_N": min(64, max(16, _pow2(n))), "BLOCK_K": min(64, max(16, _pow2(kdim)))}


def _launch(kind, kernel, x, grid_mn, n, kdim, config, args, kwargs):
    """config: None (autotune on CUDA / fixed under the interpreter) or a dict of block sizes (tests)."""
    if config is None and (INTERPRET or x.device.type != "cuda"):
        config = _interp_config(n, kdim)
    if config is not None:
        bm, bn = config["BLOCK_M"], config["BLOCK_N"]
        grid = (triton.cdiv(grid_mn[0], bm) * triton.cdiv(grid_mn[1], bn),)
        kernel[grid](*args, **kwargs, **config)
        return
    major = torch.cuda.get_device_capability(x.device)[0]
    grid = lambda meta: (triton.cdiv(grid_mn[0], meta["BLOCK_M"]) * triton.cdiv(grid_mn[1], meta["BLOCK_N"]),)
    _tuned(kind, major)[grid](*args, **kwargs)


def _dot_prec(dtype: torch.dtype) -> str:
    # fp32 storage means fp32 math ("ieee"), not TF32: it is the parity mode. Ignored for fp16/bf16.
    return "ieee" if dtype == torch.float32 else "tf32"


def _check_nhwc(name, t):
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        raise ValueError(f"{name}: expected a 4-d [B, H, W, C] tensor, got {getattr(t, 'shape', type(t))}")


# ------------------------------------------------------------------------------------ conv3x3 ---
def conv3x3(x, w, b, *, pad: int, relu: bool = True, x2=None, w2=None, pool: bool = False,
            out_dtype=None, config=None):
    """3x3 convolution (stride 1, zero padding ``pad`` in {0, 1}) + bias (+ ReLU), implicit GEMM.

    x: [B, H, W, C1] (any strides)   w: [9*C1, N] packed (row = (kh*3+kw)*C1 + c)   b: [N] fp32
    x2: [B, H, W, C2], w2: [9*C2, N]: a second source, read as if concatenated after x (channels)
    -> y: [B, H-2+2*pad, W-2+2*pad, N] contiguous; with ``pool`` also the 2x2 max-pool of y
       [B, OH/2, OW/2, N] (returns (y, pooled)).
    """
    _check_nhwc("x", x)
    if pad not in (0, 1):
        raise ValueError(f"pad must be 0 or 1, got {pad}")
    bsz, h, wd, c1 = x.shape
    n = w.shape[1]
    if w.shape[0] != 9 * c1 or b.shape != (n,):
        raise ValueError(f"weights {tuple(w.shape)} / bias {tuple(b.shape)} do not fit {c1} input channels")
    oh, ow = h - 2 + 2 * pad, wd - 2 + 2 * pad
    if oh < 1 or ow < 1:
        raise ValueError(f"3x3 valid conv needs an input of at least 3x3, got {h}x{wd}")
    two = x2 is not None
    if two:
        _check_nhwc("x2", x2)
        c2 = x2.shape[3]
        if tuple(x2.shape[:3]) != (bsz, h, wd) or w2 is None or tuple(w2.shape) != (9 * c2, n):
            raise ValueError(f"second source {tuple(x2.shape)} / weights {None if w2 is None else tuple(w2.shape)} "
                             f"do not match the first {tuple(x.shape)}")
    else:
        x2, w2, c2 = x, w, 0
    if bsz * h * wd >= 2**31 or bsz * oh * ow >= 2**31:
        raise ValueError(f"{bsz}x{h}x{wd} pixels: the kernels index pixels with int32; split the batch")
    if pool and (oh % 2 or ow % 2):
        raise ValueError(f"fused 2x2 max-pool needs an even output size, got {oh}x{ow}")
    dt = out_dtype or w.dtype
    y = torch.empty((bsz, oh, ow, n), dtype=dt, device=x.device)
    p = torch.empty((bsz, oh // 2, ow // 2, n), dtype=dt, device=x.device) if pool else y
    flat = c1 < 16
    args = (x, x2, w, w2, b, y, p, bsz, h, wd, oh, ow, c1, c2, n,
            *x.stride(), *x2.stride(), *y.stride()[:3], *p.stride()[:3])
    kwargs = dict(PAD=pad, TWO=two, FUSE_POOL=pool, RELU=relu, FLAT_K=flat, DOT_PREC=_dot_prec(w.dtype))
    kdim = 9 * c1 if flat else max(c1, c2)
    _launch("conv", K.conv3x3_kernel, x, (bsz * oh * ow, n), n, kdim, config, args, kwargs)
    return (y, p) if pool else y


# ---------------------------------------------------------------------------------- upconv2x2 ---
def upconv2x2(x, w, b, *, out_dtype=None, config=None):
    """ConvTranspose2d(kernel 2, stride 2) + bias.

    x: [B, H, W, CI] (any strides)   w: [CI, 4*CO] packed (column = (di*2+dj)*CO + co)   b: [CO] fp32
    -> y: [B, 2H, 2W, CO] contiguous
    """
    _check_nhwc("x", x)
    bsz, h, wd, ci = x.shape
    co = b.shape[0]
    if bsz * h * wd >= 2**31 // 4:
        raise ValueError(f"{bsz}x{h}x{wd} pixels: the kernels index pixels with int32; split the batch")
    if tuple(w.shape) != (ci, 4 * co):
        raise ValueError(f"up-conv weights {tuple(w.shape)} do not fit {ci} -> {co} channels")
    y = torch.empty((bsz, 2 * h, 2 * wd, co), dtype=out_dtype or w.dtype, device=x.device)
    args = (x, w, b, y, bsz, h, wd, ci, co, *x.stride(), *y.stride()[:3])
    _launch("up", K.upconv2x2_kernel, x, (bsz * h * wd, 4 * co), 4 * co, ci, config, args,
            dict(DOT_PREC=_dot_prec(w.dtype)))
    return y


# ------------------------------------------------------------------------------------ head1x1 ---
def head1x1(x, w, b, *, logits: bool = True, probs: bool = False, labels: bool = False, block_m=None):
    """1x1 conv to K classes in fp32, with optional softmax and argmax.

    x: [B, H, W, C] (any strides, any float dtype)   w: [C, K] fp32   b: [K] fp32
    -> dict with "logits" / "probs": [B, K, H, W] fp32 (NCHW), "labels": [B, H, W] int32
    """
    _check_nhwc("x", x)
    bsz, h, wd, c = x.shape
    k = b.shape[0]
    if tuple(w.shape) != (c, k):
        raise ValueError(f"head weights {tuple(w.shape)} do not fit {c} -> {k}")
    if not (logits or probs or labels):
        raise ValueError("head1x1: nothing to compute")
    dev = x.device
    out = {}
    lg = torch.empty((bsz, k, h, wd), dtype=torch.float32, device=dev) if logits else None
    pr = torch.empty((bsz, k, h, wd), dtype=torch.float32, device=dev) if probs else None
    lb = torch.empty((bsz, h, wd), dtype=torch.int32, device=dev) if labels else None
    dummy = lg if lg is not None else (pr if pr is not None else lb)
    bcls = _pow2(k)
    bm = block_m or (64 if (INTERPRET or dev.type != "cuda") else 128)
    bc = max(1, min(_pow2(c), 8192 // (bm * bcls) if bm * bcls <= 8192 else 1))
    grid = (triton.cdiv(bsz * h * wd, bm),)
    K.head1x1_kernel[grid](x, w, b, lg if lg is not None else dummy, pr if pr is not None else dummy,
                           lb if lb is not None else dummy, bsz, h, wd, c, k, *x.stride(),
                           WRITE_LOGITS=logits, WRITE_PROBS=probs, WRITE_LABELS=labels,
                           BLOCK_M=bm, BLOCK_C=bc, BLOCK_CLS=bcls)
    if logits:
        out["logits"] = lg
    if probs:
        out["probs"] = pr
    if labels:
        out["labels"] = lb
    return out
