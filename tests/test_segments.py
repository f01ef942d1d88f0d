"""run --segments on the containers and GOPs that broke it (issue 30, item 5): every
frame and timestamp of the single run in MPEG-TS with B-frames and open GOPs, a count
past the keyframes clamped with a note, a segment short of its range refused, and a
stopped segmented run that keeps what a stopped single run keeps."""

from __future__ import annotations

import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from commands import cli
from media import clip_frames, tone

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"
BLUR = ROOT / "configs" / "blur_large.yaml"


def encoded(path: Path, codec: str, n: int, options: dict[str, str], fps: int = 30,
            width: int = 160, height: int = 96, audio: str | None = None) -> None:
    """A clip encoded by PyAV with the encoder's own ``options`` (B-frames, GOPs)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream(audio, rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for i, f in enumerate(clip_frames(n, width, height)):
            picture = av.VideoFrame.from_ndarray(f, format="bgr24")
            picture.pts, picture.time_base = i, Fraction(1, fps)
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            for packet in tone(sound, n / fps):
                out.mux(packet)


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    import av

    with av.open(str(path)) as container:
        frames, times = [], []
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="bgr24"))
            times.append(float(frame.pts * frame.time_base))
    return frames, times


def assert_same(one: Path, seg: Path, count: int) -> None:
    (a, ta), (b, tb) = decoded(one), decoded(seg)
    assert len(a) == len(b) == count
    assert tb == pytest.approx(ta, abs=1e-6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


CLIPS = {
    # x264 with 3 B-frames in an MPEG-TS (no index; it starts at 1.4 s): wrote 240 of 300
    "ts-bframes": ("b.ts", "libx264", {"bf": "3", "g": "60"}),
    "ts-open-gop": ("o.ts", "libx264", {"bf": "3", "g": "45", "x264-params": "open-gop=1"}),
    "ts-mpeg2-open-gop": ("m.ts", "mpeg2video", {"bf": "2", "g": "30"}),
    "mp4-bframes": ("b.mp4", "libx264", {"bf": "3", "g": "50"}),
}


@pytest.mark.parametrize("kind", sorted(CLIPS))
def test_segments_keep_every_frame_in_every_container(tmp_path, kind):
    name, codec, options = CLIPS[kind]
    clip = tmp_path / name
    encoded(clip, codec, 300, options)
    single = cli("run", EDGES, "-s", clip, "-o", tmp_path / "one.mkv", "-q")
    split = cli("run", EDGES, "-s", clip, "-o", tmp_path / "seg.mkv", "--segments", "4")
    assert single.returncode == 0 and split.returncode == 0, split.stderr
    assert "300 written in 4 segments" in split.stdout, split.stdout
    assert_same(tmp_path / "one.mkv", tmp_path / "seg.mkv", 300)


@pytest.mark.timing
def test_more_segments_than_keyframes_is_clamped_with_a_note(tmp_path):
    clip = tmp_path / "b.ts"
    encoded(clip, "libx264", 120, {"bf": "3", "g": "30"})
    start = time.monotonic()
    split = cli("run", EDGES, "-s", clip, "-o", tmp_path / "seg.mkv", "--segments", "100000000")
    assert split.returncode == 0, split.stderr
    assert time.monotonic() - start < 60  # it hung before
    assert "120 written in 4 segments" in split.stdout
    assert "note: --segments 100000000: the video has 4 keyframes to cut at; cut into 4" \
        in split.stdout


def test_a_segment_short_of_its_range_is_refused(tmp_path):
    """The count a segment's range holds (from the cut's demux) against what it gave: a
    segment that gives fewer fails (and is retried by the run)."""
    from pipeline.batch import Job, run_job
    from pipeline.io.segment_source import Segment
    from pipeline.segments import cut

    clip = tmp_path / "b.ts"
    encoded(clip, "libx264", 120, {"bf": "3", "g": "30"})
    where = cut(str(clip), 2)
    assert [s.frames for s in where.segments] == [60, 60]
    second = where.segments[1]
    assert second.key is not None and second.start == pytest.approx(2.0)
    ok = run_job(Job(0, str(clip), str(tmp_path / "p1.mkv"), str(EDGES), "", "t1",
                     segment=second))
    assert ok.code == 0 and ok.frames == 60, ok.message
    claimed = Segment(second.start, second.end, second.key, 61)  # one more than it holds
    short = run_job(Job(0, str(clip), str(tmp_path / "p2.mkv"), str(EDGES), "", "t2",
                        segment=claimed))
    assert short.code == 3 and "gave 60 frames (and 0 undecodable) of the 61" in short.message


@pytest.mark.timing
def test_a_stopped_segmented_run_keeps_the_frames_before_the_stop(tmp_path):
    """SIGINT once the first segment is finished: exit 130, and the output (its final
    name, as a stopped single run's) holds the single run's first frames, every one the
    summary reports, with the sound up to the last of them."""
    import av

    clip = tmp_path / "long.mp4"
    encoded(clip, "libx264", 480, {"g": "30"}, width=320, height=240, audio="aac")
    one = tmp_path / "one.mkv"  # first: its FFT plans (timed) are then the segments' too
    assert cli("run", BLUR, "-s", clip, "-o", one, "-q").returncode == 0
    final = tmp_path / "stop.mkv"
    proc = cli("run", BLUR, "-s", clip, "-o", final, "--segments", "4", background=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".stop.mkv.*.segments/part0000.mkv")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 1.5
    assert "interrupted by SIGINT" in stdout and "Traceback" not in stderr
    written = int(stdout.split("frames: ")[1].split()[0])
    assert 120 <= written < 480, stdout
    (a, ta), (b, tb) = decoded(one), decoded(final)
    assert len(b) == written and tb == pytest.approx(ta[:written], abs=1e-6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with av.open(str(final)) as c:
        ends = {}
        for p in c.demux():
            if p.pts is not None and p.size:
                end = float((p.pts + (p.duration or 0)) * p.time_base)
                ends[p.stream.type] = max(ends.get(p.stream.type, 0.0), end)
    assert abs(ends["audio"] - ends["video"]) < 0.05, ends
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".stop.mkv")] == []
