"""Small model and weight files made by hand, in each framework's own layout, for the
hostile cases and the loaders' fuzzing (no Keras or torch import: milliseconds each).

``keras_file`` writes a Keras 3 ``.keras`` (a zip of config.json, metadata.json and
model.weights.h5, ``layers/<path>/vars/<i>`` with the layer's name in ``vars``'s
``name``), ``h5_file`` a full-model ``.h5`` (``model_config`` and
``model_weights/<layer>/<layer>/kernel``), ``onnx_file`` a Conv + Relu graph; each holds
one 3x3 conv of 3 -> 4 channels with a bias, then a ReLU. ``tests/test_model.py`` checks
the real frameworks' files against the frameworks themselves.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KERNEL = np.random.default_rng(7).normal(size=(3, 3, 3, 4)).astype(np.float32)  # hwio
BIAS = np.linspace(-1, 1, 4).astype(np.float32)


def keras_config(padding: str = "same") -> dict[str, Any]:
    """A Keras 3 Functional model's config: input, Conv2D, ReLU."""
    def history(name: str, channels: int) -> list[dict[str, Any]]:
        return [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": [None, 24, 30, channels], "keras_history": [name, 0, 0]}}], "kwargs": {}}]

    layers = [
        {"class_name": "InputLayer", "name": "input_layer", "inbound_nodes": [],
         "config": {"batch_shape": [None, 24, 30, 3], "name": "input_layer"}},
        {"class_name": "Conv2D", "name": "conv1", "inbound_nodes": history("input_layer", 3),
         "config": {"name": "conv1", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1],
                    "padding": padding, "data_format": "channels_last",
                    "dilation_rate": [1, 1], "groups": 1, "activation": "linear",
                    "use_bias": True}},
        {"class_name": "ReLU", "name": "relu1", "inbound_nodes": history("conv1", 4),
         "config": {"name": "relu1", "max_value": None, "negative_slope": 0.0,
                    "threshold": 0.0}},
    ]
    return {"class_name": "Functional", "config": {
        "name": "functional", "layers": layers, "input_layers": ["input_layer", 0, 0],
        "output_layers": ["relu1", 0, 0]}}


def keras_weights(kernel: Callable[[h5py.Group, str], Any] | None = None) -> bytes:
    """model.weights.h5; ``kernel(group, name)`` makes the conv's kernel dataset itself."""
    out = io.BytesIO()
    with h5py.File(out, "w") as h5:
        for path, name in (("input_layer", "input_layer"), ("conv2d", "conv1"),
                           ("re_lu", "relu1")):
            h5.create_group(f"layers/{path}/vars").attrs["name"] = name
        conv = h5["layers/conv2d/vars"]
        if kernel is None:
            conv.create_dataset("0", data=KERNEL)
        else:
            kernel(conv, "0")
        conv.create_dataset("1", data=BIAS)
        h5.create_group("vars").attrs["name"] = "functional"
    return out.getvalue()


def keras_file(path: Path, config: Any = None, meta: Any = None, weights: bytes | None = None,
               members: dict[str, bytes] | None = None) -> Path:
    """A .keras zip; ``config``/``meta`` (objects, or raw bytes) and ``weights`` replace
    the usual members, ``members`` adds or replaces any (deflated)."""
    def raw(value: Any, default: Any) -> bytes:
        value = default if value is None else value
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    parts = {"metadata.json": raw(meta, {"keras_version": "3.15.1"}),
             "config.json": raw(config, keras_config()),
             "model.weights.h5": keras_weights() if weights is None else weights,
             **(members or {})}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def h5_file(path: Path, kernel: Callable[[h5py.Group, str], Any] | None = None,
            config: Any = None) -> Path:
    """A full-model .h5 as Keras writes it (model_config, model_weights)."""
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "3.15.1"
        h5.attrs["model_config"] = json.dumps(keras_config() if config is None else config)
        weights = h5.create_group("model_weights")
        for name in ("input_layer", "relu1"):
            weights.create_group(name).attrs["weight_names"] = np.array([], np.float64)
        conv = weights.create_group("conv1")
        conv.attrs["weight_names"] = np.array(["conv1/kernel", "conv1/bias"], dtype=object)
        inner = conv.create_group("conv1")
        if kernel is None:
            inner.create_dataset("kernel", data=KERNEL)
        else:
            kernel(inner, "kernel")
        inner.create_dataset("bias", data=BIAS)
    return path


def onnx_file(path: Path, weights: Any = None, **conv: Any) -> Path:
    """Conv (3 -> 4, 3x3, pads 1) then Relu; ``weights`` a TensorProto replacing W,
    ``conv`` the Conv node's attributes over the defaults."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(KERNEL.transpose(3, 2, 0, 1).copy(), "W") \
        if weights is None else weights
    b = numpy_helper.from_array(BIAS, "B")
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], **conv}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def safetensors_file(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"conv.weight": KERNEL.transpose(3, 2, 0, 1).copy(), "conv.bias": BIAS}, path)
    return path


def npz_file(path: Path) -> Path:
    np.savez_compressed(path, weight=KERNEL.transpose(3, 2, 0, 1), bias=BIAS)
    return path


def model_config(tmp: Path, model: Path, extra: str = "") -> Path:
    """A config running ``model`` (its first output channel as the video)."""
    path = tmp / "c.yaml"
    path.write_text(f"stages:\n  - {{type: model, file: {model.name}}}\n{extra}"
                    "encode: {select: [0]}\n")
    return path


def weights_config(tmp: Path, weights: Path, key: str, bias_key: str) -> Path:
    """A bank whose weights and bias come from ``weights`` (oihw, 3 -> 4)."""
    path = tmp / "c.yaml"
    path.write_text(
        "stages:\n  - type: bank\n    op: correlate\n"
        f"    weights: {{file: {weights.name}, key: {key}}}\n"
        f"    bias: {{file: {weights.name}, key: {bias_key}}}\n"
        "encode: {select: [0]}\n")
    return path
