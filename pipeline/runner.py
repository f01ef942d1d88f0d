"""The one place that wires a stream: reader thread -> queue -> compute -> queue -> writer.

Decoding, filtering and encoding overlap on separate threads (OpenCV, numpy and FFTW
release the GIL). A file source blocks when the compute queue is full, so no frame is
ever dropped; a live source keeps only the newest frame and counts what it drops. Every
wait has a timeout and checks ``stop``, so a signal ends the run within a bound; the
sinks are then finalised with the frames written so far.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from .cores import CoreShare
from .encode import Encoder
from .errors import InputError, OutputError, PipelineError
from .frames import Frame, FrameFormat
from .signals import SIGNAL_CODES, SIGNAL_NAMES, stop_on_signals
from .stages import Chain, build_chain
from .stats import Stats

__all__ = ["Stats", "run_config", "stuck_threads"]

QUEUE = 8  # frames in flight between stages (files), at most …
QUEUE_BYTES = 128 << 20  # … and at most this many bytes per queue: memory bounded by construction
LIVE_QUEUE = 1  # a live source keeps only the newest frame …
LIVE_OUT_QUEUE = 2  # … and only two results wait for the writer: latency, not backlog
_POLL = 0.1  # seconds between checks of the stop event
_END = object()  # end of stream marker


def depth(shape: tuple[int, ...], itemsize: int) -> int:
    """Queue depth for frames of ``shape``: QUEUE, fewer when frames are large."""
    frame = int(np.prod(shape)) * itemsize
    return max(1, min(QUEUE, QUEUE_BYTES // max(frame, 1)))


def memory_estimate(fmt: FrameFormat, shapes: list[tuple[int, int, int]],
                    live: bool) -> int:
    """Bytes a run holds at its peak: both queues full, plus a few working frames per stage."""
    inbound = int(np.prod(fmt.shape)) * np.dtype(fmt.dtype).itemsize
    out = int(np.prod(shapes[-1])) * 4
    largest = max(int(np.prod(s)) * 4 for s in [fmt.shape, *shapes])
    queued = (LIVE_QUEUE if live else depth(fmt.shape, np.dtype(fmt.dtype).itemsize)) * inbound
    waiting = min(LIVE_OUT_QUEUE, depth(shapes[-1], 4)) if live else depth(shapes[-1], 4)
    return queued + waiting * out + 6 * largest


class Run:
    """One stream from ``source`` through ``chain`` into ``sinks``; ``run()`` returns Stats."""

    def __init__(self, source, fmt: FrameFormat, chain: Chain, encoder: Encoder | None,
                 sinks: list, max_frames: int | None = None,
                 progress: Callable[[Stats], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.source, self.fmt, self.chain, self.encoder = source, fmt, chain, encoder
        self.sinks = sinks
        self.max_frames = max_frames
        self.progress = progress
        self.stop = stop or threading.Event()
        self.stats = Stats(frame_total=self._total())
        live = getattr(source, "live", False)
        self.live = live
        self.inbox: queue.Queue = queue.Queue(
            LIVE_QUEUE if live else depth(fmt.shape, np.dtype(fmt.dtype).itemsize))
        # A live job whose writer is the slowest stage would otherwise hold a backlog of
        # results (seen: p50 latency 234 ms at 1080p into an mp4); the source side drops.
        out_depth = depth(chain.out_shape, 4)
        self.outbox: queue.Queue = queue.Queue(min(LIVE_OUT_QUEUE, out_depth) if live
                                               else out_depth)
        self.errors: list[BaseException] = []
        self.enough = threading.Event()  # --max-frames frames processed
        self.stopped = False  # ended by ``stop`` before the stream did
        self._encodes = encoder is not None and any(s.wants != "float" for s in sinks)
        self._pace = {"compute": 0.0, "encode": 0.0, "write": 0.0}  # s per frame, smoothed
        self._lock = threading.Lock()
        self.cores = CoreShare(enabled=not live)

    def _total(self) -> int | None:
        count = getattr(self.source, "frame_count", None)
        if count and self.max_frames:
            return min(count, self.max_frames)
        return self.max_frames or count

    # -------------------------------------------------------------- encoding
    def _note(self, part: str, seconds: float) -> None:
        old = self._pace[part]
        self._pace[part] = seconds if old == 0.0 else 0.8 * old + 0.2 * seconds

    def _encode_here(self) -> bool:
        """Whether the compute thread encodes this frame (float -> 8-bit) instead of the
        writer: when that leaves the busier of the two threads less busy. The encoder is
        the bottleneck of many jobs (one thread); moving its policy off it was measured
        to raise throughput, and a filter-bound job keeps it on the writer."""
        p = self._pace
        here = max(p["compute"] + p["encode"], p["write"])
        there = max(p["compute"], p["write"] + p["encode"])
        return here < there

    def _encode(self, y: np.ndarray) -> tuple[np.ndarray, float]:
        """The 8-bit frame, and the seconds it took (also counted in the stats)."""
        start = time.perf_counter()
        encoded = self.encoder(y)
        spent = time.perf_counter() - start
        self._note("encode", spent)
        with self._lock:  # either thread may encode
            self.stats.encode_s += spent
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
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                pass
        return False

    def _reader(self) -> None:
        try:
            index = 0
            while not (self.stop.is_set() or self.enough.is_set()):
                if not self.live and self.max_frames is not None and index >= self.max_frames:
                    break
                start = time.perf_counter()
                data = self.source.read()
                self.stats.read_s += time.perf_counter() - start
                if data is None:
                    break
                self.stats.frames_read += 1
                if not self._put(self.inbox, Frame(index, time.perf_counter(), data),
                                 drop_oldest=self.live):
                    self.stats.discarded += 1
                    break
                index += 1
        except BaseException as e:  # handed to the main thread, which reports it
            self.errors.append(e)
            self.stop.set()
        finally:
            self._put_end(self.inbox)

    def _put_end(self, q: queue.Queue) -> None:
        """The end marker, even into a full queue (the consumer drains it at shutdown)."""
        while True:
            try:
                q.put(_END, timeout=_POLL)
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
                    item = self.outbox.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                frame, y, encoded = item
                start = time.perf_counter()
                encode_s = 0.0
                for sink in self.sinks:
                    if sink.wants == "float":
                        sink.write(y)
                    else:
                        if encoded is None:
                            encoded, encode_s = self._encode(y)
                        sink.write(encoded)
                spent = time.perf_counter() - start - encode_s
                self.stats.write_s += spent
                self._note("write", spent)
                self.stats.frames_written += 1
                self.stats.latencies.append(time.perf_counter() - frame.time)
                if len(self.stats.latencies) > 100_000:  # bounded, by construction
                    del self.stats.latencies[::2]
        except BaseException as e:
            self.errors.append(e)
            self.stop.set()
            while self.outbox.get() is not _END:  # unblock the compute loop
                pass

    # -------------------------------------------------------------- main
    def run(self) -> Stats:
        started = time.perf_counter()
        reader = threading.Thread(target=self._reader, name="pipeline-read", daemon=True)
        writer = threading.Thread(target=self._writer, name="pipeline-write", daemon=True)
        reader.start()
        writer.start()
        last_progress = 0.0
        processed = 0
        try:
            while True:
                try:
                    item = self.inbox.get(timeout=_POLL)
                except queue.Empty:
                    if self.stop.is_set():
                        break  # never wait on a reader blocked in OpenCV: finalise now
                    continue
                if item is _END:
                    break
                if self.stop.is_set():
                    self.stats.discarded += 1  # drained unprocessed: the run is stopping
                    continue
                start = time.perf_counter()
                y = self.chain(item.data)
                spent = time.perf_counter() - start
                self.stats.compute_s += spent
                self._note("compute", spent)
                self.cores.step(spent, self._pace["write"] + self._pace["encode"])
                encoded = self._encode(y)[0] if self._encodes and self._encode_here() else None
                if not self._put(self.outbox, (item, y, encoded)):
                    self.stats.discarded += 1  # computed, but the run stopped first
                    break
                processed += 1
                if self.max_frames is not None and processed >= self.max_frames:
                    self.enough.set()  # live: N frames out, however many arrived
                    break
                now = time.perf_counter()
                if self.progress and now - last_progress > 0.1:
                    self.stats.elapsed = now - started
                    self.progress(self.stats)
                    last_progress = now
        finally:
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


def finish(sinks: list, stats: Stats, failed: bool) -> None:
    """Close every sink (finalise) or, after a failure, abort them; collect their results."""
    for sink in sinks:
        try:
            if failed:
                sink.abort()
            else:
                result = sink.close()
                stats.results.append(result)
                stats.warnings.extend(result.warnings)
        except PipelineError:
            for other in sinks:
                other.abort()
            raise


def _open_interruptibly(src, stop: threading.Event, max_pixels: int) -> FrameFormat:
    """``src.open()`` on a helper thread: a signal never waits for a blocking open."""
    done: list = []

    def opening() -> None:
        try:
            done.append(src.open(max_pixels=max_pixels) if _takes_limit(src)
                        else src.open())
        except BaseException as e:  # handed over below
            done.append(e)

    thread = threading.Thread(target=opening, name="pipeline-open", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=_POLL)
        if stop.is_set() and thread.is_alive():
            raise Interrupted("stopped while opening the source")
    result = done[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _takes_limit(src) -> bool:
    import inspect

    return "max_pixels" in inspect.signature(src.open).parameters


class Interrupted(PipelineError):
    """A signal arrived before any frame was processed (exit 130/143/129)."""

    exit_code = 130


def stuck_threads() -> list[threading.Thread]:
    """Pipeline threads still alive (a capture blocked in OpenCV): exit with os._exit then."""
    return [t for t in threading.enumerate()
            if t.name.startswith(("pipeline-read", "pipeline-open")) and t.is_alive()]


def keep_partial(sinks: list, stats: Stats) -> list[str]:
    """After a source failure: finalise each sink but leave files at their .partial name."""
    kept = []
    for sink in sinks:
        keep = getattr(sink, "keep", None)
        path = keep() if keep else sink.close().name
        if path:
            kept.append(str(path))
    return kept


def run_config(config, *, source=None, output: str | None = None,
               max_frames: int | None = None, show: bool = False, serve: str | None = None,
               force: bool = False, sinks: list | None = None,
               progress: Callable[[Stats], None] | None = None,
               stop: threading.Event | None = None, limits=None, live: dict | None = None,
               max_memory: int = 4 << 30, on_stop: str = "finalise",
               token: str | None = None) -> Stats:
    """Run ``config`` (a Config or a YAML path) and return its Stats.

    ``source``/``output`` override the config's (a spec string, or a FrameSource/FrameSink
    object); ``sinks`` are used instead of any output. From the moment outputs are opened
    until they are finalised, SIGINT/SIGTERM/SIGHUP stop the run cleanly (main thread
    only): ``Stats.interrupted`` names the signal. A run stopped that way (or by ``stop``)
    finalises its outputs with the frames so far, or with ``on_stop="keep"`` (batch: only
    whole outputs get their final names) leaves them at their temporary names, listed in
    ``Stats.kept``. A source that fails midway leaves the frames written so far at the
    output's temporary name, named in the error; an output that fails leaves nothing.
    ``token`` names the temporary files (destination.py). Raises PipelineError subclasses.
    """
    from .config import Config, Limits, load_config
    from .sinks import open_sink
    from .sources import open_source
    from .viewers import MjpegServerSink, WindowSink

    limits = limits or Limits()
    if not isinstance(config, Config):
        config = load_config(config, limits)
    spec = config.source if source is None else source
    src = open_source(spec, live) if isinstance(spec, str | int) else spec
    inputs = [src.path] if hasattr(src, "path") else []
    if sinks is None:
        target = output if output is not None else config.output
        sinks = []
        if target is not None or not (show or serve):
            sinks.append(open_sink(target, force=force, inputs=inputs, token=token)
                         if target is None or isinstance(target, str) else target)
        if show:
            sinks.append(WindowSink())
        if serve:
            sinks.append(MjpegServerSink(serve))
    stop = stop or threading.Event()
    if hasattr(src, "stop"):
        src.stop = stop  # reconnect back-offs end at a signal too
    received: list[int] = []
    with stop_on_signals(stop, received), src:
        try:
            fmt = _open_interruptibly(src, stop, limits.pixels)
        except Interrupted as e:
            e.exit_code = SIGNAL_CODES.get(received[0] if received else signal.SIGINT, 130)
            raise
        if fmt.height * fmt.width > limits.pixels:
            raise InputError(f"{src.name}: frame {fmt.width}x{fmt.height} exceeds the limit of "
                             f"{limits.pixels / 1e6:.1f} MP (raise with --max-pixels)")
        shapes = [step.out_shape for step in build_chain(config, fmt, plan=False).steps]
        need = memory_estimate(fmt, shapes, getattr(src, "live", False))
        if need > max_memory:
            raise InputError(f"{src.name}: {fmt.width}x{fmt.height} frames through this chain "
                             f"need about {need / 2**30:.1f} GiB; --max-memory "
                             f"{max_memory / 2**30:.1f} GiB")
        chain = build_chain(config, fmt)
        needs_encoder = any(s.wants == "uint8" for s in sinks)
        encoder = Encoder(config.encode, chain.out_shape) if needs_encoder else None
        opened: list = []
        try:
            for sink in sinks:
                sink.open(chain.out_shape if sink.wants == "float" else encoder.shape, fmt.fps)
                opened.append(sink)
        except BaseException:
            for sink in opened:
                sink.abort()
            raise
        run = Run(src, fmt, chain, encoder, sinks, max_frames, progress, stop)
        try:
            stats = run.run()
        except OutputError:
            finish(sinks, run.stats, failed=True)
            raise
        except PipelineError as e:  # the source failed: keep what was written, and say where
            kept = keep_partial(sinks, run.stats)
            if kept and run.stats.frames_written:
                raise type(e)(f"{e}; {run.stats.frames_written} frames kept in "
                              f"{', '.join(kept)}") from None
            raise
        except BaseException:
            finish(sinks, run.stats, failed=True)
            raise
        if run.stopped and on_stop == "keep":
            stats.kept = keep_partial(sinks, stats)
        else:
            finish(sinks, stats, failed=False)
        stats.decode_errors = src.decode_errors
        stats.reconnects = getattr(src, "reconnects", 0)
    stats.warnings = list(getattr(src, "warnings", [])) + stats.warnings  # closed: all of them
    stats.ended_early = getattr(src, "ended_early", False)
    if received:
        stats.interrupted = SIGNAL_NAMES.get(received[0], str(received[0]))
    elif run.stopped:
        stats.interrupted = "a request to stop"
    return stats
