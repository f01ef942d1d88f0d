"""Sources and sinks on their own: dispatch, formats, refusals, temporary files."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import decoded, write_clip

from pipeline import ConfigError, InputError, OutputError, SourceLostError
from pipeline.io.live import LiveSource, camera_source, url_source
from pipeline.io.sinks import ImageSink, NpySink, VideoFileSink, open_sink
from pipeline.io.choose import open_source
from pipeline.io.sources import ImageSequenceSource, SyntheticSource, VideoFileSource
from pipeline.io.viewers import MjpegServerSink, WindowSink


def test_source_dispatch(tmp_path):
    assert open_source("0").name == "camera 0" and isinstance(open_source(2), LiveSource)
    syn = open_source("synthetic:64x48@10:5")
    assert isinstance(syn, SyntheticSource)
    assert (syn.width, syn.height, syn.fps, syn.frame_count) == (64, 48, 10.0, 5)
    url = open_source("rtsp://bob:secret@cam.local:554/live")
    assert isinstance(url, LiveSource) and url.name == "rtsp://bob:***@cam.local:554/live"
    assert isinstance(open_source(str(tmp_path / "clip.mp4")), VideoFileSource)
    with pytest.raises(InputError, match="expected synthetic"):
        open_source("synthetic:big")


def test_synthetic_is_deterministic():
    a, b = SyntheticSource(80, 60, frames=3), SyntheticSource(80, 60, frames=3)
    a.open(), b.open()
    frames = [a.read() for _ in range(4)]
    assert frames[3] is None
    for f in frames[:3]:
        np.testing.assert_array_equal(f, b.read())
    assert not np.array_equal(frames[0], frames[2])  # it moves


def test_image_sequences(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"img{i}.png"), np.full((8, 10, 3), i, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    (folder / "img5.png").write_bytes(b"not a png")
    src = open_source(str(folder))
    fmt = src.open()
    assert (fmt.height, fmt.width, fmt.channels) == (8, 10, 3)
    values = []
    while (frame := src.read()) is not None:
        values.append(int(frame[0, 0, 0]))
    assert values == [1, 2, 10]  # natural order; the broken file skipped and counted
    assert src.decode_errors == 1
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), np.full((4, 4), i, np.uint8))
    pattern = open_source(str(tmp_path / "f_%03d.png"))
    assert isinstance(pattern, ImageSequenceSource) and len(pattern.files) == 3
    assert len(open_source(str(tmp_path / "f_*.png")).files) == 3
    one = open_source(str(tmp_path / "f_001.png"))
    assert one.files == [str(tmp_path / "f_001.png")]
    cv2.imwrite(str(folder / "img11.png"), np.zeros((9, 10, 3), np.uint8))
    src = open_source(str(folder))
    src.open()
    with pytest.raises(InputError, match="differs from the sequence's first image"):
        while src.read() is not None:
            pass


def test_bad_video_paths_fail_before_opencv(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello, not a video")
    os.mkfifo(tmp_path / "fifo.mp4")
    cases = {
        tmp_path / "missing.mp4": "no such file",
        tmp_path: "is a directory",
        tmp_path / "empty.mp4": "file is empty",
        tmp_path / "text.mp4": "not a decodable video",
        tmp_path / "fifo.mp4": "not a regular file",  # OpenCV would block forever here
    }
    for path, message in cases.items():
        start = time.perf_counter()
        with pytest.raises(InputError, match=message):
            VideoFileSource(path).open()
        assert time.perf_counter() - start < 5


def test_video_file_format_and_frames(tmp_path):
    video = tmp_path / "clip.avi"
    frames = write_clip(video, n=12, width=96, height=64, fps=25)
    with VideoFileSource(video) as src:
        fmt = src.open()
        assert (fmt.height, fmt.width, fmt.channels, fmt.fps) == (64, 96, 3, 25.0)
        got = []
        while (f := src.read()) is not None:
            got.append(f)
    assert len(got) == len(frames) == src.frame_count
    np.testing.assert_array_equal(got[5], decoded(video)[5])


def test_unavailable_live_sources_exit_quickly():
    start = time.perf_counter()
    with pytest.raises(SourceLostError, match="camera 7: not available"):
        camera_source(7).open()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from pipeline.io.live import Reconnect

    with pytest.raises(SourceLostError, match=r"http://u:\*\*\*@127.0.0.1.*connection refused "
                                              r"\(3 attempts\)") as info:
        url_source(f"http://u:pw@127.0.0.1:{port}/x", open_timeout=1,
                   retry=Reconnect(attempts=3, first=0.05)).open()
    assert "pw" not in str(info.value)
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------------ sinks
def frames_of(n, h=24, w=32, c=3):
    return [np.full((h, w, c), 10 * i, np.uint8) for i in range(n)]


@pytest.mark.parametrize("ext", [".mp4", ".avi", ".mkv"])
def test_video_sink_writes_partial_then_renames(tmp_path, ext):
    final = tmp_path / f"out{ext}"
    sink = VideoFileSink(final)
    sink.open((24, 32, 3), 30.0)
    for f in frames_of(5):
        sink.write(f)
    assert sink.tmp.exists() and not final.exists()
    assert sink.tmp.name.startswith("out.") and sink.tmp.name.endswith(f".partial{ext}")
    tmp = sink.tmp
    result = sink.close()
    assert final.exists() and not tmp.exists()
    assert result.frames == 5 and len(decoded(final)) == 5
    assert result.detail.startswith({".mp4": "h264", ".avi": "mjpeg", ".mkv": "ffv1"}[ext])


def test_video_sink_odd_size_is_padded_not_cropped(tmp_path):
    sink = VideoFileSink(tmp_path / "odd.mp4")  # 4:2:0 needs an even size
    sink.open((25, 33, 1), 30.0)
    for f in frames_of(3, 25, 33, 1):
        sink.write(f)
    result = sink.close()
    assert "33x25 padded to 34x26" in result.warnings[0]
    assert decoded(tmp_path / "odd.mp4")[0].shape == (26, 34, 3)
    lossless = VideoFileSink(tmp_path / "odd.mkv")  # FFV1 takes any size as it is
    lossless.open((25, 33, 1), 30.0)
    for f in frames_of(3, 25, 33, 1):
        lossless.write(f)
    assert not lossless.close().warnings
    assert decoded(tmp_path / "odd.mkv")[0].shape == (25, 33, 3)


def test_video_sink_refusals(tmp_path):
    existing = tmp_path / "keep.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists \\(use --force"):
        VideoFileSink(existing).open((8, 8, 3), 30)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(OutputError, match="no such directory"):
        VideoFileSink(tmp_path / "nowhere" / "x.mp4").open((8, 8, 3), 30)
    video = tmp_path / "in.mkv"
    write_clip(video, n=3)
    before = video.read_bytes()
    with pytest.raises(OutputError, match="would overwrite the input"):
        VideoFileSink(video, force=True, inputs=[str(video)]).open((8, 8, 3), 30)
    link = tmp_path / "link.mkv"
    link.symlink_to(video)
    with pytest.raises(OutputError, match="would overwrite the input"):
        VideoFileSink(link, force=True, inputs=[str(video)]).open((8, 8, 3), 30)
    assert video.read_bytes() == before
    with pytest.raises(OutputError, match="unknown output type '.xyz'; expected .mp4 .mov "
                                          ".webm .mkv .avi .npy"):
        open_sink(str(tmp_path / "out.xyz"))
    sink = VideoFileSink(tmp_path / "shape.mp4")
    sink.open((8, 8, 3), 30)
    with pytest.raises(OutputError, match="does not match the writer's"):
        sink.write(np.zeros((8, 9, 3), np.uint8))
    tmp = sink.tmp
    sink.abort()
    assert not tmp.exists()


def test_no_frames_leaves_no_file(tmp_path):
    sink = VideoFileSink(tmp_path / "empty.mp4")
    sink.open((8, 8, 3), 30)
    result = sink.close()
    assert result.frames == 0 and "no frames written" in result.detail
    assert not list(tmp_path.iterdir())


def test_npy_sink_streams_frames(tmp_path):
    sink = NpySink(tmp_path / "y.npy")
    sink.open((4, 5, 2), 30)
    data = np.random.default_rng(0).normal(size=(7, 4, 5, 2))
    for f in data:
        sink.write(f)
    sink.close()
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), data)


def test_image_sink(tmp_path):
    sink = open_sink(str(tmp_path / "f_%03d.png"))
    assert isinstance(sink, ImageSink)
    sink.open((4, 4, 1), 30)
    for f in frames_of(3, 4, 4, 1):
        sink.write(f)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_000.png", "f_001.png", "f_002.png"]
    with pytest.raises(OutputError, match="f_000.png: exists"):
        open_sink(str(tmp_path / "f_%03d.png")).open((4, 4, 1), 30)
    folder = open_sink(str(tmp_path / "new") + "/")
    folder.open((4, 4, 3), 30)
    folder.write(frames_of(1, 4, 4, 3)[0])
    assert not (tmp_path / "new" / "00000.png").exists()  # in place once the run ends well
    folder.close()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["00000.png"]
    failed = open_sink(str(tmp_path / "other") + "/")
    failed.open((4, 4, 3), 30)
    failed.write(frames_of(1, 4, 4, 3)[0])
    failed.abort()  # a failed run leaves nothing, not even the folder it made
    assert not (tmp_path / "other").exists()


def test_window_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="display not available"):
        WindowSink().open((8, 8, 3), 30)


def test_serving_on_a_busy_port_is_refused():
    first = MjpegServerSink("127.0.0.1:0")
    first.open((8, 8, 3), 30)
    try:
        with pytest.raises(OutputError, match="cannot serve on 127.0.0.1"):
            MjpegServerSink(f"127.0.0.1:{first.port}").open((8, 8, 3), 30)
    finally:
        first.abort()


def test_failed_verification_keeps_the_file_it_names(tmp_path, monkeypatch):
    """RELIABILITY X4: a message that names a file names one that exists."""
    import re

    from pipeline.runner import finish
    from pipeline.stats import Stats

    sink = VideoFileSink(tmp_path / "v.mkv")
    sink.open((24, 32, 3), 30.0)
    for f in frames_of(3):
        sink.write(f)
    sink.frames += 1  # one more than the file will hold: the count read back differs
    with pytest.raises(OutputError, match="output verification failed") as info:
        finish([sink], Stats(), failed=False)  # as the runner ends a run
    kept = Path(re.search(r"kept as (\S+)$", str(info.value)).group(1))
    assert kept.exists() and kept.name.endswith(".partial.mkv")
    assert not (tmp_path / "v.mkv").exists()
