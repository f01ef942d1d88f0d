"""The 8-bit result written by the last bank band by band (``Chain.finish_in_bank``) is
bit for bit what encoding the chain's float result gives, on uint8 and uint16 frames."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import run_config
from pipeline.config import Encode, load_config
from pipeline.encode import Encoder
from pipeline.engine import native
from pipeline.frames import FrameFormat
from pipeline.io.sinks import MemorySink
from pipeline.io.sources import MemorySource
from pipeline.stages import build_chain

GAUSSIAN = ("  - {type: bank, op: correlate, mode: depthwise, weights: {builtin: gaussian, sigma: 2.5}, "
            "padding: same, border: reflect101, method: separable}\n")
RANDOM7 = ("  - {type: bank, op: correlate, mode: depthwise, weights: {builtin: gaussian, sigma: 1.2, size: 7}, "
           "padding: same, border: zero, method: direct, bias: [-40, 3, 250], "
           "activation: relu}\n")
DENSE = ("  - {type: bank, op: correlate, weights: [{builtin: sobel, axis: 0, size: 3}, "
         "{builtin: sobel, axis: 1, size: 3}, {builtin: box, size: 3}], padding: same, "
         "border: replicate, method: direct, activation: tanh}\n")
EDGES = ("  - {type: bank, op: correlate, weights: [{builtin: sobel, axis: 0, size: 3}, "
         "{builtin: sobel, axis: 1, size: 3}], padding: same, border: reflect101, "
         "method: direct}\n  - {type: reduce, op: l2}\n")
CASES = {  # stages, encode, whether the last bank can finish in bands
    "separable gaussian": (GAUSSIAN, "{policy: saturate, range: [0, 255]}", True),
    "direct depthwise, bias, relu": (RANDOM7, "{policy: saturate, range: [0, 255]}", True),
    "dense 3->3, tanh, abs": (DENSE, "{policy: abs, range: [0, 1]}", True),
    "dense 3->2 then reduce l2": (EDGES, "{policy: saturate, range: [0, 255]}", True),
    "then select": (EDGES.replace("reduce, op: l2", "select, channels: [1]"),
                    "{policy: saturate, range: [-100, 100]}", True),
    "normalize per frame": (GAUSSIAN, "{policy: normalize, range: per-frame}", False),
    "mosaic": (DENSE, "{policy: saturate, range: [0, 1], mosaic: true}", False),
}


def _config(tmp_path, stages: str, encode: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"stages:\n{stages}encode: {encode}\n")
    return path


def _frames(dtype: str, n: int = 3, shape=(67, 101, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max + 1
    return [rng.integers(0, top, size=shape, dtype=dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("case", CASES)
def test_finish_in_bank_equals_encoding_afterwards(tmp_path, case, dtype):
    stages, encode, fuses = CASES[case]
    cfg = load_config(_config(tmp_path, stages, encode))
    fmt = FrameFormat(67, 101, 3, dtype)
    plain = build_chain(cfg, fmt)
    fused = build_chain(cfg, fmt)
    encoder = Encoder(cfg.encode, plain.out_shape)
    assert fused.finish_in_bank(Encoder(cfg.encode, fused.out_shape)) is fuses
    for frame in _frames(dtype):
        if dtype == "uint16":  # values a 0..255 range saturates in places, not everywhere
            frame = frame // 200
        expected = encoder(plain(frame))
        got = fused(frame)
        if fuses:
            assert got.dtype == np.uint8 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_array_equal(encoder(got), expected)


def test_nan_in_a_band_is_counted_and_written_as_zero(tmp_path):
    """A float frame with NaN: the band's encoder writes 0 there and counts the pixels."""
    cfg = load_config(_config(tmp_path, GAUSSIAN.replace("separable", "direct"),
                              "{policy: saturate, range: [0, 255]}"))
    frame = np.full((40, 64, 3), 100.0, np.float32)
    frame[20, 30, 1] = np.nan
    fused = build_chain(cfg, FrameFormat(40, 64, 3, "float32"))
    encoder = Encoder(cfg.encode, fused.out_shape)
    assert fused.finish_in_bank(encoder)
    got = fused(frame)
    assert got[20, 30, 1] == 0 and got[0, 0, 1] == 100
    assert encoder.nan_pixels == int(np.count_nonzero(got[..., 1] == 0)) > 1


def test_a_run_writes_the_same_frames_fused(tmp_path):
    """Through a whole run (8-bit sinks only): the frames written equal the float chain's
    result encoded afterwards, and the summary says the bank encoded them."""
    frames = _frames("uint8", n=5)
    path = _config(tmp_path, EDGES, "{policy: saturate, range: [0, 255]}")
    sink = MemorySink("uint8")
    stats = run_config(path, source=MemorySource(frames), sinks=[sink])
    cfg = load_config(path)
    chain = build_chain(cfg, FrameFormat(67, 101, 3))
    encoder = Encoder(cfg.encode, chain.out_shape)
    assert len(sink.frames) == 5
    for frame, got in zip(frames, sink.frames):
        np.testing.assert_array_equal(got, encoder(chain(frame)))
    assert "8-bit in the filter's bands" in str(stats)


def test_a_float_output_keeps_the_float_chain(tmp_path):
    """A sink that takes floats gets them: nothing is finished in the bank then."""
    frames = _frames("uint8", n=2)
    path = _config(tmp_path, EDGES, "{policy: saturate, range: [0, 255]}")
    floats, bytes_ = MemorySink("float"), MemorySink("uint8")
    stats = run_config(path, source=MemorySource(frames), sinks=[floats, bytes_])
    assert floats.frames[0].dtype == np.float32
    assert "8-bit in the filter's bands" not in str(stats)


def test_a_small_kernel_opencv_had_moves_to_the_c_kernel(tmp_path):
    """The edges job (gray, then a Sobel pair that OpenCV computes whole, then l2): its
    bank takes the C kernel in bands when its result is finished there. Another method
    sums in another order (within SPEC's bound), so a value on a rounding edge may round
    the other way: at most 1 level, rarely."""
    stages = ("  - {type: convert, color: gray}\n" + EDGES.replace("method: direct",
                                                                    "method: separable"))
    cfg = load_config(_config(tmp_path, stages, "{policy: saturate, range: [0, 255]}"))
    fmt = FrameFormat(67, 101, 3)
    plain, fused = build_chain(cfg, fmt), build_chain(cfg, fmt)
    assert fused.finish_in_bank(Encoder(cfg.encode, fused.out_shape))
    encoder = Encoder(cfg.encode, plain.out_shape)
    assert type(fused.steps[1].bank._engine((67, 101, 1))).__name__ == "DirectMethod"
    for frame in _frames("uint8"):
        got, expected = fused(frame).astype(int), encoder(plain(frame)).astype(int)
        np.testing.assert_array_less(np.abs(got - expected), 2)
        assert np.count_nonzero(got != expected) <= got.size // 1000 + 1


@pytest.mark.parametrize("policy", ["saturate", "abs"])
@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("channels", [3, 5])
def test_band_encoding_in_c_matches_the_encoder(policy, planar, channels):
    """The C pass for [0, 255] (``Encoder.band``) against the whole-frame encoder, on the
    values where rounding and clipping could differ: halves, NaN, ±inf, huge, negative;
    planar results of 3 channels (one interleaving pass) and of 5 (runs of 4 planes)."""
    edges = [-1e30, -np.inf, -300.5, -0.5, -0.0, 0.5, 1.5, 2.5, 3.4999998, 127.5, 254.5,
             255.49, 255.5, 256.0, 1e10, np.inf, np.nan]
    rng = np.random.default_rng(3)
    values = np.concatenate([edges, rng.uniform(-50, 300, 400)]).astype(np.float32)
    rng.shuffle(values)
    values = np.resize(values, 138 * channels)
    y = values.reshape(1, 138, channels) if not planar else \
        np.ascontiguousarray(values.reshape(channels, 1, 138)).transpose(1, 2, 0)
    cfg = Encode(policy=policy, range=[0, 255])
    out = np.empty((1, 138, channels), np.uint8)
    if channels == 3:
        whole, banded = Encoder(cfg, y.shape), Encoder(cfg, y.shape)
        banded.band(y, out)
        np.testing.assert_array_equal(out, whole(y))
        assert banded.nan_pixels == whole.nan_pixels == 1
        return
    # five channels: a mosaic to the encoder, so the C pass against each plane on its own
    nans = native.depthwise.to_bytes(y, out, policy == "abs")
    for i in range(channels):
        plane = Encoder(cfg, (1, 138, 1))
        alone = plane(np.ascontiguousarray(y[..., i : i + 1]))
        np.testing.assert_array_equal(out[..., i], alone[..., 0])
    assert nans == np.count_nonzero(np.isnan(y))


@pytest.mark.parametrize("stages", [GAUSSIAN, RANDOM7])
def test_the_common_policy_runs_in_the_c_stores(tmp_path, stages):
    """saturate over [0, 255] right after a depthwise bank: the C kernel writes the bytes
    as it stores each row (the encoder's own band code is never called), bit for bit, and
    the NaNs it meets are counted."""
    cfg = load_config(_config(tmp_path, stages, "{policy: saturate, range: [0, 255]}"))
    fmt = FrameFormat(67, 101, 3, "float32")
    plain, fused = build_chain(cfg, fmt), build_chain(cfg, fmt)
    encoder, reference = Encoder(cfg.encode, fused.out_shape), Encoder(cfg.encode, fmt.shape)
    calls: list[int] = []
    band = encoder.band
    encoder.band = lambda y, out: (calls.append(1), band(y, out))  # type: ignore[method-assign]
    assert fused.finish_in_bank(encoder)
    frame = np.random.default_rng(5).uniform(-20, 280, (67, 101, 3)).astype(np.float32)
    frame[30, 40] = np.nan
    np.testing.assert_array_equal(fused(frame), reference(plain(frame)))
    assert calls == []
    assert encoder.nan_pixels == reference.nan_pixels > 0
