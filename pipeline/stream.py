"""A stream's threads: reader -> queue -> compute -> queue -> writer.

Decoding, filtering and encoding overlap on separate threads (OpenCV, numpy and FFTW
release the GIL). A file source blocks when the compute queue is full, so no frame is
ever dropped; a live source keeps only the newest frame and counts what it drops. Every
wait has a timeout and checks ``stop``, so a signal ends the run within a bound; the
sinks are then finalised (runner.py) with the frames written so far.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .cores import CoreShare
from .encode import Encoder
from .frames import Frame, FrameFormat
from .io.base import FrameSink, FrameSource
from .pacing import Pacing
from .stages import Chain
from .stats import Stats

if TYPE_CHECKING:
    from .dashboard import Dashboard

QUEUE = 8  # frames in flight between stages (files), at most …
QUEUE_BYTES = 128 << 20  # … and at most this many bytes per queue: memory bounded by construction
LIVE_QUEUE = 1  # a live source keeps only the newest frame …
LIVE_OUT_QUEUE = 2  # … and only two results wait for the writer: latency, not backlog
POLL = 0.1  # seconds between checks of the stop event
STOP_GRACE = 0.5  # seconds a frame under way may take to finish once a run is stopped
_END = object()  # end of stream marker


def depth(shape: tuple[int, ...], itemsize: int) -> int:
    """Queue depth for frames of ``shape``: QUEUE, fewer when frames are large."""
    frame = math.prod(shape) * itemsize
    return max(1, min(QUEUE, QUEUE_BYTES // max(frame, 1)))


def memory_estimate(fmt: FrameFormat, shapes: list[tuple[int, int, int]],
                    live: bool) -> int:
    """Bytes a run holds at its peak: both queues full, plus a few working frames per stage."""
    inbound = math.prod(fmt.shape) * np.dtype(fmt.dtype).itemsize
    out = math.prod(shapes[-1]) * 4
    largest = max(math.prod(s) * 4 for s in [fmt.shape, *shapes])
    queued = (LIVE_QUEUE if live else depth(fmt.shape, np.dtype(fmt.dtype).itemsize)) * inbound
    waiting = min(LIVE_OUT_QUEUE, depth(shapes[-1], 4)) if live else depth(shapes[-1], 4)
    return queued + waiting * out + 6 * largest


class Run:
    """One stream from ``source`` (opened) through ``chain`` into ``sinks`` (opened);
    ``run()`` returns Stats. Closing either is the caller's (runner.py)."""

    def __init__(self, source: FrameSource, fmt: FrameFormat, chain: Chain,
                 encoder: Encoder | None, sinks: list[FrameSink], max_frames: int | None = None,
                 progress: Callable[[Stats], None] | None = None,
                 stop: threading.Event | None = None, realtime: bool = False,
                 loop: bool = False, dashboard: Dashboard | None = None) -> None:
        self.source, self.fmt, self.chain, self.encoder = source, fmt, chain, encoder
        self.realtime = realtime and not source.live  # a file played at its own rate
        self.loop = loop and not source.live  # replayed from its first frame at its end
        self.dashboard = dashboard
        self._pending: Swap | None = None
        self._swap_lock = threading.Lock()
        self.sinks = sinks
        self.max_frames = max_frames
        self.progress = progress
        self.stop = stop or threading.Event()
        self.live = source.live
        self.stats = Stats(frame_total=self._total())
        self.inbox: queue.Queue = queue.Queue(
            LIVE_QUEUE if self.live else depth(fmt.shape, np.dtype(fmt.dtype).itemsize))
        # A live job whose writer is the slowest stage would otherwise hold a backlog of
        # results (seen: p50 latency 234 ms at 1080p into an mp4); the source side drops.
        out_depth = depth(chain.out_shape, 4)
        self.outbox: queue.Queue = queue.Queue(min(LIVE_OUT_QUEUE, out_depth) if self.live
                                               else out_depth)
        self.errors: list[BaseException] = []
        self.enough = threading.Event()  # --max-frames frames processed
        self.stopped = False  # ended by ``stop`` before the stream did
        self.abandoned = False  # stopped while a frame was computed; that frame not written
        self._started = 0.0
        # every output 8-bit: the last bank encodes band by band where it can
        self._use(chain, encoder, finishes(chain, encoder, sinks))
        self.stats.paced = self.realtime
        self.stats.live = self.live
        self.pacing = Pacing()
        self._lock = threading.Lock()
        self.cores = CoreShare(enabled=not self.live)

    @property
    def generation(self) -> int:
        """The running chain's number: 1, and one more for each reload swapped in."""
        return self.stats.reloads + 1

    def _use(self, chain: Chain, encoder: Encoder | None, finished: bool) -> None:
        """Run ``chain`` from the next frame; ``finished``: its last bank writes the 8-bit
        frames, else ``encoder`` encodes them for the sinks that want 8-bit."""
        self.chain, self.encoder, self.finished = chain, encoder, finished
        self._encodes = encoder is not None and not finished and \
            any(s.wants != "float" for s in self.sinks)
        self.stats.finished_in_bank = finished

    def _total(self) -> int | None:
        if self.loop:
            return self.max_frames  # endless, unless told
        count = self.source.frame_count
        if count and self.max_frames:
            return min(count, self.max_frames)
        return self.max_frames or count

    def swap(self, swap: Swap) -> None:
        """Hand over a chain planned off the frame path (--watch): the compute thread
        swaps it in between two frames; a newer one replaces one not yet swapped in."""
        with self._swap_lock:
            self._pending = swap

    def _swap_in(self, frame: int) -> None:
        with self._swap_lock:
            swap, self._pending = self._pending, None
        if swap is None:
            return
        self._use(swap.chain, swap.encoder, swap.finished)
        if swap.chain.out_shape != swap.old_shape:
            for sink in self.sinks:  # views only (watch.py refuses a file's): resized
                sink.open(swap.chain.out_shape if sink.wants == "float" or swap.encoder is None
                          else swap.encoder.shape, self.fmt.fps, self.source.path)
        self.stats.reloads += 1
        if swap.done is not None:
            swap.done(self.generation, frame)

    def _encode(self, y: np.ndarray, filter_thread: bool = False,
                encoder: Encoder | None = None) -> tuple[np.ndarray, float]:
        """The 8-bit frame, and the seconds it took (also counted in the stats)."""
        encoder = encoder or self.encoder
        assert encoder is not None
        start = time.perf_counter()
        encoded = encoder(y)
        spent = time.perf_counter() - start
        self.pacing.note("encode", spent)
        with self._lock:  # either thread may encode
            self.stats.encode_s += spent
            if filter_thread:
                self.stats.encode_filter_s += spent
        return encoded, spent

    # -------------------------------------------------------------- threads
    def _put(self, q: queue.Queue, item: object, drop_oldest: bool = False) -> bool:
        """Put ``item``; False if stopped first.

        Files block (checking stop) until there is room: nothing is ever lost. A live
        source never waits: the oldest queued frame makes way and is counted as dropped.
        """
        if drop_oldest:
            while True:
                try:
                    q.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        q.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
        while not self.stop.is_set():
            try:
                q.put(item, timeout=POLL)
                return True
            except queue.Full:
                pass
        return False

    def _reader(self) -> None:
        try:
            index = 0
            clock: float | None = None  # wall time of pts 0, when paced
            while not (self.stop.is_set() or self.enough.is_set()):
                if not self.live and self.max_frames is not None and index >= self.max_frames:
                    break
                start = time.perf_counter()
                data = self.source.read()
                if data is None and self.loop and index:  # --loop: from the first frame again
                    self.source.rewind()
                    self.stats.loops += 1
                    clock = None
                    data = self.source.read()
                self.stats.read_s += time.perf_counter() - start
                if data is None:
                    break
                if self.realtime and self.source.pts is not None:  # as a player would
                    clock = self._paused(clock)
                    clock = time.monotonic() - self.source.pts if clock is None else clock
                    wait = clock + self.source.pts - time.monotonic()
                    if wait > 0 and self.stop.wait(wait):
                        break
                self.stats.frames_read += 1
                frame = Frame(index, time.perf_counter(), data, self.source.pts)
                if not self._put(self.inbox, frame,
                                 drop_oldest=self.live):
                    self.stats.discarded += 1
                    break
                index += 1
        except BaseException as e:  # handed to the main thread, which reports it
            self.errors.append(e)
            self.stop.set()
        finally:
            self._put_end(self.inbox)

    def _paused(self, clock: float | None) -> float | None:
        """A paced file holds while the page has it paused; the clock moves by the pause."""
        board = self.dashboard
        if board is None or not board.paused.is_set():
            return clock
        held = time.monotonic()
        while board.paused.is_set() and not self.stop.is_set():
            self.stop.wait(POLL)
        return None if clock is None else clock + time.monotonic() - held

    def _put_end(self, q: queue.Queue) -> None:
        """The end marker, even into a full queue (the consumer drains it at shutdown)."""
        while True:
            try:
                q.put(_END, timeout=POLL)
                return
            except queue.Full:
                if self.stop.is_set():
                    try:
                        if q.get_nowait() is not _END:
                            self.stats.discarded += 1
                    except queue.Empty:
                        pass

    def _writer(self) -> None:
        try:
            while True:
                try:
                    item = self.outbox.get(timeout=POLL)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                frame, y, encoded, encoder = item
                start = time.perf_counter()
                encode_s = 0.0
                for sink in self.sinks:
                    if sink.wants == "float":
                        sink.write(y, frame.pts)
                    else:
                        if encoded is None:
                            encoded, encode_s = self._encode(y, encoder=encoder)
                        sink.write(encoded, frame.pts)
                if self.dashboard is not None:
                    self.dashboard.show("src", frame.data)
                spent = time.perf_counter() - start - encode_s
                self.stats.write_s += spent
                self.pacing.note("write", spent)
                self.stats.frames_written += 1
                self.stats.latencies.append(time.perf_counter() - frame.time)
                if len(self.stats.latencies) > 100_000:  # bounded, by construction
                    del self.stats.latencies[::2]
        except BaseException as e:
            self.errors.append(e)
            self.stop.set()
            while self.outbox.get() is not _END:  # unblock the compute loop
                pass

    # -------------------------------------------------------------- compute
    def _compute(self) -> None:
        """Frames from the inbox through the chain into the outbox, until the end, a stop
        or --max-frames; on its own thread, so that a frame that takes seconds never
        keeps the main thread from a signal (``run``)."""
        last_progress = 0.0
        processed = 0
        try:
            while True:
                try:
                    item = self.inbox.get(timeout=POLL)
                except queue.Empty:
                    if self.stop.is_set():
                        return  # never wait on a reader blocked in OpenCV: finalise now
                    continue
                if item is _END:
                    return
                if self.stop.is_set():
                    self.stats.discarded += 1  # drained unprocessed: the run is stopping
                    continue
                if self._pending is not None:
                    self._swap_in(item.index)
                start = time.perf_counter()
                y = self.chain(item.data)
                if self.abandoned:
                    return  # the run ended while this frame was computed: not written
                spent = time.perf_counter() - start
                self.stats.compute_s += spent
                self.pacing.note("compute", spent)
                self.cores.step(spent, self.pacing.writer_side)
                if self.finished:  # the chain's result is the 8-bit frame
                    encoded = y
                else:
                    encoded = self._encode(y, filter_thread=True)[0] if self._encodes and \
                        self.pacing.encode_on_compute() else None
                if not self._put(self.outbox, (item, y, encoded, self.encoder)):
                    self.stats.discarded += 1  # computed, but the run stopped first
                    return
                processed += 1
                if self.max_frames is not None and processed >= self.max_frames:
                    self.enough.set()  # live: N frames out, however many arrived
                    return
                now = time.perf_counter()
                if self.progress and now - last_progress > 0.1:
                    self.stats.elapsed = now - self._started
                    self.progress(self.stats)
                    last_progress = now
        except BaseException as e:  # handed to the main thread, which reports it
            self.errors.append(e)
            self.stop.set()

    # -------------------------------------------------------------- main
    def run(self) -> Stats:
        """The stream, start to end: the main thread starts the reader, compute and
        writer threads and waits for them, checking ``stop``. Once stopped, a frame still
        being computed gets ``STOP_GRACE`` to finish, then is left (counted unprocessed):
        the outputs are finalised with the frames written so far either way."""
        self._started = started = time.perf_counter()
        reader = threading.Thread(target=self._reader, name="pipeline-read", daemon=True)
        writer = threading.Thread(target=self._writer, name="pipeline-write", daemon=True)
        compute = threading.Thread(target=self._compute, name="pipeline-compute", daemon=True)
        reader.start()
        writer.start()
        compute.start()
        try:
            while compute.is_alive() and not self.stop.is_set():
                compute.join(timeout=POLL)
            compute.join(timeout=STOP_GRACE)
        finally:
            if compute.is_alive():  # inside a long kernel: its frame is not waited for
                self.abandoned = True
                self.stats.discarded += 1
            self.stopped = self.stop.is_set()  # by a signal or its caller, before the end
            self.cores.close()
            self.stats.cores = self.cores.describe()
            self._put_end(self.outbox)
            writer.join()
            self.stop.set()
            reader.join(timeout=0.5)  # a reader still inside OpenCV is left: see stuck_threads
            while True:  # frames the reader queued after the loop ended
                try:
                    if self.inbox.get_nowait() is not _END:
                        self.stats.discarded += 1
                except queue.Empty:
                    break
            self.stats.elapsed = time.perf_counter() - started
        if self.errors:
            raise self.errors[0]
        if self.encoder is not None:
            self.stats.nan_pixels = self.encoder.nan_pixels
        return self.stats


@dataclass
class Swap:
    """A reloaded chain, planned, and what goes with it; ``done(generation, frame)`` is
    told once it runs (the frame number it starts at)."""

    chain: Chain
    encoder: Encoder | None
    finished: bool
    old_shape: tuple[int, int, int]
    done: Callable[[int, int], None] | None = None


def finishes(chain: Chain, encoder: Encoder | None, sinks: list[FrameSink]) -> bool:
    """Whether the last bank of ``chain`` writes the 8-bit frames itself: every output is
    8-bit and the chain can (``Chain.finish_in_bank``)."""
    return encoder is not None and bool(sinks) and all(s.wants != "float" for s in sinks) \
        and chain.finish_in_bank(encoder)


# threads that may be left inside a C call when a run ends: a capture blocked in OpenCV, a
# frame or a plan still computing after a signal
LEFT_BEHIND = ("pipeline-read", "pipeline-open", "pipeline-compute", "pipeline-plan",
               "pipeline-reload")


def stuck_threads() -> list[threading.Thread]:
    """Pipeline threads still alive after a run (``LEFT_BEHIND``): exit with os._exit then,
    never through an interpreter shutdown around them."""
    return [t for t in threading.enumerate()
            if t.name.startswith(LEFT_BEHIND) and t.is_alive()]


