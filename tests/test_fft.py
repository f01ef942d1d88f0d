"""The FFT method: plans reused, outputs never overwritten, NaN frames, wisdom, fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_close

from pipeline import ConfigError, FilterBank
from pipeline.engine.sizes import fft_shape, smooth_sizes


@pytest.mark.parametrize("border", ["zero", "reflect101", "wrap", "constant"])
def test_plan_reused_and_outputs_kept(rng, border):
    """Calling the planned transforms again gives the same numbers; earlier outputs survive."""
    k = rng.normal(size=(9, 9))
    bank = FilterBank(k, border=border, border_value=1.5, method="fft")
    a, b = rng.normal(size=(2, 40, 50, 3)).astype(np.float32)
    ya = bank(a)
    kept = ya.copy()
    yb = bank(b)
    np.testing.assert_array_equal(ya, kept)  # the second frame did not write into the first
    np.testing.assert_array_equal(bank(a), kept)  # same plans, same numbers
    direct = FilterBank(k, border=border, border_value=1.5, method="direct")
    assert_close(yb, direct(b), k, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_frame_is_computed_directly(rng, bad):
    """A NaN/Inf frame equals the direct method (locally non-finite), without a method change."""
    k = rng.normal(size=(7, 7)) + 2.0
    bank = FilterBank(k, border="reflect101", method="fft")
    x = rng.normal(size=(30, 40, 2)).astype(np.float32)
    bank(x)
    engine = bank._engine(x.shape)
    x[10, 12, 1] = bad
    y = bank(x)
    expected = FilterBank(k, border="reflect101", method="direct")(x)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expected))
    assert np.isfinite(y[..., 0]).all()  # the other channel is untouched
    np.testing.assert_allclose(y[np.isfinite(y)], expected[np.isfinite(expected)],
                               atol=1e-5 * np.abs(k).sum() * 4)
    assert bank._engine(x.shape) is engine


def test_dense_bank_sums_channels_in_frequency_domain(rng):
    w = rng.normal(size=(5, 3, 11, 11))
    x = rng.normal(size=(48, 64, 3))
    assert_close(FilterBank(w, method="fft")(x), FilterBank(w, method="direct")(x), w, x)


def test_spectra_memory_guard():
    """A bank whose full-frame kernel spectra would not fit the budget, and whose kernels
    are too large for any tile, cannot be forced onto fft."""
    w = np.ones((8, 8, 300, 300))
    plan = FilterBank(w, method="direct").plan((4000, 4000, 8))
    assert plan.costs["fft"] is None and "GiB" in plan.notes["fft"]
    with pytest.raises(ConfigError, match="method='fft' cannot run this bank: kernel spectra"):
        FilterBank(w, method="fft").plan((4000, 4000, 8))


def test_tiles_lift_the_spectra_guard():
    """With kernels that fit a tile, a bank too wide for full-frame spectra runs on tiles."""
    w = np.ones((64, 64, 3, 3))
    plan = FilterBank(w, method="direct").plan((4000, 4000, 64))
    assert plan.costs["fft"] is not None and "tiles" in plan.notes["fft"]


def test_sizes_are_smooth_measured_and_cached():
    shape = fft_shape((37, 53))
    assert shape[0] >= 37 and shape[1] >= 53
    assert all(n in smooth_sizes(n, n) for n in shape)
    saved = json.loads((_cache() / "fft_sizes.json").read_text())
    assert saved["37x53:float32"] == list(shape)


def _cache():
    from pipeline.engine.cache import cache_dir

    return cache_dir()


PLAN_SCRIPT = textwrap.dedent("""
    import numpy as np
    from pipeline import FilterBank
    bank = FilterBank(np.ones((15, 15)), border="reflect101", method="fft")
    bank.plan((480, 640, 3))
    print(bank._engine((480, 640, 3)).planning_s)
""")


def test_wisdom_saved_then_second_start_plans_fast(tmp_path):
    """First start measures plans and saves wisdom; a second process imports it: <= 0.5 s."""
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path)}
    run = [sys.executable, "-c", PLAN_SCRIPT]
    subprocess.run(run, env=env, check=True, capture_output=True, text=True)
    wisdom = json.loads((tmp_path / "fftw_wisdom.json").read_text())
    assert "fftw" in wisdom["single"]
    second = float(subprocess.run(run, env=env, check=True, capture_output=True,
                                  text=True).stdout.split()[-1])
    assert second <= 0.5


FALLBACK_SCRIPT = textwrap.dedent("""
    import sys, warnings
    sys.modules["pyfftw"] = None  # as if pyFFTW could not be imported
    import numpy as np
    from pipeline import FilterBank
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 41, 2)).astype(np.float32)
    k = rng.normal(size=(7, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = FilterBank(k, border="symmetric", method="fft")(x)
    direct = FilterBank(k, border="symmetric", method="direct")(x)
    bound = 1e-5 * np.abs(k).sum() * np.abs(x).max()
    np.testing.assert_allclose(y, direct, rtol=0, atol=bound)
    print([str(w.message) for w in caught])
""")


def test_fft_runs_on_scipy_without_pyfftw(tmp_path):
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "pyFFTW is not importable: the fft method runs on scipy.fft" in out
