"""The --serve page and its endpoints, several viewers, pause, --loop and --watch (issue
22, items 1-3 and 5), driven in-process over HTTP with a plain client."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.io.page import PAGE
from pipeline.io.sources import SyntheticSource, VideoFileSource
from pipeline.runner import run_config

from media import clip_frames, read_mjpeg, write_clip

ROOT = Path(__file__).parent.parent
EDGES = (ROOT / "configs" / "edges.yaml").read_text()


class Served:
    """``run_config`` with ``--serve 127.0.0.1:0`` on a thread, until ``stop()``."""

    def __init__(self, config, source, **kw) -> None:
        self.urls: list[str] = []
        self.told: list[tuple[str, str]] = []
        self.stop_event = threading.Event()
        self.stats = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.stats = run_config(config, source=source, serve="127.0.0.1:0",
                                        stop=self.stop_event, announce=self.urls.append,
                                        tell=lambda kind, text: self.told.append((kind, text)),
                                        **kw)
            except BaseException as e:  # noqa: BLE001 - handed to the test
                self.error = e

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.urls and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)
        assert self.urls, f"never served: {self.error!r}"
        self.url = self.urls[0].removeprefix("serving at ")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as r:
            return r.read()

    def figures(self) -> dict:
        return json.loads(self.get("figures.json"))

    def post(self, path: str, body: bytes = b"") -> dict:
        """As the page posts: JSON (a toggle: no body)."""
        request = urllib.request.Request(self.url + path.lstrip("/"), data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def wait_for(self, check, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            f = self.figures()
            if check(f):
                return f
            assert time.monotonic() < deadline, f"never: {f}"
            time.sleep(0.1)

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.stats


def _jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, data[:40]
    return image


@pytest.fixture
def edges(tmp_path) -> Path:
    path = tmp_path / "edges.yaml"
    path.write_text(EDGES)
    return path


def test_the_page_is_plain_and_self_contained():
    """No framework, nothing from the internet: no address outside the server's own."""
    assert "://" not in PAGE and "<script src" not in PAGE and "@import" not in PAGE
    for element in ("src", "out", "pause", "snapshot", "toggle", "fps", "latency", "dropped",
                    "steps", "banks", "notes", "frames", "threads"):
        assert f'id="{element}"' in PAGE


@pytest.mark.timing
def test_figures_update_each_second_and_name_the_plan(edges):
    served = Served(edges, "synthetic:160x120@30:30", loop=True)
    try:
        assert b"<title>pipeline</title>" in served.get("/")
        first = served.wait_for(lambda f: f.get("frames_out", 0) > 5)
        time.sleep(1.0)
        second = served.figures()
        assert second["frames_out"] >= first["frames_out"] + 20  # paced at 30 fps
        assert 20 <= second["fps_out"] <= 40 and 20 <= second["fps_in"] <= 40
        assert 0 < second["latency_p50_ms"] <= second["latency_p99_ms"] < 1000
        assert second["dropped"] == 0 and second["paced"] and not second["live"]
        assert second["source"] == "synthetic:160x120@30:30"
        assert second["input"] == "160x120x3 uint8 @ 30 fps" and second["output"] == "160x120x1"
        assert second["loops"] >= 1  # 30 frames, replayed
        assert [s["name"] for s in second["steps"]] == [
            "stages[0] (gray)", "stages[1] (gradients)", "stages[2] (magnitude)"]
        assert second["steps"][1]["ms"] > 0
        # the gray convert is folded into the bank's loads, the l2 done in its stores
        assert [s["inside"] for s in second["steps"]] == [
            "stages[1] (gradients)", None, "stages[1] (gradients)"]
        (bank,) = second["banks"]
        assert bank["kernel"] == "3x3" and bank["border"] == "reflect101"
        assert bank["padding"] == "top 1, bottom 1, left 1, right 1"
        assert bank["method"] in ("direct", "separable", "fft", "tiles")
        assert bank["channels"] == "1 -> 2"
        assert second["read_ms"] > 0 and second["filter_ms"] > 0
    finally:
        stats = served.stop()
    assert stats.frames_written >= second["frames_out"]


def test_snapshots_of_source_and_result(edges):
    served = Served(edges, "synthetic:160x120@30:30", loop=True)
    try:
        served.wait_for(lambda f: f.get("frames_out", 0) > 2)
        out = _jpeg(served.get("snapshot.jpg"))
        src = _jpeg(served.get("snapshot.jpg?feed=src"))
        assert out.shape == (120, 160) and src.shape == (120, 160, 3)
        with urllib.request.urlopen(served.url + "snapshot.jpg?feed=out&download=1") as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.headers["Content-Disposition"].startswith("attachment; filename=")
        with pytest.raises(urllib.error.HTTPError) as e:
            served.get("snapshot.jpg?feed=nope")
        assert e.value.code == 404
    finally:
        served.stop()


def test_pause_holds_a_paced_file_and_freezes_the_pictures(edges):
    served = Served(edges, "synthetic:160x120@30:30", loop=True)
    try:
        served.wait_for(lambda f: f.get("frames_out", 0) > 2)
        assert served.post("pause") == {"paused": True}
        time.sleep(0.3)  # a frame already queued may still pass
        held = served.figures()
        frozen = served.get("snapshot.jpg")
        time.sleep(0.8)
        later = served.figures()
        assert later["paused"] and later["frames_in"] == held["frames_in"]
        assert served.get("snapshot.jpg") == frozen
        assert served.post("pause", json.dumps({"paused": False}).encode()) == {"paused": False}
        served.wait_for(lambda f: f["frames_in"] > held["frames_in"] + 5)
        assert served.get("snapshot.jpg") != frozen
        assert [n["text"] for n in later["notes"]] == ["paused"]
    finally:
        served.stop()


def _stalled_viewer(url: str) -> socket.socket:
    """A stream connection that reads its headers and then nothing."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(f"GET /stream.mjpg?feed=src HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    conn.recv(256)
    return conn


@pytest.mark.timing
def test_several_viewers_and_a_slow_one_drops_only_its_own_frames(edges):
    """Two viewers read every frame while a third reads nothing: the stream keeps its
    rate, loses nothing, and the stalled viewer's skipped frames are its own."""
    served = Served(edges, "synthetic:640x480@30:60", loop=True)
    try:
        served.wait_for(lambda f: f.get("frames_out", 0) > 2)
        stalled = _stalled_viewer(served.url)
        got: list[list[np.ndarray]] = [[], []]
        readers = [threading.Thread(target=lambda i=i: got[i].extend(
            read_mjpeg(served.url + "stream.mjpg?feed=src", 60)), daemon=True)
            for i in range(2)]
        start = served.figures()
        for r in readers:
            r.start()
        for r in readers:
            r.join(timeout=30)
        end = served.figures()
        assert all(len(frames) == 60 and frames[-1].shape == (480, 640, 3) for frames in got)
        src = [v for v in end["viewers"] if v["feed"] == "src"]
        assert len(src) == 3
        published = end["frames_out"] - start["frames_out"]
        assert published >= 55
        seconds = end["uptime_s"] - start["uptime_s"]
        assert published / seconds > 24  # the stream kept its 30 fps
        assert end["dropped"] == 0
        slow = min(src, key=lambda v: v["sent"])
        assert slow["skipped"] > 0 or slow["sent"] < published / 2
        fast = sorted(src, key=lambda v: v["sent"])[1:]
        assert all(v["skipped"] <= 6 for v in fast), src
        stalled.close()
    finally:
        served.stop()


def test_loop_replays_a_video_file_until_stopped(tmp_path, edges):
    clip = tmp_path / "clip.mkv"
    write_clip(clip, n=12, width=64, height=48, fps=60)
    stats = run_config(edges, source=VideoFileSource(clip), serve="127.0.0.1:0", loop=True,
                       max_frames=40)
    assert stats.frames_read == 40 and stats.frames_written == 40
    assert not stats.warnings and not stats.ended_early


def test_loop_is_refused_where_it_would_never_end(tmp_path, edges):
    with pytest.raises(ConfigError, match="--loop replays into views only"):
        run_config(edges, source=SyntheticSource(32, 32, frames=3), loop=True,
                   output=str(tmp_path / "x.mkv"))
    assert not list(tmp_path.glob("x*"))
    camera = SyntheticSource(32, 32, frames=3)
    camera.live = True
    with pytest.raises(ConfigError, match="is live"):
        run_config(edges, source=camera, loop=True, serve="127.0.0.1:0")


# ------------------------------------------------------------------ --watch
def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_watch_swaps_a_valid_config_in_and_reports_an_invalid_one(edges):
    served = Served(edges, "synthetic:160x120@30:30", loop=True, watch=True)
    try:
        served.wait_for(lambda f: f.get("frames_out", 0) > 2)
        before = _jpeg(served.get("snapshot.jpg"))
        _edit(edges, "border: reflect101", "border: constant")
        f = served.wait_for(lambda f: f["chain"] == 2)
        assert f["banks"][0]["border"] == "constant"
        assert [k for k, _ in served.told] == ["reload"]
        assert "reloaded: chain #2 from frame" in served.told[0][1]
        assert any(n["kind"] == "reload" for n in f["notes"])

        _edit(edges, "border: constant", "border: bogus")
        f = served.wait_for(lambda f: any(n["kind"] == "error" for n in f["notes"]))
        (error,) = [t for k, t in served.told if k == "error"]
        assert error.startswith(f"{edges}:14:5: stages[1].border:"), error
        assert error.endswith("still running chain #2") and "\n" not in error
        frames = f["frames_out"]
        served.wait_for(lambda f: f["frames_out"] > frames + 5 and f["chain"] == 2)

        # a stage error that only the frames' shape shows is placed in the file too
        _edit(edges, "border: bogus", "border: constant")
        served.wait_for(lambda f: f["chain"] == 3)
        _edit(edges, "{name: magnitude, type: reduce, op: l2}",
              "{name: magnitude, type: reduce, op: l2}\n  - {name: pick, type: select, "
              "channels: [4]}")
        served.wait_for(lambda f: sum(n["kind"] == "error" for n in f["notes"]) == 2)
        second = [t for k, t in served.told if k == "error"][1]
        assert second.startswith(f"{edges}:16:5: stages[3] (pick): channel 4"), second

        # a new output size: the page's pictures take it
        _edit(edges, "\n  - {name: pick, type: select, channels: [4]}",
              "\n  - {name: small, type: resize, width: 80, height: 60}")
        f = served.wait_for(lambda f: f["chain"] == 4)
        assert f["output"] == "80x60x1"
        served.wait_for(lambda f: _jpeg(served.get("snapshot.jpg")).shape == (60, 80))
        assert before.shape == (120, 160)
    finally:
        stats = served.stop()
    assert stats.dropped == 0


def test_watch_never_changes_a_files_frame_size_midway(tmp_path, edges):
    """With a file output, a reload to another size is refused; the file stays whole."""
    out = tmp_path / "o.mkv"
    served = Served(edges, "synthetic:96x64@30:60", watch=True, output=str(out),
                    realtime=True)
    try:
        served.wait_for(lambda f: f.get("frames_out", 0) > 2)
        _edit(edges, "{name: magnitude, type: reduce, op: l2}",
              "{name: magnitude, type: reduce, op: l2}\n  - {name: small, type: resize, "
              "width: 48, height: 32}")
        served.wait_for(lambda f: any(n["kind"] == "error" for n in f["notes"]))
    finally:
        served.thread.join(timeout=20)
        stats = served.stop()
    (error,) = [t for k, t in served.told if k == "error"]
    assert "output 96x64x1 -> 48x32x1" in error and "cannot change its frame size" in error
    assert stats.frames_written == 60
    import av

    with av.open(str(out)) as f:
        shapes = {(frame.width, frame.height) for frame in f.decode(video=0)}
    assert shapes == {(96, 64)}


def test_a_reload_swaps_between_two_frames_and_loses_none(edges):
    """Every result is the old chain's or the new one's, all the old ones first; none is
    lost or computed twice; both checked against scipy.ndimage (zero vs reflect border)."""
    from scipy import ndimage

    from pipeline.io.sinks import MemorySink
    from pipeline.io.sources import MemorySource

    frames = clip_frames(60, 48, 32)
    sink = MemorySink("float")
    told: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: run_config(
        edges, source=MemorySource(frames, interval=0.03), sinks=[sink], watch=True,
        stop=stop, tell=lambda kind, text: told.append(text)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(sink.frames) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _edit(edges, "border: reflect101", "border: constant")
    thread.join(timeout=30)
    assert len(sink.frames) == 60 and told and "chain #2 from frame" in told[0]
    start = int(re.search(r"from frame (\d+)", told[0]).group(1))
    assert 10 <= start < 60

    def edges_of(frame, mode):
        gray = frame.astype(np.float64) @ [0.114, 0.587, 0.299]  # BGR, unrounded
        dy = ndimage.correlate(gray, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], mode=mode)
        dx = ndimage.correlate(gray, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], mode=mode)
        return np.sqrt(dy * dy + dx * dx)[:, :, None]

    for i, (frame, got) in enumerate(zip(frames, sink.frames)):
        want = edges_of(frame, "mirror" if i < start else "constant")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=f"frame {i}")


def test_watch_reloads_when_a_weights_file_changes(tmp_path):
    """The files a config reads are watched too: new kernels in the .npy are swapped in
    (checked against cv2.filter2D on the frames after the swap); a changed source: is
    said to apply at the next run."""
    from pipeline.io.sinks import MemorySink
    from pipeline.io.sources import MemorySource

    np.save(tmp_path / "k.npy", np.ones((1, 1, 3, 3), np.float32))  # (C_out, C_in, kh, kw)
    config = tmp_path / "c.yaml"
    config.write_text("source: synthetic\nstages:\n  - name: k\n    type: bank\n"
                      "    op: correlate\n    layout: oihw\n    weights: {file: k.npy}\n"
                      "    padding: same\n    border: replicate\n")
    frames = [f[:, :, :1].copy() for f in clip_frames(50, 40, 30)]
    sink = MemorySink("float")
    told: list[tuple[str, str]] = []
    thread = threading.Thread(target=lambda: run_config(
        config, source=MemorySource(frames, interval=0.03), sinks=[sink], watch=True,
        tell=lambda kind, text: told.append((kind, text))), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(sink.frames) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sharpen = np.array([[[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]]], np.float32)
    np.save(tmp_path / "k.npy", sharpen)
    while not told:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    config.write_text(config.read_text().replace("source: synthetic", "source: 0"))
    thread.join(timeout=30)
    kinds = [k for k, _ in told]
    assert kinds[0] == "reload" and "note" in kinds, told
    assert any("source: changes apply at the next run" in t for k, t in told if k == "note")
    start = int(re.search(r"from frame (\d+)", told[0][1]).group(1))
    assert len(sink.frames) == 50
    for i in (start - 1, start, 49):
        kernel = np.ones((3, 3), np.float32) if i < start else sharpen[0, 0]
        want = cv2.filter2D(frames[i].astype(np.float32), -1, kernel,
                            borderType=cv2.BORDER_REPLICATE)
        np.testing.assert_allclose(sink.frames[i][:, :, 0], want, rtol=1e-5, atol=1e-3)


def test_an_edit_made_while_the_first_chain_is_planned_is_not_missed(edges, monkeypatch):
    from pipeline.io.sinks import MemorySink
    from pipeline.io.sources import MemorySource
    from pipeline.stages import Chain

    plan = Chain.plan

    def planning_while_edited(chain):
        plan(chain)
        if not edges.read_text().count("border: constant"):
            _edit(edges, "border: reflect101", "border: constant")

    monkeypatch.setattr(Chain, "plan", planning_while_edited)
    told: list[str] = []
    run_config(edges, source=MemorySource(clip_frames(40, 32, 24), interval=0.03),
               sinks=[MemorySink()], watch=True, tell=lambda kind, text: told.append(text))
    assert len(told) == 1 and "reloaded: chain #2" in told[0], told


@pytest.mark.timing
def test_a_live_source_shows_its_measured_rate_even_to_a_slow_poller(edges):
    """A 30 fps MJPEG camera (which declares no rate: OpenCV said 25) is shown at the rate
    its frames arrive, and a page that looks every 3 s gets that rate, not 0.0 (the
    window of the last 2 s held only its own look). The summary says its clock bounded
    the run, not 'decoding': the reader only waited for frames."""
    from media import MjpegServer

    with MjpegServer(clip_frames(20, 160, 120), fps=30) as camera:
        served = Served(edges, camera.url)
        try:
            served.wait_for(lambda f: f.get("frames_out", 0) > 10)
            time.sleep(3.0)
            first = served.figures()
            time.sleep(3.0)
            second = served.figures()
        finally:
            stats = served.stop()
    for f in (first, second):
        assert 20 <= f["fps_out"] <= 40 and 20 <= f["fps_in"] <= 40, f
    rate = re.fullmatch(r"160x120x3 uint8 @ (\d+) fps measured", second["input"])
    assert rate and 20 <= int(rate.group(1)) <= 40, second["input"]
    assert "bound by the source's own clock (live)" in str(stats)
