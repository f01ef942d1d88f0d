"""Who gets the cores in a file job: the filter, or the writer beside it. Decided once.

A video encoder runs on one thread, and on a machine of few cores it is often the
slowest stage of a file job. A filter spread over every core then takes turns with it,
so the encoder loses its core for part of each frame and the whole job runs slower than
the encoder alone. Measured on 2 cores, 720p into mp4v, the same job with and without
this, interleaved, median of 5: conv2d_keras 9.7 -> 9.0 ms a frame, gabor_mosaic
18.1 -> 17.4 (the encoder alone: 7.0 and 16.0); filter-bound jobs unchanged.

So after ``WARMUP`` frames the runner asks whether the filter on one core fewer could
keep up with the writer: whether the writer's time per frame is at least the filter's
times (CORES - 1) / CORES (beside the encoder, the filter's own time is inflated, so
the two paces alone do not say which arrangement is faster). If it could, the filter
runs on ``CORES - 1`` cores (``threads.limited``) for a trial of ``WARMUP`` frames and
keeps that if it then keeps up with the writer; otherwise it gets every core back.
Either way that is final: a stream never flips back and forth. Live sources are left
alone (their latency is the filter's time). The cap is the process's: runs that share a
process (threads) share it, the lowest holding (``threads.limited``).
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

from .engine import threads

WARMUP = 8  # frames between looks at the paces; the first is not counted (warm-up costs)


class CoreShare:
    """Called once per computed frame by the compute thread; ``close()`` ends any cap."""

    def __init__(self, enabled: bool, cores: int | None = None) -> None:
        self.cores = threads.CORES if cores is None else cores
        self.state = "warm-up" if enabled and self.cores > 1 else "final"
        self.limit: int | None = None  # the filter's cores while capped
        self._seconds: list[float] = []
        self._stack = ExitStack()

    def step(self, compute_s: float, writer_pace: float) -> None:
        """One more frame computed in ``compute_s`` seconds; ``writer_pace``: the writer's
        smoothed seconds per frame, with the float -> 8-bit conversion wherever it ran."""
        if self.state == "final":
            return
        self._seconds.append(compute_s)
        if len(self._seconds) <= WARMUP or writer_pace <= 0:  # the writer has no pace yet
            return
        filter_pace = statistics.median(self._seconds[1:])  # a burst of noise is one frame
        self._seconds.clear()
        if self.state == "warm-up" and \
                writer_pace * self.cores >= filter_pace * (self.cores - 1):
            self.limit = self.cores - 1
            self._stack.enter_context(threads.limited(self.limit))
            self.state = "trial"
            return
        if self.state == "trial" and filter_pace > writer_pace:
            self.close()  # the filter fell behind on fewer cores: it gets them all back
            self.limit = None
        self.state = "final"

    def close(self) -> None:
        self._stack.close()

    def describe(self) -> str | None:
        """The summary's line, when the filter gave a core to the writer."""
        if self.limit is None:
            return None
        return (f"filter on {self.limit} of {self.cores} cores (the writer was the slowest "
                "stage)")
