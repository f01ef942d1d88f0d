"""BankSpec: a filter bank resolved for one frame format, the input of every method;
``Method``: what a bank needs of the method that computes it."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .epilogue import Epilogue, Finish

INTEGERS = (np.dtype(np.uint8), np.dtype(np.uint16))  # what cameras and video files give


class Method(Protocol):
    """A method built for one BankSpec (all set-up done): direct, separable, fft."""

    fused: bool  # whether results come with the bank's bias and activation applied

    def fuse(self, epilogue: Epilogue) -> bool:
        """Take on the bank's bias and activation where the method can apply them as it
        stores results (in cache); returns ``fused``."""

    def finish_bands(self, finish: Finish) -> bool:
        """Apply ``finish`` to each band of the result as it is done (after the fused
        epilogue), and return uint8 ``(H', W', finish.channels)`` frames from then on;
        False where the method has no bands (the caller then finishes whole frames)."""

    def load_mix(self, mix: np.ndarray) -> bool:
        """From now on take frames of S channels, each pixel mixed by ``mix`` (C_in, S)
        into the C_in channels of the spec as rows are loaded (a ``convert: gray`` stage
        folded into the bank); False where the method cannot (the caller converts)."""

    def takes(self, dtype: np.dtype) -> bool:
        """Whether frames of ``dtype`` go in as they are (besides spec.dtype): uint8 or
        uint16 converted as rows are loaded or copied into buffers, never a whole-frame
        float copy first."""

    def reads_views(self) -> bool:
        """Whether ``x`` may be any strided (H, W, C_in) view, such as the planar result
        of the bank before (``(C, H, W)`` seen as ``(H, W, C)``): the method copies it
        into its own buffers anyway, so a contiguous copy first would be a wasted pass."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in), contiguous unless ``reads_views``, of spec.dtype or a dtype
        it ``takes`` ->
        (H', W', C_out) of spec.dtype."""


@dataclass(frozen=True, eq=False)
class BankSpec:
    """Everything a method needs, fixed for a whole stream.

    ``weights``: ``(C_out, C_in/groups, kh, kw)`` float64, already turned for correlation
    (a convolve bank arrives here with its kernels rotated 180°), so every method computes
    ``y[r, c, o] = Σ_{i,j,ch} W[o, ch, i, j] · xp[r·sh + i·dh, c·sw + j·dw, g(o)·cg + ch]``
    on the frame padded by ``pads`` = (top, bottom, left, right) with ``border``.
    ``shared``: one 2-D kernel applied to every channel (depthwise, M = 1, all kernels equal).
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    weights: np.ndarray
    groups: int
    shared: bool
    pads: tuple[int, int, int, int]
    border: str
    border_value: float
    stride: tuple[int, int]
    dilation: tuple[int, int]
    dtype: np.dtype
    source: np.dtype = np.dtype(np.float32)  # frames given (uint8/uint16: read as they are)

    @property
    def c_in(self) -> int:
        return self.in_shape[2]

    @property
    def c_out(self) -> int:
        return self.out_shape[2]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.weights.shape[2], self.weights.shape[3]

    @property
    def in_per_group(self) -> int:
        return self.weights.shape[1]

    @property
    def out_per_group(self) -> int:
        return self.c_out // self.groups

    @property
    def unit_steps(self) -> bool:
        """Stride 1 and dilation 1 on both axes."""
        return self.stride == (1, 1) and self.dilation == (1, 1)

    @property
    def padded_shape(self) -> tuple[int, int]:
        t, b, left, r = self.pads
        return self.in_shape[0] + t + b, self.in_shape[1] + left + r

    def group_of(self, o: int) -> int:
        return o // self.out_per_group
