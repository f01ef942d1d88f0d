"""SIGINT, SIGTERM and SIGHUP as requests to stop: the run finalises, then exits 130/143/129.

By default SIGTERM kills Python without running ``finally`` (an MP4 then has no index)
and SIGINT raises wherever the main thread happens to be; here each only sets an Event
the runner's loops check.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .errors import Interrupted

T = TypeVar("T")

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


def interruptibly(work: Callable[[], T], stop: threading.Event, name: str, doing: str,
                  poll: float = 0.1) -> T:
    """``work()`` on a thread of its own (``pipeline-<name>``) while this one checks
    ``stop``: a signal never waits for a blocking open or for minutes of planning. Raises
    Interrupted("stopped while <doing>") once stopped (the thread is left: see
    ``stream.stuck_threads``), else returns what ``work`` returned or raises what it
    raised."""
    done: list = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as e:  # handed over below
            done.append(e)

    thread = threading.Thread(target=run, name=f"pipeline-{name}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=poll)
        if stop.is_set() and thread.is_alive():
            raise Interrupted(f"stopped while {doing}")
    result = done[0]
    if isinstance(result, BaseException):
        raise result
    return result
