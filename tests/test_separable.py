"""The separable method's identity term: a kernel that is c·δ plus a low-rank rest (an
unsharp mask) goes as the rest's 1-D passes plus one scaled add, still within the bound."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import assert_close
from scipy import ndimage, signal

from pipeline import FilterBank
from pipeline.engine import native, planner
from pipeline.engine.separable import SeparableMethod, decompose, factors
from pipeline.kernels import make_kernel

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def low_rank_plus_identity(rng, shape, r, tap, c):
    k = sum(np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1])) for _ in range(r))
    k[tap] += c
    return k


@pytest.mark.parametrize(("shape", "tap", "r"), [
    ((9, 11), (3, 5), 1), ((9, 11), (3, 5), 2), ((9, 11), (3, 5), 3),
    ((5, 5), (2, 2), 1), ((5, 5), (2, 2), 3), ((4, 7), (0, 6), 1), ((4, 7), (0, 6), 2),
])
def test_decompose_finds_the_identity_and_the_rest(rng, shape, tap, r):
    k = low_rank_plus_identity(rng, shape, r, tap, 2.5)
    assert len(factors(k, F64)) == r + 1
    pairs, c = decompose(k, F64, tap)
    assert len(pairs) == r
    np.testing.assert_allclose(c, 2.5, rtol=1e-9)
    rebuilt = sum(np.outer(col, row) for col, row in pairs)
    rebuilt[tap] += c
    np.testing.assert_allclose(rebuilt, k, rtol=0, atol=1e-12 * np.abs(k).sum())


def test_decompose_leaves_kernels_without_one_alone(rng):
    u = np.array([0.1, 0.2, 10.0, 0.2, 0.1])
    peaked = np.outer(u, u)  # minus its centre: 100·δ and the rest nearly cancel there
    for k, tap in [(rng.normal(size=(7, 7)), (3, 3)),  # full rank: nothing to find
                   (make_kernel("sharpen"), (1, 1)),  # 5·δ minus a rank-2 cross
                   (make_kernel("gaussian", sigma=2.0), (6, 6)),  # already rank 1
                   (low_rank_plus_identity(rng, (5, 5), 1, (2, 2), 1.0), (0, 0)),  # elsewhere
                   (peaked - 100.0 * np.eye(5)[2][:, None] * np.eye(5)[2], (2, 2))]:  # cancels
        pairs, c = decompose(k, F32, tap)
        assert c == 0.0 and len(pairs) == len(factors(k, F32))
    pairs, c = decompose(make_kernel("unsharp", sigma=2.0, amount=1.5), F32, (6, 6))
    assert len(pairs) == 1 and c == pytest.approx(2.5, rel=1e-6)


@pytest.mark.parametrize("strategy", ["native", "opencv"])
def test_unsharp_as_one_pass_pair_matches_opencv_unsharp_masking(rng, monkeypatch, strategy):
    """cv2's own unsharp masking: addWeighted(x, 1 + a, GaussianBlur(x), -a)."""
    x = (rng.random((60, 80, 3)) * 255).astype(np.float32)
    k = make_kernel("unsharp", sigma=2.0, amount=1.5)
    engine = separable_engine(k, x.shape, strategy, align="opencv", border="reflect101")
    calls = []
    if strategy == "opencv":
        real = cv2.sepFilter2D
        monkeypatch.setattr(cv2, "sepFilter2D",
                            lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    else:
        kernels = native.depthwise
        monkeypatch.setattr(native, "depthwise", type("Spy", (), {
            "separable": lambda *a: (calls.append(1), kernels.separable(*a))[1],
            "correlate": kernels.correlate}))
    y = engine(x)
    # one pass pair for all three channels, not two (per band of rows in the C kernel)
    assert len(calls) == (1 if strategy == "opencv" else len(engine._native._bands))
    blur = cv2.GaussianBlur(x, (13, 13), 2.0, borderType=cv2.BORDER_REFLECT_101)
    assert_close(y, cv2.addWeighted(x, 2.5, blur, -1.5, 0.0), k, x)


@pytest.mark.parametrize(("padding", "border", "mode"), [
    ("same", "reflect101", "mirror"),  # OpenCV makes the border: the identity is x itself
    ("same", "wrap", "wrap"),  # numpy pads: the identity is an offset view of the padding
    ("same", "constant", "constant"),
])
@pytest.mark.parametrize("dilation", [1, 2])
def test_identity_split_matches_ndimage(rng, padding, border, mode, dilation):
    x = rng.normal(size=(40, 50, 2)) * 10
    k = low_rank_plus_identity(rng, (5, 7), 1, (2, 3), 3.0)
    dilated = np.zeros((4 * dilation + 1, 6 * dilation + 1))
    dilated[::dilation, ::dilation] = k
    expected = np.stack([ndimage.correlate(x[..., c], dilated, mode=mode, cval=1.5)
                         for c in range(2)], axis=-1)
    bank = FilterBank(k, align="opencv", padding=padding, border=border, border_value=1.5,
                      dilation=dilation, method="separable")
    assert_close(bank(x), expected, k, x)


def test_identity_off_centre_with_valid_padding_stride_and_dense_banks(rng):
    """'valid' padding puts the identity anywhere in the padded source; a dense bank sums
    one such kernel per input channel; stride subsamples the result."""
    x = rng.normal(size=(33, 41, 2)) * 10
    w = np.stack([np.stack([low_rank_plus_identity(rng, (5, 6), 1, (i, 4 - o), 2.0 + o)
                            for i in range(2)]) for o in range(3)])  # (3, 2, 5, 6)
    y = FilterBank(w, padding="valid", stride=2, method="separable", dtype="float64")(x)
    full = np.stack([sum(signal.correlate2d(x[..., i], w[o, i], mode="valid")
                         for i in range(2)) for o in range(3)], axis=-1)
    assert_close(y, full[::2, ::2], w, x, "float64")


def test_the_planner_counts_the_identity_as_an_add(rng):
    spec = FilterBank(make_kernel("unsharp", sigma=2.0, amount=1.5),
                      border="reflect101")._resolve((720, 1280, 3))
    k = planner.DEFAULT_CONSTANTS
    costs, notes = planner.predict(spec, k)
    assert notes["separable"].startswith("rank 1 + identity, C kernel")
    assert costs["separable"] == pytest.approx(planner.separable_cost(spec, k, 1, 1))
    assert planner.separable_cost(spec, k, 1, 1) < planner.separable_cost(spec, k, 2)
    on_5 = FilterBank(make_kernel("unsharp", sigma=2.0, amount=1.5),
                      border="reflect101")._resolve((720, 1280, 5))  # sepFilter2D's cost
    assert planner.predict(on_5, k)[1]["separable"] == "rank 1 + identity, sepFilter2D"
    assert planner.separable_cost(on_5, k, 1, 1) < planner.separable_cost(on_5, k, 2)


def separable_engine(weights, shape, strategy=None, **options):
    """The bank's separable method for frames of ``shape``; ``strategy`` forces 'native'
    (the C kernel) or 'opencv' (sepFilter2D)."""
    bank = FilterBank(weights, method="separable", **options)
    if strategy is None:
        return bank._engine(shape)
    return SeparableMethod(bank._planned(shape)[0], strategy)


@pytest.mark.parametrize(("weights", "shape", "options"), [
    ("unsharp", (70, 50, 3), {"align": "opencv", "border": "reflect101"}),  # OpenCV's border
    ("unsharp", (70, 50, 3), {"border": "wrap", "stride": 2}),  # a padded source
    ("gauss", (70, 50, 1), {"border": "zero", "dilation": 2}),  # (H, W, 1): OpenCV's (H, W)
    ("dense", (70, 50, 2), {"padding": "valid"}),  # per plane, identity terms
    ("zero", (70, 50, 3), {}),  # rank 0
])
def test_bands_give_the_same_numbers_as_whole_frames(rng, weights, shape, options):
    w = {"unsharp": make_kernel("unsharp", sigma=1.5, amount=1.0),
         "gauss": make_kernel("gaussian", sigma=1.2),
         "dense": np.stack([np.stack([low_rank_plus_identity(rng, (5, 5), 1, (2, 2), 2.0)
                                      for _ in range(2)]) for _ in range(3)]),
         "zero": np.zeros((3, 3))}[weights]
    engine = separable_engine(w, shape, "opencv", **options)
    x = rng.normal(size=shape).astype(np.float32)
    engine._bands = 1
    whole = engine(x)
    for bands in (2, 3, 7):
        engine._bands = bands
        np.testing.assert_array_equal(engine(x), whole)


def test_bands_are_timed_once_and_taken_only_when_clearly_faster(monkeypatch):
    from pipeline.engine import separable, threads

    monkeypatch.setattr(threads, "CORES", 2)
    timed: list[int] = []

    def fake(engines, frame, repeat):
        timed.append(len(engines))
        return [10.0, 5.0]

    monkeypatch.setattr(separable, "interleaved_ms", fake)
    k = make_kernel("gaussian", sigma=2.0)  # on 5 channels: sepFilter2D (48 % 5 != 0)
    assert separable_engine(k, (301, 67, 5))._bands == 4 and timed == [2]
    assert separable_engine(k, (301, 67, 5))._bands == 4 and timed == [2]  # kept: not again
    monkeypatch.setattr(separable, "interleaved_ms", lambda *a, **kw: [10.0, 9.0])
    assert separable_engine(k, (302, 67, 5))._bands == 1  # 10 % is not clearly faster
    monkeypatch.setattr(separable, "interleaved_ms", lambda *a, **kw: 1 / 0)
    assert separable_engine(k, (100, 67, 5))._bands == 1  # too short to band: not timed
    with threads.limited(1):
        assert separable_engine(k, (303, 67, 5))._bands == 1  # capped now: not timed
    monkeypatch.setattr(threads, "CORES", 1)
    assert separable_engine(k, (304, 67, 5))._bands == 1  # one core: not timed


@pytest.mark.parametrize("k", [3, 7, 15])
@pytest.mark.parametrize("border", ["reflect101", "replicate", "symmetric", "zero"])
def test_gaussian_goes_to_the_c_kernel_and_matches_sepfilter2d(rng, k, border):
    x = rng.normal(size=(45, 83, 3)).astype(np.float32)
    g = cv2.getGaussianKernel(k, k / 6, ktype=cv2.CV_32F)
    engine = separable_engine(g @ g.T, x.shape, align="opencv", border=border)
    assert engine.strategy == "native"
    from pipeline.engine.border import BORDERS

    assert_close(engine(x), cv2.sepFilter2D(x, -1, g, g, borderType=BORDERS[border].cv2),
                 g @ g.T, x)


def test_banks_the_c_kernel_cannot_take_go_to_sepfilter2d(rng):
    g = make_kernel("gaussian", sigma=1.0)
    assert separable_engine(g, (30, 40, 5)).strategy == "opencv"  # 5 does not divide 48
    assert separable_engine(g, (30, 40, 3), stride=2).strategy == "opencv"
    assert separable_engine(g, (30, 40, 3), dtype="float64").strategy == "opencv"
    assert separable_engine(np.zeros((3, 3)), (30, 40, 3)).strategy == "opencv"  # rank 0
    assert separable_engine(g, (30, 10, 3)).strategy == "opencv"  # narrower than a block
    assert separable_engine(g, (30, 40, 3)).strategy == "native"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_c_kernel_applies_bias_and_activation(rng, monkeypatch, activation):
    """A rank-2 kernel plus an identity: the bias and ReLU go with the last term's stores
    (added into the others'), tanh runs per band, never over the whole result."""
    x = rng.normal(size=(50, 70, 3)).astype(np.float32)
    k = low_rank_plus_identity(rng, (5, 5), 2, (2, 2), 3.0)
    bank = FilterBank(k, bias=0.7, activation=activation, border="symmetric",
                      method="separable")
    engine = bank._engine(x.shape)
    assert engine.strategy == "native" and engine.fused
    assert len(engine._native._pairs) == 2 and engine._native._identity is not None
    shapes = []
    if engine._native._epilogue is not None:
        inner = engine._native._epilogue
        monkeypatch.setattr(engine._native, "_epilogue",
                            lambda b: (shapes.append(b.shape), inner(b)))
    y = bank(x)
    assert (activation == "tanh") == bool(shapes) and all(s[1] < 50 for s in shapes)
    xp = np.pad(x.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="symmetric")
    z = np.stack([signal.correlate2d(xp[..., c], k, mode="valid") for c in range(3)], -1) + 0.7
    assert_close(y, np.maximum(z, 0) if activation == "relu" else np.tanh(z), k, x)


@pytest.mark.parametrize("padding", ["valid", "full"])
def test_c_kernel_identity_off_centre(rng, padding):
    """'valid' and 'full' padding put the identity's tap off the output pixel: the C
    kernel reads it as a 1x1 kernel on a frame shifted by the tap's offset."""
    x = rng.normal(size=(33, 70, 3)).astype(np.float32)
    k = low_rank_plus_identity(rng, (5, 6), 1, (1, 4), 8.0)  # the largest tap: found there
    engine = separable_engine(k, x.shape, padding=padding, border="zero")
    assert engine.strategy == "native" and engine._native._identity is not None
    expected = np.stack([signal.correlate2d(x[..., c].astype(np.float64), k, mode=padding)
                         for c in range(3)], axis=-1)
    assert_close(engine(x), expected, k, x)
