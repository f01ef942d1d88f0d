"""A model file's layers as read, in a form neither Keras nor ONNX: ``Conv``, ``Scale``,
``Act``, ``Skip`` and ``Unsupported``; and ``fold``, which makes them the steps a chain
runs (``Piece``), folding what folds exactly.

Folding (SPEC section 6):
- a per-channel scale and shift right after a conv, before its activation (a
  BatchNormalization), goes into that conv's kernel and bias: ``w·s``, ``b·s + t``;
- a scale before a conv (a Rescaling) goes into its kernel, and its offset into the bias
  only where the conv pads nothing (an offset does not commute with zero padding);
- an activation right after a conv that has none becomes the conv's own;
- anything else runs as its own per-channel step.
All of it in float64, so a folded bank is within SPEC's float32 bound of the layers run
one after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..activations import Activation

SUPPORTED_KERAS = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                   "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "Rescaling",
                   "Dropout", "SpatialDropout2D", "Identity")
SUPPORTED_ONNX = ("Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid",
                  "Tanh", "HardSigmoid", "HardSwish", "Identity", "Dropout")


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One layer of a model file: its name and type as the file has them, and the
    parameters the framework counts for it (Keras ``count_params()``)."""

    name: str
    op: str
    params: int = 0

    def __str__(self) -> str:
        return f"{self.name} ({self.op})"


@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    """A convolution (correlation, as the frameworks compute it): ``weights`` oihw
    ``(C_out, C_in/groups, kh, kw)`` float64, ``bias`` ``(C_out,)`` or None, and the
    BankOptions values of its geometry (padding, align, stride, dilation, mode, groups,
    activation). ``groups`` is the true number of groups (C_in for a depthwise conv)."""

    weights: np.ndarray
    bias: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    groups: int = 1

    def __post_init__(self) -> None:
        """A file's numbers agree with each other, or ValueError says which do not."""
        if self.weights.ndim != 4 or 0 in self.weights.shape:
            raise ValueError(f"a kernel of shape {self.weights.shape}; expected 4 non-empty "
                             "dimensions")
        c_out = self.weights.shape[0]
        if not 1 <= self.groups <= c_out or c_out % self.groups:
            raise ValueError(f"groups {self.groups} does not divide its {c_out} output "
                             "channels")
        if self.bias is not None and self.bias.size != c_out:
            raise ValueError(f"a bias of {self.bias.size} values for {c_out} output channels")

    @property
    def in_channels(self) -> int:
        return int(self.weights.shape[1] * self.groups)

    @property
    def activation(self) -> Activation:
        return self.options.get("activation", Activation())

    def pads_nothing(self) -> bool:
        """Whether the conv reads no padding on any frame: valid, explicit zeros, or
        'same' with a 1x1 kernel (whose total padding is always 0)."""
        padding = self.options.get("padding", "valid")
        if padding == "valid" or padding == [0, 0, 0, 0]:
            return True
        return padding == "same" and self.weights.shape[2:] == (1, 1)


@dataclass(frozen=True, kw_only=True)
class Scale(Layer):
    """``y = x·scale + shift`` per channel (``(C,)``, or ``(1,)`` for all channels):
    a BatchNormalization at inference (``folds='previous'``) or a Rescaling
    (``folds='next'``)."""

    scale: np.ndarray
    shift: np.ndarray
    folds: Literal["previous", "next"] = "previous"


@dataclass(frozen=True, kw_only=True)
class Act(Layer):
    """An activation layer."""

    activation: Activation


@dataclass(frozen=True, kw_only=True)
class Skip(Layer):
    """A layer that does nothing at inference (an input, a dropout, an identity)."""


@dataclass(frozen=True, kw_only=True)
class Unsupported(Layer):
    """A layer outside the supported set; an error only where it would be run."""

    reason: str = ""


@dataclass
class Piece:
    """One step of the chain a model becomes: a bank (``weights`` oihw, ``bias``,
    ``options``), a per-channel ``scale``/``shift``, or an ``activation``; ``layers`` are
    the file's layers it does, ``notes`` how those folded into it are done."""

    kind: Literal["bank", "scale", "activation"]
    layers: list[Layer]
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    activation: Activation = field(default_factory=Activation)
    notes: dict[str, str] = field(default_factory=dict)  # layer name -> how it is done

    @property
    def params(self) -> int:
        """What the framework counts for the layers this piece does."""
        return sum(layer.params for layer in self.layers)

    @property
    def name(self) -> str:
        return " + ".join(dict.fromkeys(layer.name for layer in self.layers))


def _in_channel(conv: Conv) -> np.ndarray:
    """For each (output channel, kernel input channel) of ``conv``'s weights, the input
    channel of the frame it reads: ``(C_out, C_in/groups)``."""
    c_out, per_group = conv.weights.shape[:2]
    group = np.arange(c_out) // (c_out // conv.groups)
    return group[:, None] * per_group + np.arange(per_group)[None, :]


def _per_channel(values: np.ndarray, channels: int, what: str) -> np.ndarray:
    if values.size == 1:
        return np.full(channels, float(values.reshape(-1)[0]))
    if values.size != channels:
        raise ValueError(f"{what} has {values.size} channels; the next conv reads {channels}")
    return values.reshape(-1).astype(np.float64)


def fold(layers: list[Layer]) -> list[Piece]:
    """The steps that compute ``layers`` (each supported) one after another; raises
    ValueError where two neighbours disagree on channels."""
    pieces: list[Piece] = []
    pending: list[Scale] = []  # scales before the next conv (Rescaling)
    open_bank: Piece | None = None  # the last bank while nothing has come after it

    def flush() -> None:
        for s in pending:
            pieces.append(Piece("scale", [s], scale=s.scale, shift=s.shift))
        pending.clear()

    for layer in layers:
        if isinstance(layer, Skip):
            continue
        if isinstance(layer, Scale) and layer.folds == "next":
            pending.append(layer)
            continue
        if isinstance(layer, Conv):
            piece = _conv_piece(layer, pending)
            if pending:  # what would not fold runs first
                keep = [s for s in pending if s not in piece.layers]
                for s in keep:
                    pieces.append(Piece("scale", [s], scale=s.scale, shift=s.shift))
                pending.clear()
            pieces.append(piece)
            open_bank = piece if piece.activation.name == "none" else None
            continue
        flush()
        if isinstance(layer, Scale):
            if open_bank is not None:
                _fold_after(open_bank, layer)
                continue
            pieces.append(Piece("scale", [layer], scale=layer.scale, shift=layer.shift))
        elif isinstance(layer, Act):
            if open_bank is not None and layer.activation.name != "none":
                open_bank.activation = layer.activation
                open_bank.options["activation"] = layer.activation
                open_bank.layers.append(layer)
                open_bank.notes[layer.name] = "the conv's activation"
                open_bank = None
                continue
            if layer.activation.name != "none":
                pieces.append(Piece("activation", [layer], activation=layer.activation))
        open_bank = None
    flush()
    return pieces


def _conv_piece(conv: Conv, before: list[Scale]) -> Piece:
    """A bank for ``conv``, with the scales just before it folded in where exact: every
    scale, and the offsets while the conv pads nothing; the scales not folded (from the
    first whose offset cannot) are left out of the piece's layers."""
    weights = conv.weights.astype(np.float64)
    bias = None if conv.bias is None else conv.bias.astype(np.float64)
    index = _in_channel(conv)
    folded: list[Layer] = []
    # compose x·s + t for the scales that fold, last first: each goes under the ones after
    for s in reversed(before):
        scale = _per_channel(s.scale, conv.in_channels, str(s))
        shift = _per_channel(s.shift, conv.in_channels, str(s))
        if shift.any() and not conv.pads_nothing():
            break  # this one and those before it run as their own steps
        if shift.any():
            extra = np.einsum("oikl,oi->o", weights, shift[index])
            bias = extra if bias is None else bias + extra
        weights = weights * scale[index][:, :, None, None]
        folded.insert(0, s)
    piece = Piece("bank", [*folded, conv], weights=weights, bias=bias,
                  options=dict(conv.options), activation=conv.activation)
    piece.notes.update({s.name: f"folded into {conv.name}'s kernel"
                        + (" and bias" if s.shift.any() else "") for s in folded})
    return piece


def _fold_after(piece: Piece, s: Scale) -> None:
    """A per-channel scale and shift after ``piece``'s bank (before any activation)
    folded into its kernel and bias."""
    assert piece.weights is not None
    c_out = piece.weights.shape[0]
    scale = _per_channel(s.scale, c_out, str(s))
    shift = _per_channel(s.shift, c_out, str(s))
    piece.weights = piece.weights * scale[:, None, None, None]
    bias = np.zeros(c_out) if piece.bias is None else piece.bias
    piece.bias = bias * scale + shift
    piece.layers.append(s)
    piece.notes[s.name] = "folded into the conv's kernel and bias"


def batch_norm(name: str, op: str, gamma: np.ndarray | None, beta: np.ndarray | None,
               mean: np.ndarray, var: np.ndarray, eps: float, params: int) -> Scale:
    """A BatchNormalization at inference as ``x·s + t``: ``s = γ / sqrt(var + ε)``,
    ``t = β − mean·s`` (in float64)."""
    mean = np.asarray(mean, np.float64).reshape(-1)
    var = np.asarray(var, np.float64).reshape(-1)
    g = np.ones_like(mean) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    b = np.zeros_like(mean) if beta is None else np.asarray(beta, np.float64).reshape(-1)
    scale = g / np.sqrt(var + eps)
    return Scale(name=name, op=op, params=params, scale=scale, shift=b - mean * scale)

