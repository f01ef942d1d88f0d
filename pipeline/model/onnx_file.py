"""ONNX models with the ``onnx`` package (no runtime): a chain of ``Conv`` nodes and what
goes between them, NCHW. A node's first input is the tensor it works on; its other
inputs must be constants (initializers or ``Constant`` nodes): weights, biases, the
statistics of a BatchNormalization, the bounds of a Clip.

``Conv``: W ``(M, C/group, kH, kW)`` (oihw), B ``(M,)``; ``pads`` ``[top, left, bottom,
right]``; ``auto_pad`` SAME_UPPER puts an odd pixel after (our ``align: keras``),
SAME_LOWER before (``align: opencv``), VALID none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..activations import HARD, Activation
from ..errors import ConfigError
from .file import ModelFile
from .layers import Act, Conv, Layer, Skip, Unsupported, batch_norm

_FLOAT_MAX = float(np.finfo(np.float32).max)
_NUMBERS = frozenset({1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13})  # TensorProto: float .. uint64


def read_onnx(where: str, data: bytes, max_values: int) -> ModelFile:
    """The layers of the ONNX model in ``data`` (the bytes of the file ``where``); each
    tensor of at most ``max_values`` numbers, checked against the bytes it holds before
    it is made an array. Tensors kept outside the file (external data) are refused."""
    import onnx  # here: only a run with an ONNX model pays for it
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, OSError, RuntimeError, RecursionError) as e:
        raise ConfigError(f"{where}: not a readable ONNX model ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    try:
        return _read(where, model, max_values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: {e}") from None


def _read(where: str, model: Any, max_values: int) -> ModelFile:
    import onnx

    graph = model.graph
    constants = {t.name: _tensor(t, f"initializer {t.name!r}", max_values)
                 for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: the graph has {len(inputs)} inputs; a chain has one")
    dims = inputs[0].type.tensor_type.shape.dim
    in_channels = dims[1].dim_value or None if len(dims) == 4 else None
    if len(dims) not in (0, 4):
        raise ConfigError(f"{where}: input {inputs[0].name!r} has {len(dims)} dimensions; "
                          "expected 4 (N, C, H, W)")
    layers: list[Layer] = []
    current, error = inputs[0].name, None
    for index, node in enumerate(graph.node):
        name = node.name or (node.output[0] if node.output else f"node {index}")
        try:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant" and "value" in attrs:
                if node.output:
                    constants[node.output[0]] = _tensor(attrs["value"], "its value",
                                                        max_values)
                continue
            data_inputs = [i for i in node.input if i and i not in constants]
            if error is None and (data_inputs != [current] or node.input[0] != current):
                error = (f"node {name!r} ({node.op_type}) reads {data_inputs or 'no tensor'}, "
                         "not just the output of the node before it: the graph is not a chain")
            layers.append(_layer(node, name, attrs, constants))
        except (KeyError, ValueError, IndexError, TypeError, AttributeError,
                OverflowError) as e:
            raise ConfigError(f"{where}: node {name!r} ({node.op_type}): cannot read it: "
                              f"{e}") from None
        if node.output:
            current = node.output[0]
    outputs = [o.name for o in graph.output]
    if error is None and outputs != [current]:
        error = f"the graph's outputs are {outputs}, not the last node's {current!r}"
    return ModelFile(where, f"ONNX (opset {_opset(model)})", layers, in_channels, error)


def _tensor(t: Any, what: str, max_values: int) -> np.ndarray:
    """A TensorProto as an array, once its type, shape and the bytes it holds agree and
    fit ``max_values``; raises ValueError naming ``what``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
        raise ValueError(f"{what} keeps its data outside the file (ONNX external data); "
                         "save the model with its data inside (onnx.save(model, path, "
                         "save_as_external_data=False))")
    if t.data_type not in _NUMBERS:
        raise ValueError(f"{what} holds {onnx.TensorProto.DataType.Name(t.data_type)}"
                         if t.data_type in TensorProto.DataType.values() else
                         f"{what} has an unknown data type {t.data_type}")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} has negative dimensions {dims}")
    count = math.prod(dims)
    if count > max_values:
        raise ValueError(f"{what} of shape {dims} holds {count} values; limit {max_values} "
                         "(raise with --max-kernel/--max-outputs)")
    itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    held = len(t.raw_data) // itemsize if t.raw_data else \
        len(getattr(t, helper.tensor_dtype_to_field(t.data_type)))
    if held != count or (t.raw_data and len(t.raw_data) != count * itemsize):
        raise ValueError(f"{what} of shape {dims} declares {count} values and holds {held}")
    return numpy_helper.to_array(t)


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
               default=0)


def _const(constants: dict[str, np.ndarray], node: Any, i: int) -> np.ndarray | None:
    """The constant at input ``i`` of ``node``, None where the input is absent."""
    if i >= len(node.input) or not node.input[i]:
        return None
    if node.input[i] not in constants:
        raise ValueError(f"input {node.input[i]!r} is not a constant")
    return np.asarray(constants[node.input[i]], dtype=np.float64)


def _layer(node: Any, name: str, attrs: dict[str, Any],
           constants: dict[str, np.ndarray]) -> Layer:
    op = node.op_type
    if op == "Conv":
        w = _const(constants, node, 1)
        if w is None or w.ndim != 4:
            return Unsupported(name=name, op=op, reason="a Conv that is not 2-D")
        b = _const(constants, node, 2)
        group = int(attrs.get("group", 1))
        options: dict[str, Any] = {
            "stride": list(attrs.get("strides", [1, 1])),
            "dilation": list(attrs.get("dilations", [1, 1])),
            **_padding(attrs),
        }
        depthwise = group > 1 and w.shape[1] == 1
        options.update({"mode": "depthwise"} if depthwise else
                       {"mode": "dense", "groups": group})
        return Conv(name=name, op=op, params=int(w.size + (0 if b is None else b.size)),
                    weights=w, bias=b, options=options, groups=group)
    if op == "BatchNormalization":
        if int(attrs.get("training_mode", 0)):
            return Unsupported(name=name, op=op, reason="training_mode 1")
        stats = [_const(constants, node, i) for i in range(1, 5)]
        if any(s is None for s in stats):
            raise ValueError("expected scale, B, mean and var")
        gamma, beta, mean, var = stats
        return batch_norm(name, op, gamma, beta, mean, var, float(attrs.get("epsilon", 1e-5)),
                          int(sum(s.size for s in stats)))
    activation = _activation(op, node, attrs, constants)
    if activation is not None:
        return Act(name=name, op=op, activation=activation)
    if op in ("Identity", "Dropout"):
        return Skip(name=name, op=op)
    return Unsupported(name=name, op=op)


def _padding(attrs: dict[str, Any]) -> dict[str, Any]:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        return {"padding": "valid"}
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return {"padding": "same", "align": "keras" if auto == "SAME_UPPER" else "opencv"}
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise ValueError(f"pads {pads}: expected 4 values")
    top, left, bottom, right = pads
    return {"padding": [top, bottom, left, right]}


def _activation(op: str, node: Any, attrs: dict[str, Any],
                constants: dict[str, np.ndarray]) -> Activation | None:
    if op in ("Relu", "Sigmoid", "Tanh"):
        return Activation(op.lower())
    if op == "HardSwish":
        return Activation("hard_swish")
    if op == "LeakyRelu":
        return Activation("leaky_relu", (float(attrs.get("alpha", 0.01)),))
    if op == "HardSigmoid":
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        return Activation("hard_sigmoid", (alpha, beta) if (alpha, beta) != HARD else HARD)
    if op == "Clip":  # bounds as inputs (opset 11+) or attributes (before)
        lo, hi = _const(constants, node, 1), _const(constants, node, 2)
        low = float(lo) if lo is not None else float(attrs.get("min", -math.inf))
        high = float(hi) if hi is not None else float(attrs.get("max", math.inf))
        if low == 0 and high >= _FLOAT_MAX:
            return Activation("relu")
        return Activation("clip", (low, high))
    return None
