"""SIGINT, SIGTERM and SIGHUP as requests to stop: the run finalises, then exits 130/143/129.

By default SIGTERM kills Python without running ``finally`` (an MP4 then has no index)
and SIGINT raises wherever the main thread happens to be; here each only sets an Event
the runner's loops check.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
if hasattr(signal, "SIGHUP"):
    SIGNAL_NAMES[signal.SIGHUP] = "SIGHUP"
    SIGNAL_CODES[signal.SIGHUP] = 129


@contextmanager
def stop_on_signals(stop: threading.Event, received: list[int]) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP set ``stop`` (a second SIGINT is ignored while finishing).

    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in SIGNAL_NAMES}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
