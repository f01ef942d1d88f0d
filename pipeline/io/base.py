"""What the runner needs of a source and of a sink, said as Protocols, and their shared parts.

The runner relies on these and nothing else: no probing for attributes. A source is
opened and read by the runner's reader thread only (``open`` and ``read`` block); whoever
made it closes it (it is a context manager). A sink is opened, written and finalised by
the runner's writer side; ``close``/``abort``/``keep`` each end it exactly once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..frames import FrameFormat

Shape = tuple[int, int, int]


class FrameSource(Protocol):
    """Frames from a camera, a stream, a file, images or memory, in one fixed format."""

    name: str  # for messages (a URL's password redacted)
    path: str | None  # the file it reads (an output must never replace it), or None
    live: bool  # frames arrive on their own clock: the runner drops, never waits
    frame_count: int | None  # declared by the container, when it says
    decode_errors: int  # frames skipped as undecodable
    reconnects: int  # times a live source was reopened
    ended_early: bool  # a file gave fewer frames than it declared
    pts: float | None  # seconds from the stream's start of the frame read() gave last
    warnings: list[str]  # complete once closed
    stop: threading.Event  # the runner's: any wait (a reconnect back-off) ends when set

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        """Blocks until the first frame's format is known; raises InputError /
        SourceLostError (frames over ``max_pixels`` are refused before decoding, where
        the source can tell)."""

    def read(self) -> np.ndarray | None:
        """Blocks for the next frame; None at the end of the stream."""

    def rewind(self) -> None:
        """Back to the first frame (``--loop``), its time 0 again; InputError for a live
        source, which cannot be replayed."""

    def close(self) -> None:
        """Lets go of everything (idempotent)."""

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


class SourceBase:
    """The bookkeeping every source shares, and the context manager."""

    live = False
    frame_count: int | None = None
    path: str | None = None
    fps: float = 30.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.pts: float | None = None
        self.decode_errors = 0
        self.frames_read = 0
        self.reconnects = 0
        self.ended_early = False
        self.warnings: list[str] = []
        self.stop = threading.Event()

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release by default."""

    def rewind(self) -> None:
        raise InputError(f"{self.name}: a live stream cannot be replayed")

    def _stamp(self, seconds: float | None) -> None:
        """``pts`` of the frame about to be returned: ``seconds`` when the source knows
        its frame's time and it moves forward, else one frame after the last."""
        last = self.pts
        if seconds is None or (last is not None and seconds <= last):
            seconds = 0.0 if last is None else last + 1.0 / self.fps
        self.pts = seconds


class IndexedSource(SourceBase):
    """A source that numbers its frames (images, the synthetic pattern, memory)."""

    _index = 0  # the next frame's number

    def rewind(self) -> None:
        self._index = 0
        self.pts = None


@dataclass
class SinkResult:
    name: str
    frames: int
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)  # lost on the way in (its sound)


class FrameSink(Protocol):
    """Where results go: a file, a folder of images, a window, a server, memory."""

    name: str
    wants: str  # "uint8" (encoded by the config's encode policy) or "float" (the chain's)
    view: bool  # people watch it as it plays: a run with only views paces a file's frames

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        """Sized from the chain's output; raises OutputError before the first frame.
        ``origin``: the file the frames come from (its sound and clock), or None."""

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        """One frame, shown at ``pts`` seconds from the stream's start (None: the next
        slot of the frame rate); never fails silently (OutputError). Nothing writes to
        ``frame`` after this call (sources, chains and encoders make each frame anew), so
        a sink may keep it without a copy."""

    def close(self) -> SinkResult:
        """Finalise (flush, verify, give the file its name) and say what was written."""

    def abort(self) -> None:
        """Remove anything this run wrote."""

    def keep(self) -> Path | None:
        """Finalise but leave a file at its temporary name (a failed run's frames); that
        path, or None when there is no file to keep."""


class StreamSink:
    """A sink with no file behind it: nothing to abort, nothing to keep."""

    name = "stream"
    wants = "uint8"
    view = False

    def close(self) -> SinkResult:
        return SinkResult(self.name, 0)

    def abort(self) -> None:
        """Nothing was written anywhere."""

    def keep(self) -> Path | None:
        self.close()
        return None
