"""Borders: pad a frame exactly as ``numpy.pad`` would, using OpenCV where it agrees.

``cv2.copyMakeBorder`` matches ``numpy.pad`` for every canonical border and every pad
size, also past the frame (checked by tests/test_border.py), and is several times faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import threads


@dataclass(frozen=True)
class Border:
    """One canonical border (options.py maps every library's word to these names)."""

    cv2: int  # OpenCV's borderType
    numpy: str  # numpy.pad's mode
    c: int  # the C kernels' code (_depthwise.c)
    in_filters: bool  # OpenCV's filters make it themselves (a constant's value they do not)
    reach: int | None  # frame pixels a pad may not pass for one reflection (None: no limit)


BORDERS = {
    "zero": Border(cv2.BORDER_CONSTANT, "constant", 0, True, None),
    "constant": Border(cv2.BORDER_CONSTANT, "constant", 0, False, None),
    "replicate": Border(cv2.BORDER_REPLICATE, "edge", 1, True, None),
    "symmetric": Border(cv2.BORDER_REFLECT, "symmetric", 2, True, 0),
    "reflect101": Border(cv2.BORDER_REFLECT_101, "reflect", 3, True, 1),
    "wrap": Border(cv2.BORDER_WRAP, "wrap", 4, False, 0),
}

_CV2_MAX_CHANNELS = 512  # CV_CN_MAX


def cv2_makes_border(pads: tuple[int, int, int, int], extent: tuple[int, int],
                     size: tuple[int, int], border: str) -> bool:
    """Whether OpenCV's filters can make this border themselves (no padded copy): a
    border they know, 'same'-shaped padding (pads sum to the kernel extent - 1) and no
    pad reaching past the frame (where their border and numpy.pad's could part)."""
    t, b, left, r = pads
    return (BORDERS[border].in_filters
            and (t + b, left + r) == (extent[0] - 1, extent[1] - 1)
            and max(t, b) < size[0] and max(left, r) < size[1])


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
        out = cv2.copyMakeBorder(x, t, b, left, r, BORDERS[border].cv2, value=(value,) * 4)
        return out.reshape(out.shape[:2] + x.shape[2:])
    widths = ((t, b), (left, r)) + ((0, 0),) * (x.ndim - 2)
    mode = BORDERS[border].numpy
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode=mode)


def margins_fit(pads: tuple[int, int, int, int], size: tuple[int, int], border: str) -> bool:
    """Whether ``pad_margins`` can fill these pads (one reflection of the frame reaches)."""
    t, b, left, r = pads
    h, w = size
    reach = BORDERS[border].reach
    return reach is None or (max(t, b) <= h - reach and max(left, r) <= w - reach)


def pad_margins(planes: np.ndarray, pads: tuple[int, int, int, int], size: tuple[int, int],
                border: str, value: float = 0.0) -> None:
    """Fill the margins around an interior already written at ``planes[:, t:t+H, l:l+W]``.

    ``planes``: (C, ≥ t+H+b, ≥ l+W+r), ``size`` = (H, W), and ``margins_fit`` true. The
    result equals ``numpy.pad`` (axis by axis, so the corners match too).
    """
    t, b, left, r = pads
    h, w = size
    for axis, (before, after, n) in ((1, (t, b, h)), (2, (left, r, w))):
        if not (before or after):
            continue
        lo, hi = before, before + n  # the filled extent along this axis
        src = np.moveaxis(planes, axis, 0)  # a view: rows along the padded axis
        if border in ("zero", "constant"):
            fill = 0.0 if border == "zero" else value
            src[:lo] = fill
            src[hi : hi + after] = fill
        elif border == "replicate":
            src[:lo] = src[lo]
            src[hi : hi + after] = src[hi - 1]
        elif border == "reflect101":
            src[:lo] = src[lo + 1 : 2 * lo + 1][::-1]
            src[hi : hi + after] = src[hi - 1 - after : hi - 1][::-1]
        elif border == "symmetric":
            src[:lo] = src[lo : 2 * lo][::-1]
            src[hi : hi + after] = src[hi - after : hi][::-1]
        else:  # wrap
            src[:lo] = src[hi - lo : hi]
            src[hi : hi + after] = src[lo : lo + after]
        # the next axis pads across the rows just written, as numpy.pad does


_BLOCKED_FROM = 4  # channels from which OpenCV's blocked transpose beats numpy's strided copy
_BLOCK_BYTES = 256 << 10  # rows transposed at a time: they stay in L2 for the copy after
# (measured, one thread: 720p x 16 float32 38.6 -> 16.6 ms, 480p x 8 3.8 -> 1.7 ms; at 3
# channels numpy's copy is as fast)


def fill_planar(planes: np.ndarray, x: np.ndarray, pads: tuple[int, int, int, int],
                border: str, value: float = 0.0) -> None:
    """``x`` (H, W, C) padded into ``planes[:, :H+t+b, :W+l+r]`` (C, …), channel by channel.

    The interior is gathered from HWC on all cores (OpenCV's blocked transpose of rows at
    a time, from 4 channels of a contiguous frame), then the margins are filled in place
    from it; pads wider than one reflection of the frame take the full ``pad`` route.
    """
    h, w = x.shape[:2]
    t, b, left, r = pads
    if not margins_fit(pads, (h, w), border):  # an integer frame is converted first: a
        xp = pad(np.asarray(x, planes.dtype), pads, border, value)  # constant may not fit it
        np.copyto(planes[:, : xp.shape[0], : xp.shape[1]], xp.transpose(2, 0, 1))
        return

    blocked = x.shape[2] >= _BLOCKED_FROM and x.flags.c_contiguous and \
        x.dtype.kind in "fu" and x.dtype.itemsize in (1, 2, 4, 8)

    def gather(_: int, band: int) -> None:
        a, z = bands[band]
        if not blocked:
            np.copyto(planes[:, t + a : t + z, left : left + w], x[a:z].transpose(2, 0, 1))
            return
        c = x.shape[2]
        step = max(1, _BLOCK_BYTES // (w * c * x.itemsize))
        block = np.empty((c, step * w), dtype=x.dtype)
        for r in range(a, z, step):  # (rows·W, C) -> (C, rows·W) in cache, then the planes
            n = min(step, z - r)
            part = block[:, : n * w]
            cv2.transpose(x[r : r + n].reshape(n * w, c), part)
            np.copyto(planes[:, t + r : t + r + n, left : left + w], part.reshape(c, n, w))

    bands = threads.split(h, 4 * threads.CORES)
    threads.run_shared(gather, len(bands))
    pad_margins(planes, pads, (h, w), border, value)
