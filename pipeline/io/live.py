"""Live sources (cameras, network streams): timeouts, reconnection with back-off, watchdog.

OpenCV's own behaviour (../shared/RELIABILITY.md b4): a stalled HTTP stream blocks read()
for 30 s and the capture is dead afterwards; a closed one returns False at once, forever;
one corrupt JPEG returns False once and the next read works; a camera can keep returning
the same frame after it is unplugged. So here: open and read timeouts on every capture, a
read that takes the whole read timeout (or fails instantly several times in a row, or a
picture that stops changing) means the source is gone, and it is reopened with
exponential back-off (with jitter) until an attempt/time budget runs out -> SourceLostError.
Every wait checks ``stop`` so a signal is never held up by a back-off.
"""

from __future__ import annotations

import os
import random
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SourceLostError
from ..frames import FrameFormat
from .base import SourceBase


def redact(url: str) -> str:
    """A URL with any password replaced by ``***`` (for messages and summaries)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Reconnect:
    """How hard to try: ``attempts`` opens within ``budget`` s, back-off ``first``..``cap`` s."""

    attempts: int = 5
    budget: float = 30.0
    first: float = 0.5
    cap: float = 8.0
    jitter: float = 0.2

    def delays(self) -> list[float]:
        delays, d = [], self.first
        for _ in range(max(self.attempts - 1, 0)):
            delays.append(d * random.uniform(1 - self.jitter, 1 + self.jitter))
            d = min(d * 2, self.cap)
        return delays


class ConnectFailed(Exception):
    """One open attempt failed; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Capture = object  # anything with read() -> (ok, frame) and release()


class LiveSource(SourceBase):
    """A live stream behind ``opener``: keeps reading, reconnects, or raises SourceLostError.

    ``opener()`` returns an opened capture or raises ConnectFailed; the runner's reader
    thread is the only caller of open/read, and ``stop`` ends any wait early.
    """

    live = True

    def __init__(self, name: str, opener: Callable[[], Capture], *, read_timeout: float = 2.0,
                 stale_timeout: float = 10.0, retry: Reconnect | None = None,
                 first_attempt_only: bool = False) -> None:
        super().__init__(name)
        self._opener = opener
        self.read_timeout = read_timeout
        self.stale_timeout = stale_timeout
        self.retry = retry or Reconnect()
        self.first_attempt_only = first_attempt_only  # cameras: absent at start means absent
        self._cap: Capture | None = None
        self._format: FrameFormat | None = None
        self._pending: np.ndarray | None = None
        self._last_sample: bytes | None = None
        self._last_change = 0.0
        self._resized_warned = False
        self._reading = False  # a read in progress (another thread must not release then)

    # ------------------------------------------------------------------ connecting
    def _connect(self, what: str, retry: bool = True) -> np.ndarray | None:
        """Open and read one frame, retrying within the budget; None if stopped."""
        start = time.monotonic()
        delays = self.retry.delays() if retry else []
        attempt, reason = 0, "unknown"
        while True:
            attempt += 1
            try:
                cap = self._opener()
                ok, frame = cap.read()
                if ok and frame is not None:
                    self._cap = cap
                    self._mark_change(frame)
                    return frame
                cap.release()
                reason = "stream delivered no frame"
            except ConnectFailed as e:
                reason = e.reason
            if not delays or time.monotonic() - start >= self.retry.budget:
                tries = f" ({attempt} attempts)" if attempt > 1 else ""
                raise SourceLostError(f"{self.name}: {what}{reason}{tries}")
            if self.stop.wait(delays.pop(0)):
                return None

    def open(self, max_pixels: int | None = None) -> FrameFormat:
        frame = self._connect("", retry=not self.first_attempt_only)
        if frame is None:
            raise SourceLostError(f"{self.name}: stopped while connecting")
        self._pending = frame
        self._start = time.monotonic()  # the capture clock: frames are timed on arrival
        self.fps = self._fps()
        self._format = FrameFormat.of(frame, self.fps)
        return self._format

    def _fps(self) -> float:
        get = getattr(self._cap, "get", None)
        fps = get(cv2.CAP_PROP_FPS) if get else 0.0
        return fps if isinstance(fps, float) and 0 < fps <= 1000 else 30.0

    # ------------------------------------------------------------------ reading
    def _mark_change(self, frame: np.ndarray) -> None:
        self._last_sample = np.ascontiguousarray(frame[::17, ::13]).tobytes()
        self._last_change = time.monotonic()

    def _stale(self, frame: np.ndarray) -> bool:
        sample = np.ascontiguousarray(frame[::17, ::13]).tobytes()
        if sample != self._last_sample:
            self._last_sample = sample
            self._last_change = time.monotonic()
            return False
        return time.monotonic() - self._last_change > self.stale_timeout

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        """Frames keep the format announced at open (a reconnect may bring another size)."""
        fmt = self._format
        assert fmt is not None
        if frame.shape[:2] != (fmt.height, fmt.width) or frame.dtype.name != fmt.dtype:
            if not self._resized_warned:
                self._resized_warned = True
                self.warnings.append(
                    f"{self.name}: source resolution changed {fmt.width}x{fmt.height} -> "
                    f"{frame.shape[1]}x{frame.shape[0]}; scaling to the first size")
            frame = cv2.resize(frame, (fmt.width, fmt.height), interpolation=cv2.INTER_AREA)
            if frame.ndim == 2 and fmt.channels > 1:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            frame = frame.astype(fmt.dtype, copy=False).reshape(fmt.shape)
        return frame

    def read(self) -> np.ndarray | None:
        quick_failures = 0
        while not self.stop.is_set():
            if self._pending is not None:  # the first frame of a (re)connection comes first
                frame, self._pending = self._pending, None
                self.frames_read += 1
                self._stamp(time.monotonic() - self._start)
                return frame
            assert self._cap is not None
            started = time.monotonic()
            self._reading = True
            try:
                ok, frame = self._cap.read()
            finally:
                self._reading = False
            elapsed = time.monotonic() - started
            if ok and frame is not None:
                if self._stale(frame):
                    self._reconnect(f"picture unchanged for {self.stale_timeout:g} s")
                    continue
                self.frames_read += 1
                self._stamp(time.monotonic() - self._start)
                return self._fit(frame)
            if elapsed >= self.read_timeout * 0.9:
                self._reconnect(f"no frame for {elapsed:.1f} s")
            else:
                quick_failures += 1
                self.decode_errors += 1  # a corrupt frame: OpenCV reads the next one again
                if quick_failures >= 3:
                    self.decode_errors -= quick_failures  # not corrupt frames: a dead capture
                    self._reconnect("stream ended")
                    quick_failures = 0
        return None

    def _reconnect(self, why: str) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self.warnings.append(f"{self.name}: {why}; reconnecting")
        frame = self._connect(f"source lost ({why}); reconnecting failed: ")
        if frame is None:  # stopped meanwhile: read() sees stop and ends
            return
        self.reconnects += 1
        self._pending = self._fit(frame)

    def close(self) -> None:
        """Release the capture, unless a read is blocked in it on the reader thread:
        releasing under a read crashed OpenCV (rc 139, RELIABILITY b5); the process then
        leaves with os._exit once its outputs are final."""
        self.stop.set()
        if self._cap is not None and not self._reading:
            self._cap.release()
            self._cap = None


# ------------------------------------------------------------------ OpenCV openers
def _tcp_check(url: str, timeout: float) -> None:
    """A TCP connect first: refused / unreachable / silent are told apart in words."""
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}
    port = parts.port or default.get(parts.scheme.lower())
    if not parts.hostname or port is None:
        return
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise ConnectFailed(f"cannot resolve {parts.hostname}") from None
    except TimeoutError:
        raise ConnectFailed(f"no answer from {parts.hostname}:{port} within "
                            f"{timeout:g} s") from None
    except OSError as e:
        raise ConnectFailed(f"cannot connect to {parts.hostname}:{port}: "
                            f"{(e.strerror or str(e)).lower()}") from None


class JpegPackets:
    """An MJPEG capture read as its JPEG packets (OpenCV's raw mode) and decoded here.

    OpenCV's own decoding scales every frame of a stream to the first frame's size,
    silently (RELIABILITY b4: 320x240 -> 640x480 -> 321x241 all came back 320x240), so a
    size change could not be seen, let alone reported. Each JPEG decoded by itself shows
    its true size; LiveSource then warns once and scales. A JPEG that does not decode is
    a failed read, as OpenCV's decoder gave (counted as a corrupt frame).
    """

    def __init__(self, cap: cv2.VideoCapture) -> None:
        self.cap = cap

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, packet = self.cap.read()
        if not ok or packet is None or packet.size == 0:
            return False, None
        frame = cv2.imdecode(packet, cv2.IMREAD_COLOR)
        return frame is not None, frame

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return code.to_bytes(4, "little").decode("latin1") if code > 0 else ""


def url_source(url: str, open_timeout: float = 5.0, read_timeout: float = 2.0,
               retry: Reconnect | None = None) -> LiveSource:
    """An http(s) MJPEG / rtsp / … stream through OpenCV's FFmpeg backend (MJPEG read as
    JPEG packets, decoded here: JpegPackets)."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]

    def opener() -> Capture:
        _tcp_check(url, open_timeout)
        start = time.monotonic()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            waited = time.monotonic() - start
            raise ConnectFailed(f"no stream within {open_timeout:g} s" if
                                waited >= open_timeout * 0.9 else "cannot open stream")
        if _fourcc(cap) == "MJPG" and cap.set(cv2.CAP_PROP_FORMAT, -1):
            return JpegPackets(cap)
        return cap

    source = LiveSource(redact(url), opener, read_timeout=read_timeout, retry=retry)
    source.url = url
    return source


def camera_source(index: int, read_timeout: float = 2.0, retry: Reconnect | None = None
                  ) -> LiveSource:
    """A camera by index; missing at start is an error at once (no back-off)."""
    def opener() -> cv2.VideoCapture:
        if os.name == "posix" and os.path.isdir("/dev") and \
                not os.path.exists(f"/dev/video{index}"):
            raise ConnectFailed(f"not available (no /dev/video{index})")
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            raise ConnectFailed("not available (busy or not a camera)")
        return cap

    return LiveSource(f"camera {index}", opener, read_timeout=read_timeout, retry=retry,
                      first_attempt_only=True)
