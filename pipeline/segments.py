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

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import INTERNAL, ConfigError, InputError, Interrupted, OutputError, PipelineError
from .io.codecs import VideoSettings, resolve
from .io.destination import Destination, new_token

from .io.segment_source import EPS


@dataclass(frozen=True)
class Cut:
    """Where a video is cut: segment ``i`` holds the frames at ``starts[i] <= t <
    starts[i + 1]`` seconds from the video's start (the last to the end)."""

    starts: tuple[float, ...]
    keyframes: int
    duration: float

    def bounds(self, i: int) -> tuple[float, float | None]:
        end = self.starts[i + 1] if i + 1 < len(self.starts) else None
        return self.starts[i], end


def keyframe_times(path: str) -> tuple[list[float], float]:
    """The times (seconds from the video's start) of the video's keyframes, in order, and
    the end of its last packet; InputError when it has no video or cannot be read."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream to cut")
            stream = container.streams.video[0]
            tb, start = stream.time_base, stream.start_time or 0
            times, end = [], 0.0
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                t = float((packet.pts - start) * tb)
                end = max(end, t + float((packet.duration or 0) * tb))
                if packet.is_keyframe:
                    times.append(t)
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{path}: cannot read its packets to cut it ({e})") from None
    return sorted(set(times)), end


def cut(path: str, n: int) -> Cut:
    """At most ``n`` segments, cut at the keyframes nearest to equal shares of the video."""
    times, end = keyframe_times(path)
    starts = {0.0}
    inner = [t for t in times if t > EPS]
    for k in range(1, n):
        if inner:
            starts.add(min(inner, key=lambda t, goal=end * k / n: abs(t - goal)))
    return Cut(tuple(sorted(starts)), len(times), end)


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
    import av

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
    import av

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
    """What ``run_segmented`` did, for the summary."""

    segments: int
    frames: int
    seconds: float
    join_seconds: float
    retried: int
    output: Path
    sound: str
    workers: str

    def __str__(self) -> str:
        return (f"frames: {self.frames} written in {self.segments} segments on "
                f"{self.workers}" + (f" ({self.retried} retried)" if self.retried else "")
                + f"\nspeed: {self.frames / max(self.seconds, 1e-9):.1f} fps over "
                f"{self.seconds:.2f} s, of which the join {self.join_seconds:.2f} s\n"
                f"output: {self.output}: {self.frames} frames, sound {self.sound}")


def run_segmented(config: str, source: str, output: str, n: int, *,
                  scheduler: str | None = None, open_timeout: float = 10.0,
                  workers: int | None = None, force: bool = False,
                  video: VideoSettings | None = None, report: Any = None) -> SegmentedRun:
    """``config`` on ``source`` cut into ``n`` segments (at keyframes), filtered by local
    processes or on the Dask cluster at ``scheduler``, joined into ``output``. Raises
    PipelineError subclasses; the output exists only when every segment is joined."""
    from . import batch

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
    client = None
    if scheduler:
        client = batch.connect(scheduler, open_timeout)
        try:
            batch.check_storage(client, [source], [str(final.parent)])
        except BaseException:
            client.close()
            raise
    dest.claim()  # locked from here: the final name appears only when all is joined
    folder = parts_folder(final, dest.token)
    committed = False
    try:
        folder.mkdir()
        parts = [folder / f"part{i:04d}{final.suffix}" for i in range(len(where.starts))]
        settings = part_settings(video)
        jobs = [batch.Job(i, source, str(parts[i]), os.path.abspath(config), "", new_token(),
                          video=settings, segment=where.bounds(i))
                for i in range(len(parts))]
        outcomes, retried = _run_jobs(jobs, client, scheduler, open_timeout, workers, report)
        bad = [o for o in outcomes if o.code != 0]
        if bad:
            error = PipelineError(f"{len(bad)} of {len(jobs)} segments failed twice, the "
                                  f"first: {bad[0].message}; nothing written to {final}")
            error.exit_code = bad[0].code if bad[0].code > 0 else INTERNAL
            raise error
        frames = sum(o.frames for o in outcomes)
        joined = join(parts, source, dest, video)
        if joined.frames != frames:
            raise OutputError(f"{final}: joined {joined.frames} frames of the segments' "
                              f"{frames}")
        dest.commit()
        committed = True
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not committed:
            dest.discard()
    local = min(workers or os.cpu_count() or 1, len(jobs))
    who = f"the cluster at {scheduler}" if scheduler else \
        f"{local} local process" + "es" * (local != 1)
    return SegmentedRun(len(jobs), frames, time.monotonic() - start, joined.seconds,
                        retried, final, joined.sound, who)


def _run_jobs(jobs: list[Any], client: Any, scheduler: str | None, open_timeout: float,
              workers: int | None, report: Any) -> tuple[list[Any], int]:
    """Every segment once, and those that failed once more; (outcomes in order, retried).
    ``client`` (closed by the first pass) or local processes."""
    from . import batch

    report = report or (lambda job, outcome: None)

    def run(todo: list[Any], cluster: Any) -> list[Any]:
        if cluster is not None:
            outcomes, signame = batch.run_dask(todo, cluster, report)
        else:
            outcomes, signame = batch.LocalPool(todo, workers or os.cpu_count() or 1).run(report)
        if signame:
            from .signals import exit_code

            error = Interrupted(f"interrupted by {signame}; nothing written")
            error.exit_code = exit_code(signame)
            raise error
        return outcomes

    outcomes = run(jobs, client)
    again = [replace(job, index=k, token=new_token())
             for k, job in enumerate(j for j, o in zip(jobs, outcomes) if o.code != 0)]
    if again:
        cluster = None if client is None else batch.connect(scheduler, open_timeout)
        redone = iter(run(again, cluster))
        outcomes = [next(redone) if o.code != 0 else o for o in outcomes]
    return outcomes, len(again)


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
        from . import batch

        with batch.connect(scheduler, open_timeout) as client:
            n = 4 * max(1, len(client.scheduler_info().get("workers", {})))
    return run_segmented(config_path, source, target, n, scheduler=scheduler,
                         open_timeout=open_timeout, force=force, video=video)
