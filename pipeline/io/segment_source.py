"""One segment of a video file as a frame source: the frames at ``start <= t < end``
seconds from its video's start, decoded by PyAV from the keyframe that starts the
segment (``bgr24``: the same pixels and times as OpenCV's reader, tested). ``segments.py``
cuts a video into ``Segment``s; ``batch.run_job`` runs one.

Decoding starts at that keyframe's own packet, found by its timestamp, never where a
seek happens to land: in an MPEG-TS (no index) FFmpeg's seek landed a keyframe late and a
segment came out empty. The seek goes to a time well before it, and earlier still until
the packets it gives begin before the keyframe; the packets between are demuxed, not
decoded. Frames before ``start`` (an open GOP's leading B-frames, which need the GOP
before) belong to the segment before, which decodes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..frames import FrameFormat
from .base import SourceBase
from .libav import libav

EPS = 1e-4  # seconds: a frame at a cut point belongs to the segment it starts
_LEAD = 2.0  # seconds before the keyframe the first seek aims at (then 4, 8, ... 0)


@dataclass(frozen=True)
class Segment:
    """Frames at ``start <= t < end`` seconds (None: to the end) from the video's start;
    ``key`` the pts of the keyframe at ``start`` (None for the first segment), ``frames``
    how many video packets the container holds in that range (what the segment must
    give, less any it cannot decode)."""

    start: float
    end: float | None
    key: int | None
    frames: int


class SegmentSource(SourceBase):
    """The frames of ``path`` in ``segment``, decoded by PyAV from its keyframe; times as
    OpenCV's reader gives them. An undecodable packet is skipped and counted."""

    def __init__(self, path: str, segment: Segment) -> None:
        start, end = segment.start, segment.end
        super().__init__(f"{path} [{start:.3f} s, {'end' if end is None else f'{end:.3f} s'})")
        self.path = path
        self.segment = segment
        self._container: Any = None
        self._frames: Iterator[tuple[np.ndarray, float]] | None = None
        self._pending: tuple[np.ndarray, float] | None = None

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        av = libav()

        try:
            self._container = av.open(self.path)
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            self._tb, self._zero = stream.time_base, stream.start_time or 0
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 30.0
            if max_pixels and stream.width * stream.height > max_pixels:
                raise InputError(f"{self.path}: frame {stream.width}x{stream.height} exceeds "
                                 f"the limit of {max_pixels / 1e6:.1f} MP")
            self._frames = self._decoded(stream, self._from_keyframe(stream))
            first = next(self._frames, None)
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"{self.name}: cannot decode ({e})") from None
        if first is None:
            raise InputError(f"{self.name}: no frames in this segment")
        self._pending = first
        return FrameFormat.of(first[0], self.fps)

    def _from_keyframe(self, stream: Any) -> Iterator[Any]:
        """The stream's packets from the segment's keyframe on."""
        key = self.segment.key
        if key is None:
            return self._container.demux(stream)
        lead = _LEAD
        while True:
            target = key - round(lead / self._tb)
            if target <= self._zero:
                self._container.seek(self._zero, stream=stream, backward=True)
            else:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
            packets = self._container.demux(stream)
            for packet in packets:
                if packet.pts is None:
                    continue
                if packet.pts > key and target > self._zero:
                    break  # landed past the keyframe: seek earlier
                if packet.pts == key and packet.is_keyframe:
                    return _chain(packet, packets)
                if packet.pts > key:
                    raise InputError(f"{self.name}: its keyframe (pts {key}) is not in the "
                                     "file any more")
            else:
                raise InputError(f"{self.name}: its keyframe (pts {key}) is not in the file")
            lead *= 2

    def _decoded(self, stream: Any, packets: Iterator[Any]
                 ) -> Iterator[tuple[np.ndarray, float]]:
        """Frames in the segment's range, in presentation order, from ``packets``."""
        av = libav()

        start, end = self.segment.start, self.segment.end
        for packet in packets:
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.decode_errors += 1  # skipped and counted, as OpenCV's reader does
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                t = float((frame.pts - self._zero) * self._tb)
                if t < start - EPS:
                    continue  # before the cut: the segment before has it
                if end is not None and t >= end - EPS:
                    return
                yield frame.to_ndarray(format="bgr24"), t

    def read(self) -> np.ndarray | None:
        av = libav()

        if self._pending is not None:
            item, self._pending = self._pending, None
        else:
            assert self._frames is not None
            try:
                item = next(self._frames, None)
            except av.FFmpegError:
                self.decode_errors += 1
                return None
        if item is None:
            return None
        self.frames_read += 1
        self._stamp(item[1])
        return item[0]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
