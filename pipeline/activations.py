"""Elementwise activations: what a bank applies after its bias, and what a model file's
activation layers are (SPEC section 1, extended for trained models).

``parse_activation`` turns what a user or a model file writes into an ``Activation``;
``apply`` computes it in place on a float array. The functions are the frameworks' own
definitions, in float32 where the input is float32:

- ``leaky_relu(a)``: ``x if x >= 0 else a·x`` (Keras ``LeakyReLU``, ONNX ``LeakyRelu``);
- ``hard_sigmoid(a, b)``: ``clip(a·x + b, 0, 1)``; the bare name is Keras 3's and
  PyTorch's ``relu6(x + 3) / 6``, i.e. a = 1/6, b = 0.5 (ONNX's default is a = 0.2);
- ``hard_swish``: ``x · hard_sigmoid(x)`` (a = 1/6, b = 0.5: Keras ``hard_silu``, PyTorch
  ``Hardswish``, ONNX ``HardSwish``);
- ``silu``: ``x · sigmoid(x)`` (Keras ``silu``/``swish``, PyTorch ``SiLU``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

ACTIVATIONS = ("none", "relu", "abs", "square", "sigmoid", "tanh", "clip(lo, hi)",
               "leaky_relu(alpha)", "hard_sigmoid[(alpha, beta)]", "hard_swish", "silu")
_PLAIN = ("relu", "abs", "square", "sigmoid", "tanh", "hard_swish", "silu")
_CALL = re.compile(r"^([a-z_]+)\(\s*([^()]*?)\s*\)$")
_ARITY = {"clip": 2, "leaky_relu": 1, "hard_sigmoid": 2}
HARD = (1.0 / 6.0, 0.5)  # hard_sigmoid's slope and offset in Keras 3 and PyTorch


class ActivationError(ConfigError):
    """An activation that cannot be parsed; the bank's option parser says which option."""

    def __init__(self, value: Any, allowed: str) -> None:
        super().__init__(f"activation={value!r} is not allowed; expected {allowed}")
        self.value = value


@dataclass(frozen=True)
class Activation:
    """An elementwise function applied after the bias, with its parameters ``args``
    (clip: lo, hi; leaky_relu: alpha; hard_sigmoid: alpha, beta)."""

    name: str = "none"
    args: tuple[float, ...] = ()

    @property
    def lo(self) -> float:
        return self.args[0]

    @property
    def hi(self) -> float:
        return self.args[1]

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{a:g}' for a in self.args)})"


def parse_activation(value: Any) -> Activation:
    """An ``Activation`` from its written form (``relu``, ``clip(0, 6)``, ``leaky_relu(0.2)``);
    raises ActivationError."""
    allowed = " | ".join(ACTIVATIONS)
    if isinstance(value, Activation):
        return value
    if value is None:
        return Activation()
    if not isinstance(value, str):
        raise ActivationError(value, allowed)
    text = value.strip().lower()
    if text in ("none", "linear", "identity"):
        return Activation()
    if text in _PLAIN:
        return Activation(text)
    if text == "hard_sigmoid":
        return Activation(text, HARD)
    match = _CALL.match(text)
    if match and match.group(1) in _ARITY:
        name = match.group(1)
        try:
            args = tuple(float(v) for v in match.group(2).split(","))
        except ValueError:
            raise ActivationError(value, allowed) from None
        if len(args) == _ARITY[name] and all(map(math.isfinite, args)) and \
                (name != "clip" or args[0] <= args[1]):
            return Activation(name, args)
    raise ActivationError(value, allowed + " (finite numbers; clip with lo <= hi)")


def apply(y: np.ndarray, act: Activation) -> np.ndarray:
    """The activation, in place on the float array ``y``; returns ``y``. IEEE results
    throughout, as torch gives them, without numpy's warnings: a square past float32's
    range is inf, ``-inf · sigmoid(-inf)`` is NaN (a frame's inf and NaN reach exactly
    the outputs that read them, SPEC section 1)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _apply(y, act)


def _apply(y: np.ndarray, act: Activation) -> np.ndarray:
    name = act.name
    if name == "relu":
        np.maximum(y, 0, out=y)
    elif name == "abs":
        np.abs(y, out=y)
    elif name == "square":
        np.square(y, out=y)
    elif name == "sigmoid":
        _sigmoid(y, y)
    elif name == "silu":
        y *= _sigmoid(y, np.empty_like(y))
    elif name == "tanh":
        np.tanh(y, out=y)
    elif name == "clip":
        np.clip(y, act.lo, act.hi, out=y)
    elif name == "leaky_relu":
        np.multiply(y, y.dtype.type(act.args[0]), out=y, where=y < 0)
    elif name == "hard_sigmoid":
        _hard_sigmoid(y, y, act.args)
    elif name == "hard_swish":
        y *= _hard_sigmoid(y, np.empty_like(y), HARD)
    return y


def _sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` into ``out`` with numpy's vectorised exp: 3.4x scipy's expit on
    float32 here (3x480x640: 1.2 against 4.1 ms), as close to the float64 value (9e-8
    absolute) and relatively close in both tails, which silu's ``x·sigmoid(x)`` needs (the
    form ``0.5·tanh(x/2) + 0.5`` was 4x faster but lost the left tail to cancellation);
    NaN stays NaN, ±inf give 1 and 0."""
    np.negative(x, out=out)
    np.exp(out, out=out)  # inf below x = -88 (apply's errstate): the result is 0, rightly
    out += out.dtype.type(1)
    return np.reciprocal(out, out=out)


def _hard_sigmoid(x: np.ndarray, out: np.ndarray, args: tuple[float, ...]) -> np.ndarray:
    """``clip(alpha·x + beta, 0, 1)`` into ``out``; alpha 1/6 is a division by 6, as the
    frameworks compute it."""
    kind = x.dtype.type
    alpha, beta = args
    if alpha == HARD[0]:
        np.divide(x, kind(6.0), out=out)
    else:
        np.multiply(x, kind(alpha), out=out)
    out += kind(beta)
    return np.clip(out, 0, 1, out=out)
