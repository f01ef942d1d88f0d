"""A bank's bias and activation, handed to the method that computes it, so they are
applied where the method stores its results (while they are in cache) rather than in
passes over the whole result afterwards: 1.9 of 6.2 ms a frame for a 3 -> 4 Conv2D at
720p on one core, 3.6 ms for a 3 -> 8 bank on FFT tiles.

The C loops' stores add a bias and apply a ReLU (NaN kept, as torch); ``in_stores`` says
whether that is all there is. Anything else runs as ``apply`` on blocks of the planar
result, each as it is finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IN_STORES = ("none", "relu")  # the activations the C loops apply as they store



@dataclass(frozen=True)
class Finish:
    """What turns a finished band of a bank's final result into the 8-bit frame a video or
    image output takes, run on each band while it is in cache instead of in passes over
    the whole float result afterwards (``stages.Chain.finish_in_bank``)."""

    # apply(band, out): band float (rows, W', C_out), a view, maybe strided; out uint8
    # (rows, W', channels) to fill
    apply: Callable[[np.ndarray, np.ndarray], object]
    channels: int
    # set where all of it is the encoder's common policy (saturate or abs over [0, 255]),
    # which the depthwise C kernels apply in their stores: whether |v| comes first
    absolute: bool | None = None
    nans: Callable[[int], object] | None = None  # counts the NaNs those stores met
    # 'l2' where a reduce {op: l2} of the bank's two channels comes first (then
    # channels == 1): the stores make each pixel's byte from sqrt(a² + b²), as cv2.magnitude
    reduce: str | None = None


@dataclass(frozen=True)
class Epilogue:
    apply: Callable[[np.ndarray], object]  # all of it, in place on a (C_out, rows, cols) block
    bias: np.ndarray | None  # float32 (C_out,), contiguous
    activation: str

    @property
    def in_stores(self) -> bool:
        """Whether the C loops' stores can do all of it (bias and a ReLU at most)."""
        return self.activation in IN_STORES

    @property
    def relu(self) -> bool:
        return self.activation == "relu"
