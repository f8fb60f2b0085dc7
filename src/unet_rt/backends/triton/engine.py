"""The U-Net forward pass on Triton kernels (docs/architecture.md: data flow; src/unet_rt/backends/triton/README.md).

``TritonUNet(model_file, device, dtype)`` packs the weights once; ``forward(x)`` runs one batch of
tiles. ``make_tile_fn`` adapts it to the shared overlap-tile implementation (``_core.tile_predict``):
this module does no tiling of its own.

The same code drives real CUDA tensors (compiled kernels, autotuned) and CPU tensors (Triton's
interpreter, TRITON_INTERPRET=1: for tests on machines without a GPU; slow, fp32/fp16 only).

Data flow for one batch (activations NHWC in the storage dtype; ``ops`` docstrings give shapes)::

    x [B, Cin, H, W] fp32 NCHW --(read through a permuted view, cast on load)--> enc.0.conv1
    enc.l: conv1 -> conv2 (+ fused 2x2 max-pool: writes the skip AND the pooled map)
    bottleneck: enc.D.conv1 -> enc.D.conv2
    dec.l: up-conv (one GEMM, 4 phases) -> conv1(cropped skip view, up) -> conv2
    head: 1x1 conv in fp32 -> logits [B, K, oh, ow] fp32 (NCHW)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from unet_rt.format import geometry
from unet_rt.format import model_file as mfmod

__all__ = ["TritonUNet", "make_tile_fn"]

_OPS = None


def _ops(device: torch.device):
    """Import the kernels, in interpreter mode for CPU tensors (the mode is fixed at first import)."""
    global _OPS
    want_interp = device.type != "cuda"
    if _OPS is None:
        if want_interp and os.environ.get("TRITON_INTERPRET") != "1":
            # Triton reads this when our @triton.jit decorators run, i.e. at the import below.
            os.environ["TRITON_INTERPRET"] = "1"
        from unet_rt.backends.triton import ops
        _OPS = ops
    if want_interp and not _OPS.INTERPRET:
        raise RuntimeError("the Triton kernels were compiled for CUDA in this process; CPU tensors need "
                           "TRITON_INTERPRET=1 set before unet_rt.backends.triton first runs")
    if not want_interp and _OPS.INTERPRET:
        raise RuntimeError("the Triton kernels were loaded in interpreter mode (TRITON_INTERPRET=1) in this "
                           "process; unset it and restart to run on CUDA")
    return _OPS


def _as_model_file(model_file) -> mfmod.ModelFile:
    if isinstance(model_file, mfmod.ModelFile):
        mf = model_file
    elif isinstance(model_file, (str, os.PathLike, Path)):
        mf = mfmod.load(model_file)
    else:
        raise TypeError(f"expected a ModelFile or a path, got {type(model_file).__name__}")
    if mf.kind != "weights":
        raise ValueError(f"the triton backend runs weight model files, not kind {mf.kind!r}")
    return mf


class TritonUNet:
    """A U-Net of any depth / width / channels / classes / padding on Triton kernels."""

    def __init__(self, model_file, device="cuda", dtype=torch.float16):
        mf = _as_model_file(model_file)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                               "(use device='cpu' to run the kernels under the Triton interpreter)")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        if dtype == torch.bfloat16:
            if self.device.type != "cuda":
                raise ValueError("bfloat16 is not supported on CPU: Triton's interpreter computes bf16 wrongly")
            if torch.cuda.get_device_capability(self.device)[0] < 8:   # bf16 tensor cores: Ampere and later
                raise ValueError(f"this GPU ({torch.cuda.get_device_name(self.device)}) has no bfloat16 support")
        self.dtype = dtype
        self.ops = _ops(self.device)
        a = mf.arch
        self.arch = dict(a)
        self.in_channels, self.classes = int(a["in_channels"]), int(a["classes"])
        self.depth, self.base = int(a["depth"]), int(a["base"])
        self.padding = a.get("padding", "valid")
        self.pad = 1 if self.padding == "same" else 0
        self.normalization = mf.normalization
        self.class_names = list(mf.class_names)
        self._pack(mf.tensors)

    # ------------------------------------------------------------------------- weight packing ---
    def _pack(self, t: dict) -> None:
        dev, dt = self.device, self.dtype

        def conv(w, lo=None, hi=None):
            # [N, C, 3, 3] -> [9*C, N], row = (kh*3 + kw)*C + c (ops.conv3x3's layout)
            w = torch.from_numpy(np.asarray(w, dtype=np.float32))
            if lo is not None:
                w = w[:, lo:hi]
            return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous().to(dev, dt)

        def bias(bv):
            return torch.from_numpy(np.asarray(bv, dtype=np.float32)).to(dev).contiguous()

        self.w = {}
        for l in range(self.depth + 1):
            for c in ("conv1", "conv2"):
                self.w[f"enc.{l}.{c}"] = (conv(t[f"enc.{l}.{c}.weight"]), bias(t[f"enc.{l}.{c}.bias"]))
        for l in range(self.depth):
            cl = self.base * 2**l
            up = torch.from_numpy(np.asarray(t[f"dec.{l}.up.weight"], dtype=np.float32))   # [2cl, cl, 2, 2]
            self.w[f"dec.{l}.up"] = (up.permute(0, 2, 3, 1).reshape(up.shape[0], -1).contiguous().to(dev, dt),
                                     bias(t[f"dec.{l}.up.bias"]))
            w1 = t[f"dec.{l}.conv1.weight"]                     # input channels [cropped skip (cl), up (cl)]
            self.w[f"dec.{l}.conv1"] = (conv(w1, 0, cl), conv(w1, cl, 2 * cl), bias(t[f"dec.{l}.conv1.bias"]))
            self.w[f"dec.{l}.conv2"] = (conv(t[f"dec.{l}.conv2.weight"]), bias(t[f"dec.{l}.conv2.bias"]))
        hw = np.asarray(t["head.weight"], dtype=np.float32)[:, :, 0, 0]                 # [K, C0]
        self.w["head"] = (torch.from_numpy(np.ascontiguousarray(hw.T)).to(dev), bias(t["head.bias"]))

    # -------------------------------------------------------------------------------- forward ---
    def output_size(self, size: int) -> int:
        return geometry.output_size(size, self.depth, self.padding)

    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"the model expects {self.in_channels} input channels, got {x.shape[1]}")
        if x.shape[0] < 1:
            raise ValueError("empty batch")
        for s in x.shape[2:]:
            # geometry raises ValueError with an explanation; the second test is a guard in case an
            # older geometry.py lets a size with no output pixels through (76 for depth 3 once gave -12)
            if self.output_size(int(s)) < 1:
                raise ValueError(f"input size {int(s)} is not valid for a depth-{self.depth} {self.padding} "
                                 f"U-Net (no output pixels)")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point tensor, got {x.dtype}")
        return x.to(self.device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, *, probs: bool = False, labels: bool = False):
        """x: [B, Cin, H, W] normalised -> logits float32 [B, K, oh, ow].

        With ``probs`` / ``labels`` returns a dict with "logits", and "probs" (softmax, fp32) /
        "labels" (argmax, int32 [B, oh, ow]) computed in the same head kernel.
        """
        x = self._check_input(x)
        o, w, pad = self.ops, self.w, self.pad
        h = x.permute(0, 2, 3, 1)                           # NHWC view of the NCHW input (no copy)
        skips = []
        for l in range(self.depth):
            h = o.conv3x3(h, *w[f"enc.{l}.conv1"], pad=pad)
            skip, h = o.conv3x3(h, *w[f"enc.{l}.conv2"], pad=pad, pool=True)
            skips.append(skip)
        h = o.conv3x3(h, *w[f"enc.{self.depth}.conv1"], pad=pad)
        h = o.conv3x3(h, *w[f"enc.{self.depth}.conv2"], pad=pad)
        for l in reversed(range(self.depth)):
            up = o.upconv2x2(h, *w[f"dec.{l}.up"])
            skip = skips[l]
            dy = (skip.shape[1] - up.shape[1]) // 2
            dx = (skip.shape[2] - up.shape[2]) // 2
            crop = skip[:, dy:dy + up.shape[1], dx:dx + up.shape[2], :]      # strided view: no copy
            w_skip, w_up, b1 = w[f"dec.{l}.conv1"]
            h = o.conv3x3(crop, w_skip, b1, pad=pad, x2=up, w2=w_up)
            h = o.conv3x3(h, *w[f"dec.{l}.conv2"], pad=pad)
        out = o.head1x1(h, *w["head"], logits=True, probs=probs, labels=labels)
        return out if (probs or labels) else out["logits"]

    __call__ = forward


def make_tile_fn(model_file, device=None, dtype=None):
    """A tile predictor for ``_core.tile_predict``: fn(tile float32 [C, t, t], normalised) -> logits
    float32 [K, o, o] (o = geometry.output_size(t)).

    device: default "cuda" when torch sees a GPU, else "cpu" (Triton interpreter).
    dtype: default float16 on CUDA, float32 on CPU (the interpreter's parity mode).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    net = TritonUNet(model_file, device=device, dtype=dtype)

    def tile_fn(tile: np.ndarray) -> np.ndarray:
        tile = np.asarray(tile)
        if tile.ndim != 3:
            raise ValueError(f"tile must be [C, t, t], got shape {tile.shape}")
        x = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32))[None]
        if not torch.isfinite(x).all():
            raise ValueError("tile holds NaN or Inf")
        y = net.forward(x.to(device))
        return y[0].cpu().numpy()

    tile_fn.net = net
    return tile_fn

