"""Streaming end to end: exact results, every decodable frame, live sources, served output."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import (
    MjpegServer,
    clip_frames,
    damage_frame,
    decoded,
    read_mjpeg,
    understate_avi_count,
    write_clip,
)
from typer.testing import CliRunner

from pipeline import FilterBank, run_config
from pipeline.cli import app
from pipeline.io.sinks import MemorySink
from pipeline.io.sources import MemorySource

CONFIG = """
source: synthetic
stages:
  - name: blur-and-edges
    type: bank
    op: correlate
    mode: dense
    weights:
      - {{builtin: gaussian, sigma: 1.5, size: 5}}
      - {{builtin: sobel, axis: 1, size: 5}}
    padding: same
    border: reflect101
    method: {method}
encode: {{mosaic: true, columns: 2}}
"""


def write_config(tmp_path: Path, method: str = "direct") -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(CONFIG.format(method=method))
    return path


def bank_for(channels: int = 3) -> FilterBank:
    """The FilterBank the config describes, built by hand: each kernel on every channel."""
    from pipeline.kernels import make_kernel

    kernels = np.stack([make_kernel("gaussian", sigma=1.5, size=5),
                        make_kernel("sobel", axis=1, size=5)])
    weights = np.repeat(kernels[:, None], channels, axis=1)  # (2, C_in, 5, 5)
    return FilterBank(weights, padding="same", border="reflect101", method="direct")


def test_npy_output_is_exactly_filterbank_on_decoded_frames(tmp_path):
    """`pipeline run CONFIG --source VIDEO --output out.npy --max-frames 40` == FilterBank."""
    video = tmp_path / "clip.mkv"
    write_clip(video, n=60)
    config = write_config(tmp_path)
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(app, ["run", str(config), "--source", str(video),
                                      "--output", str(out), "--max-frames", "40", "-q"])
    assert result.exit_code == 0, result.output
    got = np.load(out)
    frames = decoded(video)[:40]
    assert got.shape == (40, 120, 160, 2)
    bank = bank_for()
    expected = np.stack([bank(f) for f in frames])
    np.testing.assert_array_equal(got, expected)
    assert "40 read, 40 written" in result.output


def test_kernels_of_different_sizes_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    text = CONFIG.format(method="auto")
    path.write_text(text.replace("sigma: 1.5, size: 5", "sigma: 1.5, size: 7"))
    result = CliRunner().invoke(app, ["run", str(path), "--output", str(tmp_path / "o.npy")])
    assert result.exit_code == 2
    assert "kernels differ in size" in result.output


def test_every_decodable_frame_of_a_damaged_file(tmp_path):
    """OpenCV's read() fails on a corrupt frame and then decodes again: nothing is lost."""
    video = tmp_path / "damaged.mp4"
    write_clip(video, n=60)
    damage_frame(video, 30)
    reference = decoded(video)
    assert len(reference) == 59  # one frame lost to the damage, the rest decodable
    cap = cv2.VideoCapture(str(video))
    assert next(i for i in range(61) if not cap.read()[0]) == 30  # `if not ok: break` loses 29
    out = tmp_path / "out.npy"
    stats = run_config(write_config(tmp_path), source=str(video), output=str(out))
    assert stats.frames_written == len(reference)
    assert stats.decode_errors >= 1
    bank = bank_for()
    np.testing.assert_array_equal(np.load(out), np.stack([bank(f) for f in reference]))


def test_header_frame_count_understated(tmp_path):
    """An AVI whose headers claim 10 frames but holds 60: all 60 come through."""
    video = tmp_path / "liar.avi"
    write_clip(video, n=60)
    understate_avi_count(video, 10)
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 10
    stats = run_config(write_config(tmp_path), source=str(video), output=str(tmp_path / "o.npy"))
    assert stats.frames_written == len(decoded(video)) == 60


def test_header_frame_count_overstated(tmp_path):
    """An MKV cut in half claims 60 frames: every decodable one comes through, with a warning."""
    video = tmp_path / "cut.mkv"
    write_clip(video, n=60)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    reference = decoded(video)
    stats = run_config(write_config(tmp_path), source=str(video), output=str(tmp_path / "o.npy"))
    assert stats.frames_written == len(reference) > 10
    assert any("input ended at" in w and "of its declared 2.00 s" in w for w in stats.warnings)


def test_live_mjpeg_source_to_file(tmp_path):
    """An http MJPEG stream on 127.0.0.1 filtered to a video file with --max-frames."""
    frames = clip_frames(20, 160, 120)
    out = tmp_path / "live.mkv"
    with MjpegServer(frames, fps=60) as server:
        result = CliRunner().invoke(app, ["run", str(write_config(tmp_path, "auto")),
                                          "--source", server.url, "--output", str(out),
                                          "--max-frames", "25", "-q"])
    assert result.exit_code == 0, result.output
    assert "25 written" in result.output
    written = decoded(out)
    assert len(written) == 25
    assert written[0].shape == (120, 320, 3)  # the two channels side by side (mosaic)


def test_served_stream_reads_back(tmp_path):
    """--serve: an HTTP client reads the MJPEG stream while the run is going."""
    frames = clip_frames(10, 96, 64)
    source = MemorySource(frames * 40, fps=30, interval=0.01)
    sink = None
    got: list[np.ndarray] = []

    def client() -> None:
        while sink is None or sink._server is None:
            time.sleep(0.01)
        got.extend(read_mjpeg(sink.name + "stream.mjpg", 5))

    from pipeline.io.viewers import MjpegServerSink

    sink = MjpegServerSink("127.0.0.1:0")
    reader = threading.Thread(target=client)
    reader.start()
    # not paced (a view alone plays a file at its frame rate: 400 frames, 13 s)
    stats = run_config(write_config(tmp_path, "auto"), source=source, sinks=[sink],
                       realtime=False)
    reader.join(timeout=10)
    assert len(got) == 5
    assert got[0].shape == (64, 192, 3)  # a JPEG of the mosaic
    assert stats.frames_written == 400


IDENTITY = "stages: [{type: convert}]\n"  # float frames straight through


@pytest.mark.timing
def test_live_source_keeps_newest_and_counts_drops(tmp_path, monkeypatch):
    """A live source faster than the filter: frames are dropped and counted, never queued."""
    frames = [np.full((16, 16, 1), i, np.uint16) for i in range(300)]
    source = MemorySource(frames, live=True, interval=0.001)
    sink = MemorySink()
    import pipeline.preflight as preflight  # where a run builds its chain

    build = preflight.build_chain

    def slow_chain(cfg, fmt, plan=True):
        chain = build(cfg, fmt, plan)
        inner = chain.steps[0].fn
        chain.steps[0].fn = lambda x: (time.sleep(0.01), inner(x))[1]  # a 10 ms filter
        return chain

    monkeypatch.setattr(preflight, "build_chain", slow_chain)
    (tmp_path / "id.yaml").write_text(IDENTITY)
    stats = run_config(tmp_path / "id.yaml", source=source, sinks=[sink])
    assert stats.frames_read == 300
    assert stats.dropped > 100  # 1 ms frames into a 10 ms filter
    assert stats.frames_written + stats.dropped + stats.discarded == stats.frames_read
    assert stats.discarded == 0  # nothing was stopped: every frame written or dropped
    seen = [int(f[0, 0, 0]) for f in sink.frames]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] >= 290  # the newest frame wins: the stream's end is what was shown


@pytest.mark.timing
def test_live_latency_stays_low_when_the_writer_is_slowest(tmp_path):
    """A live source into a 20 ms writer: results do not pile up before the writer (a
    deep queue there held eight, 160 ms and more); the source side drops instead."""
    frames = [np.full((16, 16, 1), i, np.uint16) for i in range(400)]
    source = MemorySource(frames, live=True, interval=0.001)

    class SlowSink(MemorySink):
        def write(self, frame, pts=None):
            time.sleep(0.02)
            super().write(frame)

    sink = SlowSink()
    (tmp_path / "id.yaml").write_text(IDENTITY)
    stats = run_config(tmp_path / "id.yaml", source=source, sinks=[sink])
    assert stats.frames_written + stats.dropped + stats.discarded == stats.frames_read == 400
    assert stats.dropped > 300
    seen = [int(f[0, 0, 0]) for f in sink.frames]
    assert seen == sorted(seen)
    assert stats.latency_ms(50) < 120, stats.latency_ms(50)  # ≈ 3 writes, not 9


def test_file_sources_never_drop(tmp_path):
    frames = [np.full((24, 24, 3), i, np.uint8) for i in range(50)]
    sink = MemorySink("float")
    stats = run_config(write_config(tmp_path), source=MemorySource(frames), sinks=[sink])
    assert stats.dropped == 0 and len(sink.frames) == 50
    bank = bank_for()
    for frame, got in zip(frames, sink.frames, strict=True):
        np.testing.assert_array_equal(got, bank(frame))


def test_memory_is_bounded_by_the_queues(tmp_path):
    """A fast source into a slow sink: at most a queue's worth of frames in memory."""
    import tracemalloc

    from pipeline.stream import QUEUE, depth

    assert depth((2160, 3840, 64), 4) == 1  # huge frames: one at a time
    assert depth((480, 640, 3), 1) == QUEUE
    frame = np.zeros((256, 1024, 4), np.uint8)  # 1 MiB
    source = MemorySource([frame] * 150)

    class SlowSink(MemorySink):
        def write(self, y, pts=None):
            time.sleep(0.002)  # keeps nothing

    (tmp_path / "id.yaml").write_text(IDENTITY)
    tracemalloc.start()
    try:
        stats = run_config(tmp_path / "id.yaml", source=source, sinks=[SlowSink()])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats.frames_written == 150
    # float32 results are 4 MiB each: two queues of <= 8 plus work in flight, not 150
    assert peak < 30 * 4 * 2**20, peak / 2**20


def test_encoding_goes_to_the_thread_with_room(tmp_path, monkeypatch):
    """Float -> 8-bit runs on the compute thread while the writer is the slower one, and on
    the writer while the filter is; either way every frame is encoded exactly once, in
    order, as the Encoder alone would."""
    from pipeline.config import load_config
    from pipeline.encode import Encoder

    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(60)]
    where: list[str] = []
    real_call = Encoder.__call__

    def spy(self, y):
        where.append(threading.current_thread().name)
        return real_call(self, y)

    monkeypatch.setattr(Encoder, "__call__", spy)

    class SlowSink(MemorySink):
        def write(self, frame, pts=None):
            time.sleep(0.02)
            super().write(frame)

    config = write_config(tmp_path)
    encoder = Encoder(load_config(config).encode, (48, 64, 2))
    expected = [real_call(encoder, bank_for(3)(f)) for f in frames]

    sink = SlowSink("uint8")
    run_config(config, source=MemorySource(frames), sinks=[sink])
    # until the writer's pace is known (a queue's worth of frames) it encodes; then not
    assert len(where) == 60 and where[-30:].count("pipeline-write") <= 3, where
    for got, want in zip(sink.frames, expected, strict=True):
        np.testing.assert_array_equal(got, want)

    where.clear()
    real_bank = FilterBank.__call__
    monkeypatch.setattr(FilterBank, "__call__",
                        lambda self, x: (time.sleep(0.02), real_bank(self, x))[1])
    sink = MemorySink("uint8")
    run_config(config, source=MemorySource(frames), sinks=[sink])
    assert len(where) == 60 and where.count("pipeline-write") >= 55, where
    for got, want in zip(sink.frames, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_chain_is_built_once_per_run(tmp_path, monkeypatch):
    """The memory estimate and the run use one chain: weights loaded and banks planned
    once (before, build_chain ran twice per run)."""
    import pipeline.preflight as preflight  # where a run builds its chain

    calls = []
    build = preflight.build_chain

    def counted(cfg, fmt, plan=True):
        calls.append(plan)
        return build(cfg, fmt, plan)

    monkeypatch.setattr(preflight, "build_chain", counted)
    (tmp_path / "b.yaml").write_text(
        "stages: [{type: bank, op: correlate, weights: {builtin: box, size: 3}}]\n")
    sink = MemorySink()
    frames = [np.full((12, 10, 3), i, np.uint8) for i in range(4)]
    stats = run_config(tmp_path / "b.yaml", source=MemorySource(frames), sinks=[sink])
    assert len(calls) == 1 and stats.frames_written == 4
    np.testing.assert_allclose(sink.frames[2][5, 5], [2.0, 2.0, 2.0], rtol=1e-6)


IMPORTS_AFTER_OPEN = """
import sys
from pipeline import run_config
from pipeline.io.sinks import MemorySink
from pipeline.io.sources import MemorySource
import numpy as np

class Recorded(MemorySource):
    def open(self, max_pixels=None):
        fmt = super().open(max_pixels)
        self.at_open = set(sys.modules)
        return fmt

    def read(self):
        if self._index == 0:
            self.at_first_read = set(sys.modules)
        return super().read()

src = Recorded([np.full((48, 64, 3), i, np.uint8) for i in range(3)], live=True)
run_config(sys.argv[1], source=src, sinks=[MemorySink("uint8")])
print(" ".join(sorted(src.at_first_read - src.at_open)))
"""


def test_nothing_is_imported_between_a_source_opening_and_its_first_frame():
    """A live source's frames arrive from the moment it opens; what the run does before
    reading them (planning, opening sinks) is a backlog the live queue drops. Importing
    scipy.fft for the planner's first FFT-size prediction there cost 0.13 s: 8 of a 60 fps
    stream's 20 frames (fault L4b). Run in a fresh interpreter: this one has it all."""
    import subprocess
    import sys

    edges = Path(__file__).resolve().parents[1] / "configs" / "edges.yaml"
    done = subprocess.run([sys.executable, "-c", IMPORTS_AFTER_OPEN, str(edges)],
                          capture_output=True, text=True, timeout=120, check=True)
    imported = done.stdout.split()
    assert not [m for m in imported if m.split(".")[0] in ("scipy", "pyfftw", "dask")], imported
