"""Video files through FFmpeg's own libraries (PyAV): real codecs, the input's sound and
timing kept, colour tagged. The one video writer; OpenCV stays the reader.

- Each frame keeps its input frame's time (``write(frame, pts)``, seconds from the
  stream's start): variable frame rate stays variable, and skipped corrupt frames leave a
  gap in time rather than shifting everything after them. AVI holds a constant rate only:
  there, times are rounded to frame slots.
- BGR goes to the codec's pixel format with the matrix and range tagged in the stream:
  BT.709 for HD (720 lines or 1280 columns and up), BT.601 below, limited range; MJPEG is
  full-range BT.601 (JPEG's own); FFV1 keeps BGR itself (bgr0, lossless) and gray as gray.
  4:2:0 codecs need an even size: an odd one is padded by one replicated row or column,
  and the summary says so.
- The encoder gets libavcodec's threads (FFV1 in slices); the filter gives a core back to
  it when the writer bounds the run (cores.py).
- Written under this run's temporary name (destination.py), finalised (MP4/MOV: the
  index moved to the front, ``+faststart``), verified by demuxing it back (every frame
  there, the first one decodes at the size written), then renamed.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import OutputError
from .audio import AudioTrack
from .base import Shape, SinkResult
from .codecs import Encoding, VideoSettings, resolve
from .destination import Destination
from .libav import libav

try:
    from . import _yuv  # BGR -> YUV 4:2:0 in one pass (setup.py); else swscale
except ImportError:  # installed without a C compiler
    _yuv = None

# colour tags (FFmpeg's AVCOL_* numbers) and swscale's matrix, per convention
_BT709 = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}
_BT601 = {"colorspace": 6, "color_primaries": 6, "color_trc": 6, "color_range": 1}
_JPEG = {"colorspace": 5, "color_range": 2}
_FULL = {"color_range": 2}
_VFR_TIME_BASE = Fraction(1, 90000)  # MPEG's clock: 24, 25, 30, 50, 60 and 29.97 fps exact


def _coefficients(matrix: str | None, full: bool) -> tuple[float, ...]:
    """R, G, B weights of Y, Cb and Cr for BT.709 or BT.601, full or limited range."""
    kr, kb = (0.2126, 0.0722) if matrix == "ITU709" else (0.299, 0.114)
    kg = 1 - kr - kb
    sy, sc = (1.0, 1.0) if full else (219 / 255, 224 / 255)
    cb, cr = sc * 0.5 / (1 - kb), sc * 0.5 / (1 - kr)
    return (sy * kr, sy * kg, sy * kb,
            -cb * kr, -cb * kg, cb * (1 - kb),
            cr * (1 - kr), -cr * kg, -cr * kb)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_CORES = _cores()


class FileSink:
    """What every file sink shares: a destination claimed by this run, and a count."""

    wants = "uint8"
    view = False

    def __init__(self, path: str | os.PathLike[str], force: bool = False,
                 inputs: list[str] | None = None, token: str | None = None) -> None:
        self.final = Path(path)
        self.name = str(self.final)
        self.dest = Destination(self.final, force, inputs, token)
        self.frames = 0
        self.warnings: list[str] = []

    @property
    def tmp(self) -> Path | None:
        """This run's temporary file while it is being written (None once ended)."""
        return self.dest.tmp

    def abort(self) -> None:
        """Remove what this run wrote; nothing else is ever touched."""
        self._release()
        self.dest.discard()

    def _release(self) -> None:
        """Let go of the writer, if any."""


class VideoFileSink(FileSink):
    """``.mp4``/``.mov`` (H.264), ``.webm`` (VP9), ``.mkv`` (FFV1), ``.avi`` (MJPEG), or the
    codec ``settings`` name; checked (OptionError, exit 2) before anything is opened."""

    def __init__(self, path: str | os.PathLike[str], force: bool = False,
                 inputs: list[str] | None = None, token: str | None = None,
                 settings: VideoSettings | None = None) -> None:
        super().__init__(path, force, inputs, token)
        self.encoding: Encoding = resolve(str(self.final), settings)
        self._out: Any = None
        self._stream: Any = None
        self._audio: AudioTrack | None = None
        self._expect: Shape | None = None
        self._pad = (0, 0)
        self._last = -1  # the last frame's time, in time-base ticks
        self._end = 0.0  # seconds: the end of the last frame written
        self._bytes = 0

    # ------------------------------------------------------------------ opening
    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        """Sized from the chain's output; ``origin`` is the file the frames come from
        (its sound track and its clock), or None."""
        av = libav()

        h, w, c = shape
        if c not in (1, 3):
            raise OutputError(f"{self.final}: video frames need 1 or 3 channels, got {c}")
        codec = self.encoding.codec
        self._expect = shape
        self._format = "gray" if c == 1 else "bgr24"
        self._pix = codec.gray_fmt if c == 1 and codec.gray_fmt else codec.pix_fmt
        if codec.subsampled and self._pix != "gray":
            self._pad = (h % 2, w % 2)
        if any(self._pad):
            self.warnings.append(
                f"{self.final}: {w}x{h} padded to {w + self._pad[1]}x{h + self._pad[0]} "
                f"({codec.name} needs an even size; the edge pixels are repeated)")
        self.size = (w + self._pad[1], h + self._pad[0])
        self._colour = self._colour_of(self.size)
        self._conversion()
        probe = self._probe(origin)
        self.dest.claim()
        try:
            self._open_container(fps, probe)
        except (av.FFmpegError, OSError, ValueError) as e:
            if probe is not None:
                probe[0].close()
            self.abort()
            raise OutputError(f"{self.final}: cannot write {codec.name} "
                              f"({self._pix}, {self.size[0]}x{self.size[1]}): {_why(e)}"
                              ) from None

    def _colour_of(self, size: tuple[int, int]) -> dict[str, int]:
        if self._pix in ("bgr0", "gray"):
            return dict(_FULL) if self._pix == "gray" else {}
        if self._pix.startswith("yuvj"):
            return dict(_JPEG)
        w, h = size
        return dict(_BT709 if h >= 720 or w >= 1280 else _BT601)

    def _probe(self, origin: str | None) -> tuple[Any, Any, float, Any] | None:
        """The input's (container, video stream, video start in seconds, audio stream),
        opened by PyAV for its clock and its sound; None when it has neither to give."""
        if origin is None:
            return None
        av = libav()

        try:
            source = av.open(origin)
        except (av.FFmpegError, OSError, ValueError) as e:
            self.warnings.append(f"{origin}: cannot read its clock or sound ({_why(e)}); "
                                 "frames timed by the frame rate, no sound")
            return None
        video = source.streams.video[0] if source.streams.video else None
        start = 0.0
        if video is not None and video.start_time is not None:
            start = float(video.start_time * video.time_base)
        audio = source.streams.audio[0] if source.streams.audio else None
        return source, video, start, audio

    def _time_base(self, fps: float, video: Any) -> Fraction:
        codec = self.encoding.codec
        if self.encoding.container == "avi":  # constant frame rate only
            return 1 / Fraction(fps).limit_denominator(1001)
        tb = Fraction(video.time_base) if video is not None and video.time_base else \
            _VFR_TIME_BASE
        if codec.max_time_base and tb.denominator > codec.max_time_base:
            tb = Fraction(1, 30000)
        return tb

    def _open_container(self, fps: float, probe: tuple[Any, Any, float, Any] | None) -> None:
        av = libav()

        enc = self.encoding
        codec = enc.codec
        container_options = {"movflags": "+faststart"} if enc.container in ("mp4", "mov") \
            else {}
        self._out = av.open(str(self.tmp), "w", format=enc.container,
                            container_options=container_options)
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        if codec.name == "av1":  # SVT-AV1 prints a banner of 20 lines to stderr otherwise
            os.environ.setdefault("SVT_LOG", "1")
        stream = self._out.add_stream(codec.encoder, rate=rate, options=enc.options())
        stream.width, stream.height = self.size
        stream.pix_fmt = self._pix
        cc = stream.codec_context
        self.time_base = self._time_base(fps, probe[1] if probe else None)
        cc.time_base = stream.time_base = self.time_base
        for key, value in self._colour.items():
            setattr(cc, key, value)
        cc.thread_count = 0 if codec.own_threads else _CORES
        cc.thread_type = codec.thread_type
        if codec.quality == "qscale" and enc.crf is not None:
            cc.qscale = True
            cc.global_quality = enc.crf * 118  # FF_QP2LAMBDA: what ffmpeg's -q:v sets
        self._stream = stream
        self._tick = max(1, round(1 / (rate * self.time_base)))  # one frame, in ticks
        if probe is not None:
            source, _, start, audio = probe
            if audio is not None and enc.audio:
                try:
                    self._audio = AudioTrack(source, audio, self._out, enc, start,
                                             str(source.name))
                except (av.FFmpegError, ValueError) as e:
                    self.warnings.append(f"{source.name}: its sound cannot be carried "
                                         f"into {self.final.suffix} ({_why(e)}); written "
                                         "without it")
                    source.close()
            else:
                source.close()

    # ------------------------------------------------------------------ writing
    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        """One frame at ``pts`` seconds from the stream's start (None: the next slot)."""
        av = libav()

        assert self._stream is not None and self._expect is not None
        if frame.shape != self._expect or frame.dtype != np.uint8:
            raise OutputError(f"{self.final}: frame {frame.shape} {frame.dtype} does not "
                              f"match the writer's {self._expect} uint8")
        if any(self._pad):
            frame = cv2.copyMakeBorder(frame, 0, self._pad[0], 0, self._pad[1],
                                       cv2.BORDER_REPLICATE)
        ticks = self._last + self._tick if pts is None else round(pts / self.time_base)
        ticks = max(ticks, self._last + 1)  # strictly increasing, whatever the input said
        try:
            picture = self._picture(frame)
            picture.pts, picture.time_base, picture.duration = ticks, self.time_base, \
                self._tick
            self._last = ticks
            self._end = float((ticks + self._tick) * self.time_base)
            if self._audio is not None:
                self._audio.until(self._end, self._mux)
            for packet in self._stream.encode(picture):
                self._mux(packet)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.final}: write failed after {self.frames} frames "
                              f"({_why(e)})") from None
        self.frames += 1

    def _conversion(self) -> None:
        """What turns a frame into the codec's pixels, fixed once per stream."""
        self._matrix = {1: "ITU709", 5: "ITU601", 6: "ITU601"}.get(
            self._colour.get("colorspace", 0))
        self._full = self._colour.get("color_range") == 2
        self._coefficients = _coefficients(self._matrix, self._full)
        self._by_c = _yuv is not None and self._format == "bgr24" and \
            self._pix.endswith("420p")
        # gray into 4:2:0: Y by a table (full range 0..255 onto the stream's range, rounded
        # half up as swscale's accurate rounding does), chroma 128. swscale took 2.4 ms a
        # 720p frame for this; the table 0.3.
        self._gray_lut = None
        if self._format == "gray" and self._pix.endswith("420p"):
            levels = np.arange(256) if self._full else 16 + np.arange(256) * 219 / 255
            self._gray_lut = np.floor(levels + 0.5).astype(np.uint8)

    def _picture(self, frame: np.ndarray) -> Any:
        """The frame in the codec's pixel format, its colour tagged."""
        av = libav()

        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        frame = np.ascontiguousarray(frame)
        if self._pix == self._format:  # a copy: the encoder may hold it past this call
            picture = av.VideoFrame.from_ndarray(frame, format=self._format)
        elif self._gray_lut is not None:
            h, w = frame.shape[:2]
            picture = av.VideoFrame(w, h, self._pix)
            y, u, v = picture.planes
            rows = np.frombuffer(y, np.uint8).reshape(-1, y.line_size)[:h, :w]
            rows[...] = cv2.LUT(frame, self._gray_lut)
            np.frombuffer(u, np.uint8)[...] = 128
            np.frombuffer(v, np.uint8)[...] = 128
        elif self._by_c:
            h, w = frame.shape[:2]
            picture = av.VideoFrame(w, h, self._pix)
            y, u, v = picture.planes
            _yuv.bgr_to_yuv420(frame, frame.strides[0], w, h, y, y.line_size, u, u.line_size,
                               v, v.line_size, self._coefficients, 0 if self._full else 16)
        else:  # swscale, with accurate rounding: its default rounding is off by one (a
            # flat gray 30 came back as (26, 29, 27))
            from av.video.reformatter import Interpolation

            picture = av.VideoFrame.from_numpy_buffer(frame, format=self._format).reformat(
                format=self._pix, src_colorspace=self._matrix, dst_colorspace=self._matrix,
                src_color_range="JPEG", dst_color_range="JPEG" if self._full else "MPEG",
                interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND, threads=1)
        for key, value in self._colour.items():
            setattr(picture, key, value)
        return picture

    def _mux(self, packet: Any) -> None:
        self._bytes += packet.size
        self._out.mux(packet)

    # ------------------------------------------------------------------ ending
    def _finalise(self) -> None:
        """Flush the encoder, the sound up to the last frame's end, the trailer."""
        av = libav()

        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._mux(packet)
            if self._audio is not None:
                self._audio.finish(self._end, self._mux)
                self.warnings += self._audio.warnings
            if self._out is not None:
                self._out.close()
        except (av.FFmpegError, OSError) as e:
            self._release()
            raise OutputError(f"{self.final}: cannot finish the file after {self.frames} "
                              f"frames ({_why(e)})") from None
        finally:
            self._out = self._stream = None

    def _release(self) -> None:
        if self._audio is not None:
            self._audio.close()
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # noqa: BLE001, S110 - the file goes anyway
                pass
            self._out = self._stream = None

    def close(self) -> SinkResult:
        if self.frames == 0:
            self.abort()
            return SinkResult(self.name, 0, "no frames written; no file left", self.warnings)
        try:
            self._finalise()
        except OutputError:
            self.abort()
            raise
        self._verify()
        self.dest.commit()
        return SinkResult(self.name, self.frames, self.describe(), self.warnings,
                          self._audio.losses if self._audio is not None else [])

    def describe(self) -> str:
        w, h = self.size
        tags = {1: "bt709", 6: "bt601"}.get(self._colour.get("colorspace", -1), "")
        if self._colour.get("color_range") == 2:
            tags = f"{tags} full range".strip()
        seconds = max(self._end, 1e-9)
        parts = [self.encoding.describe(), f"{self._pix}" + (f" {tags}" if tags else ""),
                 f"{w}x{h}", "encoder's own threads" if self.encoding.codec.own_threads
                 else f"{_CORES} threads",
                 f"{self._bytes * 8 / seconds / 1e6:.2f} Mb/s"]
        if self._audio is not None:
            parts.append(f"sound {self._audio.describe}")
        return ", ".join(parts)

    def keep(self) -> Path | None:
        """A playable file of the frames so far (with their sound), at its temporary name."""
        if self.frames == 0:
            self.abort()
            return None
        try:
            self._finalise()
        except OutputError as e:
            self.warnings.append(str(e))
        return self.dest.keep()

    def _verify(self) -> None:
        """Demux what was written: every frame is there, the first decodes at its size."""
        av = libav()

        assert self.tmp is not None
        problem = None
        try:
            with av.open(str(self.tmp)) as written:
                stream = written.streams.video[0]
                first = next(written.decode(stream), None)
                count = stream.frames if self.encoding.container in ("mp4", "mov") else 0
            if not count:  # Matroska, WebM and AVI say no count: every packet is counted
                with av.open(str(self.tmp)) as written:
                    count = sum(1 for packet in written.demux(written.streams.video[0])
                                if packet.size)
        except (av.FFmpegError, OSError, IndexError) as e:
            problem = f"the file does not read back ({_why(e)})"
        else:
            if first is None or (first.width, first.height) != self.size:
                problem = "the file does not decode at the size written"
            elif count != self.frames:
                problem = f"{count} frames readable, {self.frames} written"
        if problem is None:
            return
        kept = self.dest.keep()  # what was written stays, for a look, under the name given
        raise OutputError(f"{self.final}: output verification failed: {problem}; "
                          f"kept as {kept}")


def _why(e: BaseException) -> str:
    """A failure in words: ours for a full disk or a file-size limit, else FFmpeg's."""
    import errno

    code = getattr(e, "errno", None)
    if code == errno.ENOSPC:
        return "no space left on device"
    if code == errno.EFBIG:
        return "file size limit reached"
    text = getattr(e, "strerror", None) or str(e)
    return str(text).rstrip(".")
