"""napari plugin (npe2 manifest ``src/unet_rt/napari/napari.yaml``): a reader and two widgets.

- Reader: PNG, TIFF (ImageJ/OME pixel sizes become the layer scale), OME-Zarr (the image, and every
  label image of its NGFF ``labels`` group as a Labels layer). OME-Zarr levels are opened lazily
  (zarr arrays; several levels as one multiscale layer); only labels inside the image's own
  ``labels/`` are read (a symlink to a zarr elsewhere is skipped); scales have one entry per data
  dimension and only finite positive sizes. Files that ``unet-rt segment`` wrote open as Labels
  layers when their name says so (``*-labels*``, ``*.labels.*``) or they are a zarr's labels.
- "Segment with unet-rt" (``SegmentWidget``): runs ``unet_rt.Engine`` on the chosen Image layer in
  a worker thread (``napari.qt.threading.thread_worker``) with a progress bar and a Cancel button,
  and adds a Labels layer with the image's scale. Engines are cached per model file and settings.
  The Engine's warnings (e.g. intensities far outside the model's training range) are shown.
- "Fine-tune with unet-rt" (``FinetuneWidget``): fine-tunes a model (``unet-rt train --init``) on
  the chosen Image layer and a Labels layer painted on it, in a worker thread with progress: label
  0 (unpainted) is not annotated (ignored), the background label (default 1) is background, every
  other label is one object. The new model's segmentation is added as a Labels layer.

napari is needed only to show them (``pip install 'unet-rt[napari]'``); ``get_reader``,
``read_layers`` and ``segment_with_unet_rt`` need only the runtime.
"""
from __future__ import annotations

import functools
import math
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from unet_rt.io.images import is_zarr, open_image

_EXT = (".tif", ".tiff", ".png")
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "isbi2012-unet16.plan"


# ---------------------------------------------------------------------------------------------- reader
def get_reader(path):
    """npe2 reader hook: a reader function for paths we read, else None."""
    if isinstance(path, list):
        return None
    p = Path(path)
    if is_zarr(p) or p.suffix.lower() in _EXT:
        return read_layers
    return None


def clean_scale(scale, ndim: int, what: str = "") -> tuple | None:
    """A napari scale: one entry per data dimension (extra leading entries dropped, missing ones
    1.0), and every size that is not finite and positive replaced by 1.0 with a warning. None
    when nothing is known."""
    if not scale:
        return None
    s = [float(v) for v in scale][-ndim:] if ndim else []
    s = [1.0] * (ndim - len(s)) + s
    bad = [v for v in s if not (math.isfinite(v) and v > 0)]
    if bad:
        warnings.warn(f"{what}: pixel sizes {bad} are not finite positive numbers; using 1 instead", stacklevel=2)
        s = [v if (math.isfinite(v) and v > 0) else 1.0 for v in s]
    return tuple(s)


def _scale(img) -> tuple | None:
    axes = img.axes.replace("C", "") if img.rgb else img.axes
    if not img.pixel_size:
        return None
    return tuple(float(img.pixel_size.get(a, (1.0, None))[0]) for a in axes)


def _ngff(path: Path):
    """(levels as zarr arrays, axis letters, scale of level 0 or None, channel names) of the NGFF
    multiscale image (or label image) at ``path``, opened lazily with zarr itself (ome-zarr's
    reader yields a label image's parent image first)."""
    from unet_rt.io.images import _import_zarr, _ngff_multiscales

    zarr = _import_zarr()
    g = zarr.open_group(str(path), mode="r")
    ms = _ngff_multiscales(g)
    if not ms:
        raise ValueError(f"{path}: no OME-Zarr (NGFF) multiscales metadata")
    m = ms[0]
    levels = [g[d["path"]] for d in m["datasets"]]
    ndim = levels[0].ndim
    axes_meta = m.get("axes") or [{"name": n} for n in "tczyx"[5 - ndim:]]
    axes = "".join((a["name"] if isinstance(a, dict) else str(a)).upper() for a in axes_meta)
    scale = None
    for t in (m["datasets"][0].get("coordinateTransformations") or []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
    for t in (m.get("coordinateTransformations") or []):        # a multiscale-wide scale multiplies
        if t.get("type") == "scale" and scale is not None and len(t["scale"]) == len(scale):
            scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    attrs = dict(g.attrs)
    omero = attrs.get("omero") or attrs.get("ome", {}).get("omero") or {}
    names = [c.get("label") for c in omero.get("channels", [])] or None
    return levels, axes, scale, names


def _inside(child: Path, root: Path) -> bool:
    try:
        child.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _label_dirs(p: Path) -> list[Path]:
    """The label images of an OME-Zarr's ``labels`` group that lie inside the image itself."""
    lab_root = p / "labels"
    if not lab_root.is_dir() or not _inside(lab_root, p):
        return []
    from unet_rt.io.images import _import_zarr

    try:
        listed = dict(_import_zarr().open_group(str(lab_root), mode="r").attrs)
        listed = listed.get("labels") or listed.get("ome", {}).get("labels")
    except Exception:  # not a zarr group: look at its folders
        listed = None
    names = listed if listed else sorted(q.name for q in lab_root.iterdir() if q.is_dir())
    return [lab_root / n for n in names if (lab_root / n).is_dir() and _inside(lab_root / n, p)]


def _layer_data(levels):
    return levels[0] if len(levels) == 1 else list(levels)


def _read_ngff(p: Path, as_labels: bool) -> list:
    levels, axes, scale, names = _ngff(p)
    ndim = levels[0].ndim
    kw = {"name": p.name.split(".")[0] if not as_labels else p.name}
    if len(levels) > 1:
        kw["multiscale"] = True
    if as_labels or "C" not in axes:
        sc = clean_scale(scale, ndim, str(p))
        if sc:
            kw["scale"] = sc
        return [(_layer_data(levels), kw, "labels" if as_labels else "image")]
    c = axes.index("C")
    kw["channel_axis"] = c
    kw["name"] = names if names and len(names) == levels[0].shape[c] else [f"{kw['name']} c{i}" for i in range(levels[0].shape[c])]
    sc = clean_scale([s for i, s in enumerate(scale)
                      if i != c] if scale and len(scale) == ndim else scale, ndim - 1, str(p))
    if sc:
        kw["scale"] = sc
    return [(_layer_data(levels), kw, "image")]


def _is_ngff_labels(p: Path) -> bool:
    try:
        from unet_rt.io.images import _import_zarr

        attrs = dict(_import_zarr().open_group(str(p), mode="r").attrs)
    except Exception:
        return False
    return "image-label" in attrs or "image-label" in attrs.get("ome", {}) or p.parent.name == "labels"


def read_layers(path) -> list:
    """[(data, kwargs, layer_type)] for napari."""
    p = Path(path)
    if is_zarr(p) and p.is_dir():
        from unet_rt.io.images import _import_zarr, _ngff_multiscales

        try:
            node = _import_zarr().open(str(p), mode="r")
            ngff = not hasattr(node, "shape") and bool(_ngff_multiscales(node))
        except Exception:
            ngff = False
        if ngff:
            labels = _is_ngff_labels(p)
            layers = _read_ngff(p, labels)
            if not labels:
                layers += [_read_ngff(q, True)[0] for q in _label_dirs(p)]
            return layers
    img = open_image(p)
    name = p.name.split(".")[0]
    kw = {"name": name}
    sc = _scale(img)
    looks_like_labels = "-labels" in p.name or ".labels." in p.name
    if looks_like_labels and np.issubdtype(img.data.dtype, np.integer):
        sc = clean_scale(sc, img.data.ndim, str(p))
        if sc:
            kw["scale"] = sc
        return [(img.data, kw, "labels")]
    if img.rgb:
        kw["rgb"] = True
        sc = clean_scale(sc, img.data.ndim - 1, str(p))
    elif "C" in img.axes:
        c = img.axes.index("C")
        kw["channel_axis"] = c
        kw["name"] = img.channel_names or [f"{name} c{i}" for i in range(img.data.shape[c])]
        sc = clean_scale(tuple(s for a, s in zip(img.axes, sc) if a != "C") if sc else None, img.data.ndim - 1, str(p))
    else:
        sc = clean_scale(sc, img.data.ndim, str(p))
    if sc:
        kw["scale"] = sc
    return [(img.data, kw, "image")]


# ---------------------------------------------------------------------------------------------- segmenting
def _model_path(model) -> Path:
    return Path(model) if str(model) not in ("", ".") else SHIPPED_MODEL


@functools.lru_cache(maxsize=4)
def _cached_engine(path: str, stamp: tuple, tile: int, threads: int):
    from unet_rt.engine import Engine

    return Engine(path, tile=tile or None, threads=threads or None)


def engine_for(model, tile: int = 0, threads: int = 0):
    """The Engine for a model file and settings, cached (a file rewritten in place, e.g. by
    fine-tuning, gets a new one: its size and modification time are part of the key)."""
    p = _model_path(model).resolve()
    st = p.stat()
    return _cached_engine(str(p), (st.st_size, st.st_mtime_ns), int(tile or 0), int(threads or 0))


def _axes_for(a: np.ndarray, in_channels: int) -> str:
    if a.ndim == 3 and a.shape[-1] in (3, 4) and in_channels == 1:
        return "YXC"
    if in_channels > 1:
        return "ZYXC"[4 - a.ndim:]
    return "TZYX"[4 - a.ndim:]


def _as_input(image) -> np.ndarray:
    a = np.asarray(image[0] if isinstance(image, list) else image)   # a multiscale layer: level 0
    if a.dtype not in (np.uint8, np.uint16, np.float32):
        a = a.astype(np.float32)
    return a


def run_segmentation(eng, image, *, instances: bool = False, tta: bool = False, progress=None) -> np.ndarray:
    """Labels (classes, or instances with ``instances``) of an image layer's data with ``eng``.
    The Engine's warnings reach the caller (napari shows them)."""
    a = _as_input(image)
    axes = _axes_for(a, eng.in_channels)
    if instances:
        return eng.instances(a, tta=tta, axes=axes, progress=progress)
    return eng.segment(a, tta=tta, axes=axes, progress=progress)


def segment_with_unet_rt(image: "napari.types.ImageData", model: Path = Path(""),  # noqa: F821
                         tile: int = 0, tta: bool = False, threads: int = 0) -> "napari.types.LabelsData":  # noqa: F821
    """Segment an image with a unet-rt model file (empty: the shipped ISBI 2012 model), in the
    calling thread (scripts; the widget runs the same in a worker). tile 0: chosen per image;
    tta: average over the 8 rotations/flips (8x slower). 2-D images and stacks (frames segmented
    one by one); an RGB layer is converted to grey for a single-channel model (with a note)."""
    return run_segmentation(engine_for(model, tile, threads), image, tta=tta)


def _put_labels(viewer, name: str, data, like) -> object:
    """Add (or update) the Labels layer ``name`` with the geometry of the image layer ``like``
    (napari's scale of an RGB layer has no colour axis already)."""
    geo = {"scale": tuple(like.scale), "translate": tuple(like.translate)}
    if name in viewer.layers:
        lay = viewer.layers[name]
        lay.data = data
        lay.scale, lay.translate = geo["scale"], geo["translate"]
        return lay
    return viewer.add_labels(data, name=name, **geo)


# ---------------------------------------------------------------------------------------------- widgets
def _qt():
    try:
        from magicgui import widgets
        from napari.qt.threading import thread_worker
        from qtpy.QtCore import QObject, Signal
    except ImportError as e:
        raise ImportError(f"the unet-rt widgets need napari: pip install 'unet-rt[napari]' ({e})") from None
    return widgets, thread_worker, QObject, Signal


def _signals():
    """A QObject with a ``progress(done, total)`` signal: emitted from the worker thread, delivered
    in the GUI thread (a queued connection)."""
    _, _, QObject, Signal = _qt()

    class _Sig(QObject):
        progress = Signal(int, int)

    return _Sig()


class _JobWidget:
    """Shared parts of both widgets: a Run and a Cancel button, a progress bar, a status line, a
    worker thread, the Engine's warnings shown in the status line and as napari notifications."""

    title = ""

    def _build(self, viewer, fields: list):
        widgets, _, _, _ = _qt()
        self.viewer = viewer
        self.run_button = widgets.PushButton(text=self.title)
        self.cancel_button = widgets.PushButton(text="Cancel", enabled=False)
        self.progress_bar = widgets.ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = widgets.Label(value="")
        self.container = widgets.Container(widgets=fields + [self.run_button, self.cancel_button,
                                                             self.progress_bar, self.status])
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.worker = None
        self._cancel = False
        self.warnings: list[str] = []       # the last run's warnings (also shown as notifications)
        self._sig = _signals()
        self._sig.progress.connect(self._on_progress)
        self.native = self.container.native
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(lambda *_: self.container.reset_choices())

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.max = max(int(total), 1)
        self.progress_bar.value = min(int(done), self.progress_bar.max)

    def _report(self, done: int, total: int) -> bool:
        """The worker's progress callback: False (cancel) once Cancel was pressed."""
        self._sig.progress.emit(int(done), int(total))
        return not self._cancel

    def _on_warning(self, w) -> None:
        # superqt's workers emit showwarning's arguments: (message, category, filename, lineno, ...)
        msg = str(w[0] if isinstance(w, tuple) else getattr(w, "message", w))
        self.warnings.append(msg)
        self.status.value = f"warning: {msg}"
        from napari.utils.notifications import show_warning

        # a notification, not warnings.warn: the worker's warning capture is process-wide while it runs
        show_warning(msg)

    def _launch(self, func, on_done) -> None:
        _, thread_worker, _, _ = _qt()
        self._cancel = False
        self.warnings = []
        self.progress_bar.value = 0
        worker = thread_worker(func, ignore_errors=True)()   # errors: shown in the status line
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_error)
        worker.warned.connect(self._on_warning)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled, self.cancel_button.enabled = False, True
        worker.start()

    def _on_error(self, e) -> None:
        from unet_rt import _core

        if isinstance(e, _core.Cancelled) or self._cancel:
            self.status.value = "cancelled"
        else:
            self.status.value = f"error: {e}"

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def cancel(self, *_) -> None:
        self._cancel = True
        if self.worker is not None:
            self.worker.quit()
        self.status.value = "cancelling..."

    @property
    def running(self) -> bool:
        return self.worker is not None


def _layers_of(viewer, kind: str):
    import napari

    cls = napari.layers.Image if kind == "image" else napari.layers.Labels
    return lambda _w=None: [lay for lay in viewer.layers if isinstance(lay, cls)]


class SegmentWidget(_JobWidget):
    """Segment the chosen Image layer with a unet-rt model in a worker thread."""

    title = "Segment"

    def __init__(self, napari_viewer):
        widgets, _, _, _ = _qt()
        self.image = widgets.ComboBox(label="image", choices=_layers_of(napari_viewer, "image"))
        self.model = widgets.FileEdit(label="model", value="", filter="*.plan",
                                      tooltip="a unet-rt model file (empty: the shipped ISBI 2012 model)")
        self.tile = widgets.SpinBox(label="tile", value=0, min=0, max=4096, tooltip="0: chosen per image")
        self.instances = widgets.CheckBox(label="instances", value=False,
                                          tooltip="objects (watershed of the calibrated decision) instead of classes")
        self.tta = widgets.CheckBox(label="tta", value=False, tooltip="average over the 8 rotations/flips (8x slower)")
        self.threads = widgets.SpinBox(label="threads", value=0, min=0, max=256, tooltip="0: all cores")
        self._build(napari_viewer, [self.image, self.model, self.tile, self.instances, self.tta, self.threads])

    def start(self, *_) -> None:
        layer = self.image.value
        if layer is None:
            self.status.value = "no image layer"
            return
        try:
            eng = engine_for(self.model.value, self.tile.value, self.threads.value)
        except (OSError, ValueError, ImportError) as e:
            self.status.value = f"error: {e}"
            return
        data, instances, tta = layer.data, self.instances.value, self.tta.value
        self.status.value = f"segmenting {layer.name}..."

        def job():
            return run_segmentation(eng, data, instances=instances, tta=tta, progress=self._report)

        def done(labels):
            if self._cancel:
                self.status.value = "cancelled"
                return
            _put_labels(self.viewer, f"{layer.name} labels", labels, layer)
            self.status.value = f"done: {layer.name} labels" + "".join(f"; warning: {m}" for m in self.warnings)

        self._launch(job, done)


def labels_for_training(painted: np.ndarray, background: int = 1, ignore: int = 0xFFFF) -> np.ndarray:
    """A painted napari Labels layer as training labels with an ignore label: 0 (unpainted) ->
    ``ignore``, ``background`` -> 0, every other value -> one object (1..n, uint16)."""
    a = np.asarray(painted)
    out = np.full(a.shape, ignore, np.uint16)
    out[a == background] = 0
    objs = np.unique(a[(a != 0) & (a != background)])
    if objs.size >= ignore - 1:
        raise ValueError(f"{objs.size} painted objects: at most {ignore - 2}")
    for k, v in enumerate(objs, start=1):
        out[a == v] = k
    return out


class FinetuneWidget(_JobWidget):
    """Fine-tune a model on the chosen Image layer and a Labels layer painted on it."""

    title = "Fine-tune"

    def __init__(self, napari_viewer):
        widgets, _, _, _ = _qt()
        self.image = widgets.ComboBox(label="image", choices=_layers_of(napari_viewer, "image"))
        self.labels = widgets.ComboBox(label="labels", choices=_layers_of(napari_viewer, "labels"),
                                       tooltip="0: not annotated (ignored); the background label: background; "
                                               "any other label: one object")
        self.background = widgets.SpinBox(label="background label", value=1, min=1, max=65535)
        self.model = widgets.FileEdit(label="start from", value="", filter="*.plan",
                                      tooltip="the model to fine-tune (empty: the shipped ISBI 2012 model)")
        self.steps = widgets.SpinBox(label="steps", value=100, min=1, max=100000)
        self.tile = widgets.SpinBox(label="tile", value=0, min=0, max=4096,
                                    tooltip="training tile (0: 380, or 76 for a depth-2 model)")
        self.output = widgets.FileEdit(label="save to", mode="d", value="",
                                       tooltip="run directory (empty: a new temporary one)")
        self._build(napari_viewer, [self.image, self.labels, self.background, self.model, self.steps, self.tile,
                                    self.output])
        self.model_path = None

    def start(self, *_) -> None:
        img_layer, lab_layer = self.image.value, self.labels.value
        if img_layer is None or lab_layer is None:
            self.status.value = "choose an image layer and a labels layer painted on it"
            return
        image = _as_input(img_layer.data)
        painted = np.asarray(lab_layer.data[0] if lab_layer.multiscale else lab_layer.data)
        if image.ndim != 2 or painted.shape != image.shape:
            self.status.value = f"fine-tuning takes one 2-D image and labels of its size (got {image.shape}, {painted.shape})"
            return
        try:
            labels = labels_for_training(painted, int(self.background.value))
        except ValueError as e:
            self.status.value = f"error: {e}"
            return
        if not (labels == 0).any():
            self.status.value = f"paint some background with label {self.background.value} first"
            return
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            self.status.value = "fine-tuning needs the train extra: pip install 'unet-rt[train]'"
            return
        init = _model_path(self.model.value)
        out = Path(str(self.output.value)) if str(self.output.value) not in ("", ".") else \
            Path(tempfile.mkdtemp(prefix="unet-rt-finetune-"))
        steps, tile = int(self.steps.value), int(self.tile.value)
        self.status.value = f"fine-tuning {init.name} on {img_layer.name}..."

        def job():
            from unet_rt.format import model_file
            from unet_rt.io.images import write_image

            depth = model_file.load(init).arch["depth"]
            t = tile or (380 if depth >= 4 else 76)
            data = out / "data"
            write_image(data / "image" / "0.tif", image)
            write_image(data / "label" / "0.tif", labels)
            run = out / "run"
            n = 1
            while (run / "checkpoint.json").exists():
                n += 1
                run = out / f"run{n}"
            # the trainer runs in its own process: torch stays out of napari's (its triton import
            # clashes with the LLVM of Mesa's OpenGL there), and Cancel can stop it at once
            cmd = [sys.executable, "-m", "unet_rt.train.train", "--data", str(data), "--out", str(run),
                   "--init", str(init), "--steps", str(steps), "--tile", str(t), "--ignore-label", "65535",
                   "--val-slices", "", "--no-progress", "--progress-lines", "--warmup", str(max(1, min(20, steps // 5)))]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            tail = []
            for line in proc.stdout:
                if line.startswith("progress "):
                    _, step, total = line.split()
                    if not self._report(int(step), int(total)):
                        proc.terminate()
                else:
                    tail = (tail + [line.rstrip()])[-5:]
            rc = proc.wait()
            if self._cancel:
                raise RuntimeError("cancelled")
            if rc != 0 or not (run / "model.plan").exists():
                raise RuntimeError(f"training ended with status {rc}: " + " / ".join(tail))
            eng = engine_for(run / "model.plan")
            return run / "model.plan", run_segmentation(eng, image)

        def done(result):
            path, seg = result
            self.model_path = path
            _put_labels(self.viewer, f"{img_layer.name} fine-tuned", seg, img_layer)
            self.status.value = f"done: {path}"

        self._launch(job, done)

    def _on_error(self, e) -> None:
        super()._on_error(e)
        if self._cancel:
            self.status.value = "cancelled (the run can be continued with unet-rt train --resume)"


def segment_widget(napari_viewer):
    """npe2 widget command: the "Segment with unet-rt" dock widget."""
    w = SegmentWidget(napari_viewer)
    w.container.unet_rt_widget = w
    return w.container


def finetune_widget(napari_viewer):
    """npe2 widget command: the "Fine-tune with unet-rt" dock widget."""
    w = FinetuneWidget(napari_viewer)
    w.container.unet_rt_widget = w
    return w.container

