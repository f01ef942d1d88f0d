"""What a model file holds, once read: ``ModelFile``."""

from __future__ import annotations

from dataclasses import dataclass

from .layers import Layer


@dataclass(frozen=True)
class ModelFile:
    """A model file's layers in order. ``in_channels``: what its input takes, where the
    file says; ``chain_error``: why the whole model is not one chain of layers (a branch,
    a layer called twice), or None; running only chosen ``layers:`` does not need one."""

    path: str
    kind: str  # "Keras 3 .keras", "Keras 2 .h5", "ONNX"...
    layers: list[Layer]
    in_channels: int | None
    chain_error: str | None = None

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(layer.name for layer in self.layers))
