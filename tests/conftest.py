"""Shared fixtures: the methods every parity test runs over, and the SPEC accuracy bound."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Keras is a reference for the model tests; run it on torch (no TensorFlow is installed)
os.environ["KERAS_BACKEND"] = "torch"

# Every parity test runs once per method; a new method joins by being named here.
METHODS = ("direct", "separable", "fft", "auto")


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """FFTW wisdom, FFT sizes and calibration go to a fresh folder, not the user's cache."""
    import os

    os.environ["PIPELINE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


# Every parity test also runs on the frames cameras and video files give.
FRAME_DTYPES = ("float", "uint8", "uint16")


def sample_frame(r: np.random.Generator, kind: str, shape: tuple[int, ...],
                 scale: float = 1.0) -> np.ndarray:
    """A test frame: float64 normal · scale, or uint8 / uint16 over their whole range."""
    if kind == "float":
        return r.normal(size=shape) * scale
    return r.integers(0, np.iinfo(kind).max + 1, size=shape, dtype=kind)


@pytest.fixture(params=FRAME_DTYPES)
def frame(request: pytest.FixtureRequest, rng: np.random.Generator):
    """``frame(shape, scale=1.0)``: test frames of one dtype (see ``sample_frame``)."""
    return lambda shape, scale=1.0: sample_frame(rng, request.param, shape, scale)


def bound(weights: np.ndarray, x: np.ndarray, dtype: str = "float32") -> float:
    """SPEC section 1 accuracy bound: 1e-5 (float32) or 1e-12 (float64) · Σ|K| · max|x|.

    ``weights``: (kh, kw) or (C_out, C_in/g, kh, kw); Σ|K| is taken per output channel
    (over its input channels too) and the largest is used.
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    per_output = w.reshape(-1, *w.shape[-2:]).sum(axis=(1, 2)) if w.ndim == 2 else \
        w.reshape(w.shape[0], -1).sum(axis=1)
    scale = float(per_output.max()) * float(np.nanmax(np.abs(x)))
    return (1e-5 if dtype == "float32" else 1e-12) * max(scale, 1e-30)


def assert_close(actual: np.ndarray, expected: np.ndarray, weights, x, dtype="float32"):
    """Equal within the SPEC bound, same shape, NaN where the reference has NaN."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=bound(weights, x, dtype))


# ------------------------------------------------------------------ a busy machine
BUSY = 2  # processes that each keep a core busy: both cores of a 2-core CI machine


@pytest.fixture
def busy():
    """Two processes spinning on the CPU for the whole test (RELIABILITY U11): what a test
    that times something must survive, as it must on a CI machine shared with others.
    Tests marked ``timing`` run under it (``_busy_when_timing``)."""
    import subprocess
    import sys

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing: asserts something about time (a rate, a "
                                       "delay, a deadline); runs with both cores kept busy")


@pytest.fixture(autouse=True)
def _busy_when_timing(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("timing"):
        request.getfixturevalue("busy")
