"""Leaf types: the fixed format a source announces once, and the frames it delivers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameFormat:
    """Shape and type of every frame of a stream: ``(height, width, channels)`` of ``dtype``."""

    height: int
    width: int
    channels: int
    dtype: str = "uint8"
    fps: float = 30.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @classmethod
    def of(cls, array: np.ndarray, fps: float = 30.0) -> FrameFormat:
        """The format of one frame ``(H, W)`` or ``(H, W, C)``."""
        h, w = array.shape[:2]
        c = array.shape[2] if array.ndim == 3 else 1
        return cls(h, w, c, array.dtype.name, fps)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.channels} {self.dtype} @ {self.fps:g} fps"


@dataclass(frozen=True)
class Frame:
    """One frame: its position in the stream, when it was read (``time.perf_counter``), its
    pixels ``(H, W, C)``, and its presentation time (seconds from the stream's start)."""

    index: int
    time: float
    data: np.ndarray
    pts: float | None = None
