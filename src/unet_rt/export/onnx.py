"""ONNX export of a unet-rt model file, built directly from its numpy weights (no torch).

``export_onnx(model_file, tile)`` writes the network for ONE fixed tile size: the input is
``input`` float32 ``[batch, C, tile, tile]`` and the output ``logits`` float32
``[batch, K, o, o]`` with ``o = geometry.output_size(tile, depth, padding)``. Every shape is static
and every crop of the skip connections is a ``Slice`` with constant starts/ends, so the graph holds
no ``Shape``/``Gather`` arithmetic: this is what TensorRT (and any static-shape compiler) wants.

The graph does NOT normalise: it takes ``(x - mean) / std`` already applied (the shared
overlap-tile code does that once per image, see ``unet_rt.backends.tensorrt.make_tile_fn``). The
normalisation, architecture and class names travel in the ONNX ``metadata_props`` for reference.

Operators used (all in TensorRT's ONNX parser's supported set, opset 17): Conv, Relu, MaxPool,
ConvTranspose, Slice, Concat, and Cast (only for ``dtype="float16"``).

``dtype="float16"``: weights, biases and every activation are fp16; the graph's I/O stays fp32, with a
Cast right after the input and right before the output. TensorRT 11 networks are strongly typed
(its FP16 builder flag is gone), so this fp16 graph is how a fp16 engine is built there; TensorRT 10
accepts it too (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unet_rt.format import geometry
from unet_rt.format.model_file import ModelFile, atomic_write

__all__ = ["export_onnx", "ALLOWED_OPS", "OPSET", "INPUT_NAME", "OUTPUT_NAME"]

OPSET = 17
IR_VERSION = 8          # the IR version that goes with opset 17: readable by older runtimes too
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ALLOWED_OPS = frozenset({"Conv", "Relu", "MaxPool", "ConvTranspose", "Slice", "Concat", "Cast"})
FP16_MAX = 65504.0


def _check_tile(tile, arch: dict) -> int:
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)):
        raise TypeError(f"tile must be an int, got {type(tile).__name__}")
    tile = int(tile)
    depth, padding = int(arch["depth"]), arch.get("padding", "valid")
    # (geometry.is_valid_input also accepts some tiles whose output would be empty or negative for
    # depth < 4, e.g. 68 for depth 3: require a positive output here.)
    if not geometry.is_valid_input(tile, depth, padding) or geometry.output_size(tile, depth, padding) < 1:
        near = [i for i, o in geometry.valid_input_sizes(max(1, tile - 64), tile + 64, depth, padding) if o >= 1]
        hint = ", ".join(str(i) for i in near[:8]) or "none nearby"
        raise ValueError(f"tile {tile} is not a valid input size for a depth-{depth} {padding} U-Net "
                         f"(valid sizes near it: {hint})")
    return tile


def export_onnx(model_file: ModelFile, tile: int, path=None, dtype: str = "float32", batch: int = 1):
    """Build the fixed-shape ONNX graph of ``model_file`` (kind "weights") for ``tile`` x ``tile`` inputs.

    Returns the ``onnx.ModelProto``; when ``path`` is given also writes it there atomically.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ImportError(f"ONNX export needs the 'onnx' extra: pip install 'unet-rt[onnx]' ({e})") from None

    if not isinstance(model_file, ModelFile):
        raise TypeError(f"export_onnx needs a unet_rt.format.model_file.ModelFile, got {type(model_file).__name__}")
    if model_file.kind != "weights":
        raise ValueError(f"can only export a 'weights' model file to ONNX, this one is {model_file.kind!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    arch = model_file.arch
    cin, k, depth, base = (int(arch[n]) for n in ("in_channels", "classes", "depth", "base"))
    padding = arch.get("padding", "valid")
    tile = _check_tile(tile, arch)
    out = geometry.output_size(tile, depth, padding)
    from unet_rt.format.model_file import expected_shapes

    want = expected_shapes(arch)
    for name, shape in want.items():
        t = model_file.tensors.get(name)
        if t is None:
            raise ValueError(f"model file lacks tensor {name}")
        if tuple(t.shape) != shape:
            raise ValueError(f"tensor {name} has shape {tuple(t.shape)}, expected {shape}")
        if not np.all(np.isfinite(t)):
            raise ValueError(f"tensor {name} holds NaN or Inf")
        if dtype == "float16" and np.max(np.abs(t)) > FP16_MAX:
            raise ValueError(f"tensor {name} has values beyond the fp16 range (|w| > {FP16_MAX}): export it as float32")

    np_dtype = np.float16 if dtype == "float16" else np.float32
    pad = 1 if padding == "same" else 0
    nodes, inits = [], []
    counter = {"n": 0}

    def uniq(prefix: str) -> str:
        counter["n"] += 1
        return f"{prefix}_{counter['n']}"

    def weight(name: str) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(model_file.tensors[name], dtype=np_dtype), name))
        return name

    def conv(x: str, prefix: str, k_size: int = 3, relu: bool = True) -> str:
        y = uniq(prefix.replace(".", "_") + "_conv")
        p = pad if k_size == 3 else 0
        nodes.append(helper.make_node("Conv", [x, weight(prefix + ".weight"), weight(prefix + ".bias")], [y],
                                      name=y, kernel_shape=[k_size, k_size], strides=[1, 1],
                                      pads=[p, p, p, p], dilations=[1, 1], group=1))
        if not relu:
            return y
        z = uniq(prefix.replace(".", "_") + "_relu")
        nodes.append(helper.make_node("Relu", [y], [z], name=z))
        return z

    def const_i64(values, prefix: str) -> str:
        name = uniq(prefix)
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    # ---- graph ------------------------------------------------------------------------------
    x = INPUT_NAME
    if dtype == "float16":
        nodes.append(helper.make_node("Cast", [x], ["input_fp16"], name="cast_in", to=TensorProto.FLOAT16))
        x = "input_fp16"
    sizes = []          # spatial size of each skip tensor (static, computed here)
    skips = []
    s = tile
    for l in range(depth):
        x = conv(x, f"enc.{l}.conv1")
        x = conv(x, f"enc.{l}.conv2")
        s = s - 4 + 4 * pad
        skips.append(x)
        sizes.append(s)
        y = uniq(f"pool{l}")
        nodes.append(helper.make_node("MaxPool", [x], [y], name=y, kernel_shape=[2, 2], strides=[2, 2],
                                      pads=[0, 0, 0, 0]))
        x, s = y, s // 2
    x = conv(x, f"enc.{depth}.conv1")
    x = conv(x, f"enc.{depth}.conv2")
    s = s - 4 + 4 * pad
    # Dropout (training only) is the identity at inference: nothing to emit.
    for l in reversed(range(depth)):
        up = uniq(f"dec_{l}_up")
        nodes.append(helper.make_node("ConvTranspose", [x, weight(f"dec.{l}.up.weight"), weight(f"dec.{l}.up.bias")],
                                      [up], name=up, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
                                      dilations=[1, 1], group=1))
        s = 2 * s
        skip, ss = skips[l], sizes[l]
        if ss < s or (ss - s) % 2:
            raise AssertionError(f"internal geometry error: skip {ss} vs up-sampled {s}")  # cannot happen for valid tiles
        if ss != s:   # centre crop of the skip: a static Slice on H and W
            d = (ss - s) // 2
            cropped = uniq(f"dec_{l}_crop")
            nodes.append(helper.make_node("Slice", [skip, const_i64([d, d], f"dec_{l}_starts"),
                                                    const_i64([d + s, d + s], f"dec_{l}_ends"),
                                                    const_i64([2, 3], f"dec_{l}_axes"),
                                                    const_i64([1, 1], f"dec_{l}_steps")], [cropped], name=cropped))
            skip = cropped
        cat = uniq(f"dec_{l}_concat")
        nodes.append(helper.make_node("Concat", [skip, up], [cat], name=cat, axis=1))   # [cropped skip, up-sampled]
        x = conv(cat, f"dec.{l}.conv1")
        x = conv(x, f"dec.{l}.conv2")
        s = s - 4 + 4 * pad
    assert s == out, (s, out)
    if dtype == "float16":
        y = conv(x, "head", k_size=1, relu=False)
        nodes.append(helper.make_node("Cast", [y], [OUTPUT_NAME], name="cast_out", to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Conv", [x, weight("head.weight"), weight("head.bias")], [OUTPUT_NAME],
                                      name="head_conv", kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
                                      dilations=[1, 1], group=1))

    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [int(batch), cin, tile, tile])
    outp = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [int(batch), k, out, out])
    graph = helper.make_graph(nodes, f"unet_d{depth}_b{base}_{padding}_{tile}", [inp], [outp], initializer=inits)
    model = helper.make_model(graph, producer_name="unet-rt", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = (f"U-Net (Ronneberger et al. 2015), depth {depth}, base {base}, {padding} padding; "
                        f"input: normalised (x - mean) / std, {tile}x{tile}; output: logits {out}x{out}")
    meta = {
        "unet_rt.arch": json.dumps({"in_channels": cin, "classes": k, "depth": depth, "base": base, "padding": padding}),
        "unet_rt.normalization": json.dumps({k: [float(v) for v in model_file.normalization.get(k, [])]
                                             for k in ("mean", "std")}),
        "unet_rt.class_names": json.dumps([str(c) for c in model_file.class_names]),
        "unet_rt.tile_in": str(tile),
        "unet_rt.tile_out": str(out),
        "unet_rt.halo": str((tile - out) // 2),
        "unet_rt.dtype": dtype,
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    if path is not None:
        atomic_write(Path(path), model.SerializeToString())
    return model
