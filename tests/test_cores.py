"""Who gets the cores: ``threads.limited`` caps, and the runner's one-time decision to
hand the writer a core when it is the slowest stage of a file job (pipeline/cores.py)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from pipeline import run_config
from pipeline.cores import WARMUP, CoreShare
from pipeline.engine import threads
from pipeline.io.sinks import MemorySink
from pipeline.io.sources import MemorySource

IDENTITY = """
source: synthetic
stages:
  - {name: same, type: bank, op: correlate, weights: [[1.0]], method: direct}
"""


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(threads, "CORES", 4)


def parts_used(items: int = 64) -> set[int]:
    """The worker numbers ``run_shared`` handed work to, each item taking a moment."""
    seen: set[int] = set()

    def work(part: int, _: int) -> None:
        seen.add(part)
        time.sleep(0.001)

    threads.run_shared(work, items)
    return seen


def test_limited_caps_shared_work_and_opencv():
    before = cv2.getNumThreads()
    assert threads.budget() == threads.CORES
    with threads.limited(1):
        assert threads.budget() == 1
        assert cv2.getNumThreads() == 1
        assert parts_used() == {0}
    assert threads.budget() == threads.CORES
    assert cv2.getNumThreads() == before
    if threads.CORES > 1:  # this machine: 2 cores
        assert len(parts_used()) > 1


def test_overlapping_caps_keep_the_lowest_and_restore_in_any_order(four_cores):
    before = cv2.getNumThreads()
    a, b = threads.limited(1), threads.limited(3)
    a.__enter__()
    b.__enter__()
    assert threads.budget() == 1
    a.__exit__(None, None, None)  # the first cap ends first: the second still holds
    assert threads.budget() == 3
    assert cv2.getNumThreads() == min(3, before)
    b.__exit__(None, None, None)
    assert threads.budget() == 4
    assert cv2.getNumThreads() == before
    with threads.limited(0), threads.limited(99):  # clamped to 1 … CORES
        assert threads.budget() == 1


def feed(share: CoreShare, seconds: float, writer: float, frames: int = WARMUP + 1) -> None:
    for _ in range(frames):
        share.step(seconds, writer)


def test_a_writer_bound_job_gives_the_writer_a_core(four_cores):
    share = CoreShare(enabled=True)
    feed(share, 0.010, 0.020)
    assert share.state == "trial" and threads.budget() == 3
    feed(share, 0.012, 0.020)  # one core fewer and still ahead of the writer: kept
    assert share.state == "final" and threads.budget() == 3
    feed(share, 0.050, 0.020, frames=40)  # final means final: no flipping back
    assert threads.budget() == 3
    assert share.describe() == "filter on 3 of 4 cores (the writer was the slowest stage)"
    share.close()
    assert threads.budget() == 4


def test_a_filter_that_falls_behind_gets_its_cores_back(four_cores):
    share = CoreShare(enabled=True)
    feed(share, 0.010, 0.020)
    assert threads.budget() == 3
    feed(share, 0.025, 0.020)  # now slower than the writer
    assert share.state == "final" and threads.budget() == 4 and share.describe() is None
    feed(share, 0.010, 0.020, frames=40)
    assert threads.budget() == 4


def test_a_filter_bound_job_is_never_capped(four_cores):
    share = CoreShare(enabled=True)
    feed(share, 0.020, 0.014)  # 0.014 < 0.020 * 3/4: one core fewer could not keep up
    assert share.state == "final" and threads.budget() == 4
    share = CoreShare(enabled=True, cores=2)
    feed(share, 0.020, 0.011)  # on two cores half the filter's pace is enough to try
    assert share.state == "trial" and threads.budget() == 1
    share.close()


def test_no_decision_without_a_writer_pace_or_with_a_burst(four_cores):
    share = CoreShare(enabled=True)
    feed(share, 0.010, 0.0, frames=30)  # the writer has written nothing yet
    assert share.state == "warm-up" and threads.budget() == 4
    share.step(0.010, 0.020)
    assert share.state == "trial"  # all 31 frames counted: the median is 10 ms
    share.close()
    share = CoreShare(enabled=True)
    share.step(5.0, 0.020)  # the first frame (warm-up costs) is not counted
    feed(share, 0.010, 0.020, frames=WARMUP - 1)
    share.step(1.0, 0.020)  # one burst of noise is one frame of the median
    assert share.state == "trial"
    share.close()


def test_disabled_or_one_core_changes_nothing(four_cores):
    for share in (CoreShare(enabled=False), CoreShare(enabled=True, cores=1)):
        feed(share, 0.010, 0.050, frames=30)
        assert share.state == "final" and threads.budget() == 4 and share.describe() is None


class SlowSink(MemorySink):
    def write(self, frame, pts=None):
        time.sleep(0.015)
        super().write(frame)

    def close(self):
        self.budget_at_close = threads.budget()  # the run is over, its objects still alive
        return super().close()


def frames(n: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(n)]


def test_a_file_job_into_a_slow_writer_runs_the_filter_on_fewer_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 2)
    from pipeline.bank import FilterBank

    budgets: list[int] = []
    real = FilterBank.__call__
    monkeypatch.setattr(FilterBank, "__call__",
                        lambda self, x: (budgets.append(threads.budget()), real(self, x))[1])
    cv2_before = cv2.getNumThreads()
    (tmp_path / "id.yaml").write_text(IDENTITY)
    sink = SlowSink("float")
    source = frames()
    stats = run_config(tmp_path / "id.yaml", source=MemorySource(source), sinks=[sink])
    assert stats.cores == "filter on 1 of 2 cores (the writer was the slowest stage)"
    assert "cores: filter on 1 of 2" in str(stats)
    assert budgets[:WARMUP + 1] == [2] * (WARMUP + 1) and budgets[-20:] == [1] * 20, budgets
    assert sink.budget_at_close == 2 and cv2.getNumThreads() == cv2_before  # given back
    assert len(sink.frames) == 60
    for got, want in zip(sink.frames, source, strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_filter_bound_and_live_jobs_keep_every_core(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 2)
    from pipeline.bank import FilterBank

    budgets: list[int] = []
    real = FilterBank.__call__

    def slow(self, x):
        budgets.append(threads.budget())
        time.sleep(0.015)
        return real(self, x)

    (tmp_path / "id.yaml").write_text(IDENTITY)
    monkeypatch.setattr(FilterBank, "__call__", slow)
    stats = run_config(tmp_path / "id.yaml", source=MemorySource(frames(40)),
                       sinks=[MemorySink("float")])
    assert stats.cores is None and set(budgets) == {2}

    budgets.clear()
    monkeypatch.setattr(FilterBank, "__call__",
                        lambda self, x: (budgets.append(threads.budget()), real(self, x))[1])
    live = MemorySource(frames(200), live=True, interval=0.002)
    stats = run_config(tmp_path / "id.yaml", source=live, sinks=[SlowSink("float")])
    assert stats.cores is None and set(budgets) == {2} and stats.frames_written > 0
