"""One segment of a video file as a frame source: the frames at ``start <= t < end``
seconds from its video's start, decoded by PyAV from the keyframe at ``start``
(``bgr24``: the same pixels and times as OpenCV's reader, tested; PyAV seeks by
timestamp, OpenCV by a frame number derived from the frame rate). ``segments.py`` cuts
a video into such segments; ``batch.run_job`` runs one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..frames import FrameFormat
from .base import SourceBase

EPS = 1e-4  # seconds: a frame at a cut point belongs to the segment it starts


class SegmentSource(SourceBase):
    """The frames of ``path`` at ``start <= t < end`` seconds from its video's start,
    decoded by PyAV from the keyframe at ``start``; times as OpenCV's reader gives them."""

    def __init__(self, path: str, start: float, end: float | None) -> None:
        where = f"{path} [{start:.3f} s, {'end' if end is None else f'{end:.3f} s'})"
        super().__init__(where)
        self.path = path
        self.start, self.end = start, end
        self._container: Any = None
        self._frames: Any = None
        self._pending: tuple[np.ndarray, float] | None = None

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        import av

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
            if self.start > EPS:
                self._container.seek(self._zero + round(self.start / self._tb), stream=stream,
                                     backward=True, any_frame=False)
            self._frames = self._container.decode(stream)
            first = self._next()
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"{self.name}: cannot decode ({e})") from None
        if first is None:
            raise InputError(f"{self.name}: no frames in this segment")
        self._pending = first
        return FrameFormat.of(first[0], self.fps)

    def _next(self) -> tuple[np.ndarray, float] | None:
        for frame in self._frames:
            if frame.pts is None:
                continue
            t = float((frame.pts - self._zero) * self._tb)
            if t < self.start - EPS:
                continue  # before the cut: the segment before has it
            if self.end is not None and t >= self.end - EPS:
                return None
            return frame.to_ndarray(format="bgr24"), t
        return None

    def read(self) -> np.ndarray | None:
        import av

        if self._pending is not None:
            item, self._pending = self._pending, None
        else:
            try:
                item = self._next()
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
