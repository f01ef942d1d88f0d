"""Test media made on the spot: clips, damaged clips, and a loopback MJPEG server."""

from __future__ import annotations

import http.server
import socketserver
import struct
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.io.sources import SyntheticSource

# the codecs OpenCV's writer used for these containers (tests rely on their traits:
# MPEG-4 Part 2's VOP start codes, FFV1's losslessness)
CLIP_CODECS = {".mp4": ("mpeg4", "yuv420p"), ".avi": ("mjpeg", "yuvj420p"),
               ".mkv": ("ffv1", "bgr0"), ".mov": ("libx264", "yuv420p"),
               ".webm": ("libvpx-vp9", "yuv420p")}
AUDIO_RATE = 48000


def clip_frames(n: int = 60, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """A real-looking clip: the moving pattern plus sensor-like noise (fixed seed)."""
    source = SyntheticSource(width, height, frames=n)
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n):
        noisy = source.frame(i).astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, n: int = 60, width: int = 160, height: int = 120,
               fps: float = 30.0, *, codec: str | None = None, audio: str | None = None,
               times: list[float] | None = None, seconds_of_audio: float | None = None,
               audio_rate: int = AUDIO_RATE) -> list[np.ndarray]:
    """A clip made with PyAV: ``n`` frames of ``clip_frames`` at ``fps`` (or at ``times``,
    seconds: variable frame rate), in the codec of its extension (``CLIP_CODECS``) or
    ``codec``; with ``audio`` (an encoder: aac, libmp3lame, ac3, libopus), a 440 Hz tone
    as long as the video (or ``seconds_of_audio``) at ``audio_rate``. Returns the frames."""
    import av

    frames = clip_frames(n, width, height) if n else []
    name, pix = CLIP_CODECS[path.suffix] if codec is None else (codec, "yuv420p")
    with av.open(str(path), "w") as out:
        rate = Fraction(fps).limit_denominator(1001)
        video = out.add_stream(name, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix
        if name in ("mpeg4", "mjpeg"):
            video.codec_context.qscale = True
            video.codec_context.global_quality = 3 * 118
        time_base = Fraction(1, 1000) if times is not None else 1 / rate
        video.codec_context.time_base = video.time_base = time_base
        sound = None
        if audio is not None:
            sound = out.add_stream(audio, rate=audio_rate)
            sound.layout = "stereo"
        if not frames:
            out.start_encoding()  # a header (and an index) with no frame in between
        for i, f in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(f, format="bgr24")
            picture.pts = i if times is None else round(times[i] * 1000)
            picture.time_base = time_base
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            length = seconds_of_audio if seconds_of_audio is not None else \
                (times[-1] + 1 / fps if times is not None else n / fps)
            for packet in tone(sound, length, rate=audio_rate):
                out.mux(packet)
    return frames


def tone(stream, seconds: float, hz: float = 440.0, rate: int = AUDIO_RATE):
    """Packets of a stereo sine tone ``seconds`` long at ``rate``, encoded by ``stream``."""
    import av

    total = int(seconds * rate)
    step = 1024
    for start in range(0, total, step):
        t = np.arange(start, min(start + step, total)) / rate
        wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp",
                                           layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        yield from stream.encode(frame)
    yield from stream.encode(None)


def damage_sound(path: Path, damaged: Path, which: set[int] | None = None,
                 garble: bool = False) -> int:
    """``path`` remuxed into ``damaged`` with sound packets cut to a quarter (or, with
    ``garble``, their bytes replaced by noise): those whose index is in ``which``
    (default: the first; OpenCV's Megamind.avi sample has one such AC-3 packet), every one
    where ``which`` is empty. Returns the sound packets."""
    import av

    which = {0} if which is None else which
    count = 0
    with av.open(str(path)) as src, av.open(str(damaged), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if not packet.size:
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == "audio":
                if not which or count in which:
                    noise = np.random.default_rng(count).integers(0, 256, packet.size,
                                                                  dtype=np.uint8).tobytes()
                    cut = av.Packet(noise if garble else bytes(packet)[: packet.size // 4])
                    cut.pts, cut.dts, cut.duration = packet.pts, packet.dts, packet.duration
                    cut.time_base = packet.time_base
                    packet = cut
                count += 1
            packet.stream = target
            out.mux(packet)
    return count


def write_clips(folder: Path, stem: str, count: int, **clip) -> list[Path]:
    """``count`` clips ``{stem}0.avi`` … in ``folder`` (``write_clip``'s options); their paths."""
    paths = [folder / f"{stem}{i}.avi" for i in range(count)]
    for path in paths:
        write_clip(path, **clip)
    return paths


def decoded(path: Path, attempts: int = 200) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path``: read() called well past the declared end,
    never stopping at a failure (OpenCV recovers after a corrupt frame)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    frames = []
    for _ in range(count + attempts):
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    cap.release()
    return frames


def flip_bytes(path: Path, at: float = 0.6, n: int = 200, seed: int = 0) -> None:
    """Overwrite ``n`` bytes from ``at`` of the file with random ones (a damaged sector)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + n] = np.random.default_rng(seed).integers(0, 256, n, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def damage_frame(path: Path, index: int, n: int = 200, seed: int = 0) -> None:
    """Overwrite ``n`` bytes of an MPEG-4 (mp4v) file from frame ``index``'s start code.

    FFmpeg conceals damage inside a frame; damage to a frame's VOP start code makes
    OpenCV's read() fail on that frame and decode the next ones again (RELIABILITY b1).
    """
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i : i + 4] == b"\x00\x00\x01\xb6"]
    at = starts[index]
    data[at : at + n] = np.random.default_rng(seed).integers(0, 256, n, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def understate_avi_count(path: Path, claimed: int) -> None:
    """Make an AVI's headers claim ``claimed`` frames (avih dwTotalFrames, strh dwLength)."""
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)
    struct.pack_into("<I", data, strh + 8 + 32, claimed)
    path.write_bytes(bytes(data))


class MjpegServer:
    """A loopback multipart-JPEG server (what an IP camera speaks) at ``url``.

    Serves ``frames`` in a loop at ``fps``. ``mode`` (each connection): 'normal';
    'close_after' N frames; 'stall_after' N frames (then silent, connection open);
    'garbage_after' N frames (one corrupt JPEG, then normal); 'accept_silent' (accepts
    and never answers); 'close_forever' after N frames (the server is gone). ``connections`` counts the clients served.
    """

    def __init__(self, frames: list[np.ndarray], fps: float = 30.0, mode: str = "normal",
                 after: int = 0) -> None:
        self.jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                      for f in frames]
        self.fps, self.mode, self.after = fps, mode, after
        self.sent = 0
        self.connections = 0
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.connections += 1
                if server.mode == "accept_silent":
                    server.stopping.wait()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not server.stopping.is_set():
                        if server.mode == "close_after" and i >= server.after:
                            return
                        if server.mode == "close_forever" and i >= server.after:
                            server._httpd.socket.close()  # every reconnect is refused
                            return
                        if server.mode == "stall_after" and i >= server.after:
                            server.stopping.wait()
                            return
                        data = server.jpegs[i % len(server.jpegs)]
                        if server.mode == "garbage_after" and i == server.after:
                            data = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: " + str(len(data)).encode()
                                         + b"\r\n\r\n" + data + b"\r\n")
                        server.sent += 1
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def read_mjpeg(url: str, count: int, timeout: float = 10.0) -> list[np.ndarray]:
    """The first ``count`` JPEG parts of a multipart stream, decoded (a plain HTTP client)."""
    import urllib.request

    frames = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert "multipart/x-mixed-replace" in response.headers["Content-Type"]
        while len(frames) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()  # the blank line before the body
                data = response.read(length)
                frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames
