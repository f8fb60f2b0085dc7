"""``unet_rt.Engine``: segment images of any size with a trained U-Net.

    eng = unet_rt.Engine("model.plan")                 # backend="auto": cpu, or tensorrt for a TensorRT plan
    labels = eng.segment(img)                          # (H, W) class map
    probs = eng.predict(img)                           # (K, H, W) float32 probabilities

Accepted images: H x W (single-channel models), H x W x C (C = the model's input channels), and
stacks T x H x W (or T x H x W x C), as uint8, uint16 or float32 raw values: the normalisation
stored in the model is applied, never an assumed 8-bit range. Every backend shares the one
overlap-tile implementation of the native core (``_core.tile_predict``); the CPU backend runs
it all natively with the GIL released, so one Engine may be used from several threads.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import model_file

__all__ = ["Engine", "BACKENDS"]

BACKENDS = ("auto", "cpu", "triton", "tensorrt")
_DTYPES = (np.uint8, np.uint16, np.float32)


def _core():
    try:
        from . import _core
    except ImportError as e:  # pragma: no cover - only when the package was not built
        raise ImportError("unet_rt._core (the compiled core) is missing: install the package with "
                          "`pip install .` (or `make install`)") from e
    return _core


# the 8 rotations/flips of the square (the paper averaged predictions over rotated inputs)
def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Apply transform k (0..7) to the last two axes."""
    y = np.rot90(x, k % 4, axes=(-2, -1))
    return np.flip(y, axis=-1) if k >= 4 else y


def _dihedral_inverse(x: np.ndarray, k: int) -> np.ndarray:
    y = np.flip(x, axis=-1) if k >= 4 else x
    return np.rot90(y, -(k % 4), axes=(-2, -1))


class Engine:
    """A loaded model, ready to segment.

    Parameters
    ----------
    path : model file (``unet-rt`` weights or TensorRT container, or a bare TensorRT plan).
    backend : "auto" (cpu for weights, tensorrt for TensorRT plans), "cpu", "triton", "tensorrt".
    threads : CPU threads (default: all cores).
    tile : input tile size (default: chosen per image to minimise total work within the budget).
    memory_budget_mb : activation memory budget for the automatic tile choice (CPU backend).
    device, dtype : for the triton backend (default "cuda", torch.float16).
    """

    def __init__(self, path, backend: str = "auto", threads: int | None = None, tile: int | None = None,
                 memory_budget_mb: int | None = None, device=None, dtype=None):
        path = Path(path)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        kind = model_file.detect_kind(path)  # OSError for a directory, FIFO or device
        trt = kind in ("tensorrt", "tensorrt-bare")
        if backend == "auto":
            backend = "tensorrt" if trt else "cpu"
        if trt and backend != "tensorrt":
            raise ValueError(f"{path} holds a TensorRT engine: only backend='tensorrt' can run it")
        if not trt and backend == "tensorrt":
            raise ValueError(f"{path} holds weights, not a TensorRT engine: build one with "
                             f"`unet-rt compile {path} --target tensorrt -o model-trt.plan`")
        if threads is not None and threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.path, self.backend, self.tile = path, backend, tile
        core = _core()
        if backend == "cpu":
            self._native = core.Engine(str(path), threads or 0, tile or 0, memory_budget_mb or 0)
            meta = core.read_model(str(path))
            self.arch, self.normalization = meta["arch"], meta["normalization"]
            self.class_names = list(meta["class_names"])
            self._fn = None
        elif backend == "triton":
            mf = model_file.load(path)
            from .triton import make_tile_fn  # imports torch + triton: only here

            self.arch, self.normalization, self.class_names = mf.arch, mf.normalization, mf.class_names
            self._fn = make_tile_fn(mf, device=device, dtype=dtype)
            self._native = None
        else:
            from .tensorrt import make_tile_fn  # imports tensorrt + cuda-python: only here

            self._fn = make_tile_fn(str(path))
            i = self._fn.info
            self.arch = {"in_channels": i.in_channels, "classes": i.classes, "depth": i.depth, "base": None,
                         "padding": i.padding}
            self.normalization = i.normalization
            self.class_names = list(i.class_names or
                                    [f"class{k}" for k in range(i.classes)])
            self.tile = self.tile or i.tile_in
            self._native = None

    # ------------------------------------------------------------------ info
    @property
    def in_channels(self) -> int:
        return int(self.arch["in_channels"])

    @property
    def classes(self) -> int:
        return int(self.arch["classes"])

    @property
    def info(self) -> dict:
        d = {"path": str(self.path), "backend": self.backend, "arch": dict(self.arch),
             "normalization": self.normalization, "class_names": self.class_names}
        if self._native is not None:
            d.update({k: v for k, v in self._native.info.items() if k not in d})
            if isinstance(d.get("provenance"), str):
                d["provenance"] = json.loads(d["provenance"] or "{}")
        return d

    def __repr__(self) -> str:
        a = self.arch
        return (f"Engine({str(self.path)!r}, backend={self.backend!r}: depth {a['depth']}, base {a['base']}, "
                f"{a['in_channels']} in, {a['classes']} classes, {a['padding']})")

    # ------------------------------------------------------------------ input layouts
    def _frames(self, img) -> tuple[list[np.ndarray], bool]:
        """-> list of C x H x W arrays, and whether the input was a stack."""
        a = np.asarray(img)
        if not a.dtype.isnative:  # e.g. big-endian TIFF/zarr data
            a = a.astype(a.dtype.type)
        if a.dtype not in _DTYPES:
            if a.dtype == np.float64 or a.dtype == np.float16:
                a = a.astype(np.float32)
            elif a.dtype == np.bool_ or a.dtype.kind not in "uif":
                raise TypeError(f"image dtype must be uint8, uint16 or float32, got {a.dtype}")
            else:
                raise TypeError(f"image dtype must be uint8, uint16 or float32, got {a.dtype} "
                                f"(convert explicitly: values are never rescaled behind your back)")
        c = self.in_channels
        if a.size == 0:
            raise ValueError(f"image is empty (shape {a.shape})")
        if c == 1:
            if a.ndim == 2:
                return [a[None]], False
            if a.ndim == 3:
                return [f[None] for f in a], True
            raise ValueError(f"a single-channel model takes H x W images or T x H x W stacks, got shape {a.shape}")
        if a.ndim == 3 and a.shape[-1] == c:
            return [np.moveaxis(a, -1, 0)], False
        if a.ndim == 4 and a.shape[-1] == c:
            return [np.moveaxis(f, -1, 0) for f in a], True
        raise ValueError(f"this model takes {c}-channel images as H x W x {c} (or T x H x W x {c}), got shape {a.shape}")

    # ------------------------------------------------------------------ compute
    def _probs_chw(self, chw: np.ndarray, logits: bool = False) -> np.ndarray:
        chw = np.ascontiguousarray(chw)
        if self._native is not None:
            return self._native.predict(chw, logits=logits)
        core = _core()
        return core.tile_predict(chw, self.normalization["mean"], self.normalization["std"], int(self.arch["depth"]),
                                 self.arch["padding"] == "same", self.classes, self._fn, tile=self.tile or 0,
                                 output="logits" if logits else "probabilities")

    def _predict_frame(self, chw: np.ndarray, tta: bool) -> np.ndarray:
        if not tta:
            return self._probs_chw(chw)
        acc = None
        for k in range(8):
            p = _dihedral_inverse(self._probs_chw(_dihedral(chw, k)), k)
            acc = p.astype(np.float64) if acc is None else acc + p
        return (acc / 8).astype(np.float32)

    def predict(self, img, tta: bool = False) -> np.ndarray:
        """Class probabilities: (K, H, W) float32, or (T, K, H, W) for a stack.

        ``tta=True`` averages the probabilities over the 8 rotations/flips of the input (8x the work).
        """
        frames, stack = self._frames(img)
        out = [self._predict_frame(f, tta) for f in frames]
        return np.stack(out) if stack else out[0]

    def logits(self, img) -> np.ndarray:
        """Raw network outputs (K, H, W) float32 (or (T, K, H, W))."""
        frames, stack = self._frames(img)
        out = [self._probs_chw(f, logits=True) for f in frames]
        return np.stack(out) if stack else out[0]

    def segment(self, img, tta: bool = False) -> np.ndarray:
        """Class map: (H, W) (or (T, H, W)) uint8 (uint16 beyond 256 classes)."""
        frames, stack = self._frames(img)
        dt = np.uint8 if self.classes <= 256 else np.uint16
        out = []
        for f in frames:
            if self._native is not None and not tta:
                out.append(self._native.segment(np.ascontiguousarray(f)).astype(dt, copy=False))
            else:
                out.append(self._predict_frame(f, tta).argmax(0).astype(dt))
        return np.stack(out) if stack else out[0]


