"""Parity with cv2.filter2D: four borders, default and explicit anchors, on float, uint8 and
uint16 frames (``frame``), and uint8 against filter2D's own 8U -> 32F."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import assert_close

from pipeline import FilterBank

CV2_BORDERS = {
    "zero": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
    "symmetric": cv2.BORDER_REFLECT,
    "reflect101": cv2.BORDER_REFLECT_101,
}
# (kernel shape, anchor as [row, col] or None for cv2's default (-1, -1))
ANCHORS = [
    ((3, 3), None),
    ((4, 4), None),
    ((2, 5), None),
    ((4, 6), [0, 0]),
    ((4, 6), [3, 5]),
    ((5, 3), [1, 2]),
    ((3, 4), [2, 0]),
]


@pytest.mark.parametrize("border", CV2_BORDERS)
@pytest.mark.parametrize(("shape", "anchor"), ANCHORS)
def test_filter2d(method, rng, frame, border, shape, anchor):
    x = frame((21, 26, 3), 50)
    k = rng.normal(size=shape).astype(np.float32)
    cv_anchor = (-1, -1) if anchor is None else (anchor[1], anchor[0])  # cv2 Point is (x, y)
    expected = cv2.filter2D(x.astype(np.float32), -1, k, anchor=cv_anchor,
                            borderType=CV2_BORDERS[border])
    bank = FilterBank(k, align="opencv", anchor=anchor, border=border, method=method)
    assert_close(bank(x), expected, k, x)


@pytest.mark.parametrize("alias", ["BORDER_REFLECT_101", "cv2.BORDER_DEFAULT", "border_reflect"])
def test_filter2d_border_names(rng, frame, alias):
    """OpenCV's own constant names are accepted as border aliases."""
    x = frame((12, 15))
    k = rng.normal(size=(3, 3)).astype(np.float32)
    cv_border = cv2.BORDER_REFLECT if alias == "border_reflect" else cv2.BORDER_REFLECT_101
    expected = cv2.filter2D(x.astype(np.float32), -1, k, borderType=cv_border)[..., None]
    assert_close(FilterBank(k, align="opencv", border=alias)(x), expected, k, x)


@pytest.mark.parametrize("border", CV2_BORDERS)
def test_filter2d_uint8_input(method, rng, border):
    """uint8 frames are filtered in float: what filter2D gives with ddepth=CV_32F."""
    x = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    k = rng.normal(size=(5, 5)).astype(np.float32)
    expected = cv2.filter2D(x, cv2.CV_32F, k, borderType=CV2_BORDERS[border])
    bank = FilterBank(k, align="opencv", border=border, method=method)
    assert_close(bank(x), expected, k, x)


@pytest.mark.parametrize("size", [(13, 11), (15, 15), (21, 21)])
def test_filter2d_large_kernels(method, rng, frame, size):
    """Kernels past OpenCV's DFT switch (>= 130 taps) agree within the accuracy bound."""
    x = frame((40, 50, 3))
    k = rng.normal(size=size).astype(np.float32)
    expected = cv2.filter2D(x.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT_101)
    bank = FilterBank(k, align="opencv", border="reflect101", method=method)
    assert_close(bank(x), expected, k, x)


def test_filter2d_per_channel_kernels(method, rng, frame):
    """A depthwise bank with one kernel per channel equals filter2D channel by channel."""
    x = frame((18, 22, 3))
    ks = rng.normal(size=(3, 1, 5, 4)).astype(np.float32)
    expected = np.stack(
        [cv2.filter2D(np.ascontiguousarray(x[..., c], dtype=np.float32), -1, ks[c, 0])
         for c in range(3)], -1)
    bank = FilterBank(ks, mode="depthwise", align="opencv", border="reflect101", method=method)
    assert_close(bank(x), expected, ks, x)
