"""FilterBank semantics: the founding examples, borders past the frame, dtypes, NaN, shapes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from scipy import signal

from pipeline import ConfigError, FilterBank, FrameError

NUMPY_MODE = {"zero": "constant", "replicate": "edge", "symmetric": "symmetric",
              "reflect101": "reflect", "wrap": "wrap"}


def assert_exact_or_within_bound(y: np.ndarray, expected: np.ndarray, method: str,
                                 scale: float) -> None:
    """Sums of integer-valued float32 terms below 2**24 are exact in the spatial methods;
    a float32 FFT is exact only to SPEC's bound, 1e-5 * sum|K| * max|x| (``scale``).
    Which way its last bit rounds depends on the plan FFTW measures on the machine, so
    asserting exact equality there passed on one CPU and failed on another (CI)."""
    if method == "fft":
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * scale)
    else:
        np.testing.assert_array_equal(y, expected.astype(y.dtype))


def founding_frame() -> np.ndarray:
    """3x3 RGB with channels of constant 1, 100 and 10000 (SPEC section 1)."""
    return np.stack([np.full((3, 3), v) for v in (1.0, 100.0, 10000.0)], -1)


@pytest.mark.parametrize("layout", ["oihw", "hwio"])
def test_founding_conv2d_example(method, layout):
    """One 2x2 all-ones filter over 3 channels, valid, relu, bias 0 -> 40404; 13 parameters."""
    weights = np.ones((1, 3, 2, 2)) if layout == "oihw" else np.ones((2, 2, 3, 1))
    bank = FilterBank(weights, bias=[0], padding="valid", activation="relu",
                      layout=layout, method=method)
    y = bank(founding_frame())
    assert y.shape == (2, 2, 1)
    assert_exact_or_within_bound(y[..., 0], np.full((2, 2), 40404.0), method, 12 * 10000.0)
    assert bank.num_params == 13


def test_keras_versus_scipy(method, rng):
    """Keras Conv2D correlates (kernel as written); scipy.signal.convolve2d turns it 180°.

    For an even kernel, 'same' has one extra padding pixel; Keras puts it after, which
    correlate2d/convolve2d also do, while ndimage/cv2 put it before (align opencv).
    """
    x = rng.normal(size=(9, 11))
    k = np.array([[1.0, 2.0], [3.0, 4.0]])
    keras = FilterBank(k, padding="same", method=method)(x)[..., 0]
    np.testing.assert_allclose(keras, signal.correlate2d(x, k, mode="same"), atol=1e-5)
    # The same numbers are NOT what convolve2d gives: that one turns the kernel.
    assert np.abs(keras - signal.convolve2d(x, k, mode="same")).max() > 1.0
    np.testing.assert_allclose(
        keras, signal.convolve2d(x, k[::-1, ::-1], mode="full")[1:, 1:], atol=1e-5)
    conv = FilterBank(k, op="convolve", padding="same", method=method)(x)[..., 0]
    np.testing.assert_allclose(conv, signal.convolve2d(x, k, mode="same"), atol=1e-5)
    # align opencv moves the extra padding pixel before: a one-pixel shift of the output.
    opencv = FilterBank(k, padding="same", align="opencv", method=method)(x)[..., 0]
    np.testing.assert_allclose(opencv[1:, 1:], keras[:-1, :-1], atol=1e-5)


@pytest.mark.parametrize("border", ["zero", "constant", "replicate", "symmetric",
                                    "reflect101", "wrap"])
@pytest.mark.parametrize("padding", ["same", "full", [9, 2, 0, 13]])
@pytest.mark.parametrize("frame", [(3, 4), (1, 1), (2, 1)])
def test_kernel_larger_than_frame(method, rng, border, padding, frame):
    """Padding past the frame repeats exactly as numpy.pad does, for every border."""
    x = rng.normal(size=(*frame, 2))
    k = rng.normal(size=(7, 9))
    if padding == "same":
        pads = ((3, 3), (4, 4))
    elif padding == "full":
        pads = ((6, 6), (8, 8))
    else:
        pads = ((9, 2), (0, 13))
    mode = NUMPY_MODE.get(border, "constant")
    extra = {"constant_values": 2.0} if border == "constant" else {}
    xp = np.pad(x, (*pads, (0, 0)), mode=mode, **extra)
    expected = np.stack([signal.correlate2d(xp[..., c], k, mode="valid") for c in range(2)], -1)
    bank = FilterBank(k, padding=padding, border=border, border_value=2.0, method=method)
    assert_close(bank(x), expected, k, x)


def test_one_pixel_frames(method, rng):
    """A 1x1 frame under every border: what numpy.pad makes of one pixel."""
    x = np.array([[[3.0, -2.0, 5.0]]])
    k = rng.normal(size=(3, 3))
    for border in ("replicate", "symmetric", "reflect101", "wrap"):
        y = FilterBank(k, border=border, method=method)(x)
        np.testing.assert_allclose(y[0, 0], k.sum() * x[0, 0], rtol=1e-5)
    y = FilterBank(k, border="zero", method=method)(x)
    np.testing.assert_allclose(y[0, 0], k[1, 1] * x[0, 0], rtol=1e-5)


def test_frame_smaller_than_valid_kernel():
    with pytest.raises(FrameError, match="smaller than the kernel extent 5x5"):
        FilterBank(np.ones((5, 5)), padding="valid")(np.ones((4, 8)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_frames_never_wrap(method, dtype):
    """uint8/uint16 sums past the type's range come out exact, in float."""
    top = np.iinfo(dtype).max
    x = np.full((6, 7, 3), top, dtype=dtype)
    y = FilterBank(np.ones((3, 3)), padding="valid", method=method)(x)
    assert y.dtype == np.float32
    assert_exact_or_within_bound(y, np.full((4, 5, 3), 9.0 * top), method, 9.0 * top)
    neg = FilterBank(-np.ones((3, 3)), padding="valid", method=method)(x)
    assert_exact_or_within_bound(neg, np.full((4, 5, 3), -9.0 * top), method, 9.0 * top)


@pytest.mark.parametrize("size", [(3, 3), (12, 12)])
def test_nan_stays_local(method, rng, size):
    """A NaN reaches only the outputs whose kernel window covers it; the rest is exact."""
    x = rng.normal(size=(40, 45, 1)).astype(np.float32)
    x[20, 22, 0] = np.nan
    k = rng.normal(size=size).astype(np.float32) + 3.0  # no zero taps
    y = FilterBank(k, padding="same", border="reflect101", method=method)(x)[..., 0]
    kh, kw = size
    t, left = (kh - 1) // 2, (kw - 1) // 2
    rows = slice(20 - (kh - 1 - t), 20 + t + 1)
    cols = slice(22 - (kw - 1 - left), 22 + left + 1)
    footprint = np.zeros(y.shape, bool)
    footprint[rows, cols] = True
    assert np.isnan(y[footprint]).all()
    assert np.isfinite(y[~footprint]).all()
    clean = x.copy()
    clean[20, 22, 0] = 0.0
    expected = FilterBank(k, padding="same", border="reflect101", method="direct")(clean)
    np.testing.assert_allclose(y[~footprint], expected[..., 0][~footprint],
                               atol=1e-5 * np.abs(k).sum() * np.nanmax(np.abs(x)))


def test_bias_broadcast_for_shared_kernel(method, rng):
    x = rng.normal(size=(6, 7, 3))
    k = rng.normal(size=(3, 3))
    base = FilterBank(k, method=method)(x)
    y = FilterBank(k, bias=[1.0, 2.0, 3.0], method=method)(x)
    np.testing.assert_allclose(y - base, np.broadcast_to([1.0, 2.0, 3.0], y.shape), atol=1e-5)
    y1 = FilterBank(k, bias=[5.0], method=method)(x)
    np.testing.assert_allclose(y1 - base, 5.0, atol=1e-5)


def test_clip_activation(method, rng):
    x = rng.normal(size=(8, 8, 1)) * 100
    y = FilterBank(np.ones((3, 3)), activation="clip(-10, 20.5)", method=method)(x)
    assert y.min() >= -10 and y.max() <= 20.5
    assert (y == -10).any() and (y == 20.5).any()


def test_plan_reports_geometry():
    bank = FilterBank(np.ones((4, 3, 4, 6)), padding="same", align="opencv", border="wrap")
    plan = bank.plan((20, 30, 3))
    assert plan.pads == (2, 1, 3, 2)  # opencv: the extra pixel goes before
    assert plan.centre == (2, 3)
    assert plan.out_shape == (20, 30, 4)
    assert plan.num_params == 4 * 3 * 4 * 6
    assert plan.method in plan.costs and plan.costs[plan.method] is not None
    text = str(plan)
    assert "padding top 2, bottom 1, left 3, right 2" in text and "wrap" in text
    keras = FilterBank(np.ones((4, 3, 4, 6)), padding="same").plan((20, 30, 3))
    assert keras.pads == (1, 2, 2, 3) and keras.centre == (1, 2)


def test_plan_of_convolve_mirrors_padding():
    """A convolve bank turns its kernel, so its 'same' padding sides are mirrored."""
    plan = FilterBank(np.ones((2, 2)), op="convolve").plan((5, 5))
    assert plan.pads == (1, 0, 1, 0)
    assert plan.centre == (0, 0)


def test_engine_is_planned_once_per_format(rng):
    bank = FilterBank(rng.normal(size=(3, 3)))
    first = bank._engine((10, 12, 3))
    bank(rng.normal(size=(10, 12, 3)))
    assert bank._engine((10, 12, 3)) is first
    assert bank(rng.normal(size=(5, 6))).shape == (5, 6, 1)


def test_wrong_channel_count():
    bank = FilterBank(np.ones((2, 3, 3, 3)))
    with pytest.raises(FrameError, match="expects 3-channel frames, got 4"):
        bank(np.ones((5, 5, 4)))
    dw = FilterBank(np.ones((4, 1, 3, 3)), mode="depthwise")
    with pytest.raises(FrameError, match="multiple of 3"):
        dw(np.ones((5, 5, 3)))


def test_rejects_complex_and_empty_frames():
    bank = FilterBank(np.ones((3, 3)))
    with pytest.raises(FrameError, match="dtype complex128"):
        bank(np.ones((4, 4), dtype=complex))
    with pytest.raises(FrameError, match="none empty"):
        bank(np.ones((0, 4, 3)))


def test_options_are_value_errors():
    """Bad option values raise ConfigError, a ValueError, naming option, value and allowed."""
    with pytest.raises(ValueError, match=r"padding='half'.*'valid' \| 'same'"):
        FilterBank(np.ones((3, 3)), padding="half")
    with pytest.raises(ConfigError, match=r"stride=0.*an int 1\.\.4096"):
        FilterBank(np.ones((3, 3)), stride=0)
    with pytest.raises(ConfigError, match="full' needs stride 1"):
        FilterBank(np.ones((3, 3)), padding="full", stride=2)
    with pytest.raises(ConfigError, match="anchor applies to padding='same'"):
        FilterBank(np.ones((3, 3)), padding="valid", anchor=[0, 0])
    with pytest.raises(ConfigError, match=r"anchor=\[3, 0\].*inside the 3x3 kernel"):
        FilterBank(np.ones((3, 3)), anchor=[3, 0])
    with pytest.raises(ConfigError, match="weights of shape"):
        FilterBank(np.ones((3, 3, 3)))
    with pytest.raises(ConfigError, match="rectangular"):
        FilterBank([[1, 2], [3]])
    with pytest.raises(ConfigError, match="NaN or Inf"):
        FilterBank(np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="bias has 2 values"):
        FilterBank(np.ones((3, 1, 3, 3)), bias=[1, 2])
    with pytest.raises(ConfigError, match="multiple of groups"):
        FilterBank(np.ones((3, 1, 3, 3)), groups=2)
    with pytest.raises(ConfigError, match=r"\(C_in\*M, 1, kh, kw\)"):
        FilterBank(np.ones((3, 2, 3, 3)), mode="depthwise")
    with pytest.raises(ConfigError, match="activation='gelu'"):
        FilterBank(np.ones((3, 3)), activation="gelu")
    with pytest.raises(ConfigError, match="lo <= hi"):
        FilterBank(np.ones((3, 3)), activation="clip(5, 1)")
    with pytest.raises(ConfigError, match="dtype='float16'"):
        FilterBank(np.ones((3, 3)), dtype="float16")
    with pytest.raises(ConfigError, match="op='conv'"):
        FilterBank(np.ones((3, 3)), op="conv")


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_integer_frames_go_in_as_they_are(method):
    """uint8 / uint16 frames reach the method as they are (no whole-frame float copy):
    the plan says so, the planner times methods on such frames, and the numbers are the
    float frame's."""
    from pipeline.engine.timing import spec_key, synthetic_frame

    g = np.exp(-np.linspace(-2, 2, 9) ** 2)
    bank = FilterBank(np.outer(g, g), border="reflect101", method=method)
    x = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    plan = bank.plan(x.shape, "uint8")
    assert "reads uint8 frames as they are" in str(plan)
    engine = bank._engine(x.shape, "uint8")
    assert engine.takes(np.dtype(np.uint8)) and engine.takes(np.dtype(np.uint16))
    spec = bank._planned(x.shape, "uint8")[0]
    assert synthetic_frame(spec).dtype == np.uint8 and "from uint8" in spec_key(spec)
    np.testing.assert_allclose(bank(x), bank(x.astype(np.float32)), rtol=0, atol=1e-3)
    assert "reads float32 frames" in str(bank.plan(x.shape))


def test_frames_opencv_takes_are_converted_first():
    """A float64 bank on OpenCV's filter2D: integer frames are converted, and the plan
    says it."""
    bank = FilterBank(np.ones((3, 3)), method="direct", dtype="float64")
    x = np.arange(40 * 50 * 3, dtype=np.uint16).reshape(40, 50, 3)
    assert "uint16 frames converted to float64 first" in str(bank.plan(x.shape, "uint16"))
    y = bank(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, bank(x.astype(np.float64)), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_a_strided_view_gives_the_contiguous_frames_numbers(method, dtype):
    """The planar result of a bank before, seen as (H, W, C), goes into a dense bank as it
    is where the method copies frames into planes anyway (reads_views: no contiguous copy
    first), and into the others made contiguous; the numbers are the contiguous frame's
    either way, as are those of a flipped, strided view."""
    rng = np.random.default_rng(4)
    bank = FilterBank(rng.standard_normal((5, 4, 3, 3)), bias=rng.standard_normal(5),
                      padding="same", activation="relu", method=method)
    planar = (rng.random((4, 40, 70)) * 255).astype(dtype)
    view = planar.transpose(1, 2, 0)
    flipped = np.ascontiguousarray(view)[::-1, ::2]
    assert not view.flags.c_contiguous and not flipped.flags.c_contiguous
    np.testing.assert_array_equal(bank(view), bank(np.ascontiguousarray(view)))
    np.testing.assert_array_equal(bank(flipped), bank(np.ascontiguousarray(flipped)))
    reads = bank._engine(view.shape, dtype).reads_views()
    assert reads == (method in ("direct", "fft"))


def test_planning_keeps_freed_frame_buffers_in_the_heap_unless_opted_out():
    """The first bank planned raises glibc's mmap and trim thresholds (engine/memory.py),
    so the large buffers each frame frees are reused, not mapped afresh;
    PIPELINE_KEEP_PAGES=0 leaves the allocator as it was."""
    import os
    import subprocess
    import sys

    probe = ("import numpy as np; from pipeline import FilterBank; from pipeline.engine "
             "import memory; FilterBank(np.ones((3, 3)))(np.ones((8, 8))); "
             "print(memory.keep_freed_pages())")  # the first call's answer, kept
    for value, want in (("1", "True"), ("0", "False")):
        env = {**os.environ, "PIPELINE_KEEP_PAGES": value}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == want
