"""Float results -> 8-bit frames for video and image outputs, by an explicit policy.

Never a silent per-frame rescale, never a wrap-around: values are clipped to the
configured range in float first (OpenCV's saturate_cast turns 1e10 and inf into 0,
RELIABILITY.md b7), mapped linearly to 0..255 and rounded; NaN becomes 0 (explicitly, never
left to a cast) and is counted.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np

from .config import Encode
from .engine import native
from .errors import ConfigError

Shape = tuple[int, int, int]


class Encoder:
    """``encoder(y)``: float (H, W, C) -> uint8 (H, W, 1 | 3) or a mosaic; counts NaNs."""

    def __init__(self, policy: Encode, shape: Shape) -> None:
        h, w, c = shape
        self.policy = policy
        self.nan_pixels = 0
        self._lock = threading.Lock()
        if policy.select is not None:
            bad = [i for i in policy.select if i >= c]
            if bad:
                raise ConfigError(f"encode.select: channel {bad[0]} does not exist "
                                  f"(the chain ends with {c} channels)")
            self._channels = list(policy.select)
        elif policy.mosaic or c in (1, 3):
            self._channels = list(range(c))
        else:
            raise ConfigError(
                f"encode: the chain ends with {c} channels; video and images take 1 or 3. "
                "Add encode: {select: [i]} (or [i, j, k]) or encode: {mosaic: true}")
        self._every = self._channels == list(range(c))  # no channel to pick out
        # the common policy, over [0, 255], has a C pass for bands (the same numbers)
        self._in_c = native.depthwise is not None and policy.policy in ("saturate", "abs") \
            and policy.bounds == (0.0, 255.0)
        if policy.mosaic:
            self._cols = policy.columns or math.ceil(math.sqrt(c))
            self._rows = math.ceil(c / self._cols)
            self.shape: Shape = (h * self._rows, w * self._cols, 1)
        else:
            self.shape = (h, w, len(self._channels))

    @property
    def per_pixel(self) -> bool:
        """Whether each output pixel depends on its own values only (fixed bounds, every
        channel, no mosaic): then ``band`` may encode a frame a band of rows at a time."""
        return self.policy.bounds is not None and self._every and not self.policy.mosaic

    @property
    def in_stores(self) -> bool | None:
        """Where this encoder is the common policy (saturate or abs over [0, 255], per
        pixel), which the depthwise C kernels apply in their stores: whether |v| comes
        first; else None."""
        return self.policy.policy == "abs" if self.per_pixel and self._in_c else None

    def count_nans(self, n: int) -> None:
        """NaN values met where this encoder's policy ran elsewhere (C stores)."""
        with self._lock:
            self.nan_pixels += n

    def band(self, y: np.ndarray, out: np.ndarray) -> None:
        """Rows of a float result ``y`` (rows, W, C), any strides, encoded into ``out``
        (rows, W, C) uint8: the same numbers as encoding the whole frame (``per_pixel``)."""
        assert self.per_pixel
        if self._in_c and y.dtype == np.float32:  # one pass, in C
            nans = native.depthwise.to_bytes(y, out, self.policy.policy == "abs")
            if nans:
                self.count_nans(nans)
            return
        if y.shape[2] > 1 and y.strides[1] == y.itemsize:  # planar rows: plane by plane
            planes = self._to_uint8([y[..., i] for i in range(y.shape[2])])
            cv2.merge(planes, dst=out)
        else:
            np.copyto(out, self._to_uint8([np.ascontiguousarray(y)])[0].reshape(out.shape))

    def _bounds(self, parts: list[np.ndarray]) -> tuple[float, float]:
        if self.policy.bounds is not None:
            return self.policy.bounds
        # normalize per-frame: only when asked for
        lo = min(float(np.nanmin(p)) for p in parts)
        hi = max(float(np.nanmax(p)) for p in parts)
        return lo, hi if hi > lo else lo + 1.0

    def _to_uint8(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        """Each float array (contiguous) -> uint8 of its shape, by one (lo, hi) for all."""
        if self.policy.policy == "abs":
            parts = [np.abs(p) for p in parts]
        lo, hi = self._bounds(parts)
        scale = 255.0 / (hi - lo)
        out = []
        for x in parts:
            clipped = np.clip(x, lo, hi, dtype=np.float32)  # NaN stays NaN here
            # Clipped values are finite but for NaN, so a non-finite sum shows one (or a
            # float32 overflow of a huge range, which only costs the count below).
            if not math.isfinite(float(clipped.sum(dtype=np.float32))):
                nan = np.isnan(clipped)
                # NaN -> lo (written as 0) here, explicitly: how a cast treats NaN is the
                # library's choice, and it changed (opencv-python 5.1 saturates it to 255).
                np.copyto(clipped, lo, where=nan)
                with self._lock:  # the runner may encode on two threads
                    self.nan_pixels += int(np.count_nonzero(nan))
            out.append(cv2.addWeighted(clipped, scale, clipped, 0.0, -lo * scale,
                                       dtype=cv2.CV_8U).reshape(x.shape))
        return out

    def __call__(self, y: np.ndarray) -> np.ndarray:
        h, w, c = y.shape
        if self.per_pixel and self._in_c and y.dtype == np.float32:  # one pass, in C
            out = np.empty(self.shape, dtype=np.uint8)
            self.band(y, out)
            return out
        if c > 1 and y.strides[1] == y.itemsize:  # rows of each plane are contiguous
            # A method's planar result seen as (H, W, C): encode plane by plane, never
            # copying the floats into HWC order (measured 3.8 ms of 6 at 720p x 4).
            out = self._to_uint8([y[..., i] for i in self._channels])
        else:
            chosen = y if self._every else y[..., self._channels]
            out = self._to_uint8([np.ascontiguousarray(chosen)])  # (H, W, C) in one pass
            if self.policy.mosaic:
                out = [out[0][..., i] for i in range(len(self._channels))]
        if self.policy.mosaic:
            canvas = np.zeros(self.shape[:2], dtype=np.uint8)  # empty tiles stay black
            for i, plane in enumerate(out):
                r, col = divmod(i, self._cols)
                canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = plane
            return canvas[..., None]
        if len(out) == 1:
            return out[0].reshape(h, w, -1)
        return cv2.merge(out).reshape(h, w, len(out))
