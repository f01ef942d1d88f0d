"""The cache folder: what one build measured is not used by another (stamps)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline import FilterBank
from pipeline.engine import cache as disk
from pipeline.engine import planner, sizes, timing


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path))
    planner.constants.cache_clear()
    yield tmp_path
    planner.constants.cache_clear()


def test_a_file_under_another_stamp_reads_empty(own_cache):
    disk.save_json("x.json", {"a": 1}, "build one")
    assert disk.load_json("x.json", "build one") == {"a": 1}
    assert disk.load_json("x.json", "build two") == {}
    disk.update_json("x.json", "b", 2, stamp="build two")  # the other build's entries go
    assert disk.load_json("x.json", "build two") == {"b": 2}
    assert json.loads((own_cache / "x.json").read_text())["_stamp"] == "build two"


def test_another_builds_calibration_is_not_used(own_cache):
    constants = {"call_ms": 0.5}
    disk.save_json(planner.CALIBRATION_FILE, {"constants": constants}, "an older build")
    assert planner.constants() == planner.DEFAULT_CONSTANTS
    planner.constants.cache_clear()
    disk.save_json(planner.CALIBRATION_FILE, {"constants": constants}, disk.engine_stamp())
    assert planner.constants()["call_ms"] == 0.5


def test_another_builds_timings_are_timed_again(rng, own_cache, monkeypatch):
    """Close-call timings kept by an older build are not trusted: the planner times again
    and keeps its own under this build's stamp."""
    monkeypatch.setattr(timing, "CLOSE_CALL", 1e9)
    bank = FilterBank(rng.normal(size=(2, 3, 5, 5)))
    spec = bank._resolve((40, 50, 3))
    planner.decide(spec, "auto")
    (key, timings), = disk.load_json(planner.TIMINGS_FILE, disk.engine_stamp()).items()
    faked = {m: 1000.0 + i for i, m in enumerate(timings)}
    disk.save_json(planner.TIMINGS_FILE, {key: faked}, "an older build")
    timed = []
    real = planner.measure_costs
    monkeypatch.setattr(planner, "measure_costs",
                        lambda *a, **k: timed.append(1) or real(*a, **k))
    choice = planner.decide(spec, "auto")
    assert timed and "at an earlier start" not in choice.reason
    kept = disk.load_json(planner.TIMINGS_FILE, disk.engine_stamp())[key]
    assert all(ms < 1000.0 for ms in kept.values())


def test_another_fftw_builds_sizes_are_measured_again(own_cache):
    disk.save_json(sizes.SIZES_FILE, {"37x53:float32": [40, 60]}, "another pyfftw")
    assert sizes._saved((37, 53), np.dtype("float32")) is None
    disk.save_json(sizes.SIZES_FILE, {"37x53:float32": [40, 60]}, disk.fftw_stamp())
    assert sizes._saved((37, 53), np.dtype("float32")) == (40, 60)


def test_the_engine_stamp_follows_its_files(tmp_path, monkeypatch):
    """A changed source or compiled kernel gives another stamp; the same files the same."""
    engine = tmp_path / "engine"
    shutil.copytree(disk._ENGINE, engine, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(disk, "_ENGINE", engine)
    stamps = []
    for change in (None, None, "fft.py", "_spectral.c"):
        if change is not None:
            with open(engine / change, "a", encoding="utf-8") as f:
                f.write("\n")
        disk.engine_stamp.cache_clear()
        stamps.append(disk.engine_stamp())
    disk.engine_stamp.cache_clear()
    assert stamps[0] == stamps[1]
    assert len(set(stamps[1:])) == 3
    assert disk.fftw_stamp() in stamps[0]


SECOND_START = """
import numpy as np
from pipeline import FilterBank
from pipeline.engine import planner, timing
timing.CLOSE_CALL = 1e9  # every pair is a close call, timed once
w = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
print(FilterBank(w).plan((41, 53, 3)).reason)
"""


def test_a_second_process_reads_the_first_ones_timings(tmp_path):
    """The saved timings' key names the FFT shape the first start measured, not the guess
    it planned with before measuring, so the second start finds them."""
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path)}
    reasons = [subprocess.run([sys.executable, "-c", SECOND_START], env=env, check=True,
                              capture_output=True, text=True).stdout for _ in range(2)]
    assert "close call, timed on a synthetic frame:" in reasons[0]
    assert "at an earlier start" in reasons[1]
