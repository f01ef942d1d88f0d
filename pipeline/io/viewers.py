"""Sinks people look at: an OpenCV window (``--show``) and MJPEG over HTTP (``--serve``).

Both follow the FrameSink protocol of ``base.py``; neither writes a file.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable

import cv2
import numpy as np

from ..dashboard import Dashboard, Feed, Viewer, viewable
from ..errors import ConfigError, OutputError
from .base import Shape, SinkResult, StreamSink
from .page import PAGE
from .webserver import Access, GuardedHandler, GuardedServer


class WindowSink(StreamSink):
    """An OpenCV window (``--show``); refused at start where there is no display.

    One thread of its own makes every GUI call (Qt wants them on one thread) and shows
    the newest frame: a slow display skips frames, it never holds the stream up.
    """

    name = "window"
    view = True

    def __init__(self) -> None:
        self.frames = 0
        self._feed = Feed()
        self._thread: threading.Thread | None = None

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        if self._thread is not None:  # a reload changed the frames' shape: shown as they come
            return
        gui = "GUI:" in cv2.getBuildInformation() and "GUI:                           NONE" \
            not in cv2.getBuildInformation()
        if not gui:
            raise ConfigError("--show: display not available (this OpenCV has no GUI)")
        if os.name == "posix" and not (os.environ.get("DISPLAY")
                                       or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigError("--show: display not available (DISPLAY is not set)")
        self._thread = threading.Thread(target=self._show, name="pipeline-window", daemon=True)
        self._thread.start()

    def _show(self) -> None:
        seen = 0
        try:
            while True:
                seen = self._feed.wait(seen, timeout=0.05)
                if self._feed.closed:
                    return
                frame = self._feed.latest()
                if frame is not None:
                    cv2.imshow("pipeline", viewable(frame))
                cv2.waitKey(1)
        finally:
            cv2.destroyAllWindows()
            cv2.waitKey(1)  # lets Qt finish on this thread (else it warns at exit)

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        self._feed.publish(frame)
        self.frames += 1

    def close(self) -> SinkResult:
        self.abort()
        return SinkResult(self.name, self.frames)

    def abort(self) -> None:
        self._feed.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses, loopback first: where a server bound to 0.0.0.0
    answers (Linux: each interface's address by ioctl; elsewhere what the host name has)."""
    found = ["127.0.0.1"]
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                         struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue  # no IPv4 address on it
                found.append(socket.inet_ntoa(packed[20:24]))
    except (ImportError, OSError, AttributeError):
        try:
            found += socket.gethostbyname_ex(socket.gethostname())[2]
        except OSError:
            pass
    return list(dict.fromkeys(found))


SEND_BUFFER = 128 << 10  # bytes (Linux doubles it)


def _handler(board: Dashboard, allowed: Access) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        access = allowed

        def _feed(self, query: dict[str, list[str]]) -> tuple[str, Feed | None]:
            """The picture ``?feed=`` names (default "out"); None after a 404."""
            name = query.get("feed", ["out"])[0]
            feed = board.feeds.get(name)
            if feed is None:
                self.send_error(404, f"no feed {name!r} (out, src)")
            return name, feed

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path in ("/", "/index.html"):
                self._reply("text/html; charset=utf-8", PAGE.encode())
            elif url.path == "/figures.json":
                self._reply("application/json", json.dumps(board.figures()).encode())
            elif url.path == "/snapshot.jpg":
                name, feed = self._feed(query)
                if feed is not None:
                    feed.wait(0, timeout=5)  # the first frame, if none came yet
                    serial, data = feed.jpeg()
                    if not data:
                        self.send_error(503, "no frame yet")
                        return
                    extra = {"Content-Disposition": f"attachment; filename=\"pipeline-"
                             f"{name}-{serial:06d}.jpg\""} if query.get("download") else {}
                    self._reply("image/jpeg", data, extra)
            elif url.path == "/stream.mjpg":
                name, feed = self._feed(query)
                if feed is not None:
                    self._stream(feed, board.viewer(name))
            else:
                self.send_error(404)

        def do_POST(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/pause":
                self.send_error(404)
                return
            body = self.json_body()  # only from the page itself (webserver.py)
            asked = body.get("paused") if isinstance(body, dict) else body
            if body is not None and not isinstance(body, dict) or \
                    asked not in (None, True, False):
                self.send_error(400, "expected {\"paused\": true|false}, {} or nothing")
                return
            paused = board.toggle_pause(asked)
            self._reply("application/json", json.dumps({"paused": paused}).encode())

        def _reply(self, kind: str, body: bytes, extra: dict[str, str] | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, feed: Feed, viewer: Viewer) -> None:
            """Every new frame to this viewer as fast as it takes them: a slow viewer
            skips to the newest frame, and no one else waits for it."""
            # a small send buffer: a slow viewer's kernel holds a frame or two, not
            # seconds of old frames (its latency), and it skips to the newest
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = 0
            try:
                while True:
                    serial = feed.wait(seen, timeout=1.0)
                    if feed.closed:
                        return
                    if serial == seen:
                        continue
                    seen, data = feed.jpeg()
                    viewer.sending(seen)
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: " + str(len(data)).encode() +
                                     b"\r\n\r\n" + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return
            finally:
                viewer.leave()

    return Handler


class MjpegServerSink(StreamSink):
    """MJPEG over HTTP (``--serve HOST:PORT``): the page at http://HOST:PORT/ shows the
    result beside the source, with live figures (``dashboard.py``)."""

    view = True

    def __init__(self, address: str, quality: int = 85,
                 announce: Callable[[str], None] | None = None,
                 dashboard: Dashboard | None = None, token: str | None = None) -> None:
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--serve {address!r}: expected HOST:PORT")
        if token is not None and (len(token) < 8 or not token.isascii() or
                                  not token.replace("-", "").replace("_", "").isalnum()):
            raise ConfigError("--serve-token: at least 8 letters, digits, '-' or '_'")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        everywhere = self.host in ("0.0.0.0", "::")
        self.access = Access.bound(self.host, local_addresses() if everywhere else [], token)
        self.announce = announce
        self.dashboard = dashboard or Dashboard("?")
        for feed in self.dashboard.feeds.values():
            feed.quality = quality
        self.name = f"http://{self.host}:{self.port}/"
        self.frames = 0
        self._server: GuardedServer | None = None

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        if self._server is not None:  # a reload changed the frames' shape: JPEG takes any
            return
        try:
            self._server = GuardedServer((self.host, self.port),
                                         _handler(self.dashboard, self.access))
        except OSError as e:
            raise OutputError(f"cannot serve on {self.host}:{self.port}: {e.strerror}") from None
        self.port = self._server.server_address[1]  # port 0: the kernel picked one
        self.name = f"http://{self.host}:{self.port}/"
        threading.Thread(target=self._server.serve_forever, name="pipeline-serve",
                         daemon=True).start()
        if self.announce is not None:
            hosts = local_addresses() if self.host in ("0.0.0.0", "::") else [self.host]
            token = "" if self.access.token is None else f"?token={self.access.token}"
            urls = " ".join(f"http://{h}:{self.port}/{token}" for h in hosts)
            self.announce(f"serving at {urls}")

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        self.dashboard.show("out", frame)
        self.frames += 1

    def close(self) -> SinkResult:
        self.abort()
        return SinkResult(self.name, self.frames, "MJPEG over HTTP")

    def abort(self) -> None:
        self.dashboard.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
