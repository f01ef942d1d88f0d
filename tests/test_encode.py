"""Float -> 8-bit: explicit policies, no wrap-around, NaN counted, channels chosen."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import ConfigError
from pipeline.config import Encode
from pipeline.encode import Encoder

VALUES = np.array([-1, 0.4, 0.6, 254.6, 255.4, 256, 300, 1e10, np.nan, np.inf, -np.inf],
                  dtype=np.float32)


def encode(values, **policy):
    enc = Encoder(Encode(**policy), (1, len(values), 1))
    return enc(values.reshape(1, -1, 1)).ravel(), enc


def test_saturate_rounds_and_clips_never_wraps():
    """RELIABILITY b7's row of values: 300 -> 255, -1 -> 0, 1e10/inf -> 255, NaN -> 0."""
    out, enc = encode(VALUES)
    np.testing.assert_array_equal(out, [0, 0, 1, 255, 255, 255, 255, 255, 0, 255, 0])
    assert enc.nan_pixels == 1


def test_abs_and_fixed_range():
    out, _ = encode(np.array([-300, -10, 0, 10, 50], np.float32), policy="abs",
                    range=[0, 100])
    np.testing.assert_array_equal(out, [255, 26, 0, 26, 128])
    out, _ = encode(np.array([-1, 0, 1], np.float32), policy="normalize", range=[-1, 1])
    np.testing.assert_array_equal(out, [0, 128, 255])


def test_per_frame_only_when_asked():
    out, _ = encode(np.array([10, 20, 30], np.float32), policy="normalize", range="per-frame")
    np.testing.assert_array_equal(out, [0, 128, 255])
    with pytest.raises(ValueError, match="per-frame' only goes with policy 'normalize"):
        Encode(range="per-frame")


def test_channel_choice():
    y = np.stack([np.full((2, 3), v, np.float32) for v in (10, 20, 30, 40)], -1)
    with pytest.raises(ConfigError, match="ends with 4 channels; video and images take 1 or 3"):
        Encoder(Encode(), y.shape)
    picked = Encoder(Encode(select=[3, 0, 1]), y.shape)(y)
    np.testing.assert_array_equal(picked[0, 0], [40, 10, 20])
    mosaic = Encoder(Encode(mosaic=True, columns=3), y.shape)
    tiled = mosaic(y)
    assert tiled.shape == mosaic.shape == (4, 9, 1)
    np.testing.assert_array_equal(tiled[:2, :, 0], [[10] * 3 + [20] * 3 + [30] * 3] * 2)
    np.testing.assert_array_equal(tiled[2:, :3, 0], 40)
    np.testing.assert_array_equal(tiled[2:, 3:, 0], 0)  # empty tiles stay black
    with pytest.raises(ConfigError, match="channel 7 does not exist"):
        Encoder(Encode(select=[7]), y.shape)


@pytest.mark.parametrize("policy", [
    {}, {"policy": "abs", "range": [0, 50]}, {"policy": "normalize", "range": "per-frame"},
    {"select": [2, 0, 1]}, {"select": [3]}, {"mosaic": True}, {"mosaic": True, "columns": 3},
    {"policy": "normalize", "range": [-100, 100], "mosaic": True, "columns": 1},
])
def test_planar_results_encode_as_their_hwc_copy(policy, rng):
    """Methods return (H, W, C) views of planar buffers with padded rows; encoding one
    plane at a time gives exactly what the contiguous (H, W, C) copy gives, NaNs counted."""
    h, w, c = 7, 9, 4 if policy.get("select") or policy.get("mosaic") else 3
    buffer = rng.normal(0, 120, size=(c, h + 2, w + 5)).astype(np.float32)
    buffer[0, 1, 2], buffer[c - 1, 3, 4], buffer[1, 0, 0] = np.nan, np.inf, 1e10
    planar = buffer[:, :h, :w].transpose(1, 2, 0)
    assert planar.strides[1] == 4 and not planar.flags.c_contiguous
    hwc = np.ascontiguousarray(planar)
    a, b = Encoder(Encode(**policy), hwc.shape), Encoder(Encode(**policy), hwc.shape)
    expected, got = a(hwc), b(planar)
    assert got.shape == expected.shape == (*a.shape[:2], a.shape[2]) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert a.nan_pixels == b.nan_pixels
