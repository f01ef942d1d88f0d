"""The --serve page as a web server, under hostile requests (RELIABILITY U6, U7): a run
serving a looped synthetic stream, and raw HTTP requests over sockets. Each bad request
gets its 4xx (never a dropped connection or a traceback on the run's stderr); a pause
only from the page itself; Host checked (DNS rebinding); idle and slow clients cut off;
connections bounded; a non-loopback bind needs its token."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"
SOURCE = "synthetic:64x48@30:30"


class Page:
    """``pipeline run edges.yaml --serve BIND --loop`` in a subprocess, until ``end()``."""

    def __init__(self, bind: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", str(EDGES), "-s", SOURCE, "--serve",
             bind, "--loop", "-q", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = self.proc.stdout.readline()
        found = re.match(r"serving at (http://([\d.]+):(\d+)/(\?token=[\w-]+)?)", line)
        assert found, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url, self.port = found.group(1), int(found.group(3))
        self.token = (found.group(4) or "").removeprefix("?token=") or None

    def request(self, raw: bytes, *, close_write: bool = False, timeout: float = 10) -> bytes:
        """``raw`` sent as it is; all the server answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(raw)
            if close_write:
                s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def get(self, path: str, host: str | None = None, extra: str = "") -> bytes:
        host = host or f"127.0.0.1:{self.port}"
        return self.request(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
                            "Connection: close\r\n\r\n".encode())

    def post(self, body: bytes, headers: dict[str, str]) -> bytes:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"127.0.0.1:{self.port}",
                                                     "Connection": "close", **headers}.items())
        return self.request(f"POST /pause HTTP/1.1\r\n{head}\r\n".encode() + body)

    def paused(self) -> bool:
        body = self.get("/figures.json").split(b"\r\n\r\n", 1)[1]
        return json.loads(body)["paused"]

    def end(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, stderr = self.proc.communicate(timeout=20)
        return self.proc.returncode, stderr


def status(reply: bytes) -> int:
    """The reply's status; a request line that is not HTTP gets HTTP/0.9's bare body."""
    if not reply.startswith(b"HTTP/"):
        found = re.search(rb"Error code: (\d+)", reply)
        assert found, reply[:200]
        return int(found.group(1))
    return int(reply.split(b" ", 2)[1])


@pytest.fixture
def page():
    served = Page("127.0.0.1:0")
    yield served
    code, stderr = served.end()
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr
    assert code == 130, stderr


def test_malformed_requests_get_a_4xx_and_no_traceback(page):
    json_type = {"Content-Type": "application/json"}
    assert status(page.post(b"{}", {**json_type, "Content-Length": "abc"})) == 400
    assert status(page.post(b"{}", {**json_type, "Content-Length": "99999999999999"})) == 413
    assert status(page.post(b"{}", {**json_type, "Content-Length": "-5"})) == 400
    cut = page.request(f"POST /pause HTTP/1.1\r\nHost: 127.0.0.1:{page.port}\r\nContent-Type: "
                       "application/json\r\nContent-Length: 16\r\n\r\n{\"pau".encode(),
                       close_write=True)
    assert status(cut) == 400
    assert status(page.post(b"[1, 2", {**json_type, "Content-Length": "5"})) == 400
    assert status(page.post(b"{\"paused\": 3}", {**json_type, "Content-Length": "13"})) == 400
    assert status(page.request(b"\x16\x03\x01 garbage\r\n\r\n")) == 400
    assert status(page.request(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")) == 431
    assert status(page.request(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")) == 414
    for method in ("PUT", "DELETE", "OPTIONS", "HEAD"):
        reply = page.request(f"{method} /pause HTTP/1.1\r\nHost: 127.0.0.1:{page.port}\r\n"
                             "Content-Length: 0\r\n\r\n".encode())
        assert status(reply) == 405, method
    assert status(page.get("/nothing")) == 404
    assert status(page.get("/snapshot.jpg?feed=elsewhere")) == 404
    assert not page.paused()  # nothing above changed anything
    ok = page.post(b"{\"paused\": true}", {**json_type, "Content-Length": "16",
                                         "Origin": f"http://127.0.0.1:{page.port}",
                                         "Sec-Fetch-Site": "same-origin"})
    assert status(ok) == 200 and page.paused()  # the page's own request still works


def test_a_pause_only_from_the_page_itself(page):
    """Another site's page in the user's browser cannot pause: a form post (text/plain),
    a script's post with another Origin, or one the browser marks cross-site: 403."""
    form = page.post(b"{\"paused\": true}", {"Content-Type": "text/plain",
                                            "Content-Length": "16",
                                            "Origin": "http://evil.example"})
    assert status(form) == 403
    bare_form = page.post(b"paused=1", {"Content-Type": "application/x-www-form-urlencoded",
                                       "Content-Length": "8"})
    assert status(bare_form) == 403
    other = page.post(b"{}", {"Content-Type": "application/json", "Content-Length": "2",
                              "Origin": "http://evil.example:8080"})
    assert status(other) == 403
    marked = page.post(b"{}", {"Content-Type": "application/json", "Content-Length": "2",
                               "Sec-Fetch-Site": "cross-site"})
    assert status(marked) == 403
    assert not page.paused()


def test_dns_rebinding_is_refused_by_the_host_header(page):
    """evil.example resolving to 127.0.0.1 still sends Host: evil.example."""
    for path in ("/", "/figures.json", "/snapshot.jpg", "/stream.mjpg"):
        assert status(page.get(path, host=f"evil.example:{page.port}")) == 403, path
    assert status(page.request(b"GET / HTTP/1.0\r\n\r\n")) == 403  # no Host at all
    assert status(page.get("/", host=f"localhost:{page.port}")) == 200


@pytest.mark.timing
def test_idle_and_slow_clients_are_cut_off_and_connections_bounded(page):
    """31 idle connections and one that sends a byte now and then fill the 32 slots: the
    next gets a 503 at once. Within HEAD_SECONDS (5 s, and the reaper's quarter second)
    the server has closed all of them, and the page answers again."""
    from pipeline.io.webserver import HEAD_SECONDS, MAX_CONNECTIONS

    start = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", page.port)) for _ in range(MAX_CONNECTIONS - 1)]
    slow = socket.create_connection(("127.0.0.1", page.port))
    slow.sendall(b"G")
    time.sleep(0.3)
    assert status(page.get("/")) == 503
    for s in [*idle, slow]:
        s.settimeout(0.2)
    closed: set[int] = set()
    while len(closed) < len(idle) + 1 and time.monotonic() - start < HEAD_SECONDS + 5:
        try:
            slow.sendall(b"E")  # a byte now and then: never a whole request
        except OSError:
            closed.add(id(slow))
        for s in idle:
            if id(s) in closed:
                continue
            try:
                if s.recv(1) == b"":
                    closed.add(id(s))
            except TimeoutError:
                pass
            except OSError:
                closed.add(id(s))
    elapsed = time.monotonic() - start
    assert len(closed) == len(idle) + 1, f"{len(closed)} of {len(idle) + 1} closed"
    assert HEAD_SECONDS - 1 < elapsed < HEAD_SECONDS + 5, elapsed
    for s in [*idle, slow]:
        s.close()
    assert status(page.get("/")) == 200


def test_a_page_on_every_address_needs_its_token():
    served = Page("0.0.0.0:0")
    try:
        assert served.token and len(served.token) >= 32
        assert status(served.get("/")) == 403
        assert status(served.get("/figures.json")) == 403
        assert status(served.get("/?token=wrong")) == 403
        first = served.get(f"/?token={served.token}")
        assert status(first) == 200
        cookie = re.search(rb"Set-Cookie: (pipeline_token=[\w-]+)", first).group(1).decode()
        assert status(served.get("/figures.json", extra=f"Cookie: {cookie}\r\n")) == 200
        assert status(served.post(b"{}", {"Content-Type": "application/json",
                                          "Content-Length": "2"})) == 403  # no token
    finally:
        code, stderr = served.end()
    assert code == 130 and "Traceback" not in stderr, stderr


def test_a_token_given_is_needed_on_loopback_too():
    served = Page("127.0.0.1:0", "--serve-token", "my-own-token_1")
    try:
        assert served.token == "my-own-token_1"
        assert status(served.get("/")) == 403
        assert status(served.get("/", extra="Authorization: Token my-own-token_1\r\n")) == 200
    finally:
        code, stderr = served.end()
    assert code == 130 and "Traceback" not in stderr, stderr
