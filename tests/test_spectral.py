"""The FFT method's fused multiply-accumulate (engine/_spectral.c) against numpy's complex
arithmetic in float64, and in the FFT method against scipy.

Bin counts on both sides of the vector widths (2, 4 and 8 bins with the generic, AVX2 and
AVX-512 variants; the rest in a plain loop), ranges of bins that start and end anywhere,
groups, several tiles sharing one set of kernel spectra, for each variant this CPU runs.
The test set-up (README) builds the kernel, so its absence is a failure here.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tiles import scipy_reference

from pipeline import FilterBank
from pipeline.engine import _spectral, fft, layout, native
from pipeline.engine.fft import FFTMethod
from pipeline.engine.spec import BankSpec
from pipeline.engine.tiles import TiledFFTMethod, tiling_for


def _runs(variant: str) -> bool:
    one = np.ones(1, np.complex64)
    try:
        _spectral.accumulate(one, one, np.empty(1, np.complex64), (1, 1, 1, 1, 1, 1), 0, 1,
                             variant)
    except ValueError:
        return False
    return True


VARIANTS = [v for v in ("generic", "avx2", "avx512") if _runs(v)]


def complex_normal(rng, shape) -> np.ndarray:
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def reference(spectra, kernels, groups):
    """acc[o] = Σ_c spectra[g(o)·cg + c] · kernels[o, c], in complex128."""
    s = spectra.astype(np.complex128)
    k = kernels.astype(np.complex128)
    cg, og = s.shape[0] // groups, k.shape[0] // groups
    return np.stack([sum(s[(o // og) * cg + c] * k[o, c][None] for c in range(cg))
                     for o in range(k.shape[0])])


def test_kernel_built_and_used_for_complex64():
    assert native.spectral is not None
    assert VARIANTS[0] == "generic"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.sampled_from([1, 2, 3]), cg=st.integers(1, 4), og=st.integers(1, 9),
    n=st.integers(1, 3), bins=st.sampled_from([1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 1025, 2100]),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16),
)
def test_variants_match_complex128(groups, cg, og, n, bins, cut, variant, seed):
    rng = np.random.default_rng(seed)
    c_in, c_out = groups * cg, groups * og
    spectra = complex_normal(rng, (c_in, n, bins))
    kernels = complex_normal(rng, (c_out, cg, bins))
    acc = np.full((c_out, n, bins), np.nan, np.complex64)
    j0, j1 = sorted(int(c * bins) for c in cut)
    _spectral.accumulate(spectra, kernels, acc, (c_in, c_out, cg, og, n, bins), j0, j1,
                         variant)
    expected = reference(spectra, kernels, groups)
    # float32 products summed over cg terms: a few ulps of the magnitudes involved
    scale = cg * np.abs(spectra).max() * np.abs(kernels).max()
    np.testing.assert_allclose(acc[..., j0:j1], expected[..., j0:j1], rtol=0,
                               atol=4e-7 * scale)
    assert np.isnan(acc[..., :j0]).all() and np.isnan(acc[..., j1:]).all()  # nothing else


def test_fft_accumulate_uses_it_and_equals_numpy(rng, monkeypatch):
    """fft.accumulate over bands of bin rows: complex64 goes to the C loop, which agrees
    with numpy's passes (complex128)."""
    calls = []

    class Spy:
        def accumulate(self, *args):
            calls.append(args[3])
            return _spectral.accumulate(*args)

    monkeypatch.setattr(native, "spectral", Spy())
    w = rng.normal(size=(6, 2, 5, 5))
    spec = FilterBank(w, groups=2)._resolve((40, 50, 4))
    assert isinstance(spec, BankSpec) and spec.in_per_group == 2 and spec.out_per_group == 3
    spectra = complex_normal(rng, (4, 2, 24, 13))  # two tiles
    kernels = complex_normal(rng, (6, 2, 24, 13))
    fused = np.full((6, 2, 24, 13), np.nan, np.complex64)
    plain = fused.copy()
    for rows in ((0, 5), (5, 24)):
        fft.accumulate(spec, spectra, kernels, fused, rows)
        fft.accumulate(spec, spectra.astype(np.complex128), kernels.astype(np.complex128),
                       plain, rows)  # complex128: numpy's passes
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5)
    assert calls == [(4, 6, 2, 3, 2, 24 * 13)] * 2  # the complex64 calls, none for numpy's


@pytest.mark.parametrize("tiles", [False, True])
def test_grouped_fft_bank_matches_scipy(rng, tiles, monkeypatch):
    """A grouped dense bank by the FFT method (full-frame or tiles) on the fused loop,
    against scipy; a frame holding NaN still goes to the direct method."""
    w = rng.normal(size=(6, 2, 9, 9))
    x = rng.normal(size=(140, 300, 4)).astype(np.float32)
    bank = FilterBank(w, groups=2, method="fft")
    spec = bank._resolve(x.shape)
    engine = TiledFFTMethod(spec, tiling_for(spec, 64)) if tiles else FFTMethod(spec)
    monkeypatch.setattr(layout, "build", lambda s, t: engine)
    assert_close(bank(x), scipy_reference(x, w, groups=2, pads=(4, 4, 4, 4)), w, x)
    x[70, 150, 1] = np.nan  # group 0: outputs 0-2, in the 9x9 window around it
    y = bank(x)
    assert np.isnan(y[66:75, 146:155, :3]).all()
    assert np.isfinite(y[:60]).all() and np.isfinite(y[..., 3:]).all()


@pytest.mark.parametrize(("shape", "rows", "match"), [
    ((1, 1, 1, 1, 1, 64), (0, 64), "holds"),  # buffers of 1 bin, shape says 64
    ((2, 1, 1, 1, 1, 1), (0, 1), "inconsistent"),  # 2 groups of inputs, 1 of outputs
    ((1, 1, 1, 1, 1, 1), (0, 2), "inconsistent"),  # bins past the end
    ((1, 1, 1, 1, 1, 1), (1, 0), "inconsistent"),  # an empty range backwards
    ((1, 1, 0, 1, 1, 1), (0, 1), "inconsistent"),  # no input channel per group
])
def test_bad_arguments_raise_not_crash(shape, rows, match):
    one = np.ones(1, np.complex64)
    with pytest.raises(ValueError, match=match):
        _spectral.accumulate(one, one, np.empty(1, np.complex64), shape, *rows)


def test_unknown_variant_refused():
    one = np.ones(1, np.complex64)
    with pytest.raises(ValueError, match="not available"):
        _spectral.accumulate(one, one, np.empty(1, np.complex64), (1,) * 6, 0, 1, "sse9")
