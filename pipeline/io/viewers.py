"""Sinks people look at: an OpenCV window (``--show``) and MJPEG over HTTP (``--serve``).

Both follow the FrameSink protocol of ``base.py``; neither writes a file.
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import threading
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import ConfigError, OutputError
from .base import Shape, SinkResult, StreamSink


class WindowSink(StreamSink):
    """An OpenCV window (``--show``); refused at start where there is no display."""

    name = "window"
    view = True

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        gui = "GUI:" in cv2.getBuildInformation() and "GUI:                           NONE" \
            not in cv2.getBuildInformation()
        if not gui:
            raise ConfigError("--show: display not available (this OpenCV has no GUI)")
        if os.name == "posix" and not (os.environ.get("DISPLAY")
                                       or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigError("--show: display not available (DISPLAY is not set)")
        self.frames = 0

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        cv2.imshow("pipeline", frame)
        cv2.waitKey(1)
        self.frames += 1

    def close(self) -> SinkResult:
        cv2.destroyAllWindows()
        return SinkResult(self.name, self.frames)

    def abort(self) -> None:
        cv2.destroyAllWindows()


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


class _Latest:
    """The newest JPEG and a condition to wait for the next one."""

    def __init__(self) -> None:
        self.jpeg = b""
        self.serial = 0
        self.closed = False
        self.cond = threading.Condition()


PAGE = (b"<!doctype html><title>pipeline</title>"
        b"<body style='margin:0;background:#111'>"
        b"<img src='/stream.mjpg' style='max-width:100%'></body>")


def _handler(latest: _Latest) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # no stderr noise per request
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path in ("/", "/index.html"):
                self._reply(b"text/html", PAGE)
            elif self.path.startswith("/snapshot.jpg"):
                with latest.cond:
                    latest.cond.wait_for(lambda: latest.serial or latest.closed, timeout=5)
                    data = latest.jpeg
                self._reply(b"image/jpeg", data)
            elif self.path.startswith("/stream.mjpg"):
                self._stream()
            else:
                self.send_error(404)

        def _reply(self, kind: bytes, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind.decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            seen = 0
            try:
                while True:
                    with latest.cond:
                        latest.cond.wait_for(lambda seen=seen: latest.serial != seen or latest.closed,
                                             timeout=1.0)
                        if latest.closed:
                            return
                        if latest.serial == seen:
                            continue
                        seen, data = latest.serial, latest.jpeg
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: " + str(len(data)).encode() +
                                     b"\r\n\r\n" + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegServerSink(StreamSink):
    """MJPEG over HTTP (``--serve HOST:PORT``): a browser at http://HOST:PORT/ shows it live."""

    view = True

    def __init__(self, address: str, quality: int = 85,
                 announce: Callable[[str], None] | None = None) -> None:
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--serve {address!r}: expected HOST:PORT")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.quality = quality
        self.announce = announce
        self.name = f"http://{self.host}:{self.port}/"
        self.frames = 0
        self._latest = _Latest()
        self._server: _Server | None = None

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        try:
            self._server = _Server((self.host, self.port), _handler(self._latest))
        except OSError as e:
            raise OutputError(f"cannot serve on {self.host}:{self.port}: {e.strerror}") from None
        self.port = self._server.server_address[1]  # port 0: the kernel picked one
        self.name = f"http://{self.host}:{self.port}/"
        threading.Thread(target=self._server.serve_forever, name="pipeline-serve",
                         daemon=True).start()
        if self.announce is not None:
            hosts = local_addresses() if self.host in ("0.0.0.0", "") else [self.host]
            urls = " ".join(f"http://{h}:{self.port}/" for h in hosts)
            self.announce(f"serving at {urls}")

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OutputError(f"{self.name}: cannot encode a JPEG")
        with self._latest.cond:
            self._latest.jpeg = data.tobytes()
            self._latest.serial += 1
            self._latest.cond.notify_all()
        self.frames += 1

    def close(self) -> SinkResult:
        self.abort()
        return SinkResult(self.name, self.frames, "MJPEG over HTTP")

    def abort(self) -> None:
        with self._latest.cond:
            self._latest.closed = True
            self._latest.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
