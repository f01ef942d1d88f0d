"""One long video across workers: cut at keyframes, each segment filtered on a worker,
the encoded segments joined without re-encoding (SPEC section 6, "Clusters").

- ``cut`` finds the video's keyframes by demuxing (PyAV reads packets, decodes nothing)
  and picks the ``n - 1`` nearest to equal shares of its duration as cut points;
- ``io.segment_source.SegmentSource`` gives the frames of one segment, decoded by PyAV
  from the keyframe that starts it (``bgr24``: OpenCV's reader's pixels and times);
- every segment is a ``batch.Job`` written to a part file beside the output (on storage
  every worker sees), by the local pool or on Dask; a failed segment is tried again once;
- ``join`` copies the parts' packets into the output in order, and the source's sound
  once, interleaved as the video sink does it; the output gets its final name only when
  whole, and the parts are removed.

The frames are the single run's, so a lossless output (FFV1) is frame for frame the
single-process run's, and a lossy one has its frame count and timestamps.
"""

from __future__ import annotations

import bisect
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import INTERNAL, ConfigError, InputError, OutputError, PipelineError
from .io.codecs import VideoSettings, resolve
from .io.destination import Destination, new_token
from .io.libav import libav
from .io.segment_source import EPS, Segment
from .signals import signal_name, stop_on_signals


@dataclass(frozen=True)
class Cut:
    """Where a video is cut: ``segments`` in order, covering it; ``asked`` the number of
    segments asked for (more than the video has keyframes: one segment per keyframe)."""

    segments: tuple[Segment, ...]
    keyframes: int
    duration: float
    asked: int

    @property
    def clamped(self) -> str | None:
        """A note when fewer segments than asked are made, else None."""
        if len(self.segments) >= self.asked:
            return None
        return (f"--segments {self.asked}: the video has {self.keyframes} keyframe"
                f"{'s' * (self.keyframes != 1)} to cut at; cut into {len(self.segments)}")


@dataclass(frozen=True)
class Packets:
    """A video's packets as the cut needs them: keyframes ``(seconds, pts)`` and every
    packet's time (seconds from the video's start), each sorted, and the end."""

    keys: list[tuple[float, int]]
    times: list[float]
    end: float


def packets(path: str) -> Packets:
    """Demux (decode nothing) the video's packets; InputError when it has no video or
    cannot be read."""
    av = libav()

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream to cut")
            stream = container.streams.video[0]
            tb, start = stream.time_base, stream.start_time or 0
            keys, times, end = {}, [], 0.0
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                t = float((packet.pts - start) * tb)
                end = max(end, t + float((packet.duration or 0) * tb))
                times.append(t)
                if packet.is_keyframe:
                    keys.setdefault(t, int(packet.pts))
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{path}: cannot read its packets to cut it ({e})") from None
    return Packets(sorted(keys.items()), sorted(times), end)


def cut(path: str, n: int) -> Cut:
    """At most ``n`` segments, cut at the keyframes nearest to equal shares of the video
    (never more than it has keyframes, whatever ``n`` is)."""
    found = packets(path)
    inner = [(t, pts) for t, pts in found.keys if t > EPS]
    times = [t for t, _ in inner]
    chosen: dict[float, int | None] = {0.0: None}
    if n > len(inner):  # a segment per keyframe
        chosen.update(inner)
    for k in range(1, n if n <= len(inner) else 0):
        goal = found.end * k / n
        i = bisect.bisect_left(times, goal)
        near = min((j for j in (i - 1, i) if 0 <= j < len(inner)),
                   key=lambda j: abs(times[j] - goal))
        chosen.setdefault(*inner[near])
    starts = sorted(chosen)
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        lo = bisect.bisect_left(found.times, start - EPS)
        hi = len(found.times) if end is None else bisect.bisect_left(found.times, end - EPS)
        segments.append(Segment(start, end, chosen[start], hi - lo))
    return Cut(tuple(segments), len(found.keys), found.end, n)


def parts_folder(final: Path, token: str) -> Path:
    """``out.mkv`` -> ``.out.mkv.<token>.segments/`` beside it."""
    return final.with_name(f".{final.name}.{token}.segments")


def part_settings(video: VideoSettings | None) -> VideoSettings:
    """The output's codec settings for a part: no sound (the join copies it once)."""
    base = video or VideoSettings()
    return replace(base, audio=False, given=base.given | {"audio"})


@dataclass
class Joined:
    frames: int
    seconds: float
    sound: str


def join(parts: list[Path], source: str, dest: Destination, video: VideoSettings | None
         ) -> Joined:
    """The parts' video packets, in order, into ``dest``'s temporary file (claimed by the
    caller, who commits it), with the source's sound copied (or re-encoded where the
    container does not take it) as the video sink would. No frame is re-encoded."""
    av = libav()

    from .io.audio import AudioTrack

    start_clock = time.monotonic()
    final, tmp = dest.final, dest.tmp
    encoding = resolve(str(final), video)
    frames, sound, end = 0, "none", 0.0
    try:
        first = av.open(str(parts[0]))
        options = {"movflags": "+faststart"} if encoding.container in ("mp4", "mov") else {}
        out = av.open(str(tmp), "w", format=encoding.container, container_options=options)
        try:
            stream = out.add_stream_from_template(first.streams.video[0])
            first.close()
            audio = _sound(source, out, encoding, AudioTrack)
            last_dts = None
            for part in parts:
                with av.open(str(part)) as reader:
                    video = reader.streams.video[0]
                    for packet in reader.demux(video):
                        if packet.size == 0:
                            continue
                        tb = packet.time_base
                        if packet.dts is not None and last_dts is not None and \
                                packet.dts * tb <= last_dts:
                            # an encoder's reordering delay at the cut: dts made to rise,
                            # never past the packet's own pts (ffmpeg's concat does so too)
                            packet.dts = int(last_dts / tb) + 1
                            if packet.pts is not None and packet.dts > packet.pts:
                                packet.dts = packet.pts
                        if packet.dts is not None:
                            last_dts = packet.dts * tb
                        if packet.pts is not None:
                            end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
                        if audio is not None:
                            audio.until(end, out.mux)
                        packet.stream = stream
                        out.mux(packet)
                        frames += 1
            if audio is not None:
                audio.finish(end, out.mux)
                sound = audio.describe
        finally:
            out.close()
    except (av.FFmpegError, OSError, IndexError) as e:
        raise OutputError(f"{final}: cannot join the segments ({e})") from None
    return Joined(frames, time.monotonic() - start_clock, sound)


def _sound(source: str, out: Any, encoding: Any, track: Any) -> Any:
    """The source's first sound track as an AudioTrack into ``out``, or None."""
    av = libav()

    if not encoding.audio:
        return None
    try:
        container = av.open(source)
    except (av.FFmpegError, OSError):
        return None
    if not container.streams.audio:
        container.close()
        return None
    video = container.streams.video[0] if container.streams.video else None
    offset = float(video.start_time * video.time_base) if video is not None and \
        video.start_time is not None else 0.0
    try:
        return track(container, container.streams.audio[0], out, encoding, offset, source)
    except (av.FFmpegError, ValueError):
        container.close()
        return None


@dataclass
class SegmentedRun:
    """What ``run_segmented`` did, for the summary; ``interrupted`` names the signal that
    stopped it (the output then holds the segments finished before it, as a stopped
    single run holds the frames written before it)."""

    segments: int
    frames: int
    seconds: float
    join_seconds: float
    retried: int
    output: Path | None
    sound: str
    workers: str
    notes: list[str] = field(default_factory=list)
    interrupted: str | None = None

    def __str__(self) -> str:
        lines = [f"frames: {self.frames} written in {self.segments} segments on "
                 f"{self.workers}" + (f" ({self.retried} retried)" if self.retried else ""),
                 f"speed: {self.frames / max(self.seconds, 1e-9):.1f} fps over "
                 f"{self.seconds:.2f} s, of which the join {self.join_seconds:.2f} s",
                 f"output: {self.output}: {self.frames} frames, sound {self.sound}"
                 if self.output else "output: nothing written",
                 *(f"note: {note}" for note in self.notes)]
        if self.interrupted:
            lines.append(f"interrupted by {self.interrupted}; outputs finalised")
        return "\n".join(lines)


def run_segmented(config: str, source: str, output: str, n: int, *,
                  scheduler: str | None = None, open_timeout: float = 10.0,
                  workers: int | None = None, force: bool = False,
                  video: VideoSettings | None = None, report: Any = None) -> SegmentedRun:
    """``config`` on ``source`` cut into ``n`` segments (at keyframes; never more than it
    has), filtered by local processes or on the Dask cluster at ``scheduler``, joined into
    ``output``. Every segment must give the frames its range holds. Stopped by a signal,
    the segments finished before it (and the one under way, part-way) are joined, as a
    stopped single run keeps its frames so far. Raises PipelineError subclasses; the
    output gets its final name only when joined and checked."""
    from . import batch, cluster

    start = time.monotonic()
    source, final = os.path.abspath(source), Path(os.path.abspath(output))
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file (segments are cut from a video file)")
    encoding = resolve(str(final), video)  # bad settings: exit 2 before anything runs
    if encoding.container in ("avi",) or final.suffix.lower() in (".npy",):
        raise InputError(f"{final}: segments join into .mkv, .mp4, .mov or .webm outputs")
    dest = Destination(final, force, [source], None)
    dest.check()
    where = cut(source, n)
    client = cluster.connect(scheduler, open_timeout) if scheduler else None
    if client is not None:
        try:
            cluster.check_storage(client, [source], [str(final.parent)])
        except BaseException:
            client.close()
            raise
    stop, received = threading.Event(), []
    with stop_on_signals(stop, received):  # from the claim on, a signal keeps what is done
        dest.claim()  # locked from here: the final name appears only when all is joined
        folder = parts_folder(final, dest.token)
        committed = False
        try:
            folder.mkdir()
            jobs = [batch.Job(i, source, str(folder / f"part{i:04d}{final.suffix}"),
                              os.path.abspath(config), "", new_token(),
                              video=part_settings(video), segment=segment)
                    for i, segment in enumerate(where.segments)]
            outcomes, retried, signame = _run_jobs(jobs, client, scheduler, open_timeout,
                                                   workers, report)
            signame = signame or (signal_name(received[0]) if received else None)
            parts, frames = _parts(jobs, outcomes, final, stopped=signame is not None)
            joined = join(parts, source, dest, video) if parts else None
            if joined is not None:
                if joined.frames != frames:
                    raise OutputError(f"{final}: joined {joined.frames} frames of the "
                                      f"segments' {frames}")
                dest.commit()
                committed = True
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if not committed:
                dest.discard()
    return SegmentedRun(len(jobs), frames, time.monotonic() - start,
                        joined.seconds if joined else 0.0, retried,
                        final if joined else None, joined.sound if joined else "none",
                        _who(scheduler, workers, len(jobs)),
                        _notes(where, signame, len(parts), len(jobs)), signame)


def _who(scheduler: str | None, workers: int | None, jobs: int) -> str:
    local = min(workers or os.cpu_count() or 1, jobs)
    return f"the cluster at {scheduler}" if scheduler else \
        f"{local} local process" + "es" * (local != 1)


def _notes(where: Cut, signame: str | None, joined: int, jobs: int) -> list[str]:
    notes = [where.clamped] if where.clamped else []
    if signame:
        notes.append(f"stopped: {joined} of {jobs} segments joined, the frames up to the "
                     "stop" if joined else "stopped before any segment had frames")
    return notes


def _parts(jobs: list[Any], outcomes: list[Any], final: Path, stopped: bool
           ) -> tuple[list[Path], int]:
    """The part files to join and their frames: all of them; or, once stopped, those
    finished before the first that was not, and that one's frames so far. Otherwise a
    failure (after its retry) is raised."""
    parts: list[Path] = []
    frames = 0
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome.code == 0:
            parts.append(Path(job.target))
            frames += outcome.frames
            continue
        if stopped:
            if outcome.kept and outcome.frames:
                parts.append(Path(outcome.kept[0]))
                frames += outcome.frames
            break
        bad = [o for o in outcomes if o.code != 0]
        error = PipelineError(f"{len(bad)} of {len(jobs)} segments failed twice, the first: "
                              f"{bad[0].message}; nothing written to {final}")
        error.exit_code = bad[0].code if bad[0].code > 0 else INTERNAL
        raise error
    return parts, frames


def _run_jobs(jobs: list[Any], client: Any, scheduler: str | None, open_timeout: float,
              workers: int | None, report: Any) -> tuple[list[Any], int, str | None]:
    """Every segment once, and those that failed once more; (outcomes in order, retried,
    the signal that stopped them or None). ``client`` (closed by the first pass) or local
    processes."""
    from . import batch, cluster

    report = report or (lambda job, outcome: None)

    def run(todo: list[Any], on: Any) -> tuple[list[Any], str | None]:
        if on is not None:
            return cluster.run_dask(todo, on, report)
        return batch.LocalPool(todo, workers or os.cpu_count() or 1).run(report)

    outcomes, signame = run(jobs, client)
    again = [] if signame else \
        [replace(job, index=k, token=new_token())
         for k, job in enumerate(j for j, o in zip(jobs, outcomes) if o.code != 0)]
    if again:
        again_on = None if client is None else cluster.connect(scheduler, open_timeout)
        redone, signame = run(again, again_on)
        it = iter(redone)
        outcomes = [next(it) if o.code != 0 else o for o in outcomes]
    return outcomes, len(again), signame


def run_from_config(config_path: str, config: Any, source: str | None, output: str | None,
                    n: int | None, scheduler: str | None, open_timeout: float, force: bool,
                    video: VideoSettings | None) -> SegmentedRun:
    """``run --segments N`` / ``run --scheduler ADDRESS``: the config's source and output
    (``-s``/``-o`` and the codec flags over them, as a single run takes them) across
    workers; ``n`` None on a cluster is four segments per worker, for balance."""
    from .runner import output_target

    source = source if source is not None else config.source
    target, video = output_target(config, output, video)
    if not isinstance(source, str) or not isinstance(target, str):
        raise ConfigError("--segments/--scheduler need a video file source and output "
                          "(-s FILE -o FILE)")
    if n is None:
        from . import cluster

        with cluster.connect(scheduler, open_timeout) as client:
            n = 4 * max(1, len(client.scheduler_info().get("workers", {})))
    return run_segmented(config_path, source, target, n, scheduler=scheduler,
                         open_timeout=open_timeout, force=force, video=video)
