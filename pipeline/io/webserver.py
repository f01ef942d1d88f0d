"""The ``--serve`` page's HTTP server, for requests from anywhere (RELIABILITY U6, U7).

A request is input like a video file. So:
- malformed requests get a 4xx and one line of nothing on stderr, never a traceback;
  a body is at most ``BODY_BYTES``, with a ``Content-Length`` of digits;
- the request line, headers and body must arrive within ``HEAD_SECONDS`` (a client that
  sends a byte at a time is cut off; a browser's preconnected socket it never used is
  closed, and it simply opens another), and a connection that takes nothing for
  ``IDLE_SECONDS`` is closed; at most ``MAX_CONNECTIONS`` at once, the rest get a 503;
- ``Host`` must name this server (a DNS-rebinding page's own name is refused: 403);
- a state-changing request (``POST``) must come from the page itself: JSON content
  (which a form of another site cannot send, and which a script of another site sends
  only after a preflight this server refuses), and an ``Origin``/``Sec-Fetch-Site``, when
  the browser sends one, of this server (403 otherwise);
- bound to an address other than loopback, every request needs the token printed in the
  URL at start (``?token=``, then a cookie for the page's own requests), as Jupyter does;
  ``--serve-token`` sets one (and then loopback needs it too).
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import json
import secrets
import socket
import socketserver
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

MAX_CONNECTIONS = 32  # viewers and pollers at once; a page with both pictures holds 3
HEAD_SECONDS = 5.0  # the request line, headers and body, from the connection's start
IDLE_SECONDS = 10.0  # a send or a receive that waits this long closes the connection
BODY_BYTES = 1024  # the largest request body (``{"paused": true}`` is 16)
COOKIE = "pipeline_token"
_OTHER_METHODS = ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "CONNECT", "TRACE")


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """Who may use the server: the host names ``Host`` and ``Origin`` may carry, and the
    token every request needs (None: none)."""

    hosts: frozenset[str]
    token: str | None

    @classmethod
    def bound(cls, host: str, addresses: list[str], token: str | None) -> Access:
        """For a server bound to ``host`` (``addresses``: the machine's, when that is
        every address): a token is made unless the host is loopback or one is given."""
        names = {"localhost", "127.0.0.1", "::1", host.lower(), *addresses}
        if not loopback(host):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        if token is None and not loopback(host):
            token = secrets.token_urlsafe(24)
        return cls(frozenset(n for n in names if n), token)

    def host_ok(self, value: str | None) -> bool:
        name = _hostname(value)
        return name is not None and name in self.hosts

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and
                                      hmac.compare_digest(given.encode(), self.token.encode()))


def _hostname(value: str | None) -> str | None:
    """The host name of a ``Host`` header or an origin's authority, lower-case; None if
    it is not one."""
    if not value:
        return None
    try:
        parts = urllib.parse.urlsplit(value if "//" in value else f"//{value}")
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    return parts.hostname


class GuardedHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that checks everything above before ``do_GET``/``do_POST`` run.
    Subclasses set ``access`` and read a POST's JSON with ``json_body``."""

    access: Access
    timeout = IDLE_SECONDS
    server: GuardedServer

    def log_message(self, *args: object) -> None:  # no stderr noise per request
        pass

    def setup(self) -> None:
        super().setup()
        self.server.deadlines.start(self.connection)
        self._cookie: str | None = None

    def finish(self) -> None:
        self.server.deadlines.settle(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def parse_request(self) -> bool:
        """The stdlib's parsing (400, 414, 431, 505), then Host and the token."""
        if not super().parse_request():
            return False
        if not self.access.host_ok(self.headers.get("Host")):
            self.send_error(403, "Host not allowed: use an address this server was given")
            return False
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        given = query.get("token", [None])[0] or self._cookie_token()
        if not self.access.token_ok(given):
            self.send_error(403, "a token is needed: open the URL printed at start "
                                 "(http://HOST:PORT/?token=...)")
            return False
        if self.access.token is not None and query.get("token"):
            self._cookie = (f"{COOKIE}={self.access.token}; Path=/; HttpOnly; "
                            "SameSite=Strict")
        if self.command != "POST":
            self.server.deadlines.settle(self.connection)  # the whole request is here
        return True

    def _cookie_token(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        auth = self.headers.get("Authorization") or ""
        return auth[6:].strip() if auth.lower().startswith("token ") else None

    def end_headers(self) -> None:
        if self._cookie is not None:
            self.send_header("Set-Cookie", self._cookie)
            self._cookie = None
        super().end_headers()

    def json_body(self) -> Any:
        """The POST's JSON (None for an empty body) once it is known to come from this
        server's own page; after an error reply (403, 400, 413, 415), raises Refused."""
        site = self.headers.get("Sec-Fetch-Site")
        origin = self.headers.get("Origin")
        if site not in (None, "same-origin", "none") or \
                (origin is not None and not self.access.host_ok(origin)):
            self._refuse(403, "a request from another site")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            self._refuse(403, "expected Content-Type: application/json (from the page)")
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit() or not length.isascii():
            self._refuse(400, "Content-Length must be a number of bytes")
        if int(length) > BODY_BYTES:
            self._refuse(413, f"a body of at most {BODY_BYTES} bytes")
        raw = self.rfile.read(int(length)) if int(length) else b""
        self.server.deadlines.settle(self.connection)
        if len(raw) < int(length):
            self._refuse(400, "the body ended early")
        try:
            return json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            self._refuse(400, "the body is not JSON")

    def _refuse(self, code: int, why: str) -> None:
        self.send_error(code, why)
        raise Refused(why)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except Refused:
            self.close_connection = True
        except (OSError, ValueError):  # a client gone, cut off or timed out
            self.close_connection = True

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()


for _method in _OTHER_METHODS:
    setattr(GuardedHandler, f"do_{_method}", GuardedHandler._not_allowed)


class Refused(Exception):
    """A request answered with an error; the handler stops there."""


class Deadlines:
    """Each connection's deadline for its request (``HEAD_SECONDS``): one thread shuts
    down the sockets of those that miss it, so a slow sender holds nothing for long."""

    def __init__(self) -> None:
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._reap, name="pipeline-serve-reaper", daemon=True).start()

    def start(self, conn: socket.socket) -> None:
        with self._lock:
            self._due[conn] = time.monotonic() + HEAD_SECONDS

    def settle(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def close(self) -> None:
        self._closed.set()

    def _reap(self) -> None:
        while not self._closed.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [c for c, due in self._due.items() if due < now]
                for conn in late:
                    del self._due[conn]
            for conn in late:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class GuardedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS``; a handler's failure is never
    printed (``handle_error``)."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler]) -> None:
        self.deadlines = Deadlines()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0  # connections turned away: too many at once
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Retry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client's fault, or one request's: never a traceback on the run's stderr

    def server_close(self) -> None:
        self.deadlines.close()
        super().server_close()
