"""Which thread encodes a frame (float -> 8-bit): the compute thread or the writer.

The encoder is the bottleneck of many jobs (one thread); moving its policy off the
writer was measured to raise throughput, and a filter-bound job keeps it on the writer.
So each part's time per frame is smoothed, and a frame is encoded where that leaves the
busier of the two threads less busy.
"""

from __future__ import annotations

PARTS = ("compute", "encode", "write")


class Pacing:
    """Seconds per frame of each part, smoothed (exponentially, 0.2 weight on the newest)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)

    def note(self, part: str, seconds: float) -> None:
        old = self.seconds[part]
        self.seconds[part] = seconds if old == 0.0 else 0.8 * old + 0.2 * seconds

    @property
    def writer_side(self) -> float:
        """What the writer's thread spends a frame when it also encodes."""
        return self.seconds["write"] + self.seconds["encode"]

    def encode_on_compute(self) -> bool:
        """Whether the compute thread should encode the next frame."""
        p = self.seconds
        here = max(p["compute"] + p["encode"], p["write"])
        there = max(p["compute"], p["write"] + p["encode"])
        return here < there
