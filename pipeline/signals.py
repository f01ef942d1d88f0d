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

# The exit code of a run each signal stopped (128 + its number on Linux, as a shell says).
SIGNAL_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}
STOP_SIGNALS = [getattr(signal, name) for name in SIGNAL_CODES if hasattr(signal, name)]


def signal_name(signum: int) -> str:
    """'SIGINT' for signal.SIGINT's number (the number itself for any other)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def exit_code(name: str | None) -> int:
    """The exit code of a run stopped by the signal ``name`` (130 for any other)."""
    return SIGNAL_CODES.get(name or "SIGINT", 130)


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

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
