"""Who owns the cores: one shared worker pool, and BLAS kept to one thread inside it.

On two cores, OpenBLAS's own threads on the small band GEMMs of the direct method cost
more in synchronisation than they gain (measured 35 ms vs 13 ms per 720p frame), and
pools that spin after a call slow the next library's call (../shared/PERF_NOTES.md E).
So the engine splits work itself across ``CORES`` workers and runs BLAS single-threaded
while it does; FFTW gets ``CORES`` threads of its own for the transforms.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
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

    run_parallel(worker, max(1, min(parts, items)))


@lru_cache(maxsize=256)  # called per frame with the same sizes: made once
def split(n: int, parts: int = CORES) -> tuple[tuple[int, int], ...]:
    """``parts`` contiguous (start, stop) ranges covering ``range(n)``, none empty."""
    parts = max(1, min(parts, n))
    return tuple((n * p // parts, n * (p + 1) // parts) for p in range(parts))
