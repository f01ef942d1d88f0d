"""Fault matrix group L: live sources, served by a loopback MJPEG server in the test."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from harness import Case, fault, frames_in
from media import MjpegServer, clip_frames

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(mode: str = "normal", after: int = 0, fps: float = 60, size=(160, 120)):
    return MjpegServer(clip_frames(20, *size), fps=fps, mode=mode, after=after)


def live_job(tmp: Path, srv: MjpegServer | None, url: str | None, code: int,
             message: str | None, state, extra: tuple = (), **kw) -> Case:
    out = tmp / "live.mkv"
    return Case(["run", EDGES, "-s", url or srv.url, "-o", out, *extra], code, message,
                outputs={out: state}, context=srv, **kw)


@fault("L1", "live", "connection refused: back-off, then exit 5 after the budget")
def l1(tmp):
    port = closed_port()  # three attempts: 0.5 s, then 1 s of back-off (the default five: 7.5)
    return live_job(tmp, None, f"http://127.0.0.1:{port}/x", 5,
                    rf"cannot connect to 127\.0\.0\.1:{port}: connection refused \(3 attempts\)",
                    "absent", ("--reconnect-attempts", "3"), max_seconds=20)


@fault("L2", "live", "server accepts and never answers: the open timeout, not OpenCV's 30 s")
def l2(tmp):
    return live_job(tmp, server("accept_silent"), None, 5, r"no stream within 1 s \(2 attempts\)",
                    "absent", ("--open-timeout", "1", "--reconnect-attempts", "2"),
                    max_seconds=10)


@fault("L3", "live", "stream stalls: detected within the read timeout, reconnected")
def l3(tmp):
    return live_job(tmp, server("stall_after", 15), None, 0, None, ("playable", 40),
                    ("--max-frames", "40", "--read-timeout", "1"),
                    stdout=r"[2-9] reconnects", max_seconds=30)


@fault("L4", "live", "server closes mid-stream: reconnected")
def l4(tmp):
    return live_job(tmp, server("close_after", 15), None, 0, None, ("playable", 40),
                    ("--max-frames", "40"), stdout=r"[2-9] reconnects")


def every_frame_kept_or_dropped(srv: MjpegServer, kept_in: Path):
    """A live source keeps the newest frame: on a busy machine one may replace another.
    So: the temporary file holds exactly the frames the error line says were kept, and
    those and the ones it says were dropped are every frame the server sent."""
    def check(result) -> None:
        found = re.search(r"(\d+) frames kept in (\S+\.partial\.mkv)(?: \((\d+) dropped)?",
                          result.stderr)
        assert found, result.stderr
        kept, dropped = int(found.group(1)), int(found.group(3) or 0)
        assert Path(found.group(2)).parent == kept_in.parent
        assert len(frames_in(Path(found.group(2)))) == kept
        assert kept + dropped == srv.sent and kept > 0, (kept, dropped, srv.sent)
    return check


@fault("L4b", "live", "source gone for good: exit 5, frames so far kept as .partial")
def l4b(tmp):
    srv = server("close_forever", 20)
    return live_job(tmp, srv, None, 5,
                    r"source lost \(stream ended\); reconnecting failed: cannot connect to "
                    r".*\(2 attempts\); \d+ frames kept in "
                    r".*live\.[0-9a-f]{8}\.partial\.mkv",
                    ("partial", None), ("--reconnect-attempts", "2"),
                    check=every_frame_kept_or_dropped(srv, tmp / "live.mkv"))


@fault("L5", "live", "one corrupt JPEG: counted, not the end")
def l5(tmp):
    return live_job(tmp, server("garbage_after", 8), None, 0, None, ("playable", 30),
                    ("--max-frames", "30"), stdout=r"1 undecodable skipped")


@fault("L7", "live", "camera that does not exist: exit 5 at once")
def l7(tmp):
    out = tmp / "cam.mkv"
    return Case(["run", EDGES, "-s", "7", "-o", out], 5, r"camera 7: not available",
                outputs={out: "absent"}, max_seconds=5)


@fault("L8", "live", "source faster than the filter: newest frame kept, drops counted")
def l8(tmp):
    slow = tmp / "slow.yaml"
    slow.write_text("stages:\n  - {type: bank, op: correlate, method: direct, "
                    "weights: {builtin: box, size: 61}}\n")
    srv = server(fps=120, size=(320, 240))
    out = tmp / "live.mkv"
    return Case(["run", slow, "-s", srv.url, "-o", out, "--max-frames", "25"], 0, None,
                outputs={out: ("playable", 25)}, context=srv,
                stdout=r"frames: \d+ read, 25 written, [1-9]\d* dropped")


@fault("L11", "live", "credentials in the URL are never printed")
def l11(tmp):
    port = closed_port()

    def redacted(result):
        assert "s3cret" not in result.stderr + result.stdout
        assert "bob:***@127.0.0.1" in result.stderr

    return live_job(tmp, None, f"rtsp://bob:s3cret@127.0.0.1:{port}/cam", 5, r"bob:\*\*\*@",
                    "absent", ("--reconnect-attempts", "1"), check=redacted)


@fault("L9b", "live", "frames change size mid-stream, no reconnect: warned, scaled, all kept")
def l9b(tmp):
    frames = clip_frames(10, 160, 120) + clip_frames(10, 320, 240) + clip_frames(10, 161, 121)
    srv = MjpegServer(frames, fps=60)
    return live_job(tmp, srv, None, 0, None, ("playable", 30, (160, 120)),
                    ("--max-frames", "30"),
                    stdout=r"warning: .*: source resolution changed 160x120 -> 320x240; "
                           r"scaling to the first size")
