"""Parity with scipy.signal (align keras) and scipy.ndimage (align opencv), per channel."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from scipy import ndimage, signal

from pipeline import FilterBank

KERNELS = {"3x3": (3, 3), "4x4": (4, 4), "3x5": (3, 5), "2x5": (2, 5), "1x4": (1, 4), "6x1": (6, 1)}

# scipy.signal boundary -> (our border, border_value, fillvalue)
SIGNAL_BOUNDARIES = {
    "fill": ("zero", 0.0, 0.0),
    "fill2.5": ("fill", 2.5, 2.5),
    "symm": ("symm", 0.0, 0.0),
    "wrap": ("wrap", 0.0, 0.0),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("boundary", SIGNAL_BOUNDARIES)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("op", ["correlate", "convolve"])
def test_scipy_signal_2d(method, rng, frame, kernel, boundary, mode, op):
    """correlate2d/convolve2d over full/same/valid × fill/symm/wrap × odd, even, rectangular."""
    x = frame((13, 17, 3), 10)
    k = rng.normal(size=KERNELS[kernel])
    border, value, fillvalue = SIGNAL_BOUNDARIES[boundary]
    scipy_boundary = boundary.removesuffix("2.5")
    ref_fn = signal.correlate2d if op == "correlate" else signal.convolve2d
    expected = np.stack(
        [ref_fn(x[..., c].astype(np.float64), k, mode=mode, boundary=scipy_boundary, fillvalue=fillvalue)
         for c in range(3)], axis=-1)
    bank = FilterBank(k, op=op, padding=mode, border=border, border_value=value, method=method)
    assert_close(bank(x), expected, k, x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["correlate", "convolve"])
def test_scipy_signal_dtypes(method, rng, frame, dtype, op):
    """float64 arithmetic meets the 1e-12 bound; float32 the 1e-5 one."""
    x = frame((31, 29), 100)
    k = rng.normal(size=(5, 4))
    ref_fn = signal.correlate2d if op == "correlate" else signal.convolve2d
    expected = ref_fn(x.astype(np.float64), k, mode="same", boundary="symm")[..., None]
    bank = FilterBank(k, op=op, border="symmetric", method=method, dtype=dtype)
    y = bank(x)
    assert y.dtype == np.dtype(dtype)
    assert_close(y, expected, k, x, dtype)


# scipy.ndimage mode (with cval) -> our border alias, value
NDIMAGE_MODES = {
    "reflect": ("grid-mirror", 0.0),  # ndimage's 'reflect' is our 'symmetric'
    "constant": ("constant", -3.0),
    "nearest": ("nearest", 0.0),
    "mirror": ("mirror", 0.0),
    "wrap": ("wrap", 0.0),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", NDIMAGE_MODES)
@pytest.mark.parametrize("op", ["correlate", "convolve"])
def test_scipy_ndimage(method, rng, frame, kernel, mode, op):
    """ndimage.correlate/convolve, all five modes, origin 0 == align opencv."""
    x = frame((14, 19, 2), 10)
    k = rng.normal(size=KERNELS[kernel])
    border, cval = NDIMAGE_MODES[mode]
    ref_fn = ndimage.correlate if op == "correlate" else ndimage.convolve
    expected = np.stack(
        [ref_fn(x[..., c].astype(np.float64), k, mode=mode, cval=cval) for c in range(2)], axis=-1)
    bank = FilterBank(k, op=op, padding="same", align="opencv", border=border,
                      border_value=cval, method=method)
    assert_close(bank(x), expected, k, x)


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror", "wrap", "constant"])
def test_ndimage_kernel_larger_than_frame(method, rng, frame, mode):
    """ndimage extends past the frame as numpy.pad repeats; so do we, for every border."""
    x = frame((3, 4, 1))
    k = rng.normal(size=(9, 11))
    border, cval = NDIMAGE_MODES[mode]
    expected = ndimage.correlate(x[..., 0].astype(np.float64), k, mode=mode, cval=cval)[..., None]
    bank = FilterBank(k, align="opencv", border=border, border_value=cval, method=method)
    assert_close(bank(x), expected, k, x)
