"""Live sources: stalls, dead streams, corrupt frames, stale pictures, reconnect budgets."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline import SourceLostError
from pipeline.io.live import ConnectFailed, LiveSource, Reconnect, redact

FAST = Reconnect(attempts=4, budget=5.0, first=0.01, cap=0.05)


class FakeCapture:
    """Plays a script of ('frame', value) / ('fail',) / ('stall',) / ('dead',) steps."""

    def __init__(self, script, read_timeout=0.2, shape=(8, 8, 3)):
        self.script, self.read_timeout, self.shape = list(script), read_timeout, shape
        self.released = False

    def read(self):
        if not self.script:
            return False, None
        step = self.script.pop(0)
        if step[0] == "frame":
            return True, np.full(step[2] if len(step) > 2 else self.shape, step[1], np.uint8)
        if step[0] == "stall":  # OpenCV blocks for its read timeout, then False
            time.sleep(self.read_timeout)
        if step[0] == "dead":
            self.script.insert(0, step)
        return False, None

    def release(self):
        self.released = True


def opener_of(*captures):
    queue = list(captures)

    def opener():
        if not queue:
            raise ConnectFailed("connection refused")
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return opener


def live(*captures, **kw) -> LiveSource:
    kw.setdefault("retry", FAST)
    return LiveSource("rtsp://cam", opener_of(*captures), read_timeout=0.2, **kw)


def drain(source):
    values = []
    while (frame := source.read()) is not None:
        values.append(int(frame[0, 0, 0]))
    return values


@pytest.mark.timing
def test_stall_is_detected_and_the_source_reconnected():
    first = FakeCapture([("frame", 1), ("frame", 2), ("stall",)])
    second = FakeCapture([("frame", 3), ("frame", 4)])
    source = live(first, second)
    source.open()
    start = time.monotonic()
    with pytest.raises(SourceLostError, match="source lost"):
        drain(source)
    assert time.monotonic() - start < 2.0
    assert source.reconnects == 1 and first.released
    assert any("no frame for 0.2 s; reconnecting" in w for w in source.warnings)


def test_values_across_a_reconnect():
    first = FakeCapture([("frame", 1), ("dead",)])
    second = FakeCapture([("frame", 2), ("frame", 3)])
    source = live(first, second, FakeCapture([]))
    source.open()
    got = []
    with pytest.raises(SourceLostError):
        while (f := source.read()) is not None:
            got.append(int(f[0, 0, 0]))
    assert got == [1, 2, 3]
    assert any("stream ended; reconnecting" in w for w in source.warnings)


def test_one_corrupt_frame_is_counted_not_the_end():
    cap = FakeCapture([("frame", 1), ("fail",), ("frame", 2), ("frame", 3)])
    source = live(cap)
    source.open()
    got = []
    with pytest.raises(SourceLostError):
        while (f := source.read()) is not None:
            got.append(int(f[0, 0, 0]))
    assert got == [1, 2, 3] and source.decode_errors == 1


def test_refused_then_budget_exhausted():
    source = live(ConnectFailed("connection refused"), ConnectFailed("connection refused"),
                  retry=Reconnect(attempts=3, first=0.01))
    with pytest.raises(SourceLostError, match=r"rtsp://cam: connection refused "
                                              r"\(3 attempts\)"):
        source.open()


def test_comes_back_within_budget():
    good = FakeCapture([("frame", 9)])
    source = live(ConnectFailed("refused"), ConnectFailed("refused"), good)
    fmt = source.open()
    assert (fmt.height, fmt.width, fmt.channels) == (8, 8, 3)
    assert int(source.read()[0, 0, 0]) == 9


def test_stale_picture_counts_as_lost():
    cap = FakeCapture([("frame", 5)] * 500)
    source = live(cap, stale_timeout=0.05)
    source.open()
    with pytest.raises(SourceLostError, match="picture unchanged"):
        while source.read() is not None:
            time.sleep(0.002)


def test_resolution_change_is_scaled_and_warned():
    first = FakeCapture([("frame", 1), ("dead",)])
    second = FakeCapture([("frame", 2, (16, 12, 3)), ("frame", 3, (16, 12, 3))])
    source = live(first, second)
    source.open()
    frames = [source.read() for _ in range(3)]
    assert all(f.shape == (8, 8, 3) for f in frames)
    assert any("resolution changed 8x8 -> 12x16" in w for w in source.warnings)


@pytest.mark.timing
def test_stop_ends_a_back_off_at_once():
    source = live(ConnectFailed("refused"), ConnectFailed("refused"),
                  retry=Reconnect(attempts=5, first=5.0, cap=5.0, jitter=0))
    threading.Timer(0.2, source.stop.set).start()
    start = time.monotonic()
    with pytest.raises(SourceLostError, match="stopped while connecting"):
        source.open()
    assert time.monotonic() - start < 1.0


def test_passwords_never_printed():
    assert redact("rtsp://user:pass@cam:554/a?b=1") == "rtsp://user:***@cam:554/a?b=1"
    assert redact("http://cam/x") == "http://cam/x"
