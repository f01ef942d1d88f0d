"""A first ``convert: gray`` folded into the bank's loads, a one-channel frame replicated
into a dense bank's outputs, and the l2 of a gradient pair made in the C stores: against
OpenCV (cvtColor, filter2D, magnitude), numpy and scipy, on uint8, uint16 and float
frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from pipeline import FilterBank, run_config
from pipeline.config import load_config
from pipeline.encode import Encoder
from pipeline.frames import FrameFormat
from pipeline.io.sinks import MemorySink
from pipeline.io.sources import MemorySource
from pipeline.kernels import make_kernel
from pipeline.stages import GRAY_MIX, build_chain

SOBEL = [make_kernel("sobel", axis=a, size=3) for a in (0, 1)]
EDGES = """stages:
  - {{type: convert, color: gray{scale}}}
  - {{type: bank, op: correlate, weights: [{{builtin: sobel, axis: 0, size: 3}},
      {{builtin: sobel, axis: 1, size: 3}}], padding: same, border: reflect101}}
  - {{type: reduce, op: l2}}
encode: {{policy: saturate, range: [0, 255]}}
"""
BLUR = """stages:
  - {type: convert, color: gray}
  - {type: bank, op: correlate, weights: {builtin: gaussian, sigma: 2.0}, padding: same,
     border: reflect101, method: separable}
encode: {policy: saturate, range: [0, 255]}
"""


def frames(dtype: str, shape=(45, 96, 3), n: int = 2, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(n)]
    top = 256 if dtype == "uint8" else 1024  # uint16: values an 8-bit range saturates in places
    return [rng.integers(0, top, shape).astype(dtype) for _ in range(n)]


def config(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def opencv_edges(frame: np.ndarray) -> np.ndarray:
    """What a user's OpenCV code gives: gray in float, the Sobel pair, magnitude, rounded
    and saturated as the saturate policy does (half to even, as cv2's saturate_cast)."""
    gray = cv2.cvtColor(frame.astype(np.float32), cv2.COLOR_BGR2GRAY)
    dy, dx = (cv2.filter2D(gray, cv2.CV_32F, k.astype(np.float32),
                           borderType=cv2.BORDER_REFLECT_101) for k in SOBEL)
    return np.clip(np.rint(cv2.magnitude(dy, dx)), 0, 255).astype(np.uint8)[..., None]


def assert_close_levels(got: np.ndarray, want: np.ndarray) -> None:
    """Another library sums the taps in another order (within SPEC's bound): a value on a
    rounding edge may come out one level apart, rarely."""
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, diff.max()
    assert np.count_nonzero(diff) <= diff.size // 1000 + 1, np.count_nonzero(diff)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_edges_fold_the_gray_convert_and_write_each_output_once(tmp_path, dtype):
    """The edges chain on BGR frames: the bank reads them as they come (no gray frame is
    made), the l2 and the encoding happen in the C stores (the encoder's band code is
    never called), and the result is OpenCV's."""
    cfg = config(tmp_path, EDGES.format(scale=""))
    fmt = FrameFormat(45, 96, 3, dtype)
    chain = build_chain(cfg, fmt)
    encoder = Encoder(cfg.encode, chain.out_shape)
    calls: list[int] = []
    band = encoder.band
    encoder.band = lambda y, out: (calls.append(1), band(y, out))  # type: ignore[method-assign]
    assert chain.finish_in_bank(encoder) and chain.folded
    assert "mixed into 1 as rows are loaded" in str(chain.steps[1].plan)
    for frame in frames(dtype):
        got = chain(frame)
        assert got.dtype == np.uint8 and got.shape == (45, 96, 1)
        assert_close_levels(got, opencv_edges(frame))
    assert calls == []


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_the_l2_in_the_stores_is_the_reduce_stage_bit_for_bit(tmp_path, dtype):
    """The same folded bank, finished two ways: the C stores' magnitude and encoding, and
    the float chain (the reduce stage's sqrt(a*a + b*b), then the encoder)."""
    cfg = config(tmp_path, EDGES.format(scale=""))
    fmt = FrameFormat(45, 96, 3, dtype)
    fused, banded = build_chain(cfg, fmt), build_chain(cfg, fmt)
    assert fused.finish_in_bank(Encoder(cfg.encode, fused.out_shape))
    floats = build_chain(cfg, fmt)  # no encoder: the float chain, folded the same way
    encoder = Encoder(cfg.encode, floats.out_shape)
    assert floats.folded and banded.folded
    for frame in frames(dtype, n=3):
        np.testing.assert_array_equal(fused(frame), encoder(floats(frame)))


def test_a_gray_convert_matches_cvtcolor_bit_for_bit():
    """The mix alone (a 1x1 identity bank after it) is cv2.cvtColor's BGR2GRAY on float
    frames: bit for bit here (OpenCV 5.1, its order of sums measured), and within one ulp
    wherever OpenCV's own code sums in another order; on a width its vector loop covers
    whole."""
    bank = FilterBank([[1.0]], method="direct")
    mixed = bank.load_mix((32, 128, 1), GRAY_MIX, np.uint8)
    assert mixed is not None
    frame = frames("uint8", (32, 128, 3))[0]
    want = cv2.cvtColor(frame.astype(np.float32), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_max_ulp(mixed(frame)[..., 0], want, maxulp=1)
    assert np.count_nonzero(mixed(frame)[..., 0] != want) <= want.size // 100


@pytest.mark.parametrize("shape", [(45, 96, 3), (9, 7, 3)])  # (9, 7): narrower than a block
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("kind", ["direct 5x5 into 3", "separable gaussian"])
def test_a_folded_bank_matches_scipy(dtype, kind, shape):
    """Floats out of a bank whose loads mix BGR into gray, against float64 gray (OpenCV's
    coefficients) through numpy.pad's border and scipy.ndimage.correlate, within SPEC's
    float32 bound."""
    rng = np.random.default_rng(11)
    if kind == "separable gaussian":
        kernels = [make_kernel("gaussian", sigma=1.5)]
        bank = FilterBank(kernels[0], method="separable", border="symmetric")
        mode = "reflect"  # ndimage's name for symmetric
    else:
        kernels = list(rng.normal(size=(3, 5, 5)))
        bank = FilterBank(np.array(kernels)[:, None], method="direct", border="wrap",
                          bias=[1.0, -2.0, 0.5], activation="relu")
        mode = "wrap"
    h, w = shape[:2]
    mixed = bank.load_mix((h, w, 1), GRAY_MIX, dtype)
    if kind == "separable gaussian" and w == 7:  # the C kernel needs a block's width
        assert mixed is None
        return
    assert mixed is not None
    frame = frames(dtype, shape)[0]
    gray = frame.astype(np.float64) @ np.array([0.114, 0.587, 0.299])
    want = np.stack([ndimage.correlate(gray, k, mode=mode) for k in kernels], axis=-1)
    if kind != "separable gaussian":
        want = np.maximum(want + [1.0, -2.0, 0.5], 0)
    bound = 1e-5 * max(np.abs(k).sum() for k in kernels) * np.abs(gray).max()
    np.testing.assert_allclose(mixed(frame), want, atol=bound, rtol=0)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_a_dense_bank_on_one_channel_runs_the_depthwise_kernel(dtype):
    """C_in = 1 into three outputs: the C kernel replicates the channel into three lanes
    as it loads rows; each output is that channel correlated with its own kernel."""
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(3, 1, 7, 7))
    bank = FilterBank(weights, method="direct", border="replicate", padding="same")
    frame = frames(dtype, (50, 70, 1))[0]
    plan = bank.plan(frame.shape, frame.dtype)
    assert "depthwise C kernel" in plan.notes["direct"]
    x = frame[..., 0].astype(np.float64)
    want = np.stack([ndimage.correlate(x, k, mode="nearest") for k in weights[:, 0]], -1)
    bound = 1e-5 * np.abs(weights).sum(axis=(1, 2, 3)).max() * np.abs(x).max()
    np.testing.assert_allclose(bank(frame), want, atol=bound, rtol=0)


def test_a_scaled_convert_is_not_folded(tmp_path):
    """convert gray with a scale stays a stage of its own (its numbers are the chain's)."""
    cfg = config(tmp_path, EDGES.format(scale=", scale: 0.5"))
    chain = build_chain(cfg, FrameFormat(45, 96, 3, "uint8"))
    assert not chain.folded
    frame = frames("uint8")[0]
    encoder = Encoder(cfg.encode, chain.out_shape)
    assert_close_levels(encoder(chain(frame)), opencv_edges(frame.astype(np.float32) * 0.5))


def test_a_blur_on_gray_runs_folded_through_a_whole_run(tmp_path):
    """A run of a gray blur: the separable C kernel reads the BGR frames, and the frames
    written are cvtColor then OpenCV's separable filter with the same kernel."""
    path = tmp_path / "blur.yaml"
    path.write_text(BLUR)
    source = frames("uint8", (40, 64, 3), n=4)
    sink = MemorySink("uint8")
    run_config(path, source=MemorySource(source), sinks=[sink])
    chain = build_chain(load_config(path), FrameFormat(40, 64, 3, "uint8"))
    assert chain.folded
    g = make_kernel("gaussian", sigma=2.0).sum(axis=1)  # the 1-D factor of g·gᵀ
    for frame, got in zip(source, sink.frames, strict=True):
        gray = cv2.cvtColor(frame.astype(np.float32), cv2.COLOR_BGR2GRAY)
        blur = cv2.sepFilter2D(gray, cv2.CV_32F, g, g, borderType=cv2.BORDER_REFLECT_101)
        assert_close_levels(got, np.clip(np.rint(blur), 0, 255).astype(np.uint8)[..., None])


def test_float64_frames_fold_too(tmp_path):
    """Frames of a dtype the kernels do not read (float64) reach the folded bank in the
    compute dtype, channels kept: the same edges as from float32 frames."""
    cfg = config(tmp_path, EDGES.format(scale=""))
    frame = frames("float32")[0]
    chain32 = build_chain(cfg, FrameFormat(45, 96, 3, "float32"))
    chain64 = build_chain(cfg, FrameFormat(45, 96, 3, "float64"))
    assert chain64.folded
    np.testing.assert_array_equal(chain64(frame.astype(np.float64)), chain32(frame))


def test_the_l2_of_a_pair_is_numpys_and_within_opencvs_rounding():
    """The reduce stage's l2 of two channels: numpy's np.sqrt(a*a + b*b) in float32 bit for
    bit (the C stores compute the same), and within 2 ulp of cv2.magnitude."""
    from pipeline.stages import _reduce

    rng = np.random.default_rng(9)
    x = rng.uniform(-500, 500, (33, 70, 2)).astype(np.float32)
    x[0, 0] = [np.nan, 1.0]
    got = _reduce("l2")(x)[..., 0]
    a, b = x[..., 0], x[..., 1]
    np.testing.assert_array_equal(got, np.sqrt(a * a + b * b))
    np.testing.assert_array_max_ulp(got[1:], cv2.magnitude(a, b)[1:], maxulp=2)
