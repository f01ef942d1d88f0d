"""Trained models from their own files: ``load_model`` and the ``model`` stage.

A model file (Keras ``.keras`` / ``.h5``, ``.onnx``) is read into its layers
(``layers.py``), the chosen ones are checked against the supported set and folded into
the steps a chain runs: filter banks with each conv's own kernel, bias, padding, strides,
dilation, groups and activation, and per-channel scale/shift or activation steps where
something does not fold.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import apply
from ..errors import ConfigError
from ..options import BankOptions, OptionError
from ..paths import open_regular
from .file import ModelFile
from .layers import (
    SUPPORTED_KERAS,
    SUPPORTED_ONNX,
    Conv,
    Layer,
    Piece,
    Skip,
    Unsupported,
    fold,
)

__all__ = ["Model", "ModelFile", "Piece", "choose", "load_model", "read_model"]

MAX_BYTES = 1 << 30  # a model file read whole into memory: at most 1 GiB
FORMATS = (".keras", ".h5", ".hdf5", ".onnx")
# values in one array of a model: as for a weights file, the most outputs, 64 inputs and
# the largest kernel the default limits allow (stages.py passes the run's own)
MAX_VALUES = 64 * 64 * 63 * 63


def read_model(path: str | os.PathLike[str], max_values: int = MAX_VALUES) -> ModelFile:
    """The layers of the model file at ``path`` (by its extension), each array of at most
    ``max_values`` numbers, checked before it is read; raises ConfigError naming the file
    and the place in it."""
    where = os.fspath(path)
    suffix = os.path.splitext(where)[1].lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{where}: not a model file this reads (expected "
                          f"{', '.join(FORMATS)}); tensors from .safetensors or .npz go in "
                          "a bank's weights: {file, key}")
    with open_regular(where, ConfigError, "model file", MAX_BYTES,
                      cannot="cannot read model") as f:
        data = f.read()
    if suffix == ".onnx":
        from .onnx_file import read_onnx

        return read_onnx(where, data, max_values)
    from .keras_file import read_keras

    return read_keras(where, data, max_values)


def choose(model: ModelFile, layers: list[str] | None = None) -> list[Layer]:
    """The layers to run: all of them (the model must be one chain), or those named in
    ``layers`` (in the model's order); each must be supported. Raises ConfigError."""
    where = model.path
    if layers is None:
        if model.chain_error:
            raise ConfigError(f"{where}: {model.chain_error}; run a chain of its layers "
                              "with layers: [...]")
        chosen = model.layers
    else:
        names = model.names
        for name in layers:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}: no layer {name!r}{hint}; it has "
                                  f"{_listed(names)}")
        if len(set(layers)) != len(layers):
            raise ConfigError(f"{where}: layers names a layer twice: {layers}")
        order = [names.index(name) for name in layers]
        if order != sorted(order):
            raise ConfigError(f"{where}: layers {layers}: list them in the model's order "
                              f"({[names[i] for i in sorted(order)]})")
        chosen = [layer for layer in model.layers if layer.name in set(layers)]
    for layer in chosen:
        if isinstance(layer, Unsupported):
            supported = SUPPORTED_ONNX if model.kind.startswith("ONNX") else SUPPORTED_KERAS
            why = f" ({layer.reason})" if layer.reason else ""
            raise ConfigError(f"{where}: layer {layer.name!r} ({layer.op}){why} is not "
                              f"supported; supported: {', '.join(supported)}"
                              + ("" if layers else "; or run others with layers: [...]"))
    if all(isinstance(layer, Skip) for layer in chosen):
        raise ConfigError(f"{where}: no layer to run among {[layer.name for layer in chosen]}")
    return chosen


def _listed(names: list[str], shown: int = 12) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", … ({len(names)} layers)"


def pieces_of(model: ModelFile, layers: list[str] | None = None) -> list[Piece]:
    """``choose`` then ``fold``: the steps of the chosen layers, each bank's options
    checked (its geometry bounded) as a config's are. Raises ConfigError."""
    try:
        pieces = fold(choose(model, layers))
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{model.path}: {e}") from None
    channels = model.in_channels if layers is None else None  # what reaches the first
    for piece in pieces:
        if piece.kind == "bank":
            try:
                BankOptions(**bank_options(piece))
            except OptionError as e:
                raise ConfigError(f"{model.path}: {piece.name}: {e}") from None
            conv = next(layer for layer in piece.layers if isinstance(layer, Conv))
            if channels is not None and conv.in_channels != channels:
                # the file disagrees with itself: a config error, not the frames' (exit 3)
                raise ConfigError(f"{model.path}: {piece.name} reads {conv.in_channels} "
                                  f"channels, and {channels} reach it in the model itself")
            channels = int(conv.weights.shape[0])
    return pieces


def bank_options(piece: Piece) -> dict[str, Any]:
    """The BankOptions values of a bank piece (its weights are oihw correlation kernels)."""
    return {"op": "correlate", "layout": "oihw", **piece.options}


def scale_step(piece: Piece) -> Callable[[np.ndarray], np.ndarray]:
    """``x·scale + shift`` per channel on float32 ``(H, W, C)`` frames."""
    assert piece.scale is not None and piece.shift is not None
    scale = piece.scale.astype(np.float32).reshape(-1)
    shift = piece.shift.astype(np.float32).reshape(-1)

    def fn(x: np.ndarray) -> np.ndarray:
        if scale.size not in (1, x.shape[2]) or shift.size not in (1, x.shape[2]):
            raise ConfigError(f"{piece.name}: {max(scale.size, shift.size)} channels of "
                              f"scale and shift, {x.shape[2]} reach it")
        y = np.multiply(x, scale, dtype=np.float32)
        y += shift
        return y

    return fn


def activation_step(piece: Piece) -> Callable[[np.ndarray], np.ndarray]:
    """The piece's activation on a float32 copy of ``(H, W, C)`` frames."""
    return lambda x: apply(np.array(x, dtype=np.float32), piece.activation)


@dataclass
class Model:
    """What ``load_model`` returns: the model's chosen layers as steps, each a
    ``FilterBank`` or a per-channel function; ``model(frame)`` runs them all,
    ``(H, W, C_in)`` uint8/uint16/float -> float32 ``(H', W', C_out)``."""

    file: ModelFile
    pieces: list[Piece]
    steps: list[tuple[Piece, Callable[[np.ndarray], np.ndarray]]]

    @property
    def banks(self) -> list[Any]:
        """The FilterBanks, in order."""
        return [fn for piece, fn in self.steps if piece.kind == "bank"]

    @property
    def num_params(self) -> int:
        """Parameters as the framework counts them, for the layers used."""
        return sum(piece.params for piece in self.pieces)

    def __iter__(self) -> Iterator[tuple[Piece, Callable[[np.ndarray], np.ndarray]]]:
        return iter(self.steps)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame)
        x = x if x.ndim == 3 else x[:, :, None]
        for i, (piece, fn) in enumerate(self.steps):
            if i == 0 and piece.kind != "bank":
                x = x.astype(np.float32)
            x = fn(x)
        return np.asarray(x, dtype=np.float32)

    def __repr__(self) -> str:
        return (f"Model({self.file.path!r}, {self.file.kind}, "
                f"{[p.name for p in self.pieces]}, {self.num_params} parameters)")


def load_model(path: str | os.PathLike[str], layers: list[str] | None = None, *,
               method: str = "auto", dtype: str = "float32") -> Model:
    """The model at ``path`` (.keras, .h5, .onnx) as a chain of banks: every layer (the
    model must be one chain) or the named ``layers``. ``method`` and ``dtype`` are every
    bank's (SPEC section 1). Raises ConfigError (a ValueError) naming the file, and the
    layer and its type for a layer outside the supported set."""
    from ..bank import FilterBank

    model = read_model(path)
    pieces = pieces_of(model, layers)
    steps: list[tuple[Piece, Callable[[np.ndarray], np.ndarray]]] = []
    for piece in pieces:
        if piece.kind == "bank":
            fn: Any = FilterBank(piece.weights, piece.bias, **bank_options(piece),
                                 method=method, dtype=dtype)
        elif piece.kind == "scale":
            fn = scale_step(piece)
        else:
            fn = activation_step(piece)
        steps.append((piece, fn))
    return Model(model, pieces, steps)
