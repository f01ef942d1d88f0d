"""What the ``--serve`` page shows of a running stream: live figures, the frames of the
source and of the result, the plan of each bank, reloads and their errors, and pause.

The stream's threads only hand frames over (``Feed.publish``: a copy, no encoding) and
append notes; everything else is computed when a page asks (``figures()``), on the
server's threads. A JPEG is encoded once per frame, by the first viewer that wants it,
and only for a feed someone watches: the stream never waits on a viewer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np

WINDOW = 2.0  # seconds of history the rates and per-frame times are taken over
LATENCIES = 240  # the newest latencies the percentiles are taken over


def viewable(frame: np.ndarray) -> np.ndarray:
    """An 8-bit 1, 3 or 4 channel picture of any frame (what JPEG and imshow take): 16-bit
    keeps its high byte, floats are clipped to 0..255, two channels get a zero third (so
    a gradient pair shows as false colour), more than four show their first three."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        frame = np.clip(np.nan_to_num(frame), 0, 255).astype(np.uint8)
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    if channels == 2:
        frame = np.dstack([frame, np.zeros_like(frame[:, :, :1])])
    elif channels > 4:
        frame = np.ascontiguousarray(frame[:, :, :3])
    return frame


class Feed:
    """The newest frame of one picture stream, its number, and its JPEG once made."""

    def __init__(self, quality: int = 85) -> None:
        self.quality = quality
        self.cond = threading.Condition()
        self.closed = False
        self.serial = 0
        self._frame: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._encoding = threading.Lock()

    def publish(self, frame: np.ndarray) -> None:
        """The stream's newest frame, kept as it is: nothing writes to a frame once it is
        handed to the sinks (``FrameSink.write``)."""
        with self.cond:
            self._frame = frame
            self.serial += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """The serial of a frame newer than ``seen`` (``seen`` after ``timeout``, or closed)."""
        with self.cond:
            self.cond.wait_for(lambda: self.serial != seen or self.closed, timeout=timeout)
            return self.serial

    def latest(self) -> np.ndarray | None:
        with self.cond:
            return self._frame

    def jpeg(self) -> tuple[int, bytes]:
        """(serial, JPEG) of the newest frame, encoded here if no viewer has yet; (0, b"")
        before the first frame."""
        with self.cond:
            serial, frame = self.serial, self._frame
        if frame is None:
            return 0, b""
        with self._encoding:  # viewers of one frame share one encoding
            if self._jpeg[0] != serial:
                ok, data = cv2.imencode(".jpg", viewable(frame),
                                        [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                self._jpeg = (serial, data.tobytes() if ok else b"")
            return self._jpeg


class Viewer:
    """One stream connection: frames sent to it, and frames it skipped being slow."""

    def __init__(self, feed: str, board: Dashboard) -> None:
        self.feed, self.board = feed, board
        self.sent = self.skipped = 0
        self.last = 0  # the serial sent last

    def sending(self, serial: int) -> None:
        if self.last:
            self.skipped += max(serial - self.last - 1, 0)
        self.sent += 1
        self.last = serial

    def leave(self) -> None:
        self.board._left(self)


class Dashboard:
    """A running stream as the page sees it. ``attach(run)`` once the stream exists;
    ``figures()`` from any thread."""

    def __init__(self, source: str, config: str | None = None) -> None:
        self.source = source
        self.config = config
        self.paused = threading.Event()
        self.feeds = {"out": Feed(), "src": Feed()}
        self._run: Any = None
        self._samples: deque[tuple[float, ...]] = deque(maxlen=256)
        self._notes: deque[dict[str, Any]] = deque(maxlen=20)
        self._serial = 0
        self._viewers: dict[int, Viewer] = {}
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def attach(self, run: Any) -> None:
        """The stream.Run whose stats, chain and source the figures read."""
        self._run = run

    def note(self, kind: str, text: str) -> None:
        """A reload, a rejected config, a loop: the page lists the newest 20."""
        with self._lock:
            self._serial += 1
            self._notes.append({"n": self._serial, "kind": kind, "text": text,
                                "at": round(time.monotonic() - self.started, 2)})

    def viewer(self, feed: str) -> Viewer:
        """A new stream connection, counted until ``Viewer.leave``."""
        viewer = Viewer(feed, self)
        with self._lock:
            self._viewers[id(viewer)] = viewer
        return viewer

    def _left(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.pop(id(viewer), None)

    def show(self, feed: str, frame: np.ndarray) -> None:
        """``frame`` to the ``feed`` picture ("out", "src"), unless paused: the page then
        keeps its last picture."""
        if not self.paused.is_set():
            self.feeds[feed].publish(frame)

    def toggle_pause(self, paused: bool | None = None) -> bool:
        """Pause or resume the page's pictures (and a paced file's playback); the new state."""
        if paused is None:
            paused = not self.paused.is_set()
        if paused:
            self.paused.set()
        else:
            self.paused.clear()
        self.note("pause", "paused" if paused else "resumed")
        return paused

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()

    # ------------------------------------------------------------- figures
    def _rates(self, stats: Any) -> dict[str, float]:
        """fps in and out and each thread's ms a frame, over the last WINDOW seconds."""
        now = time.monotonic()
        sample = (now, stats.frames_read, stats.frames_written, stats.read_s,
                  stats.compute_s + stats.encode_filter_s,
                  stats.write_s + stats.encode_s - stats.encode_filter_s)
        with self._lock:
            earlier = [s for s in self._samples if s[0] < now]
            if not self._samples or now - self._samples[-1][0] >= 0.1:
                self._samples.append(sample)
        # the oldest look within WINDOW; a client that looks less often than that gets the
        # rate since its last look (it got 0.0 fps: its only sample in the window was now's)
        recent = [s for s in earlier if now - s[0] <= WINDOW]
        old = recent[0] if recent else earlier[-1] if earlier else sample
        span = now - old[0]
        d = [a - b for a, b in zip(sample, old)]
        per = lambda seconds, frames: seconds / frames * 1e3 if frames > 0 else None  # noqa: E731
        return {
            "fps_in": d[1] / span if span > 0 else 0.0,
            "fps_out": d[2] / span if span > 0 else 0.0,
            "read_ms": per(d[3], d[1]),
            "filter_ms": per(d[4], d[2]),
            "write_ms": per(d[5], d[2]),
        }

    def figures(self) -> dict[str, Any]:
        """Everything the page shows, JSON-ready."""
        run = self._run
        with self._lock:
            notes = list(self._notes)
            viewers = [{"feed": v.feed, "sent": v.sent, "skipped": v.skipped}
                       for v in self._viewers.values()]
        base: dict[str, Any] = {"source": self.source, "config": self.config,
                                "paused": self.paused.is_set(), "notes": notes,
                                "viewers": viewers,
                                "uptime_s": round(time.monotonic() - self.started, 2)}
        if run is None:
            return base | {"state": "starting"}
        stats = run.stats
        recent = np.asarray(stats.latencies[-LATENCIES:], dtype=np.float64)
        chain = run.chain
        fmt = run.fmt
        steps = [{"name": step.name, "ms": round(ms, 3) if ms is not None else None,
                  "shape": size(step.out_shape), "inside": _inside(chain, i)}
                 for i, (step, ms) in enumerate(zip(chain.steps, chain.step_ms()))]
        rates = self._rates(stats)
        # a live source's own rate is what arrives (an MJPEG stream declares none: OpenCV
        # said 25 of a 30 fps camera)
        rate = f"{rates['fps_in']:.0f} fps measured" if run.live and rates["fps_in"] else \
            "? fps" if run.live else f"{fmt.fps:g} fps"
        return base | {
            "state": "stopped" if run.stop.is_set() else "running",
            "input": f"{fmt.width}x{fmt.height}x{fmt.channels} {fmt.dtype} @ {rate}",
            "output": size(chain.out_shape),
            "live": run.live, "paced": run.realtime, "loops": stats.loops,
            "frames_in": stats.frames_read, "frames_out": stats.frames_written,
            "dropped": stats.dropped, "chain": run.generation,
            "latency_p50_ms": round(float(np.percentile(recent, 50)) * 1e3, 2)
            if recent.size else None,
            "latency_p99_ms": round(float(np.percentile(recent, 99)) * 1e3, 2)
            if recent.size else None,
            **{k: round(v, 3) if v is not None else None for k, v in rates.items()},
            "steps": steps,
            "banks": [bank_plan(step) for step in chain.steps if step.plan is not None],
        }


def size(shape: tuple[int, int, int]) -> str:
    """``(H, W, C)`` as ``WxHxC``, the way frame sizes are written everywhere else."""
    return f"{shape[1]}x{shape[0]}x{shape[2]}"


def _inside(chain: Any, i: int) -> str | None:
    """The step that does step ``i`` as part of its own work, if one does: a convert
    folded into the next bank's loads, the stages a last bank finishes in its bands."""
    if i == 0 and chain.folded:
        return chain.steps[1].name
    if chain.finished_in is not None and i > chain.finished_in:
        return chain.steps[chain.finished_in].name
    return None


def bank_plan(step: Any) -> dict[str, Any]:
    """A planned bank step as the page lists it: method, kernel, padding, border, ..."""
    plan, bank = step.plan, step.bank
    kh, kw = bank.kernel_size
    t, b, left, r = plan.pads
    return {"name": step.name, "method": plan.method, "kernel": f"{kh}x{kw}",
            "channels": f"{plan.in_shape[2]} -> {plan.out_shape[2]}",
            "padding": f"top {t}, bottom {b}, left {left}, right {r}",
            "border": plan.border, "stride": list(plan.stride),
            "dilation": list(plan.dilation), "groups": plan.groups}
