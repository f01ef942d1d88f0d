"""Keras models from their own files, without Keras or TensorFlow: a Keras 3 ``.keras``
(a zip of ``config.json`` and ``model.weights.h5``) or a full-model ``.h5`` (Keras 3's
legacy save and Keras 2's: a ``model_config`` attribute and ``model_weights/<layer>/…``).

The config says each layer's type and options, in the model's order; the weights file
holds each layer's variables in the layer's own order (Conv2D: kernel, bias; BatchNorm:
gamma, beta, moving mean, moving variance, each of the first two only where the layer
has it). Kernels are hwio: ``(kh, kw, C_in/groups, filters)``, depthwise ``(kh, kw, C_in, M)``.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from ..activations import HARD, Activation
from ..archive import open_zip, read_member
from ..errors import ConfigError
from ..weightfiles import to_oihw
from .hdf5 import Node, is_hdf5, read_hdf5
from .layers import (
    Act,
    Conv,
    Layer,
    Scale,
    Skip,
    Unsupported,
    batch_norm,
)
from .file import ModelFile

_NOOPS = ("Dropout", "SpatialDropout2D", "Identity", "GaussianNoise", "GaussianDropout")


CONFIG_BYTES = 16 << 20  # config.json inflated (a real model's is kilobytes)
META_BYTES = 1 << 20  # metadata.json inflated
TOTAL = 4  # a model's arrays, in all: this many times the values one array may hold


def read_keras(where: str, data: bytes, max_values: int) -> ModelFile:
    """The layers of the Keras model in ``data`` (the bytes of the file ``where``); each
    array of at most ``max_values`` numbers (``TOTAL`` times that in all)."""
    f = io.BytesIO(data)
    total = TOTAL * max_values
    if zipfile.is_zipfile(f):
        with open_zip(where, f) as z:
            names = z.namelist()
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ConfigError(f"{where}: not a Keras 3 model (a .keras zip holds "
                                  f"config.json and model.weights.h5; this one {names[:4]})")
            config = _json(where, read_member(where, z, "config.json", CONFIG_BYTES),
                           "config.json")
            meta = _json(where, read_member(where, z, "metadata.json", META_BYTES),
                         "metadata.json") if "metadata.json" in names else {}
            weights = read_member(where, z, "model.weights.h5", total * 8 + (16 << 20))
        version = str(_typed(where, "metadata.json", meta, dict).get("keras_version", "3"))
        h5 = read_hdf5(f"{where}: model.weights.h5", weights, max_values, total)
        variables = _keras3_variables(h5)
        kind = "Keras 3 .keras"
    elif not is_hdf5(data):
        raise ConfigError(f"{where}: neither a .keras zip nor an HDF5 file")
    else:
        h5 = read_hdf5(where, data, max_values, total)
        if "model_config" not in h5.attrs:
            raise ConfigError(f"{where}: holds weights only (no model_config); save the whole "
                              "model (model.save('m.keras')), or name arrays with "
                              "weights: {file, key}")
        config = _json(where, h5.attrs["model_config"], "model_config")
        version = _text(h5.attrs.get("keras_version", "2"))
        if "model_weights" not in h5:
            raise ConfigError(f"{where}: the model was saved without its weights")
        variables = _h5_variables(h5["model_weights"])
        kind = f"Keras {version.split('.')[0]} .h5"
    return _model(where, kind, config, variables, version)


def _json(where: str, raw: Any, part: str) -> Any:
    try:
        return json.loads(_text(raw))
    except RecursionError:
        raise ConfigError(f"{where}: {part}: nested too deep to be a model's config") from None
    except ValueError as e:
        raise ConfigError(f"{where}: {part} is not JSON ({e})") from None


def _typed(where: str, place: str, value: Any, kind: type) -> Any:
    """``value`` where it is a ``kind`` (dict or list), else ConfigError naming the place."""
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        raise ConfigError(f"{where}: {place}: expected {expected}, got {_shown(value)}")
    return value


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _keras3_variables(h5: Node) -> dict[str, Any]:
    """Layer name -> a function giving its arrays in order: ``layers/<path>/vars/<i>``,
    the layer's name in the attribute ``name`` of ``vars`` (the path is from its class)."""
    found: dict[str, Any] = {}
    for top in ("layers", "_layer_checkpoint_dependencies"):
        if top not in h5:
            continue
        for path, group in h5[top].items():
            if "vars" not in group:
                continue
            store = group["vars"]
            name = _text(store.attrs.get("name", path))
            found[name] = lambda s=store: [np.asarray(s[str(i)]) for i in range(len(s))]
    return found


def _h5_variables(weights: Node) -> dict[str, Any]:
    """Layer name -> its arrays in the order of the attribute ``weight_names``."""
    found: dict[str, Any] = {}
    for name in weights:
        group = weights[name]
        names = [_text(n) for n in group.attrs.get("weight_names", [])]
        found[name] = lambda g=group, ns=names: [np.asarray(g[n]) for n in ns]
    return found


def _model(where: str, kind: str, config: Any, variables: dict[str, Any],
           version: str) -> ModelFile:
    part = "config.json" if kind.endswith(".keras") else "model_config"
    top = config.get("class_name") if isinstance(config, dict) else None
    if top not in ("Sequential", "Functional", "Model"):
        raise ConfigError(f"{where}: a {_shown(top) if top else 'model'} model; expected a "
                          "Sequential or a Functional model")
    body = _typed(where, f"{part}: config", config.get("config", {}), dict)
    entries = []
    for i, entry in enumerate(_typed(where, f"{part}: config.layers",
                                     body.get("layers", []), list)):
        place = f"{part}: config.layers[{i}]"
        entry = _typed(where, place, entry, dict)
        entries.append((entry, _typed(where, f"{place}.config", entry.get("config", {}), dict)))
    legacy = version.startswith(("1.", "2."))
    channels_first = any(cfg.get("data_format") == "channels_first" for _, cfg in entries)
    layers: list[Layer] = []
    in_channels = None
    for entry, cfg in entries:
        cls = str(entry.get("class_name"))
        name = str(entry.get("name") or cfg.get("name"))
        try:
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if shape and in_channels is None and len(shape) == 4:
                in_channels = int(shape[1 if channels_first else -1])
            arrays = variables[name]() if name in variables else []
            layers.extend(_layer(cls, name, cfg, arrays, legacy, channels_first))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: layer {name!r} ({cls}): cannot read it: {e}") from None
    try:
        error = _not_a_chain(body, [entry for entry, _ in entries]) \
            if top != "Sequential" else None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ConfigError(f"{where}: {part}: the layers' inbound_nodes are malformed "
                          f"({type(e).__name__}: {e})") from None
    return ModelFile(where, kind, layers, in_channels, error)


def _layer(cls: str, name: str, cfg: dict[str, Any], arrays: list[np.ndarray],
           legacy: bool, channels_first: bool) -> list[Layer]:
    """The layers (two for a SeparableConv2D) that a Keras layer is."""
    count = sum(int(a.size) for a in arrays)

    def need(n: int) -> None:
        if len(arrays) != n:
            raise ValueError(f"expected {n} weight arrays, the file has {len(arrays)}")

    if cls == "InputLayer" or cls in _NOOPS:
        return [Skip(name=name, op=cls)]
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        activation = _activation(cfg.get("activation", "linear"), legacy)
        if activation is None:
            return [Unsupported(name=name, op=cls, params=count,
                                reason=f"activation {_shown(cfg.get('activation'))}")]
        use_bias = bool(cfg.get("use_bias", True))
        geometry = {"padding": str(cfg.get("padding", "valid")).lower(), "align": "keras",
                    "stride": list(_pair(cfg.get("strides", 1))),
                    "dilation": list(_pair(cfg.get("dilation_rate", 1)))}
        if cls == "Conv2D":
            need(1 + use_bias)
            groups = int(cfg.get("groups", 1))
            options = {**geometry, "mode": "dense", "groups": groups, "activation": activation}
            return [Conv(name=name, op=cls, params=count, weights=to_oihw(arrays[0], "hwio",
                         False), bias=arrays[1] if use_bias else None, options=options,
                         groups=groups)]
        if cls == "DepthwiseConv2D":
            need(1 + use_bias)
            options = {**geometry, "mode": "depthwise", "activation": activation}
            return [Conv(name=name, op=cls, params=count, weights=to_oihw(arrays[0], "hwio",
                         True), bias=arrays[1] if use_bias else None, options=options,
                         groups=arrays[0].shape[2])]
        need(2 + use_bias)
        depth, point = arrays[0], arrays[1]
        return [
            Conv(name=name, op="SeparableConv2D (depthwise part)", params=int(depth.size),
                 weights=to_oihw(depth, "hwio", True), groups=depth.shape[2],
                 options={**geometry, "mode": "depthwise"}),
            Conv(name=name, op="SeparableConv2D (pointwise part)",
                 params=count - int(depth.size), weights=to_oihw(point, "hwio", False),
                 bias=arrays[2] if use_bias else None,
                 options={"padding": "valid", "mode": "dense", "activation": activation}),
        ]
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in ((1,) if channels_first else (-1, 3)):
            return [Unsupported(name=name, op=cls, params=count,
                                reason=f"axis {axis} is not the channel axis")]
        scale, center = bool(cfg.get("scale", True)), bool(cfg.get("center", True))
        need(2 + scale + center)
        gamma = arrays[0] if scale else None
        beta = arrays[int(scale)] if center else None
        return [batch_norm(name, cls, gamma, beta, arrays[-2], arrays[-1],
                           float(cfg.get("epsilon", 1e-3)), count)]
    if cls in ("Activation", "ReLU", "LeakyReLU"):
        if cls == "Activation":
            activation = _activation(cfg.get("activation"), legacy)
        elif cls == "LeakyReLU":
            activation = Activation("leaky_relu", (float(cfg.get("negative_slope",
                                                                 cfg.get("alpha", 0.3))),))
        else:
            activation = _relu(cfg)
        if activation is None:
            what = cfg.get("activation") if cls == "Activation" else cfg
            return [Unsupported(name=name, op=cls, reason=f"settings {_shown(what)}")]
        return [Act(name=name, op=cls, activation=activation)]
    if cls == "Rescaling":
        scale = np.asarray(cfg.get("scale", 1.0), np.float64).reshape(-1)
        offset = np.asarray(cfg.get("offset", 0.0), np.float64).reshape(-1)
        if channels_first and max(scale.size, offset.size) > 1:
            return [Unsupported(name=name, op=cls, reason="per-channel values on "
                                "channels_first tensors (they broadcast along columns)")]
        return [Scale(name=name, op=cls, scale=scale, shift=offset, folds="next")]
    return [Unsupported(name=name, op=cls, params=count)]


def _pair(value: Any) -> tuple[int, int]:
    items = [value, value] if isinstance(value, int) else list(value)
    return int(items[0]), int(items[1])


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _relu(cfg: dict[str, Any]) -> Activation | None:
    """``keras.layers.ReLU(max_value, negative_slope, threshold)`` where it is one of ours."""
    top = cfg.get("max_value")
    slope = float(cfg.get("negative_slope", 0.0) or 0.0)
    if float(cfg.get("threshold", 0.0) or 0.0) != 0.0 or (top is not None and slope):
        return None
    if top is not None:
        return Activation("clip", (0.0, float(top)))
    return Activation("leaky_relu", (slope,)) if slope else Activation("relu")


def _activation(value: Any, legacy: bool) -> Activation | None:
    """A Keras activation (a name, or its serialised form) as ours; None where we have
    none. Keras 2's hard_sigmoid is 0.2·x + 0.5; Keras 3's is relu6(x + 3) / 6."""
    if isinstance(value, dict):
        value = value.get("config") if isinstance(value.get("config"), str) else \
            value.get("class_name")
    if value is None:
        return Activation()
    name = str(value).lower()
    simple = {"linear": "none", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh",
              "silu": "silu", "swish": "silu", "hard_silu": "hard_swish",
              "hard_swish": "hard_swish"}
    if name in simple:
        return Activation(simple[name])
    if name == "relu6":
        return Activation("clip", (0.0, 6.0))
    if name == "leaky_relu":
        return Activation("leaky_relu", (0.2,))
    if name == "hard_sigmoid":
        return Activation("hard_sigmoid", (0.2, 0.5) if legacy else HARD)
    return None


def _inbound(nodes: Any) -> list[list[str]]:
    """For each call of a layer, the names of the layers its inputs come from (Keras 3's
    ``{"args": [{"config": {"keras_history": [name, …]}}]}`` and Keras 2's
    ``[[[name, node, tensor, kwargs], …]]``)."""
    calls = []
    for node in nodes or []:
        names: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                history = value.get("config", {}).get("keras_history") \
                    if isinstance(value.get("config"), dict) else None
                if history:
                    names.append(str(history[0]))
                    return
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                if value and isinstance(value[0], str) and len(value) >= 3:
                    names.append(value[0])  # Keras 2: [name, node index, tensor index, {}]
                    return
                for v in value:
                    walk(v)

        walk(node.get("args", []) if isinstance(node, dict) else node)
        calls.append(names)
    return calls


def _not_a_chain(body: dict[str, Any], entries: list[dict[str, Any]]) -> str | None:
    """Why a Functional model (its config's ``config``, ``body``) is not one chain of
    layers (each reading the one before, called once), or None."""
    previous = None
    for entry in entries:
        name = str(entry.get("name") or entry.get("config", {}).get("name"))
        calls = _inbound(entry.get("inbound_nodes"))
        if previous is not None:
            if len(calls) != 1 or calls[0] != [previous]:
                sources = " and ".join(", ".join(c) or "nothing" for c in calls) or "nothing"
                return (f"layer {name!r} ({entry.get('class_name')}) reads {sources}, not "
                        f"just the layer before it ({previous!r}): the model is not a chain")
        previous = name
    outputs = _inbound([[body.get("output_layers", [])]])
    if outputs and outputs[0] and outputs[0] != [previous]:
        return f"the model's outputs are {outputs[0]}, not its last layer {previous!r}"
    return None


__all__ = ["read_keras"]
