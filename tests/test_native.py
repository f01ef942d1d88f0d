"""The direct method's C kernel (engine/_correlate.c) against torch conv2d.

Frame widths on both sides of its vector blocks (32 and 64 pixels with AVX-512, the last
block overlapping the one before, a plain loop below one block), every output-channel
block (8, 4, 2, 1), dilation and groups, for each instruction-set variant this CPU runs.
The test set-up (README) builds the kernel, so its absence is a failure here.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import FilterBank
from pipeline.engine import _correlate, native

torch = pytest.importorskip("torch")

def _runs(variant: str) -> bool:
    one = np.ones(1, np.float32)
    try:
        _correlate.correlate(one, one, np.empty(1, np.float32), (1,) * 10, 0, 1, variant)
    except ValueError:
        return False
    return True


VARIANTS = [v for v in ("generic", "avx2", "avx512") if _runs(v)]


def reference(x, w, groups, dilation):
    """x (C_in, Hp, Wp) already padded, w (C_out, C_in/g, kh, kw): torch, float64."""
    xt = torch.from_numpy(x[None].astype(np.float64))
    wt = torch.from_numpy(w.astype(np.float64))
    return torch.nn.functional.conv2d(xt, wt, groups=groups, dilation=dilation)[0].numpy()


def test_kernel_built_with_the_best_variant():
    assert native.available()
    assert native.instruction_set() == VARIANTS[-1]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 6), w=st.sampled_from([1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 97]),
    groups=st.sampled_from([1, 2]), cg=st.integers(1, 3), og=st.integers(1, 19),
    kh=st.integers(1, 5), kw=st.integers(1, 5), dh=st.integers(1, 3), dw=st.integers(1, 3),
    variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16),
)
def test_variants_match_torch(h, w, groups, cg, og, kh, kw, dh, dw, variant, seed):
    rng = np.random.default_rng(seed)
    hp, wp = h + dh * (kh - 1), w + dw * (kw - 1)
    x = rng.normal(size=(groups * cg, hp, wp)).astype(np.float32)
    weights = rng.normal(size=(groups * og, cg, kh, kw)).astype(np.float32)
    out = np.full((groups * og, h, w), np.nan, np.float32)
    shape = (cg, og, hp, wp, h, w, kh, kw, dh, dw)
    for g in range(groups):
        tap_major = np.ascontiguousarray(weights[g * og : (g + 1) * og].transpose(1, 2, 3, 0))
        rows = [0, h // 2, h]  # two calls: the row range is honoured
        for r0, r1 in zip(rows, rows[1:], strict=False):
            _correlate.correlate(x[g * cg : (g + 1) * cg], tap_major,
                                 out[g * og : (g + 1) * og], shape, r0, r1, variant)
    expected = reference(x, weights, groups, (dh, dw))
    assert_close(out, expected, weights, x)


@pytest.mark.parametrize("c_out", [1, 3, 8, 15])
def test_bank_uses_kernel_and_matches_torch(rng, c_out):
    """Through the public API: a dense float32 bank, 'same' zero padding, a 70-wide frame."""
    x = rng.normal(size=(21, 70, 3)).astype(np.float32)
    w = rng.normal(size=(c_out, 3, 5, 5))
    bank = FilterBank(w, padding="same", method="direct")
    assert "C kernel" in bank.plan(x.shape).notes["direct"]
    xp = np.pad(x, ((2, 2), (2, 2), (0, 0))).transpose(2, 0, 1)
    assert_close(bank(x), reference(xp, w, 1, 1).transpose(1, 2, 0), w, x)


def test_nan_stays_in_its_window(rng):
    x = rng.normal(size=(30, 80, 2)).astype(np.float32)
    x[10, 40, 1] = np.nan
    w = rng.normal(size=(4, 2, 3, 3)) + 3.0  # no zero taps
    y = FilterBank(w, padding="same", method="direct")(x)
    assert np.isnan(y[9:12, 39:42]).all()
    y[9:12, 39:42] = 0.0
    assert np.isfinite(y).all()


@pytest.mark.parametrize(("planes", "out", "shape", "rows", "match"), [
    (2 * 10 * 12, 4 * 8 * 10, (2, 4, 10, 12, 8, 10, 3, 3, 1, 1), (0, 9), "inconsistent"),
    (2 * 10 * 12, 4 * 8 * 10, (2, 4, 10, 12, 8, 11, 3, 3, 1, 1), (0, 8), "inconsistent"),
    (2 * 10 * 11, 4 * 8 * 10, (2, 4, 10, 12, 8, 10, 3, 3, 1, 1), (0, 8), "planes holds"),
    (2 * 10 * 12, 4 * 8 * 9, (2, 4, 10, 12, 8, 10, 3, 3, 1, 1), (0, 8), "out holds"),
])
def test_bad_arguments_raise_not_crash(planes, out, shape, rows, match):
    weights = np.zeros(2 * 9 * 4, np.float32)
    with pytest.raises(ValueError, match=match):
        _correlate.correlate(np.zeros(planes, np.float32), weights,
                             np.zeros(out, np.float32), shape, *rows)


def test_unknown_variant_refused():
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="not available"):
        _correlate.correlate(one, one, np.empty(1, np.float32), (1,) * 10, 0, 1, "sse9")



@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.sampled_from([5, 16, 33, 64, 70]), og=st.integers(1, 11),
       relu=st.booleans(), variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16))
def test_bias_and_relu_as_values_are_stored(w, og, relu, variant, seed):
    """The fused epilogue, per variant: torch's conv2d + bias, then relu; NaN stays NaN."""
    rng = np.random.default_rng(seed)
    h, cg, kh, kw = 4, 2, 3, 3
    x = rng.normal(size=(cg, h + kh - 1, w + kw - 1)).astype(np.float32)
    x[0, 2, min(3, w)] = np.nan
    weights = rng.normal(size=(og, cg, kh, kw)).astype(np.float32)
    bias = rng.normal(size=og).astype(np.float32) * 3
    out = np.full((og, h, w), -7.0, np.float32)
    tap_major = np.ascontiguousarray(weights.transpose(1, 2, 3, 0))
    _correlate.correlate(x, tap_major, out, (cg, og, *x.shape[1:], h, w, kh, kw, 1, 1), 0, h,
                         variant, bias, relu)
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x[None].astype(np.float64)),
        torch.from_numpy(weights.astype(np.float64)), torch.from_numpy(bias.astype(np.float64)))
    expected = (torch.relu(expected) if relu else expected)[0].numpy()
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert_close(np.nan_to_num(out), np.nan_to_num(expected), weights, np.nan_to_num(x))


def test_a_short_bias_is_refused():
    one, two = np.ones(1, np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="bias holds 4 bytes, needs 8"):
        _correlate.correlate(one, two, np.empty(2, np.float32), (1, 2, 1, 1, 1, 1, 1, 1, 1, 1),
                             0, 1, None, one, True)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", None])
@pytest.mark.parametrize("groups", [1, 2])
def test_bank_fuses_bias_and_activation_into_the_kernel(rng, monkeypatch, activation, groups):
    """Through the public API, against torch: bias and ReLU go into the C kernel's stores,
    other activations run band by band; either way no pass over the whole result after."""
    from pipeline import bank as bank_module

    x = rng.normal(size=(37, 90, 4)).astype(np.float32) * 4
    w = rng.normal(size=(6, 4 // groups, 3, 3))
    b = rng.normal(size=6) * 2
    fb = FilterBank(w, b, groups=groups, padding="same", activation=activation,
                    method="direct")
    whole: list[tuple[int, ...]] = []  # shapes _activate saw
    real = bank_module._activate
    monkeypatch.setattr(bank_module, "_activate",
                        lambda y, act: (whole.append(y.shape), real(y, act))[1])
    y = fb(x)
    assert fb._engine(x.shape).fused
    assert (37, 90, 6) not in whole  # never over the whole result
    assert bool(whole) == (activation == "sigmoid")  # relu and none: inside the kernel
    xt = torch.from_numpy(np.pad(x, ((1, 1), (1, 1), (0, 0))).transpose(2, 0, 1)[None]
                          .astype(np.float64))
    ref = torch.nn.functional.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b),
                                     groups=groups)
    ref = {"relu": torch.relu, "sigmoid": torch.sigmoid, None: lambda t: t}[activation](ref)
    assert_close(y, ref[0].numpy().transpose(1, 2, 0), w, x)
