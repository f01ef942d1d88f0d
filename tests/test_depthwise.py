"""The direct method's depthwise C kernel (engine/_depthwise.c) against numpy.pad + scipy.

It reads the interleaved frame as it is and makes the border as it reads, so the cases
cover every border on both axes, pads of any size within one reflection (also past the
kernel's reach, and none at all), frame widths around its blocks (16 pixels of 3
channels with AVX-512; the last block overlapping the one before; a plain loop below one
block), the blocks of R rows and the single rows left over, dilation, one kernel for all
channels or one per channel, and the bias and ReLU applied as values are stored. Each
instruction-set variant this CPU runs is tested. The test set-up builds the kernel.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import assert_close, bound
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from pipeline import FilterBank
from pipeline.engine import _depthwise, depthwise, native

BORDERS = {"constant": 0, "replicate": 1, "symmetric": 2, "reflect101": 3, "wrap": 4}
NUMPY = {"constant": "constant", "replicate": "edge", "symmetric": "symmetric",
         "reflect101": "reflect", "wrap": "wrap"}


def _runs(variant: str) -> bool:
    try:
        _depthwise.block(variant)
    except ValueError:
        return False
    return True


VARIANTS = [v for v in ("generic", "avx2", "avx512") if _runs(v)]


def reference(x, w, pads, border, value, dilation, bias, relu, before=None):
    """x (H, W, C), w (C, kh, kw), pads (t, b, l, r): numpy.pad, then scipy per channel;
    ``before`` (what the output held) added in, before the ReLU, if given."""
    t, b, left, r = pads
    extra = {"constant_values": value} if border == "constant" else {}
    xp = np.pad(x.astype(np.float64), ((t, b), (left, r), (0, 0)), mode=NUMPY[border], **extra)
    dh, dw = dilation
    out = []
    for c in range(x.shape[2]):
        k = np.zeros((dh * (w.shape[1] - 1) + 1, dw * (w.shape[2] - 1) + 1))
        k[::dh, ::dw] = w[c]
        out.append(signal.correlate2d(xp[..., c], k, mode="valid") + bias[c])
    y = np.stack(out, axis=-1) + (0.0 if before is None else before)
    return np.maximum(y, 0) if relu else y


def assert_close_added(out, expected, weights, x, bias, before):
    """``assert_close``, widened by float32's rounding of what was added to the
    correlation (the bias, and what the output held before)."""
    added = np.abs(bias).max() + (0.0 if before is None else np.abs(before).max())
    np.testing.assert_allclose(out, expected, rtol=0,
                               atol=bound(weights, x) + 2 * np.finfo(np.float32).eps * added)


def test_kernel_built_with_the_best_variant():
    assert native.depthwise is not None
    assert VARIANTS[-1] == native.instruction_set()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 11), w=st.sampled_from([1, 4, 5, 15, 16, 17, 31, 32, 33, 48, 70]),
    c=st.sampled_from([1, 2, 3, 4, 6]), kh=st.integers(1, 5), kw=st.integers(1, 5),
    dh=st.integers(1, 3), dw=st.integers(1, 3), border=st.sampled_from(sorted(BORDERS)),
    pad_seed=st.integers(0, 2**16), shared=st.booleans(), relu=st.booleans(),
    with_bias=st.booleans(), accumulate=st.booleans(), variant=st.sampled_from(VARIANTS),
    seed=st.integers(0, 2**16),
)
def test_variants_match_scipy(h, w, c, kh, kw, dh, dw, border, pad_seed, shared, relu,
                              with_bias, accumulate, variant, seed):
    rng = np.random.default_rng(seed)
    if _depthwise.block(variant)[0] % c:
        return  # the method does not send these channel counts to this variant
    reach = {"reflect101": 1}.get(border, 0)
    prng = np.random.default_rng(pad_seed)  # pads of any size the kernel takes
    t, b = (int(prng.integers(0, max(h - reach, 0) + 1)) for _ in range(2))
    left, r = (int(prng.integers(0, max(w - reach, 0) + 1)) for _ in range(2))
    ho, wo = h + t + b - dh * (kh - 1), w + left + r - dw * (kw - 1)
    if ho < 1 or wo < 1:
        return
    x = rng.normal(size=(h, w, c)).astype(np.float32)
    weights = rng.normal(size=(1 if shared else c, kh, kw)).astype(np.float32)
    weights = np.ascontiguousarray(np.broadcast_to(weights, (c, kh, kw)))
    bias = (rng.normal(size=c) if with_bias else np.zeros(c)).astype(np.float32)
    value = 2.5
    before = rng.normal(size=(ho, wo, c)).astype(np.float32) if accumulate else None
    out = before.copy() if accumulate else np.full((ho, wo, c), np.nan, np.float32)
    for r0, r1 in ((0, ho // 2), (ho // 2, ho)):  # two calls: the row range is honoured
        _depthwise.correlate(x, weights, out, (h, w, c, ho, wo, kh, kw, dh, dw, t, left),
                             BORDERS[border], value, shared, r0, r1, variant,
                             bias if with_bias else None, relu, accumulate)
    expected = reference(x, weights, (t, b, left, r), border, value, (dh, dw), bias, relu,
                         before)
    assert_close_added(out, expected, weights, np.maximum(np.abs(x), value), bias, before)


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_stays_nan_through_relu(variant):
    x = np.ones((6, 40, 3), np.float32)
    x[3, 20, 1] = np.nan
    w = np.full((3, 3, 3), -1.0, np.float32)  # every value negative: the ReLU clears it
    out = np.empty_like(x)
    _depthwise.correlate(x, w, out, (6, 40, 3, 6, 40, 3, 3, 1, 1, 1, 1), 3, 0.0, True, 0, 6,
                         variant, None, True)
    window = np.zeros((6, 40, 3), bool)
    window[2:5, 19:22, 1] = True
    assert np.isnan(out[window]).all()
    np.testing.assert_array_equal(out[~window], 0.0)


@pytest.mark.parametrize(("geometry", "rows", "match"), [
    ((10, 20, 3, 10, 20, 3, 3, 1, 1, 1, 1), (0, 11), "inconsistent"),
    ((10, 20, 5, 10, 20, 3, 3, 1, 1, 1, 1), (0, 10), "inconsistent"),  # 5 channels
    ((10, 20, 3, 10, 20, 3, 3, 0, 1, 1, 1), (0, 10), "inconsistent"),  # dilation 0
    ((10, 21, 3, 10, 20, 3, 3, 1, 1, 1, 1), (0, 10), "src holds"),
    ((10, 20, 3, 11, 20, 3, 3, 1, 1, 1, 1), (0, 10), "out holds"),
])
def test_bad_arguments_raise_not_crash(geometry, rows, match):
    x, out = np.zeros(10 * 20 * 3, np.float32), np.zeros(10 * 20 * 3, np.float32)
    with pytest.raises(ValueError, match=match):
        _depthwise.correlate(x, np.zeros(27, np.float32), out, geometry, 3, 0.0, True, *rows)


def test_a_short_bias_is_refused():
    x = np.zeros((4, 20, 3), np.float32)
    with pytest.raises(ValueError, match="bias holds 8 bytes, needs 12"):
        _depthwise.correlate(x, np.zeros(27, np.float32), np.empty_like(x),
                             (4, 20, 3, 4, 20, 3, 3, 1, 1, 1, 1), 3, 0.0, True, 0, 4, None,
                             np.zeros(2, np.float32))


def test_unknown_variant_refused():
    with pytest.raises(ValueError, match="not available"):
        _depthwise.block("sse9")


@pytest.mark.parametrize("k", [3, 5, 11])
@pytest.mark.parametrize("border", ["reflect101", "replicate", "symmetric", "zero"])
def test_bank_uses_kernel_and_matches_filter2d(rng, k, border):
    """Through the public API: one kernel on a 3-channel frame, OpenCV's alignment."""
    x = rng.normal(size=(45, 83, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k)).astype(np.float32)
    bank = FilterBank(kernel, align="opencv", border=border, method="direct")
    assert "depthwise C kernel" in bank.plan(x.shape).notes["direct"]
    from pipeline.engine.border import BORDERS

    expected = cv2.filter2D(x, -1, kernel, borderType=BORDERS[border].cv2)
    assert_close(bank(x), expected, kernel, x)


@pytest.mark.parametrize("activation", ["relu", "none", "tanh"])
def test_depthwise_bank_bias_and_activation(rng, monkeypatch, activation):
    """A per-channel bank with bias and an activation: the C stores do bias and ReLU; other
    activations run per band, never as a pass over the whole result."""
    x = rng.normal(size=(40, 64, 4)).astype(np.float32)
    w = rng.normal(size=(4, 1, 5, 5))
    bias = rng.normal(size=4)
    bank = FilterBank(w, bias=bias, groups=4, padding="same", border="wrap",
                      activation=activation, method="direct")
    engine = bank._engine(x.shape)
    assert engine.strategy == "depthwise" and engine.fused
    shapes = []
    kernel = engine._depthwise
    if kernel._epilogue is not None:
        inner = kernel._epilogue
        monkeypatch.setattr(kernel, "_epilogue", lambda b: (shapes.append(b.shape), inner(b)))
    y = bank(x)
    assert all(s[1] < x.shape[0] for s in shapes)  # bands of rows, not the whole frame
    assert (activation == "tanh") == bool(shapes)
    expected = reference(x, w[:, 0], (2, 2, 2, 2), "wrap", 0.0, (1, 1), bias,
                         activation == "relu")
    if activation == "tanh":
        expected = np.tanh(expected)
    assert_close(y, expected, w, x)


def test_channels_the_kernel_cannot_take_go_to_filter2d(rng):
    bank = FilterBank(rng.normal(size=(3, 3)), border="reflect101", method="direct")
    assert bank._engine((20, 40, 5)).strategy == "filter2d"  # 48 % 5 != 0
    assert bank._engine((20, 40, 3)).strategy == "depthwise"


def test_row_bands_start_at_whole_row_blocks():
    bands = depthwise.row_bands(1081, 16, 4)
    assert bands[0][0] == 0 and bands[-1][1] == 1081 and len(bands) == 16
    assert all(a % 4 == 0 for a, _ in bands)
    assert all(z == a2 for (_, z), (a2, _) in zip(bands, bands[1:], strict=False))
    assert depthwise.row_bands(3, 16, 4) == ((0, 3),)


# ----------------------------------------------------------------------- separable


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 11), w=st.sampled_from([16, 17, 31, 33, 48, 70]),
    c=st.sampled_from([1, 2, 3, 4, 6]), kh=st.integers(1, 7), kw=st.integers(1, 7),
    dh=st.integers(1, 3), dw=st.integers(1, 3), border=st.sampled_from(sorted(BORDERS)),
    pad_seed=st.integers(0, 2**16), shared=st.booleans(), relu=st.booleans(),
    with_bias=st.booleans(), accumulate=st.booleans(), variant=st.sampled_from(VARIANTS),
    seed=st.integers(0, 2**16),
)
def test_separable_variants_match_scipy(h, w, c, kh, kw, dh, dw, border, pad_seed, shared,
                                        relu, with_bias, accumulate, variant, seed):
    """The vertical pass into row buffers, their margins, the horizontal pass: the outer
    product's correlation, any pads, added into the output or not."""
    rng = np.random.default_rng(seed)
    floats = _depthwise.block(variant)[0]
    if floats % c:
        return
    reach = {"reflect101": 1}.get(border, 0)
    prng = np.random.default_rng(pad_seed)
    t, b = (int(prng.integers(0, max(h - reach, 0) + 1)) for _ in range(2))
    left, r = (int(prng.integers(0, max(w - reach, 0) + 1)) for _ in range(2))
    ho, wo = h + t + b - dh * (kh - 1), w + left + r - dw * (kw - 1)
    if ho < 1 or min(w, wo) * c < floats:
        return  # the method sends narrower frames to sepFilter2D
    x = rng.normal(size=(h, w, c)).astype(np.float32)
    cols = np.ascontiguousarray(np.broadcast_to(rng.normal(size=(1 if shared else c, kh)),
                                                (c, kh)), dtype=np.float32)
    rows = np.ascontiguousarray(np.broadcast_to(rng.normal(size=(1 if shared else c, kw)),
                                                (c, kw)), dtype=np.float32)
    bias = (rng.normal(size=c) if with_bias else np.zeros(c)).astype(np.float32)
    before = rng.normal(size=(ho, wo, c)).astype(np.float32) if accumulate else None
    out = before.copy() if accumulate else np.full((ho, wo, c), np.nan, np.float32)
    for r0, r1 in ((0, ho // 2), (ho // 2, ho)):
        _depthwise.separable(x, cols, rows, out, (h, w, c, ho, wo, kh, kw, dh, dw, t, left),
                             BORDERS[border], 2.5, shared, r0, r1, variant,
                             bias if with_bias else None, relu, accumulate)
    weights = cols[:, :, None] * rows[:, None, :]
    expected = reference(x, weights, (t, b, left, r), border, 2.5, (dh, dw), bias, relu,
                         before)
    assert_close_added(out, expected, weights, np.maximum(np.abs(x), 2.5), bias, before)


ND_MODE = {"reflect101": "mirror", "symmetric": "reflect", "replicate": "nearest",
           "constant": "constant", "wrap": "wrap"}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("k", "dh", "width"), [(31, 1, 1500), (51, 1, 1550), (31, 2, 1530)])
@pytest.mark.parametrize("border", ["reflect101", "symmetric", "replicate", "constant", "wrap"])
def test_separable_strips_of_wide_frames_match_ndimage(rng, variant, k, dh, width, border):
    """Frames wide enough for the vertical pass to go strip by strip of columns (its
    window of rows over a whole row would not stay in cache), each strip's buffers with
    the columns the horizontal pass reads past it, margins where it meets the edge."""
    h, c = 37, 3
    x = rng.normal(size=(h, width, c)).astype(np.float32)
    col, row = rng.normal(size=k).astype(np.float32), rng.normal(size=k).astype(np.float32)
    reach = dh * (k - 1)
    pad = reach // 2  # odd kernels: centred, pads within the frame's 37 rows
    out = np.empty_like(x)
    _depthwise.separable(x, np.ascontiguousarray(np.broadcast_to(col, (c, k))),
                         np.ascontiguousarray(np.broadcast_to(row, (c, k))), out,
                         (h, width, c, h, width, k, k, dh, 1, pad, k // 2), BORDERS[border],
                         1.5, True, 0, h, variant)
    dilated = np.zeros(reach + 1)
    dilated[::dh] = col
    y = ndimage.correlate1d(x.astype(np.float64), dilated, axis=0, mode=ND_MODE[border],
                            cval=1.5)
    # past the left and right edges every row is the constant: the column pass gives c·Σcol
    y = ndimage.correlate1d(y, row, axis=1, mode=ND_MODE[border], cval=1.5 * col.sum())
    assert_close(out, y, np.outer(col, row), np.maximum(np.abs(x), 1.5))


def test_without_the_kernels_banks_go_to_opencv(rng, monkeypatch):
    """An install without a C compiler: filter2D and sepFilter2D, the same numbers."""
    x = rng.normal(size=(30, 70, 3)).astype(np.float32)
    kernel, g = rng.normal(size=(5, 5)), cv2.getGaussianKernel(7, 1.2, ktype=cv2.CV_64F)
    built = [FilterBank(k, border="reflect101", method=m) for k, m in
             ((kernel, "direct"), (g @ g.T, "separable"))]
    assert [b._engine(x.shape).strategy for b in built] == ["depthwise", "native"]
    expected = [b(x) for b in built]
    monkeypatch.setattr(native, "depthwise", None)
    fresh = [FilterBank(k, border="reflect101", method=m) for k, m in
             ((kernel, "direct"), (g @ g.T, "separable"))]
    assert [b._engine(x.shape).strategy for b in fresh] == ["filter2d", "opencv"]
    for bank, y, k in zip(fresh, expected, (kernel, g @ g.T), strict=True):
        assert_close(bank(x), y, k, x)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("pads", ["valid", "full", "lopsided", "past left", "past right",
                                  "far right"])
@pytest.mark.parametrize("border", ["reflect101", "constant"])
def test_separable_wide_frames_with_other_pads(rng, variant, pads, border):
    """Pads other than 'same' on a frame wide enough for strips: none, the kernel's whole
    reach, all of it on one side, or more than it (an edge strip must still hold its
    border's columns)."""
    h, w, c, k = 40, 1500, 3, 31
    x = rng.normal(size=(h, w, c)).astype(np.float32)
    col, row = rng.normal(size=k).astype(np.float32), rng.normal(size=k).astype(np.float32)
    t, b, left, r = {"valid": (0, 0, 0, 0), "full": (30, 30, 30, 30),
                     "lopsided": (0, 30, 30, 0), "past left": (0, 0, 45, 0),
                     "past right": (0, 0, 0, 45), "far right": (0, 0, 0, 1400)}[pads]
    ho, wo = h + t + b - (k - 1), w + left + r - (k - 1)
    out = np.empty((ho, wo, c), np.float32)
    _depthwise.separable(x, np.ascontiguousarray(np.broadcast_to(col, (c, k))),
                         np.ascontiguousarray(np.broadcast_to(row, (c, k))), out,
                         (h, w, c, ho, wo, k, k, 1, 1, t, left), BORDERS[border], 1.5, True,
                         0, ho, variant)
    extra = {"constant_values": 1.5} if border == "constant" else {}
    xp = np.pad(x.astype(np.float64), ((t, b), (left, r), (0, 0)), mode=NUMPY[border], **extra)
    y = sum(col[i] * xp[i : i + ho] for i in range(k))  # valid correlation, axis by axis
    y = sum(row[j] * y[:, j : j + wo] for j in range(k))
    assert_close(out, y, np.outer(col, row), np.maximum(np.abs(x), 1.5))
