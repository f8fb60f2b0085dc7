"""The U-Net of Ronneberger, Fischer and Brox (2015), as a configurable PyTorch module.

Paper configuration: ``UNet(in_channels=1, classes=2, depth=4, base=64, padding="valid")`` —
23 convolutions, 31,030,658 parameters, a 572x572 input tile gives a 388x388 output.
Parameter names are the runtime model file's tensor names (see ``unet_rt.model_file``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from unet_rt.geometry import output_size, valid_input_sizes  # noqa: F401  (re-exported)


def _he_init(m: nn.Module) -> None:
    # Paper §3: weights from a Gaussian with std sqrt(2/N), N = incoming nodes of one neuron
    # (3*3*64 = 576 for a 3x3 conv with 64 input channels).
    if isinstance(m, nn.Conv2d):
        n = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    elif isinstance(m, nn.ConvTranspose2d):
        # each output pixel of a 2x2 stride-2 up-conv receives in_channels inputs
        n = m.in_channels
    else:
        return
    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
    nn.init.zeros_(m.bias)


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU."""

    def __init__(self, cin: int, cout: int, pad: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=pad)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=pad)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UpBlock(nn.Module):
    """2x2 stride-2 up-conv halving the channels, crop-and-concat with the skip, two 3x3 convs."""

    def __init__(self, cin: int, cout: int, pad: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv1 = nn.Conv2d(2 * cout, cout, 3, padding=pad)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=pad)

    def forward(self, x, skip):
        up = self.up(x)                                  # (B, cout, 2h, 2w)  -- no ReLU, as in the paper
        dy = (skip.shape[-2] - up.shape[-2]) // 2
        dx = (skip.shape[-1] - up.shape[-1]) // 2
        skip = skip[..., dy:dy + up.shape[-2], dx:dx + up.shape[-1]]   # centre crop (static slice)
        x = torch.cat([skip, up], dim=1)                 # (B, 2*cout, 2h, 2w): skip first
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 2, depth: int = 4, base: int = 64,
                 padding: str = "valid", dropout: float = 0.5):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.arch = dict(in_channels=in_channels, classes=classes, depth=depth, base=base, padding=padding)
        pad = 1 if padding == "same" else 0
        widths = [base * 2**l for l in range(depth + 1)]
        self.enc = nn.ModuleList()
        prev = in_channels
        for c in widths:
            self.enc.append(DoubleConv(prev, c, pad))
            prev = c
        # dec[l] joins level l+1 to level l; applied from l = depth-1 down to 0
        self.dec = nn.ModuleList(UpBlock(widths[l + 1], widths[l], pad) for l in range(depth))
        self.head = nn.Conv2d(base, classes, 1)
        # Paper: "Drop-out layers at the end of the contracting path perform further implicit
        # data augmentation." Identity at inference, so the runtime ignores it.
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.apply(_he_init)

    def forward(self, x):
        # x: (B, Cin, H, W) normalised; returns logits (B, K, H', W'), H' = output_size(H)
        skips = []
        depth = len(self.dec)
        for l in range(depth):
            x = self.enc[l](x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.enc[depth](x))
        for l in reversed(range(depth)):
            x = self.dec[l](x, skips[l])
        return self.head(x)

    def output_size(self, size: int) -> int:
        return output_size(size, self.arch["depth"], self.arch["padding"])


def load_model_file(path, map_location="cpu") -> tuple[UNet, "object"]:
    """Build a UNet from a unet-rt model file (kind 'weights'); returns (model in eval mode, ModelFile)."""
    from unet_rt import model_file

    mf = model_file.load(path)
    if mf.kind != "weights":
        raise ValueError(f"{path} holds a {mf.kind} model, not weights")
    a = mf.arch
    net = UNet(a["in_channels"], a["classes"], a["depth"], a["base"], a["padding"])
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in mf.tensors.items()})
    return net.to(map_location).eval(), mf


def to_model_file(net: UNet, normalization: dict, class_names, provenance: dict | None = None):
    """The runtime ModelFile for a trained network (write it with ``unet_rt.model_file.save``)."""
    from unet_rt.model_file import ModelFile

    tensors = {k: v.detach().cpu().float().numpy() for k, v in net.state_dict().items()}
    return ModelFile("weights", dict(net.arch), normalization, list(class_names), tensors, provenance or {})
