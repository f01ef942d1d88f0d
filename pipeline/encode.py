"""Float results -> 8-bit frames for video and image outputs, by an explicit policy.

Never a silent per-frame rescale, never a wrap-around: values are clipped to the
configured range in float first (OpenCV's saturate_cast turns 1e10 and inf into 0,
RELIABILITY.md b7), mapped linearly to 0..255 and rounded; NaN becomes 0 and is counted.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .config import Encode
from .errors import ConfigError

Shape = tuple[int, int, int]


class Encoder:
    """``encoder(y)``: float (H, W, C) -> uint8 (H, W, 1 | 3) or a mosaic; counts NaNs."""

    def __init__(self, policy: Encode, shape: Shape) -> None:
        h, w, c = shape
        self.policy = policy
        self.nan_pixels = 0
        if policy.select is not None:
            bad = [i for i in policy.select if i >= c]
            if bad:
                raise ConfigError(f"encode.select: channel {bad[0]} does not exist "
                                  f"(the chain ends with {c} channels)")
            self._channels = list(policy.select)
        elif policy.mosaic:
            self._channels = list(range(c))
        elif c in (1, 3):
            self._channels = None
        else:
            raise ConfigError(
                f"encode: the chain ends with {c} channels; video and images take 1 or 3. "
                "Add encode: {select: [i]} (or [i, j, k]) or encode: {mosaic: true}")
        if policy.mosaic:
            self._cols = policy.columns or math.ceil(math.sqrt(c))
            self._rows = math.ceil(c / self._cols)
            self.shape: Shape = (h * self._rows, w * self._cols, 1)
        else:
            self.shape = (h, w, len(self._channels) if self._channels else c)

    def _to_uint8(self, y: np.ndarray) -> np.ndarray:
        bounds = self.policy.bounds
        x = np.abs(y) if self.policy.policy == "abs" else y
        if bounds is None:  # normalize per-frame: only when asked for
            lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
            hi = hi if hi > lo else lo + 1.0
        else:
            lo, hi = bounds
        if not math.isfinite(float(np.sum(x, dtype=np.float64))):  # one pass finds any NaN/Inf
            self.nan_pixels += int(np.count_nonzero(np.isnan(x)))
        clipped = np.clip(x, lo, hi, dtype=np.float32)  # NaN stays NaN: saturate_cast makes it 0
        scale = 255.0 / (hi - lo)
        return cv2.addWeighted(clipped, scale, clipped, 0.0, -lo * scale, dtype=cv2.CV_8U)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if self._channels is not None and not self.policy.mosaic:
            y = y[..., self._channels]
        out = self._to_uint8(np.ascontiguousarray(y))
        out = out.reshape(y.shape[0], y.shape[1], -1)
        if not self.policy.mosaic:
            return out
        h, w, c = out.shape
        tiles = np.zeros((self._rows * self._cols, h, w), dtype=np.uint8)
        tiles[:c] = out.transpose(2, 0, 1)
        grid = tiles.reshape(self._rows, self._cols, h, w).transpose(0, 2, 1, 3)
        return grid.reshape(self._rows * h, self._cols * w, 1)
