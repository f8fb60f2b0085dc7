"""Axes strings: what each dimension of an image means, and how it reaches the engine.

An axes string names every dimension of an array, outermost first, with one letter each:

    Y, X   the image plane (both required)
    C      channels (also ``S``, tifffile's "samples", e.g. RGB)
    T, Z   time points / planes: stack axes, each frame is segmented on its own

Other letters that file metadata may carry (tifffile's ``I``, ``Q``, ``P``...) count as stack
axes. The engine sees ``N x C x H x W`` frames: every stack axis is flattened into N, and the
result is reshaped back afterwards (``labels.shape == stack shape + (H, W)``).

The default axes come from the file's own metadata (OME, ImageJ, PNG mode, NGFF), see
:mod:`unet_rt.io`; for a bare array :func:`guess_axes` decides by rank and by the model's input
channels. An RGB image given to a single-channel model is converted to grey (ITU-R 601-2 luma,
as Pillow's ``convert("L")``) with a message; any other channel count that does not match the
model is an error that names ``channel=`` (``--channel`` on the command line).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Frames", "parse_axes", "guess_axes", "to_frames", "LUMA"]

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, the weights of Pillow's RGB -> L
USER_AXES = "TZCYXS"


def parse_axes(axes: str, ndim: int | None = None) -> str:
    """Validate a user's axes string ("YX", "ZYX", "YXC", "TCYX"...); returns it upper-case, S -> C."""
    if not isinstance(axes, str) or not axes:
        raise ValueError(f"axes must be a string such as 'YX', 'ZYX', 'YXC' or 'CYX', got {axes!r}")
    a = axes.upper().replace("S", "C")
    bad = sorted(set(a) - set(USER_AXES))
    if bad:
        raise ValueError(f"axes {axes!r}: unknown letter(s) {''.join(bad)} (use T, Z, C, Y, X)")
    if len(set(a)) != len(a):
        raise ValueError(f"axes {axes!r}: a letter appears twice")
    if "Y" not in a or "X" not in a:
        raise ValueError(f"axes {axes!r} must contain Y and X")
    if ndim is not None and len(a) != ndim:
        raise ValueError(f"axes {axes!r} name {len(a)} dimensions but the image has {ndim}")
    return a


def guess_axes(shape: tuple, in_channels: int = 1) -> str:
    """Axes of a bare array without metadata: YX, then a trailing channel axis when it matches a
    multi-channel model (YXC) or looks like RGB/RGBA (3 or 4 wide), else leading stack axes."""
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"an image needs at least 2 dimensions (Y, X), got shape {tuple(shape)}")
    if nd == 2:
        return "YX"
    last = shape[-1]
    chan_last = (in_channels > 1 and last == in_channels) or (in_channels == 1 and last in (3, 4)
                                                              and shape[-2] > 4)
    n_stack = nd - 2 - chan_last
    if n_stack > 2:
        raise ValueError(f"cannot guess the axes of a {nd}-D array {tuple(shape)}: pass axes (e.g. 'TZYX')")
    return "TZ"[2 - n_stack:] + ("YXC" if chan_last else "YX")


@dataclass
class Frames:
    """An image rearranged for the engine: ``data`` is N x C x H x W (C = the model's channels)."""
    data: np.ndarray
    stack_shape: tuple          # sizes of the stack axes (() for a single image)
    stack_axes: str             # their letters, e.g. "TZ"
    notes: list = field(default_factory=list)  # what was converted (e.g. RGB -> grey), for the user

    @property
    def is_stack(self) -> bool:
        return bool(self.stack_axes)

    def unflatten(self, per_frame: np.ndarray) -> np.ndarray:
        """N x ... -> stack shape x ... (drops N for a single image)."""
        return per_frame.reshape(self.stack_shape + per_frame.shape[1:]) if self.is_stack else per_frame[0]


def to_luma(rgb: np.ndarray, axis: int) -> np.ndarray:
    """RGB(A) along ``axis`` -> grey in the input's dtype (alpha ignored)."""
    w = np.asarray(LUMA, np.float64)
    x = np.moveaxis(np.asarray(rgb), axis, -1)[..., :3].astype(np.float64) @ w
    if np.issubdtype(rgb.dtype, np.integer):
        return np.clip(np.rint(x), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return x.astype(rgb.dtype)


def to_frames(arr, axes: str, in_channels: int, channel: int | None = None, rgb: bool | None = None) -> Frames:
    """Rearrange ``arr`` (dimensions named by ``axes``) into N x C x H x W frames for a model with
    ``in_channels`` inputs. ``channel`` picks one channel for a single-channel model. ``rgb``:
    whether the C axis holds display colours (None: 3 or 4 channels are taken as RGB/RGBA)."""
    a = np.asarray(arr)
    axes = axes.upper().replace("S", "C")
    if len(axes) != a.ndim:
        raise ValueError(f"axes {axes!r} name {len(axes)} dimensions but the image has shape {a.shape}")
    if "Y" not in axes or "X" not in axes or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} must name Y and X once each")
    notes = []
    stack_axes = "".join(c for c in axes if c not in "CYX")
    order = [axes.index(c) for c in stack_axes] + ([axes.index("C")] if "C" in axes else []) + \
            [axes.index("Y"), axes.index("X")]
    a = np.transpose(a, order)
    stack_shape = a.shape[:len(stack_axes)]
    h, w = a.shape[-2:]
    if "C" not in axes:
        a = a.reshape((-1, 1, h, w))
    else:
        a = a.reshape((-1, a.shape[len(stack_axes)], h, w))
    nc = int(np.shape(a)[1])
    if channel is not None:
        if not 0 <= channel < nc:
            raise ValueError(f"channel {channel} out of range: the image has {nc} channel(s)")
        if in_channels != 1:
            raise ValueError(f"channel= picks one channel, but this model takes {in_channels}")
        a = a[:, channel:channel + 1]
        notes.append(f"using channel {channel} of {nc}")
    elif nc != in_channels:
        is_rgb = rgb if rgb is not None else nc in (3, 4)
        if in_channels == 1 and is_rgb and nc in (3, 4):
            a = to_luma(a, axis=1)[:, None]
            notes.append(f"converted {'RGBA' if nc == 4 else 'RGB'} to grey (ITU-R 601-2 luma) for this "
                         f"single-channel model")
        elif in_channels == 1:
            raise ValueError(f"this model takes 1 channel but the image has {nc} (axes {axes}, shape "
                             f"{tuple(np.shape(arr))}): pick one with channel= (--channel N)")
        elif in_channels == 3 and nc == 4 and (rgb is None or rgb):
            a = a[:, :3]
            notes.append("dropped the alpha channel")
        else:
            raise ValueError(f"this model takes {in_channels} channels but the image has {nc} "
                             f"(axes {axes}, shape {tuple(np.shape(arr))})")
    return Frames(a, tuple(stack_shape), stack_axes, notes)
