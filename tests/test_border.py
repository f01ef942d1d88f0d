"""engine.border.pad is numpy.pad, for every border, size, pad width and channel count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.engine.border import pad

# numpy.pad's name for each canonical border, written here independently of the package
NUMPY_MODE = {"zero": "constant", "constant": "constant", "replicate": "edge",
              "symmetric": "symmetric", "reflect101": "reflect", "wrap": "wrap"}


@pytest.mark.parametrize("border", list(NUMPY_MODE))
@pytest.mark.parametrize("channels", [None, 1, 3, 7])
def test_pad_is_numpy_pad(rng, border, channels):
    for h, w in itertools.product((1, 2, 5), (1, 3, 4)):
        x = rng.normal(size=(h, w) if channels is None else (h, w, channels))
        for pads in ((0, 0, 0, 0), (1, 2, 0, 3), (7, 0, 9, 2), (11, 11, 11, 11)):
            value = 0.0 if border == "zero" else 2.5
            widths = ((pads[0], pads[1]), (pads[2], pads[3])) + ((0, 0),) * (x.ndim - 2)
            extra = {"constant_values": value} if NUMPY_MODE[border] == "constant" else {}
            expected = np.pad(x, widths, mode=NUMPY_MODE[border], **extra)
            np.testing.assert_array_equal(pad(x, pads, border, value), expected)


def test_pad_past_cv2_channel_limit(rng):
    x = rng.normal(size=(3, 4, 600)).astype(np.float32)
    np.testing.assert_array_equal(pad(x, (2, 1, 0, 5), "wrap"),
                                  np.pad(x, ((2, 1), (0, 5), (0, 0)), mode="wrap"))


@pytest.mark.parametrize("border", list(NUMPY_MODE))
def test_pad_margins_in_place_is_numpy_pad(rng, border):
    """Margins filled around an interior written in place equal numpy.pad, or it declines."""
    from pipeline.engine.border import margins_fit, pad_margins

    for h, w in itertools.product((1, 2, 5), (1, 3, 6)):
        x = rng.normal(size=(2, h, w))
        for pads in ((0, 0, 0, 0), (1, 2, 0, 3), (4, 0, 5, 2), (5, 5, 6, 6), (6, 1, 1, 7)):
            t, b, left, r = pads
            buf = np.full((2, h + t + b + 3, w + left + r + 2), np.nan)
            buf[:, t : t + h, left : left + w] = x
            done = margins_fit(pads, (h, w), border)
            if done:
                pad_margins(buf, pads, (h, w), border, 2.5)
            widths = ((0, 0), (t, b), (left, r))
            extra = {"constant_values": 2.5} if border == "constant" else {}
            expected = np.pad(x, widths, mode=NUMPY_MODE[border], **extra)
            reach = {"reflect101": 1, "symmetric": 0, "wrap": 0}.get(border)
            fits = reach is None or (max(t, b) <= h - reach and max(left, r) <= w - reach)
            assert done == fits
            if done:
                np.testing.assert_array_equal(buf[:, : h + t + b, : w + left + r], expected)


@pytest.mark.parametrize("border", ["zero", "reflect101", "wrap"])
@pytest.mark.parametrize(("channels", "dtype"), [(3, np.float32), (4, np.uint8),
                                                 (9, np.uint16), (16, np.float32),
                                                 (5, np.float64)])
@pytest.mark.parametrize("view", [False, True])
def test_fill_planar_is_numpy_pad_in_planes(rng, border, channels, dtype, view):
    """fill_planar (HWC -> padded CHW planes, on all cores; OpenCV's blocked transpose from
    4 channels of a contiguous frame, numpy's copy otherwise) gives numpy.pad's planes,
    converted to the planes' dtype, for frames taller than one block of rows too."""
    from pipeline.engine.border import fill_planar

    h, w = (300, 41) if channels < 16 else (37, 300)
    x = (rng.random((channels, h, w) if view else (h, w, channels)) * 250).astype(dtype)
    x = x.transpose(1, 2, 0) if view else x
    pads = (2, 1, 3, 0)
    planes = np.full((channels, h + 4, w + 5), -1, dtype=np.float32 if dtype != np.float64
                     else np.float64)
    fill_planar(planes, x, pads, border)
    want = np.pad(x, ((2, 1), (3, 0), (0, 0)), mode=NUMPY_MODE[border]).transpose(2, 0, 1)
    np.testing.assert_array_equal(planes[:, : h + 3, : w + 3], want.astype(planes.dtype))
