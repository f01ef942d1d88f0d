"""Borders: pad a frame exactly as ``numpy.pad`` would, using OpenCV where it agrees.

``cv2.copyMakeBorder`` matches ``numpy.pad`` for every canonical border and every pad
size, also past the frame (checked by tests/test_border.py), and is several times faster.
"""

from __future__ import annotations

import cv2
import numpy as np

CV2_BORDER = {
    "zero": cv2.BORDER_CONSTANT,
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "symmetric": cv2.BORDER_REFLECT,
    "reflect101": cv2.BORDER_REFLECT_101,
    "wrap": cv2.BORDER_WRAP,
}

NUMPY_MODE = {
    "zero": "constant",
    "constant": "constant",
    "replicate": "edge",
    "symmetric": "symmetric",
    "reflect101": "reflect",
    "wrap": "wrap",
}

_CV2_MAX_CHANNELS = 512  # CV_CN_MAX


def pad(
    x: np.ndarray, pads: tuple[int, int, int, int], border: str, value: float = 0.0
) -> np.ndarray:
    """``x``: (H, W) or (H, W, C) padded by (top, bottom, left, right); ``x`` itself if no pad."""
    t, b, left, r = pads
    if not (t or b or left or r):
        return x
    value = 0.0 if border == "zero" else value
    channels = x.shape[2] if x.ndim == 3 else 1
    # cv2 carries a 4-component border value: past 4 channels a nonzero constant goes to numpy.
    if channels <= _CV2_MAX_CHANNELS and (channels <= 4 or value == 0.0):
        out = cv2.copyMakeBorder(x, t, b, left, r, CV2_BORDER[border], value=(value,) * 4)
        return out.reshape(out.shape[:2] + x.shape[2:])
    widths = ((t, b), (left, r)) + ((0, 0),) * (x.ndim - 2)
    if NUMPY_MODE[border] == "constant":
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode=NUMPY_MODE[border])
