"""engine.border.pad is numpy.pad, for every border, size, pad width and channel count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.engine.border import NUMPY_MODE, pad


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
