"""Method choice: the separable rank, a pure cost model, close calls, measure mode, calibration."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipeline import FilterBank
from pipeline.engine import cache as disk
from pipeline.engine import calibrate, planner, timing
from pipeline.engine.separable import factors
from pipeline.kernels import make_kernel


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("gaussian", {"sigma": 2.0}, 1), ("sobel", {"axis": 0, "size": 5}, 1),
    ("box", {"size": 7}, 1), ("laplacian", {}, 2), ("dog", {"size": 9}, 2),
])
def test_separable_rank(name, params, expected):
    k = make_kernel(name, **params)
    terms = factors(k, np.dtype(np.float32))
    assert len(terms) == expected
    rebuilt = sum(np.outer(col, row) for col, row in terms)
    np.testing.assert_allclose(rebuilt, k, atol=1e-7 * np.abs(k).sum())


def test_random_kernels_keep_full_rank(rng):
    assert len(factors(rng.normal(size=(5, 7)), np.dtype(np.float32))) == 5


def test_zero_kernel_has_rank_zero(rng):
    x = rng.normal(size=(6, 7, 2))
    np.testing.assert_array_equal(FilterBank(np.zeros((3, 3)), method="separable")(x), 0.0)


def spec_of(bank: FilterBank, shape):
    return bank._resolve(shape)


def test_choose_is_pure_and_reports_every_candidate(rng):
    spec = spec_of(FilterBank(rng.normal(size=(4, 3, 5, 5))), (60, 80, 3))
    first, second = planner.choose(spec, "auto"), planner.choose(spec, "auto")
    assert first == second
    assert set(first.costs) == {"direct", "separable", "fft"}
    assert all(c is not None and c > 0 for c in first.costs.values())
    assert first.method == min(first.costs, key=first.costs.get)
    assert first.reason.startswith("fastest predicted")
    forced = planner.choose(spec, "separable")
    assert forced.method == "separable" and forced.reason == "forced by method"


def test_model_prefers_fft_for_big_kernels_and_direct_for_small(rng):
    k = planner.DEFAULT_CONSTANTS
    big = spec_of(FilterBank(rng.normal(size=(41, 41))), (720, 1280, 3))
    small = spec_of(FilterBank(rng.normal(size=(3, 3))), (720, 1280, 3))
    gauss = spec_of(FilterBank(make_kernel("gaussian", sigma=4.0)), (720, 1280, 3))
    assert planner.choose(big, "auto").method == "fft"
    assert planner.choose(small, "auto").method == "direct"
    assert planner.choose(gauss, "auto").method == "separable"
    assert planner.direct_cost(big, k) > 5 * planner.direct_cost(small, k)


def test_close_calls_are_timed(rng, monkeypatch):
    monkeypatch.setattr(timing, "CLOSE_CALL", 1e9)  # every call is close
    spec = spec_of(FilterBank(rng.normal(size=(5, 5))), (40, 50, 3))
    choice = planner.decide(spec, "auto")
    assert choice.reason.startswith("close call, timed on a synthetic frame")
    timed = {m: c for m, c in choice.costs.items() if m in choice.reason}
    fastest = min(timed, key=timed.get)
    if "the simpler method" in choice.reason:  # a tie: the method with fewer moving parts
        assert timed[choice.method] <= timed[fastest] * planner.TIE
        assert planner.SIMPLER.index(choice.method) < planner.SIMPLER.index(fastest)
    else:
        assert choice.method == fastest


@pytest.mark.parametrize(("separable_ms", "expected"), [(1.04, "separable"), (1.2, "fft")])
def test_a_timed_tie_goes_to_the_simpler_method(rng, tmp_path, monkeypatch, separable_ms,
                                                expected):
    """separable and fft predicted alike and timed: fft at 1.0 ms; separable within 5 %
    of it runs instead, past that fft does."""
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    real_choose = planner.choose

    def predicted(*args, **kwargs):
        choice = real_choose(*args, **kwargs)
        return dataclasses.replace(choice, costs={"direct": 90.0, "separable": 2.0,
                                                  "fft": 2.0})

    timings = {"fft": 1.0, "separable": separable_ms}
    monkeypatch.setattr(planner, "choose", predicted)
    monkeypatch.setattr(planner, "measure_costs",
                        lambda spec, pair, built=None: {m: timings[m] for m in pair})
    spec = spec_of(FilterBank(np.outer(np.hanning(15), np.hanning(15))), (60, 70, 3))
    choice = planner.decide(spec, "auto")
    assert choice.method == expected
    assert choice.costs["fft"] == 1.0 and choice.costs["separable"] == separable_ms
    assert ("the simpler method" in choice.reason) == (expected == "separable")


def test_close_call_timings_are_saved_for_later_starts(rng, tmp_path, monkeypatch):
    """The second start reads the first one's timings: planning stays fast (issue 3)."""
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(timing, "CLOSE_CALL", 1e9)
    spec = spec_of(FilterBank(rng.normal(size=(2, 3, 5, 5))), (40, 50, 3))
    first = planner.decide(spec, "auto")
    saved = disk.load_json(planner.TIMINGS_FILE, disk.engine_stamp())
    (key, timings), = saved.items()
    assert set(timings) <= set(first.costs) and first.method in timings

    def no_timing(*_args, **_kwargs):
        raise AssertionError("timed again")

    monkeypatch.setattr(planner, "measure_costs", no_timing)
    second = planner.decide(spec, "auto")
    assert second.method == first.method
    assert "at an earlier start" in second.reason
    for method, ms in timings.items():
        assert second.costs[method] == ms
    # a damaged entry is timed again, not trusted
    disk.save_json(planner.TIMINGS_FILE, {key: {"fft": -1}}, disk.engine_stamp())
    with pytest.raises(AssertionError, match="timed again"):
        planner.decide(spec, "auto")


def test_measure_mode_times_every_candidate(rng):
    bank = FilterBank(rng.normal(size=(5, 5)), measure=True)
    plan = bank.plan((40, 50, 3))
    assert plan.reason.startswith("fastest measured")
    assert plan.method == min(plan.costs, key=plan.costs.get)


def test_auto_never_changes_method_midstream(rng):
    bank = FilterBank(rng.normal(size=(9, 9)))
    frames = rng.normal(size=(6, 30, 40, 3)).astype(np.float32)
    frames[3, 5, 5, 0] = np.nan
    first = bank._planned((30, 40, 3))
    for f in frames:
        bank(f)
        assert bank._planned((30, 40, 3)) is first
    assert bank.plan((30, 40, 3)).method == first[1].method


def test_plan_text_lists_candidates(rng):
    text = str(FilterBank(rng.normal(size=(7, 7)), method="fft").plan((50, 60, 3)))
    assert "method fft: forced by method" in text
    for method in ("direct", "separable", "fft"):
        assert f"  {method}" in text
    assert "ms/frame" in text and "transforms" in text


def test_calibration_is_saved_and_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    planner.constants.cache_clear()
    try:
        measured = calibrate.run(scale=0.1, repeat=1, wisdom_shapes=((48, 64, 3),))
        assert set(measured) == set(planner.DEFAULT_CONSTANTS)
        assert all(np.isfinite(v) and v > 0 for v in measured.values())
        saved = json.loads((tmp_path / "calibration.json").read_text())
        assert saved["constants"] == measured
        assert planner.constants() == measured
        assert (tmp_path / "fftw_wisdom.json").exists()
        for timings in ("fft_layouts.json", planner.TIMINGS_FILE):  # timed again
            kept = json.loads((tmp_path / timings).read_text())
            assert kept == {"_stamp": disk.engine_stamp()}
    finally:
        planner.constants.cache_clear()


def test_bad_calibration_falls_back_to_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    planner.constants.cache_clear()
    try:
        (tmp_path / "calibration.json").write_text("{not json")
        assert planner.constants() == planner.DEFAULT_CONSTANTS
        planner.constants.cache_clear()
        disk.save_json("calibration.json", {"constants": {
            "call_ms": 0.5, "gemm_mac_ns": -1, "bogus": 3}}, disk.engine_stamp())
        merged = planner.constants()
        assert merged["call_ms"] == 0.5
        assert merged["gemm_mac_ns"] == planner.DEFAULT_CONSTANTS["gemm_mac_ns"]
        assert "bogus" not in merged
    finally:
        planner.constants.cache_clear()


def test_integer_frames_cost_a_copy_only_where_the_method_needs_floats(rng):
    """On uint8 frames the model adds the float copy to OpenCV's calls (filter2D here)
    and to nothing that reads the frames as they are; timing counts it the same way."""
    # two channels, two kernels each: no C kernel takes it (a one-channel frame into four
    # would: the depthwise kernel replicates it)
    bank = FilterBank(rng.normal(size=(4, 1, 3, 3)), mode="depthwise", method="auto")
    floats = bank._resolve((90, 120, 2))
    ints = bank._resolve((90, 120, 2), np.uint8)
    k = planner.constants()
    base, _ = planner.predict(floats, k)
    with_copy, notes = planner.predict(ints, k)
    copy = 90 * 120 * 2 * k["convert_ns"] * 1e-6
    assert with_copy["direct"] == pytest.approx(base["direct"] + copy)  # filter2D
    assert "(+ uint8 -> float32 copy)" in notes["direct"]
    assert with_copy["fft"] == base["fft"]
    seen = []

    class Engine:
        def takes(self, dtype):
            return False

        def __call__(self, x):
            seen.append(x.dtype)

    timing.as_given(Engine(), ints)(np.zeros((4, 4, 1), np.uint8))
    assert seen == [np.dtype(np.float32)]
