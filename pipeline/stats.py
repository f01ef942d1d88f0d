"""Stats: what a run did, counted exactly; ``str(stats)`` is the CLI's summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .io.base import SinkResult


@dataclass
class Stats:
    """What a run did; ``str(stats)`` is the summary the CLI prints."""

    frames_read: int = 0
    frames_written: int = 0
    dropped: int = 0  # live: older frames the newest one replaced
    discarded: int = 0  # read, but not processed because the run was stopped
    decode_errors: int = 0
    ended_early: bool = False  # a file source gave fewer frames than it declared
    nan_pixels: int = 0
    elapsed: float = 0.0
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    encode_s: float = 0.0  # float -> 8-bit, on whichever thread had room …
    encode_filter_s: float = 0.0  # … of which on the filter's thread
    finished_in_bank: bool = False  # the last bank wrote the 8-bit frames (in compute_s)
    latencies: list[float] = field(default_factory=list)
    results: list[SinkResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: str | None = None
    frame_total: int | None = None
    reconnects: int = 0
    cores: str | None = None  # how the filter shared the cores with the writer, if it did
    kept: list[str] = field(default_factory=list)  # stopped: outputs left at temporary names
    paced: bool = False  # a file played at its own frame rate (views, --realtime)
    live: bool = False  # a live source: frames come on its clock
    loops: int = 0  # times --loop replayed the source
    reloads: int = 0  # configs --watch swapped in

    @property
    def fps(self) -> float:
        return self.frames_written / self.elapsed if self.elapsed > 0 else 0.0

    def losses(self) -> list[str]:
        """What a finished job lost on the way in (``--strict`` exits 6 on any): frames
        it could not decode, a file that ends before its own declared duration, sound
        packets it could not decode. Never a frame count a container only estimates."""
        lost = [f"{self.decode_errors} undecodable frame"
                f"{'s' if self.decode_errors > 1 else ''} skipped"] if self.decode_errors else []
        if self.ended_early:
            lost.append("the input ended before its declared duration")
        for result in self.results:
            lost += result.losses
        return lost

    def threads_ms(self) -> dict[str, float]:
        """Busy ms a frame of each thread of the stream: the reader (decode), the filter
        (with any float -> 8-bit it did) and the writer (its encoding and writing)."""
        n = max(self.frames_written, 1)
        return {
            "reader": self.read_s / max(self.frames_read, 1) * 1e3,
            "filter": (self.compute_s + self.encode_filter_s) / n * 1e3,
            "writer": (self.write_s + self.encode_s - self.encode_filter_s) / n * 1e3,
        }

    def bound_line(self) -> str:
        """Which thread bounded the run: the busiest, against the wall time a frame. A
        live or paced source's reader mostly waits for the next frame (its read time is
        not decoding): where the filter and the writer keep up, the source's own clock
        bounded it."""
        busy = self.threads_ms()
        name = max(busy, key=lambda k: busy[k])
        wall = self.elapsed / max(self.frames_written, 1) * 1e3
        if (self.live or self.paced) and max(busy["filter"], busy["writer"]) < 0.8 * wall:
            name = "clock"
        what = {"reader": "decoding", "filter": "the filter", "writer": "encoding and writing",
                "clock": "the source's own clock (live)" if self.live else
                "the source's own frame rate (paced)"}[name]
        return (f"bound by {what}: threads busy {busy['reader']:.1f} (read), "
                f"{busy['filter']:.1f} (filter), {busy['writer']:.1f} (write) ms a frame, "
                f"wall {wall:.1f} ms a frame")

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3 if self.latencies else 0.0

    def __str__(self) -> str:
        n = max(self.frames_written, 1)
        lines = [
            f"frames: {self.frames_read} read, {self.frames_written} written"
            + (f", {self.dropped} dropped (live: newest frame kept)" if self.dropped else "")
            + (f", {self.discarded} unprocessed at stop" if self.discarded else "")
            + (f", {self.decode_errors} undecodable skipped" if self.decode_errors else "")
            + (f", {self.reconnects} reconnects" if self.reconnects else ""),
            f"speed: {self.fps:.1f} fps over {self.elapsed:.2f} s; per frame read "
            f"{self.read_s / max(self.frames_read, 1) * 1e3:.1f} ms, filter "
            f"{self.compute_s / n * 1e3:.1f} ms, encode+write "
            f"{(self.encode_s + self.write_s) / n * 1e3:.1f} ms",
            f"latency: p50 {self.latency_ms(50):.1f} ms, p99 {self.latency_ms(99):.1f} ms",
        ]
        if self.paced:
            lines.append("paced: played at the source's own frame rate"
                         + (f", replayed {self.loops} times" if self.loops else "")
                         + " (--no-realtime: as fast as it goes)")
        if self.reloads:
            lines.append(f"watch: {self.reloads} config{'s' if self.reloads > 1 else ''} "
                         "swapped in")
        if self.frames_written:
            lines.append(self.bound_line())
        if self.finished_in_bank:
            lines.append("encode: 8-bit in the filter's bands (the last bank wrote them)")
        if self.cores:
            lines.append(f"cores: {self.cores}")
        for r in self.results:
            lines.append(f"output: {r.name}: {r.frames} frames" + (f" ({r.detail})"
                                                                 if r.detail else ""))
        if self.nan_pixels:
            lines.append(f"warning: {self.nan_pixels} NaN pixels written as 0")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.interrupted:
            lines.append(f"interrupted by {self.interrupted}; " + (
                f"unfinished, kept as {', '.join(self.kept)}" if self.kept
                else "outputs finalised"))
        return "\n".join(lines)
