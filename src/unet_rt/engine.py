"""``unet_rt.Engine``: segment images of any size with a trained U-Net.

    eng = unet_rt.Engine("model.plan")                 # backend="auto": cpu, or tensorrt for a TensorRT plan
    labels = eng.segment(img)                          # (H, W) class map (the model's decision)
    cells = eng.instances(img)                         # (H, W) int32 instance labels, 0 = background
    probs = eng.predict(img)                           # (K, H, W) float32 probabilities

Accepted images: H x W (single-channel models), H x W x C (C = the model's input channels), and
stacks T x H x W (or T x H x W x C), as uint8, uint16 or float32 raw values: the normalisation
stored in the model is applied, never an assumed 8-bit range. Every backend shares the one
overlap-tile implementation of the native core (``_core.tile_predict``); the CPU backend runs
it all natively with the GIL released, so one Engine may be used from several threads.

The decision (threshold on p(foreground), instance parameters) is the model file's ``decision``
metadata (``unet_rt.eval.calibrate`` chooses it on validation data); every backend applies it with the
same native code (``_core.decide_labels`` / ``_core.instances``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from unet_rt.format import model_file
from unet_rt.io.axes import Frames, guess_axes, parse_axes, to_frames

__all__ = ["Engine", "BACKENDS"]

BACKENDS = ("auto", "cpu", "triton", "tensorrt")
_DTYPES = (np.uint8, np.uint16, np.float32)


_core = model_file.native  # the compiled core


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
    precision : CPU backend: "fp32" (default, exact to rounding) or "bf16" (Winograd GEMMs in bfloat16
        with fp32 accumulation, on CPUs with AVX512-BF16; elsewhere fp32 runs and ``info`` says why).
    profile : CPU backend: record where the time goes; ``profile()`` returns the rows (docs/speed.md).
    progress : default progress callback for every call, ``progress(done, total)`` in tiles over the
        whole call (all frames and TTA transforms); returning False cancels the call
        (``unet_rt._core.Cancelled``, a RuntimeError). Each call may pass its own ``progress=``.
    """

    def __init__(self, path, backend: str = "auto", threads: int | None = None, tile: int | None = None,
                 memory_budget_mb: int | None = None, device=None, dtype=None, precision: str = "fp32",
                 progress=None, profile: bool = False):
        path = Path(path)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if threads is not None and threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable(done, total) or None")
        core = _core()
        # The file is read and validated once: by the native engine (weights), else by model_file.load.
        mf, self._native, self._fn = None, None, None
        if backend in ("auto", "cpu"):
            try:
                self._native = core.Engine(str(path), threads or 0, tile or 0, memory_budget_mb or 0,
                                           precision=precision)
            except core.ModelFileError:
                mf = model_file.load(path, tensors=False)  # a bad file raises here the reader's error again
                if mf.kind == "weights":  # pragma: no cover - the native engine accepted no weights file
                    raise
            if mf is not None and backend == "cpu":  # a TensorRT engine (container or bare plan)
                raise ValueError(f"{path} holds a TensorRT engine: only backend='tensorrt' can run it")
            backend = "cpu" if mf is None else "tensorrt"
        elif backend == "tensorrt":
            mf = model_file.load(path, tensors=False)
        else:
            mf = model_file.load(path)
        if mf is not None and mf.kind == "weights" and backend == "tensorrt":
            raise ValueError(f"{path} holds weights, not a TensorRT engine: build one with "
                             f"`unet-rt compile {path} --target tensorrt -o model-trt.plan`")
        if mf is not None and mf.kind != "weights" and backend != "tensorrt":
            raise ValueError(f"{path} holds a TensorRT engine: only backend='tensorrt' can run it")
        if precision != "fp32" and backend != "cpu":
            raise ValueError(f"precision={precision!r} is a CPU backend option (backend is {backend!r})")
        if profile and backend != "cpu":
            raise ValueError(f"profile=True is a CPU backend option (backend is {backend!r})")
        self.path, self.backend, self.tile, self.progress = path, backend, tile, progress
        if backend == "cpu":
            assert self._native is not None
            self._native.set_profile(bool(profile))
            mf = model_file.from_native(self._native.info)
            self.arch, self.normalization, self.class_names = mf.arch, mf.normalization, list(mf.class_names)
        elif backend == "triton":
            from unet_rt.backends.triton import make_tile_fn as triton_tile_fn  # imports torch + triton: only here

            assert mf is not None
            self.arch, self.normalization, self.class_names = mf.arch, mf.normalization, mf.class_names
            self._fn = triton_tile_fn(mf, device=device, dtype=dtype)
        else:
            from unet_rt.backends.tensorrt import make_tile_fn as trt_tile_fn  # imports tensorrt + cuda-python: only here

            assert mf is not None
            self._fn = trt_tile_fn(str(path))
            i = self._fn.info
            self.arch = {"in_channels": i.in_channels, "classes": i.classes, "depth": i.depth, "base": None,
                         "padding": i.padding}
            self.normalization = mf.normalization if mf.kind == "tensorrt" else i.normalization
            self.class_names = list(i.class_names or
                                    [f"class{k}" for k in range(i.classes)])
            self.tile = self.tile or i.tile_in
        self._profiling = bool(profile)
        # the decision (threshold, instance parameters) of a container; a bare TensorRT plan has none
        self.decision: dict = dict(mf.decision) if mf is not None else {}

    # ------------------------------------------------------------------ info
    @property
    def in_channels(self) -> int:
        return int(self.arch["in_channels"])

    @property
    def classes(self) -> int:
        return int(self.arch["classes"])

    @property
    def info(self) -> dict:
        d: dict[str, Any] = {"path": str(self.path), "backend": self.backend, "arch": dict(self.arch),
             "normalization": self.normalization, "class_names": self.class_names, "decision": self.decision}
        if self._native is not None:
            d.update({k: v for k, v in self._native.info.items() if k not in d and k != "metadata"})
            if isinstance(d.get("provenance"), str):
                d["provenance"] = json.loads(d["provenance"] or "{}")
        return d

    def profile(self, reset: bool = True) -> list[dict]:
        """Where the time went (``Engine(..., profile=True)``): one row per layer and phase, in execution
        order, summed over every tile run since the engine was made or since the last ``profile()``
        (``reset=False`` keeps summing): ``layer``, ``phase`` (e.g. ``conv3x3_wino_gemm_f32_12x32_avx512``,
        ``conv3x3_wino_in_f32_avx512``, ``upconv2x2_f32_avx512``), ``ms``, ``share`` of the total, ``gflops`` (GFLOP/s of
        the arithmetic actually done) and ``mb`` moved. Phase names and meaning: docs/speed.md."""
        if self._native is None or not self._profiling:
            raise RuntimeError("profile() needs an engine made with Engine(..., profile=True) (CPU backend)")
        rows = self._native.profile(reset)
        total = sum(r["seconds"] for r in rows) or 1.0
        return [{"layer": r["layer"], "phase": r["phase"], "ms": 1e3 * r["seconds"], "share": r["seconds"] / total,
                 "gflops": r["flops"] / r["seconds"] / 1e9 if r["seconds"] > 0 else 0.0, "mb": r["bytes"] / 1e6}
                for r in rows]

    def __repr__(self) -> str:
        a = self.arch
        return (f"Engine({str(self.path)!r}, backend={self.backend!r}: depth {a['depth']}, base {a['base']}, "
                f"{a['in_channels']} in, {a['classes']} classes, {a['padding']})")

    # ------------------------------------------------------------------ input layouts
    def _frames(self, img, axes: str | None = None, channel: int | None = None) -> Frames:
        """-> N x C x H x W frames (see :mod:`unet_rt.io.axes`); ``axes=None``: H x W [x C] or a stack."""
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
        if axes is not None or channel is not None:
            fr = to_frames(a, parse_axes(axes, a.ndim) if axes else guess_axes(a.shape, c), c, channel)
            for note in fr.notes:
                warnings.warn(note, stacklevel=3)
            return fr
        if c == 1:
            if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[-2] > 4:
                raise ValueError(f"shape {a.shape} is ambiguous for this single-channel model: pass "
                                 f"axes='YXC' to convert an RGB image to grey, or axes='ZYX' for a stack")
            if a.ndim in (2, 3):
                return to_frames(a, "ZYX"[3 - a.ndim:], 1)
            raise ValueError(f"a single-channel model takes H x W images or T x H x W stacks, got shape {a.shape}")
        if a.ndim in (3, 4) and a.shape[-1] == c:
            return to_frames(a, "ZYXC"[4 - a.ndim:], c)
        raise ValueError(f"this model takes {c}-channel images as H x W x {c} (or T x H x W x {c}), got shape {a.shape}")

    # ------------------------------------------------------------------ compute
    def _probs_chw(self, chw: np.ndarray, logits: bool = False, progress=None) -> np.ndarray:
        chw = np.ascontiguousarray(chw)
        cb = progress.tile_callback() if progress is not None else None
        if self._native is not None:
            out = self._native.predict(chw, logits=logits, progress=cb)
        else:
            core = _core()
            out = core.tile_predict(chw, self.normalization["mean"], self.normalization["std"], int(self.arch["depth"]),
                                    self.arch["padding"] == "same", self.classes, self._fn, tile=self.tile or 0,
                                    output="logits" if logits else "probabilities",
                                    percentiles=self.normalization.get("percentiles") or [], progress=cb)
        if progress is not None:
            progress.pass_done()
        return out

    def _progress(self, progress, passes: int):
        cb = progress if progress is not None else self.progress
        return _Progress(cb, passes) if cb is not None else None

    def _predict_frame(self, chw: np.ndarray, tta: bool, progress=None) -> np.ndarray:
        if not tta:
            return self._probs_chw(chw, progress=progress)
        acc = np.zeros((), np.float64)
        for k in range(8):
            acc = acc + _dihedral_inverse(self._probs_chw(_dihedral(chw, k), progress=progress), k)
        return (acc / 8).astype(np.float32)

    def predict(self, img, tta: bool = False, axes: str | None = None, channel: int | None = None,
                progress=None) -> np.ndarray:
        """Class probabilities: (K, H, W) float32, or (T, K, H, W) for a stack.

        ``tta=True`` averages the probabilities over the 8 rotations/flips of the input (8x the work).
        ``axes`` names the image's dimensions ("YX", "YXC", "ZYX", "CYX", "TZYX"...; see
        :mod:`unet_rt.io.axes`): the result is (stack dims..., K, H, W). ``channel`` picks one channel
        of a multi-channel image for a single-channel model. ``progress(done, total)``: tiles done
        over the whole call (see the class); returning False cancels.
        """
        fr = self._frames(img, axes, channel)
        self._warn_range(list(fr.data))
        pr = self._progress(progress, len(fr.data) * (8 if tta else 1))
        return fr.unflatten(np.stack([self._predict_frame(f, tta, pr) for f in fr.data]))

    def logits(self, img, axes: str | None = None, channel: int | None = None, progress=None) -> np.ndarray:
        """Raw network outputs (K, H, W) float32 (or (T, K, H, W))."""
        fr = self._frames(img, axes, channel)
        pr = self._progress(progress, len(fr.data))
        return fr.unflatten(np.stack([self._probs_chw(f, logits=True, progress=pr) for f in fr.data]))

    def segment(self, img, tta: bool = False, threshold: float | None = None, axes: str | None = None,
                channel: int | None = None, progress=None) -> np.ndarray:
        """Class map: (H, W) (or (T, H, W), or stack dims + (H, W) with ``axes``) uint8 (uint16 beyond
        256 classes).

        Labels follow the model's decision: the foreground class where its probability exceeds the
        calibrated threshold stored in the model file, else argmax (files without a decision: argmax
        everywhere). ``threshold`` overrides the stored one (a float in (0, 1)). ``axes``,
        ``channel``, ``progress``: as :meth:`predict`.
        """
        fr = self._frames(img, axes, channel)
        self._warn_range(list(fr.data))
        decision = self._decision_json(threshold)
        dt = np.uint8 if self.classes <= 256 else np.uint16
        pr = self._progress(progress, len(fr.data) * (8 if tta else 1))
        out = [self._segment_frame(f, tta, decision, pr).astype(dt, copy=False) for f in fr.data]
        return fr.unflatten(np.stack(out))

    def instances(self, img, tta: bool = False, decision: dict | None = None, axes: str | None = None,
                  channel: int | None = None, progress=None) -> np.ndarray:
        """Instance labels: (H, W) (or (T, H, W)) int32, 0 = background, 1..n objects.

        A marker-controlled watershed on the foreground probability of the whole image (never cut at
        a tile seam): markers are the connected components of p > marker threshold (small ones
        dropped), flooded in order of decreasing p within the foreground mask; parameters from the
        model's decision (see ``unet_rt.format.model_file``), or from ``decision`` (the same layout) when
        given. Without a decision: the connected components of the segmentation's foreground.
        ``axes``, ``channel``, ``progress``: as :meth:`predict` (tiles of the passes before the watershed).
        """
        fr = self._frames(img, axes, channel)
        self._warn_range(list(fr.data))
        dj = self._decision_json() if decision is None else json.dumps(decision)
        pr = self._progress(progress, len(fr.data) * (8 if tta else 1))
        core = _core()
        out = []
        for f in fr.data:
            if self._native is not None and not tta:
                cb = pr.tile_callback() if pr is not None else None
                out.append(self._native.instances(np.ascontiguousarray(f), decision=dj, progress=cb))
                if pr is not None:
                    pr.pass_done()
            else:
                out.append(core.instances(self._predict_frame(f, tta, pr), dj))
        return fr.unflatten(np.stack(out))

    # ------------------------------------------------------------------ decision, input range
    def _decision_json(self, threshold: float | None = None) -> str | None:
        """The decision as JSON for the core (None: the model has none and nothing overrides it)."""
        if threshold is None:
            return json.dumps(self.decision) if self.decision else None
        d = dict(self.decision) or {"foreground_class": 1 if self.classes >= 2 else 0}
        d["threshold"] = threshold
        text = json.dumps(d)
        _core().decision(text, self.classes)  # validates (ValueError names the problem)
        return text

    def _segment_frame(self, chw: np.ndarray, tta: bool, decision: str | None, progress=None) -> np.ndarray:
        if self._native is not None and not tta:
            cb = progress.tile_callback() if progress is not None else None
            out = self._native.segment(np.ascontiguousarray(chw), decision=decision, progress=cb)
            if progress is not None:
                progress.pass_done()
            return out
        return _core().decide_labels(self._predict_frame(chw, tta, progress), decision)

    def _region(self, pixels: np.ndarray, origin: tuple, frame: tuple, region: tuple, output: str,
                percentiles: list | None = None) -> np.ndarray:
        """One block of a frame too large for memory (``unet_rt.scale``): the whole frame's tiles that
        write ``region`` = (y0, y1, x0, x1), by the core's tiler, equal to those pixels of
        :meth:`predict` / :meth:`segment` on the whole frame bit for bit (same tile size). ``pixels``
        (C, h, w) hold the frame (``frame`` = (H, W)) from ``origin`` = (y, x) on, at least what
        ``_core.frame_reads`` names; ``output``: "probabilities" or "labels" (the model's decision);
        ``percentiles``: per channel the frame's (P_lo, P_hi) for models that normalise by percentiles."""
        if self._native is not None:
            return self._native.run_region(pixels, origin, frame, region, output=output, percentiles=percentiles)
        core = _core()
        if not self.tile:
            raise ValueError("a region of a frame needs the engine's tile size (Engine(..., tile=T))")
        probs = core.tile_predict_region(pixels, origin, frame, region, self.normalization["mean"],
                                         self.normalization["std"], int(self.arch["depth"]),
                                         self.arch["padding"] == "same", self.classes, self._fn, tile=self.tile,
                                         percentiles=percentiles)
        return core.decide_labels(probs, self._decision_json()) if output == "labels" else probs

    def _warn_range(self, frames: list[np.ndarray]) -> None:
        """Warn (once per call) when the input's intensity range is far outside the training range."""
        msg = range_warning(frames, self.normalization)
        if msg:
            warnings.warn(f"{self.path.name}: {msg}", RuntimeWarning, stacklevel=3)


# A normal distribution's 1st/99th percentiles: the training range assumed for model files that
# record only mean and std (no normalization.train_range).
_Z99 = 2.3263478740408408


def range_warning(frames: list[np.ndarray], norm: dict, max_samples: int = 1 << 20) -> str | None:
    """Why the input (list of C x H x W frames) is far outside the model's training range, or None.

    The input's percentiles (those of ``norm["train_range"]``, else 1 and 99 against mean -/+ 2.33
    std) per channel are compared with the training range [lo, hi] of span s: far outside means a
    percentile beyond [lo - 2 s, hi + 2 s] or a span below s / 10 (e.g. 16-bit data, or a float
    image in [0, 1], given to a model trained on 8-bit data). Models with per-image percentile
    normalisation never warn: their raw range does not matter.
    """
    if norm.get("percentiles") or not frames:
        return None
    tr = norm.get("train_range")
    c = frames[0].shape[0]
    step = max(1, int(np.ceil(np.sqrt(len(frames) * frames[0][0].size / max_samples))))
    problems = []
    for ch in range(c):
        if tr:
            q, lo, hi = tr["percentiles"], tr["low"][ch], tr["high"][ch]
        else:
            q = [1.0, 99.0]
            lo = norm["mean"][ch] - _Z99 * norm["std"][ch]
            hi = norm["mean"][ch] + _Z99 * norm["std"][ch]
        x = np.concatenate([f[ch, ::step, ::step].ravel() for f in frames]).astype(np.float64)
        a, b = np.percentile(x, q)
        span = max(hi - lo, 1e-12)
        if a < lo - 2 * span or b > hi + 2 * span or b - a < span / 10:
            problems.append(f"channel {ch}: P{q[0]:g}..P{q[1]:g} = {a:.4g}..{b:.4g}, trained on {lo:.4g}..{hi:.4g}")
    if not problems:
        return None
    return ("input intensities far outside the range the model was trained on (" + "; ".join(problems) +
            "): results are likely wrong. Check the bit depth and scaling of the data (values are never "
            "rescaled behind your back), or use a model trained with percentile normalisation.")


class _Progress:
    """One ``progress(done, total)`` over a call made of several tiled passes (frames x TTA
    transforms). The first pass's tile count is the unit: a rotated pass may plan a different
    number of tiles, and is scaled to it so that ``done`` only grows and ends at ``total``."""

    def __init__(self, callback, passes: int):
        self.callback, self.passes, self.i = callback, passes, 0
        self.per: int | None = None

    def tile_callback(self):
        def cb(done: int, total: int):
            if self.per is None:
                self.per = max(int(total), 1)
            per = self.per
            d = self.i * per + (per * done // max(total, 1))
            return self.callback(d, self.passes * per)
        return cb

    def pass_done(self) -> None:
        self.i += 1
