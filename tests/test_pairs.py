"""Paired outputs on FFT tiles (engine/tiles.py, engine/_spectral.c): two real outputs
from one complex inverse transform.

The C loops against numpy in complex128 (the full spectrum mirrored from the half, the
real and imaginary parts split into planes) for each variant this CPU runs, with widths
on both sides of the vector sizes; then the tiled method against scipy for the banks
that pair (one group, odd C_out, even outputs a group, stride, dilation) and those that
must not (odd outputs a group, float64).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_spectral import VARIANTS, complex_normal
from test_tiles import scipy_reference

from pipeline import FilterBank
from pipeline.engine import _spectral, fft, native, tiles
from pipeline.engine.tiles import TiledFFTMethod, packed_of, tiling_for

WIDTHS = [2, 4, 6, 8, 14, 16, 18, 30, 32, 34, 36, 62, 64, 66]


def full_spectrum(half: np.ndarray, tw: int) -> np.ndarray:
    """The th x tw spectrum of a real tile from its th x (tw/2+1) half, in complex128."""
    th, h = half.shape[-2:]
    full = np.zeros(half.shape[:-1] + (tw,), np.complex128)
    full[..., :h] = half
    cols = np.arange(h, tw)
    full[..., h:] = np.conj(half[..., (-np.arange(th)) % th, :][..., tw - cols])
    return full


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.sampled_from([1, 2, 3]), cg=st.integers(1, 3), og=st.integers(1, 3),
       n=st.integers(1, 3), th=st.integers(1, 9), tw=st.sampled_from(WIDTHS),
       cut=st.tuples(st.floats(0, 1), st.floats(0, 1)), variant=st.sampled_from(VARIANTS),
       seed=st.integers(0, 2**16))
def test_paired_accumulate_matches_complex128(groups, cg, og, n, th, tw, cut, variant, seed):
    rng = np.random.default_rng(seed)
    c_in, pairs = groups * cg, groups * og
    half = complex_normal(rng, (c_in, n, th, tw // 2 + 1))
    kernels = complex_normal(rng, (pairs, cg, th, tw))
    acc = np.full((pairs, n, th, tw), np.nan, np.complex64)
    r0, r1 = sorted(int(c * th) for c in cut)
    _spectral.accumulate_pairs(half, kernels, acc, (c_in, pairs, cg, og, n, th, tw), r0, r1,
                               variant)
    full = full_spectrum(half, tw)
    expected = np.stack([sum(full[(j // og) * cg + c] * kernels[j, c] for c in range(cg))
                         for j in range(pairs)])
    scale = cg * np.abs(half).max() * np.abs(kernels).max()
    np.testing.assert_allclose(acc[:, :, r0:r1], expected[:, :, r0:r1], rtol=0,
                               atol=4e-7 * scale)
    assert np.isnan(acc[:, :, :r0]).all() and np.isnan(acc[:, :, r1:]).all()


@settings(max_examples=60, deadline=None)
@given(pairs=st.integers(1, 3), odd=st.booleans(), n=st.integers(1, 4), th=st.integers(1, 9),
       tw=st.sampled_from(WIDTHS), sw_cut=st.floats(0, 1), rows_cut=st.floats(0, 1),
       width=st.integers(0, 200), extra_h=st.integers(0, 5), y0=st.integers(0, 4),
       x0=st.integers(0, 30), variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16))
def test_split_pairs_matches_numpy(pairs, odd, n, th, tw, sw_cut, rows_cut, width, extra_h,
                                   y0, x0, variant, seed):
    rng = np.random.default_rng(seed)
    c_out = 2 * pairs - odd
    sw, rows = int(sw_cut * tw), int(rows_cut * th)
    height, width = y0 + rows + extra_h, max(width, x0)
    src = complex_normal(rng, (pairs, n, th, tw))
    dst = np.full((c_out, height, width), np.nan, np.float32)
    expected = dst.copy()
    _spectral.split_pairs(src, dst, (pairs, c_out, n, th, tw), (height, width), y0, x0, rows,
                          sw, variant)
    parts = np.stack([src.real, src.imag], axis=1).reshape(2 * pairs, n, th, tw)[:c_out]
    for t in range(n):
        x = x0 + t * sw
        cols = max(0, min(sw, width - x))
        expected[:, y0 : y0 + rows, x : x + cols] = parts[:, t, :rows, :cols]
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize(("c_out", "groups", "kernel", "stride", "dilation"), [
    (8, 1, 7, 1, 1),
    (5, 1, 5, 1, 1),  # odd: the last output pairs with nothing
    (8, 2, 5, 1, 1),  # 4 outputs a group: pairs within each group
    (4, 1, 5, 2, 1),
    (4, 1, 3, 1, 2),
])
def test_paired_tiles_match_scipy(rng, c_out, groups, kernel, stride, dilation, monkeypatch):
    calls = []
    spy = {name: (lambda *a, f=getattr(_spectral, name), n=name: calls.append(n) or f(*a))
           for name in ("accumulate_pairs", "split_pairs")}
    monkeypatch.setattr(native, "spectral", type("Spy", (), {
        **{k: staticmethod(v) for k, v in spy.items()},
        "accumulate": staticmethod(_spectral.accumulate)}))
    c_in = 4 if groups > 1 else 3
    w = rng.normal(size=(c_out, c_in // groups, kernel, kernel))
    x = rng.normal(size=(150, 230, c_in)).astype(np.float32)
    pad = dilation * (kernel - 1) // 2
    bank = FilterBank(w, groups=groups, stride=stride, dilation=dilation, padding=pad)
    spec = bank._resolve(x.shape)
    assert packed_of(spec) == -(-c_out // 2)
    engine = TiledFFTMethod(spec, tiling_for(spec, 48))
    assert engine.tiling.count > 4
    expected = scipy_reference(x, w, groups=groups, pads=(pad,) * 4, stride=(stride,) * 2,
                               dilation=(dilation,) * 2)
    assert_close(engine(x), expected, w, x)
    assert {"accumulate_pairs", "split_pairs"} <= set(calls)
    x[70, 100, 0] = np.nan  # the direct method takes the frame: NaN stays in its window
    y = engine(x)
    assert np.isnan(y[(70 - pad) // stride, (100 - pad) // stride, 0])
    assert np.isfinite(y[: 60 // stride]).all()


def test_banks_that_do_not_pair(rng):
    odd_groups = FilterBank(rng.normal(size=(6, 2, 5, 5)), groups=2)._resolve((40, 50, 4))
    assert odd_groups.out_per_group == 3 and packed_of(odd_groups) == 0
    wide = FilterBank(rng.normal(size=(4, 3, 5, 5)), dtype="float64")._resolve((40, 50, 3))
    assert packed_of(wide) == 0
    single = FilterBank(rng.normal(size=(1, 3, 5, 5)))._resolve((40, 50, 3))
    assert packed_of(single) == 0
    shared = FilterBank(rng.normal(size=(5, 5)))._resolve((40, 50, 3))
    assert packed_of(shared) == 0


def test_paired_tiles_without_pyfftw_run_on_scipy(rng, monkeypatch):
    monkeypatch.setattr(fft, "pyfftw", None)
    w = rng.normal(size=(4, 3, 5, 5))
    x = rng.normal(size=(90, 120, 3)).astype(np.float32)
    spec = FilterBank(w)._resolve(x.shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = TiledFFTMethod(spec, tiling_for(spec, 32))
    assert any("pyFFTW" in str(c.message) for c in caught)
    assert engine._workers[0].tx.packed
    assert_close(engine(x), scipy_reference(x, w, pads=(2, 2, 2, 2)), w, x)


@pytest.mark.parametrize(("call", "match"), [
    (lambda b: _spectral.accumulate_pairs(b, b, b, (1, 1, 1, 1, 1, 2, 3), 0, 2), "inconsistent"),
    (lambda b: _spectral.accumulate_pairs(b, b, b, (2, 1, 1, 1, 1, 2, 4), 0, 2), "inconsistent"),
    (lambda b: _spectral.accumulate_pairs(b, b, b, (1, 1, 1, 1, 1, 2, 4), 0, 3), "inconsistent"),
    (lambda b: _spectral.accumulate_pairs(b, b, b, (1, 1, 1, 1, 9, 9, 64), 0, 9), "holds"),
    (lambda b: _spectral.split_pairs(b, b, (1, 3, 1, 2, 2), (2, 2), 0, 0, 2, 2), "inconsistent"),
    (lambda b: _spectral.split_pairs(b, b, (1, 2, 1, 2, 2), (2, 2), 1, 0, 2, 2), "inconsistent"),
    (lambda b: _spectral.split_pairs(b, b, (1, 2, 1, 2, 2), (2, 2), 0, 0, 2, 3), "inconsistent"),
    (lambda b: _spectral.split_pairs(b, b, (1, 2, 9, 9, 9), (2, 2), 0, 0, 2, 2), "holds"),
])
def test_bad_arguments_raise_not_crash(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros(64, np.complex64))


def test_short_chunks_cut_at_the_edge(rng, monkeypatch):
    """A row's last chunk is short: its spare tiles are not copied out (past the edge)."""
    monkeypatch.setattr(tiles, "CHUNK_BYTES", 3 * 7 * (32 * 32 + 32 * 17 * 2) * 4)  # 3 tiles
    w = rng.normal(size=(4, 3, 3, 3))
    x = rng.normal(size=(60, 150, 3)).astype(np.float32)
    spec = FilterBank(w)._resolve(x.shape)
    engine = TiledFFTMethod(spec, tiling_for(spec, 32))
    assert engine._m == 3 and engine.tiling.grid[1] % 3 != 0
    assert_close(engine(x), scipy_reference(x, w, pads=(1, 1, 1, 1)), w, x)


@settings(max_examples=40, deadline=None)
@given(pairs=st.integers(1, 3), odd=st.booleans(), tw=st.sampled_from(WIDTHS),
       relu=st.booleans(), variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16))
def test_split_pairs_adds_bias_and_relu_as_it_stores(pairs, odd, tw, relu, variant, seed):
    """The fused epilogue of paired tiles: + bias per output, then max(., 0); NaN kept."""
    rng = np.random.default_rng(seed)
    c_out, n, th = 2 * pairs - odd, 2, 3
    src = complex_normal(rng, (pairs, n, th, tw))
    src[0, 0, 1, 0] = complex(np.nan, np.nan)
    bias = rng.normal(size=c_out).astype(np.float32)
    dst = np.full((c_out, th, n * tw), -9.0, np.float32)
    _spectral.split_pairs(src, dst, (pairs, c_out, n, th, tw), (th, n * tw), 0, 0, th, tw,
                          variant, bias, relu)
    parts = np.stack([src.real, src.imag], axis=1).reshape(2 * pairs, n, th, tw)[:c_out]
    expected = parts.transpose(0, 2, 1, 3).reshape(c_out, th, n * tw) + bias[:, None, None]
    expected = np.where(expected < 0, 0, expected) if relu else expected  # NaN kept
    np.testing.assert_array_equal(np.isnan(dst), np.isnan(expected))
    assert np.isnan(dst).any()
    np.testing.assert_allclose(np.nan_to_num(dst), np.nan_to_num(expected), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize(("c_out", "activation"), [(8, "relu"), (5, None), (6, "tanh")])
def test_tiled_banks_fuse_bias_and_activation(rng, monkeypatch, c_out, activation):
    """Through the public API: bias and ReLU in the paired scatter, other activations on
    each chunk as it lands, never a pass over the whole result; a frame holding NaN goes
    to the direct method and still gets both."""
    from pipeline import bank as bank_module

    w = rng.normal(size=(c_out, 3, 7, 7))
    b = rng.normal(size=c_out) * 3
    x = rng.normal(size=(150, 230, 3)).astype(np.float32)
    fb = FilterBank(w, b, padding=3, activation=activation, method="fft")
    spec = fb._resolve(x.shape)
    engine = TiledFFTMethod(spec, tiling_for(spec, 48))
    fb._engines[(x.shape, np.dtype(np.float32).str)] = (spec, None, engine)
    engine.fuse(fb._epilogue())
    whole: list[tuple[int, ...]] = []
    real = bank_module._activate
    monkeypatch.setattr(bank_module, "_activate",
                        lambda y, act: (whole.append(y.shape), real(y, act))[1])
    act = {"relu": lambda t: np.maximum(t, 0), "tanh": np.tanh, None: lambda t: t}[activation]
    expected = act(scipy_reference(x, w, pads=(3,) * 4) + b)
    assert_close(fb(x), expected, w, x)
    assert (150, 230, c_out) not in whole and (c_out, 150, 230) not in whole
    assert bool(whole) == (activation == "tanh")
    x[70, 100, 0] = np.nan
    y = fb(x)
    assert np.isnan(y[70, 100]).any()
    y[67:74, 97:104] = 0.0
    expected[67:74, 97:104] = 0.0
    assert_close(y, expected, w, np.nan_to_num(x))


def test_unpaired_tiles_apply_the_epilogue_chunk_by_chunk(rng):
    """A bank that does not pair (3 outputs a group in 2 groups): bias and ReLU on each
    chunk as it lands, in Python; the same numbers as scipy's."""
    w = rng.normal(size=(6, 2, 5, 5))
    b = rng.normal(size=6) * 3
    x = rng.normal(size=(120, 200, 4)).astype(np.float32)
    fb = FilterBank(w, b, groups=2, padding=2, activation="relu", method="fft")
    spec = fb._resolve(x.shape)
    assert packed_of(spec) == 0
    engine = TiledFFTMethod(spec, tiling_for(spec, 48))
    fb._engines[(x.shape, np.dtype(np.float32).str)] = (spec, None, engine)
    assert engine.fuse(fb._epilogue()) and engine._epilogue is not None
    expected = np.maximum(scipy_reference(x, w, groups=2, pads=(2,) * 4) + b, 0)
    assert_close(fb(x), expected, w, x)
