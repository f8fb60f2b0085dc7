"""The U-Net of Ronneberger, Fischer and Brox (2015), as a configurable PyTorch module.

Paper configuration: ``UNet(in_channels=1, classes=2, depth=4, base=64, padding="valid")`` —
23 convolutions, 31,030,658 parameters, a 572x572 input tile gives a 388x388 output.
Parameter names are the runtime model file's tensor names (see ``unet_rt.format.model_file``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from unet_rt.format.geometry import output_size, valid_input_sizes  # noqa: F401  (re-exported)


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


def _norm(kind: str, c: int) -> nn.Module:
    # "batch": BatchNorm2d after each 3x3 conv, folded into the conv at export (fold_batchnorm), so
    # the runtime's fused conv + bias + ReLU is unchanged. "none": the paper's network.
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'none' or 'batch', got {kind!r}")


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by (an optional BatchNorm and) ReLU."""

    def __init__(self, cin: int, cout: int, pad: int, norm: str = "none"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=pad)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=pad)
        self.norm2 = _norm(norm, cout)

    def forward(self, x):
        return F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))


class UpBlock(nn.Module):
    """2x2 stride-2 up-conv halving the channels, crop-and-concat with the skip, two 3x3 convs."""

    def __init__(self, cin: int, cout: int, pad: int, norm: str = "none"):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv1 = nn.Conv2d(2 * cout, cout, 3, padding=pad)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=pad)
        self.norm2 = _norm(norm, cout)

    def forward(self, x, skip):
        up = self.up(x)                                  # (B, cout, 2h, 2w)  -- no ReLU, as in the paper
        dy = (skip.shape[-2] - up.shape[-2]) // 2
        dx = (skip.shape[-1] - up.shape[-1]) // 2
        skip = skip[..., dy:dy + up.shape[-2], dx:dx + up.shape[-1]]   # centre crop (static slice)
        x = torch.cat([skip, up], dim=1)                 # (B, 2*cout, 2h, 2w): skip first
        return F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 2, depth: int = 4, base: int = 64,
                 padding: str = "valid", dropout: float = 0.5, norm: str = "none"):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.arch = dict(in_channels=in_channels, classes=classes, depth=depth, base=base, padding=padding)
        self.norm = norm
        pad = 1 if padding == "same" else 0
        widths = [base * 2**l for l in range(depth + 1)]
        self.enc = nn.ModuleList()
        prev = in_channels
        for c in widths:
            self.enc.append(DoubleConv(prev, c, pad, norm))
            prev = c
        # dec[l] joins level l+1 to level l; applied from l = depth-1 down to 0
        self.dec = nn.ModuleList(UpBlock(widths[l + 1], widths[l], pad, norm) for l in range(depth))
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
    from unet_rt.format import model_file

    mf = model_file.load(path)
    if mf.kind != "weights":
        raise ValueError(f"{path} holds a {mf.kind} model, not weights")
    a = mf.arch
    net = UNet(a["in_channels"], a["classes"], a["depth"], a["base"], a["padding"])
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in mf.tensors.items()})
    return net.to(map_location).eval(), mf


@torch.no_grad()
def fold_batchnorm(net: UNet) -> dict[str, torch.Tensor]:
    """The network's weights with every BatchNorm folded into the conv before it (eval mode).

    BN(conv(x)) = g * (W*x + b - mu) / sqrt(var + eps) + beta = W'*x + b' with
    W' = W * s, b' = (b - mu) * s + beta, s = g / sqrt(var + eps) per output channel: exact up to
    rounding, and the state dict keeps the paper network's names (no norm tensors), so the runtime
    needs nothing new. A network without BatchNorm is returned as it is.
    """
    sd = {k: v.detach().cpu().float().clone() for k, v in net.state_dict().items()}
    out = {k: v for k, v in sd.items() if ".norm" not in k}
    for name, m in net.named_modules():
        if not isinstance(m, nn.BatchNorm2d):
            continue
        conv = name.replace(".norm", ".conv")            # enc.0.norm1 -> enc.0.conv1
        s = sd[f"{name}.weight"] / torch.sqrt(sd[f"{name}.running_var"] + m.eps)
        out[f"{conv}.weight"] = sd[f"{conv}.weight"] * s[:, None, None, None]
        out[f"{conv}.bias"] = (sd[f"{conv}.bias"] - sd[f"{name}.running_mean"]) * s + sd[f"{name}.bias"]
    return out


def to_model_file(net: UNet, normalization: dict, class_names, provenance: dict | None = None):
    """The runtime ModelFile for a trained network (write it with ``unet_rt.format.model_file.save``).

    BatchNorm layers (``norm="batch"``) are folded into the convs: the file holds the paper's
    network."""
    from unet_rt.format.model_file import ModelFile

    tensors = {k: v.numpy() for k, v in fold_batchnorm(net).items()}
    return ModelFile("weights", dict(net.arch), normalization, list(class_names), tensors, provenance or {})
