"""Frame sources behind one protocol; each fixes its frame format when it opens.

``open()`` returns the FrameFormat (or raises InputError / SourceLostError), ``read()``
blocks for the next frame and returns None at the end of the stream, ``close()`` lets go
of everything. Sources are context managers; the runner's reader thread is their only
caller. OpenCV fails quietly (../shared/RELIABILITY.md), so paths are checked before
OpenCV sees them and reads are checked after.
"""

from __future__ import annotations

import glob
import math
import os
import re
import stat
import time
import urllib.parse
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..frames import FrameFormat
from .base import IndexedSource, SourceBase

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm",
                    ".ppm", ".pnm", ".exr", ".hdr"}
URL_SCHEMES = {"rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp", "srt"}
READ_RETRIES = 25  # consecutive failed reads tolerated before a file is taken as ended


# ------------------------------------------------------------------ OpenCV captures
class _CaptureSource(SourceBase):
    """Reading from a cv2.VideoCapture, tolerant of corrupt frames."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._pending_time: float | None = None
        self._time: float | None = None  # the time of the frame _next() gave last
        self._failures = 0
        self._exhausted = False  # read until the stream gave no more (not stopped early)

    def _format(self, first: np.ndarray) -> FrameFormat:
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        if not (math.isfinite(fps) and 0 < fps <= 1000):
            self.warnings.append(f"{self.name}: frame rate unknown ({fps:g}); using 30")
            fps = 30.0
        self.fps = fps
        return FrameFormat.of(first, fps)

    def _first_frame(self) -> np.ndarray:
        frame = self._next()
        if frame is None:
            raise InputError(f"{self.name}: input contains no video frames")
        self._pending, self._pending_time = frame, self._time
        return frame

    def _next(self) -> np.ndarray | None:
        """The next decodable frame; corrupt frames in between are skipped and counted."""
        assert self._cap is not None
        failures = 0
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self.decode_errors += failures
                # the frame's own presentation time (FFmpeg's best-effort timestamp, from
                # the stream's start): variable frame rates and gaps survive
                ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                self._time = ms / 1000 if math.isfinite(ms) and ms >= 0 else None
                return frame
            failures += 1
            if failures > READ_RETRIES or self._at_end():
                self._exhausted = True
                return None

    def _at_end(self) -> bool:
        """Whether the container says every frame has been read (a hint, never trusted alone)."""
        assert self._cap is not None
        pos = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        return count > 0 and pos >= count

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            self._time = self._pending_time
        else:
            frame = self._next()
        if frame is not None:
            self.frames_read += 1
            self._stamp(self._time)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(_CaptureSource):
    """A video file, decoded by FFmpeg through OpenCV; never drops a frame."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(path))
        self.path = os.fspath(path)

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        check_regular_file(self.path)
        self._cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise InputError(f"{self.path}: {_why_undecodable(self.path)}")
        width = self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)
        height = self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if max_pixels and width * height > max_pixels:  # before decoding a single frame
            raise InputError(f"{self.path}: frame {width:.0f}x{height:.0f} exceeds the limit "
                             f"of {max_pixels / 1e6:.1f} MP (raise with --max-pixels)")
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if math.isfinite(count) and count > 0 else None
        return self._format(self._first_frame())

    def close(self) -> None:
        # Only a stream read to its end can have ended early: a run stopped on purpose
        # (--max-frames, a signal) lost nothing on the way in. And only by time: OpenCV's
        # frame count is the container's duration x its average rate where it has no
        # count (a variable frame rate read whole was "300 of 301"), so the last frame is
        # compared with that duration, give or take two frames.
        if self._exhausted and self.frame_count and self.pts is not None:
            declared = self.frame_count / self.fps
            reached = self.pts + 1 / self.fps
            if reached < declared - max(2 / self.fps, 0.1):
                self.ended_early = True
                warning = (f"{self.path}: input ended at {reached:.2f} s of its declared "
                           f"{declared:.2f} s ({self.frames_read} frames read)")
                if warning not in self.warnings:  # said once however often it is replayed
                    self.warnings.append(warning)
        super().close()

    def rewind(self) -> None:
        """Reopened at its first frame (``--loop``)."""
        self.close()
        self.frames_read, self._exhausted = 0, False
        self.pts = self._time = None
        self.open()


# ------------------------------------------------------------------ images
class ImageSequenceSource(IndexedSource):
    """Still images in order (a folder, a glob, or a printf pattern); like a file: no drops."""

    def __init__(self, files: list[str], name: str, fps: float = 30.0) -> None:
        super().__init__(name)
        self.files = files
        self.fps = fps
        self.frame_count = len(files)
        self._index = 0
        self._format: FrameFormat | None = None

    def _load(self, path: str) -> np.ndarray | None:
        data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else None
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size \
            else None
        return image

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        if not self.files:
            raise InputError(f"{self.name}: no image files")
        while self._index < len(self.files):
            first = self._load(self.files[self._index])
            if first is not None:
                self._format = FrameFormat.of(first, self.fps)
                return self._format
            self._skip(self.files[self._index])
        raise InputError(f"{self.name}: none of {len(self.files)} images could be decoded")

    def _skip(self, path: str) -> None:
        self.decode_errors += 1
        self.warnings.append(f"{path}: not a decodable image; skipped")
        self._index += 1

    def read(self) -> np.ndarray | None:
        assert self._format is not None
        while self._index < len(self.files):
            path = self.files[self._index]
            image = self._load(path)
            if image is None:
                self._skip(path)
                continue
            self._index += 1
            got = FrameFormat.of(image, self.fps)
            if got != self._format:
                first = self._format
                raise InputError(f"{path}: {got.width}x{got.height}x{got.channels} {got.dtype} "
                                 f"differs from the sequence's first image ({first.width}x"
                                 f"{first.height}x{first.channels} {first.dtype})")
            self.frames_read += 1
            self._stamp((self._index - 1) / self.fps)  # a skipped image leaves a gap
            return image
        return None


def _natural(path: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def image_files(spec: str) -> list[str]:
    """Files of a folder (image extensions), a glob, or a printf pattern like ``f_%05d.png``."""
    if os.path.isdir(spec):
        names = [str(p) for p in Path(spec).iterdir()
                 if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        return sorted(names, key=_natural)
    if re.search(r"%0?\d*d", spec):
        try:
            start = next((i for i in range(10) if os.path.isfile(spec % i)), None)
        except (TypeError, ValueError):  # another '%' in the name: not a pattern
            start = None
        files = []
        while start is not None and os.path.isfile(spec % (start + len(files))):
            files.append(spec % (start + len(files)))
        if files:
            return files
    return sorted((p for p in glob.glob(spec) if os.path.isfile(p)), key=_natural)


# ------------------------------------------------------------------ synthetic and memory
class SyntheticSource(IndexedSource):
    """A deterministic moving test pattern: ``synthetic[:WxH][@fps][:frames]``.

    Edges, gradients, a moving disc and a frame counter: something to see a filter do,
    on a machine with no camera. Default 640x480 at 30 fps, 150 frames. Like a file, it
    never drops a frame.
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0,
                 frames: int = 150, name: str = "synthetic") -> None:
        super().__init__(name)
        self.width, self.height, self.fps = width, height, fps
        self.frame_count = frames
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = np.empty((height, width, 3), np.uint8)  # the parts that never move
        self._base[..., 1] = (yy * (255.0 / max(height - 1, 1))).astype(np.uint8)
        checker = (xx // max(width // 16, 1) + yy // max(height // 12, 1)) % 2
        self._base[..., 2] = (checker * 160).astype(np.uint8)
        self._x = np.arange(width, dtype=np.float32)
        self._index = 0

    @classmethod
    def parse(cls, spec: str) -> SyntheticSource:
        m = re.fullmatch(r"synthetic(?::(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?(?::(\d+))?", spec)
        if not m:
            raise InputError(f"{spec!r}: expected synthetic[:WIDTHxHEIGHT][@FPS][:FRAMES]")
        w, h, fps, n = m.groups()
        width, height = int(w or 640), int(h or 480)
        if not (8 <= width <= 7680 and 8 <= height <= 4320):
            raise InputError(f"{spec!r}: size must be within 8x8 .. 7680x4320")
        return cls(width, height, float(fps or 30.0), int(n) if n else 150, spec)

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        return FrameFormat(self.height, self.width, 3, "uint8", self.fps)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` of the pattern (a pure function of ``i``: the source is deterministic)."""
        w, h = self.width, self.height
        t = i / self.fps
        img = self._base.copy()
        img[..., 0] = (127 + 127 * np.sin(self._x / 23.0 + t)).astype(np.uint8)  # a moving wave
        cx = int(w / 2 + w / 3 * math.cos(2 * math.pi * t / 4))
        cy = int(h / 2 + h / 3 * math.sin(2 * math.pi * t / 4))
        cv2.circle(img, (cx, cy), max(min(w, h) // 10, 2), (255, 255, 255), -1)
        cv2.putText(img, f"{i:05d}", (max(w // 40, 1), max(h // 8, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, max(min(w, h) / 400, 0.3), (0, 0, 0), 2)
        return img

    def read(self) -> np.ndarray | None:
        if self.frame_count is not None and self._index >= self.frame_count:
            return None
        frame = self.frame(self._index)
        self._stamp(self._index / self.fps)
        self._index += 1
        self.frames_read += 1
        return frame


class MemorySource(IndexedSource):
    """Frames from a list (tests, notebooks); ``live=True`` to exercise drop-oldest."""

    def __init__(self, frames: list[np.ndarray] | np.ndarray, fps: float = 30.0,
                 live: bool = False, name: str = "memory", interval: float = 0.0) -> None:
        super().__init__(name)
        self.frames = list(frames)
        self.fps, self.live, self.interval = fps, live, interval
        self.frame_count = len(self.frames)
        self._index = 0

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        if not self.frames:
            raise InputError(f"{self.name}: no frames")
        return FrameFormat.of(self.frames[0], self.fps)

    def read(self) -> np.ndarray | None:
        if self._index >= len(self.frames):
            return None
        if self.interval:
            time.sleep(self.interval)
        frame = self.frames[self._index]
        self._stamp(self._index / self.fps)
        self._index += 1
        self.frames_read += 1
        return frame


# ------------------------------------------------------------------ choosing one
def _top_level_boxes(path: str, limit: int = 64) -> list[bytes]:
    """The types of an ISO-BMFF (MP4/MOV) file's top-level boxes, read from their headers."""
    boxes = []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        at = 0
        while at + 8 <= size and len(boxes) < limit:
            f.seek(at)
            header = f.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) >= 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                length = size - at
            if length < 8 or not kind.isalnum():
                break
            boxes.append(kind)
            at += length
    return boxes


def _why_undecodable(path: str) -> str:
    """The most useful words for a file FFmpeg will not open."""
    boxes = _top_level_boxes(path)
    if b"ftyp" in boxes and b"mdat" in boxes and b"moov" not in boxes:
        return ("MP4 index (moov) missing - file incomplete, was the recording "
                "interrupted? (MKV or AVI recordings survive interruption)")
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return "not a decodable image"
    return "not a decodable video"


def check_regular_file(path: str) -> None:
    """Before OpenCV sees a path: it exists, is a regular file, is not empty.

    OpenCV says nothing about a missing file and blocks forever on a FIFO.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise InputError(f"{path}: file is empty")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read: permission denied")


def is_url(spec: str | int) -> bool:
    """Whether a --source value names a network stream (by its scheme, as FFmpeg reads it)."""
    return isinstance(spec, str) and urllib.parse.urlsplit(spec).scheme.lower() in URL_SCHEMES
