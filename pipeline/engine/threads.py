"""Who owns the cores: one shared worker pool, and BLAS kept to one thread inside it.

On two cores, OpenBLAS's own threads on the small band GEMMs of the direct method cost
more in synchronisation than they gain (measured 35 ms vs 13 ms per 720p frame), and
pools that spin after a call slow the next library's call (../shared/PERF_NOTES.md E).
So the engine splits work itself across ``CORES`` workers and runs BLAS single-threaded
while it does; FFTW gets ``CORES`` threads of its own for the transforms.

A stream may hand cores to another stage: ``limited(n)`` caps the workers that shared
work runs on and OpenCV's own threads at ``n`` until it exits (the runner does this when
the video encoder, one thread, is the slowest stage). FFTW plans keep the threads they
were made with.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from functools import cache, lru_cache
from typing import Any

from threadpoolctl import ThreadpoolController


def _cores() -> int:
    """``$PIPELINE_THREADS`` if set, else the cores this process may run on."""
    explicit = os.environ.get("PIPELINE_THREADS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


CORES = _cores()
_limits: list[int] = []  # the caps ``limited`` holds now (runs may overlap in threads)
_cv2_threads: list[int] = []  # OpenCV's thread count before the first cap
_lock = threading.Lock()


def budget() -> int:
    """How many workers shared work runs on now: ``CORES``, or the lowest cap held."""
    return min(_limits, default=CORES)


@contextmanager
def limited(n: int) -> Iterator[None]:
    """Shared work on at most ``n`` workers, and OpenCV on at most ``n`` threads, inside.
    Caps may nest or overlap (runs in threads); the lowest one held applies."""
    import cv2

    n = max(1, min(n, CORES))
    with _lock:
        if not _limits:
            _cv2_threads[:] = [cv2.getNumThreads()]
        _limits.append(n)
        cv2.setNumThreads(min(budget(), _cv2_threads[0]))
    try:
        yield
    finally:
        with _lock:
            _limits.remove(n)
            cv2.setNumThreads(min(budget(), _cv2_threads[0]))


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="pipeline-engine")


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (slow), then cached


def single_threaded_blas() -> AbstractContextManager[Any]:
    """A context in which BLAS uses one thread (the engine's workers parallelise instead)."""
    return _controller().limit(limits=1, user_api="blas")


def run_parallel(work: Callable[[int], None], parts: int = CORES) -> None:
    """Call ``work(0) … work(parts - 1)`` on the engine's workers and wait for all of them."""
    if parts <= 1:
        work(0)
        return
    for future in [_pool().submit(work, p) for p in range(parts)]:
        future.result()


def run_shared(work: Callable[[int, int], bool | None], items: int, parts: int = CORES) -> None:
    """``work(part, i)`` for every ``i < items``, on up to ``parts`` workers that each take the
    next ``i`` as they come free, so one slowed by another thread of the process (the
    encoder, say) does fewer: with a fixed share, the others would wait for it (measured:
    a tiled FFT beside a video encoder, 21 ms a frame with fixed shares, 19 ms taken
    freely). ``part`` names the worker (its own buffers); ``work`` returning False stops
    that worker."""
    taken = itertools.count()  # next() on it is atomic under the GIL

    def worker(part: int) -> None:
        while (i := next(taken)) < items:
            if work(part, i) is False:
                return

    run_parallel(worker, max(1, min(parts, items, budget())))


@lru_cache(maxsize=256)  # called per frame with the same sizes: made once
def split(n: int, parts: int = CORES) -> tuple[tuple[int, int], ...]:
    """``parts`` contiguous (start, stop) ranges covering ``range(n)``, none empty."""
    parts = max(1, min(parts, n))
    return tuple((n * p // parts, n * (p + 1) // parts) for p in range(parts))
