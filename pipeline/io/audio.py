"""An input's sound track carried into a video output, kept in step with the frames written.

The first audio stream of the input file is copied packet for packet when the output's
container takes its codec (AAC or MP3 in MP4, AC-3 in Matroska, ...), and decoded and
re-encoded otherwise (AAC for MP4/MOV, Opus for WebM and Matroska, MP3 for AVI). It is
interleaved as the video is written: ``until(t)`` writes the sound up to ``t`` seconds of
the output's clock, so a run cut short (``--max-frames``, a signal, a lost source) keeps
its sound up to its last frame and no further. Times are the video stream's: sound is
shifted by the video's start time, as OpenCV's frame times are.

Sound that cannot be read, decoded or written never fails a run: it stops there, with a
warning, and the video goes on.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .codecs import Encoding


class _Undecodable(Exception):
    """A sound packet the decoder refused."""


def _reason(e: BaseException) -> str:
    """FFmpeg's words for a failure, without its errno and function name."""
    return str(getattr(e, "strerror", None) or e).rstrip(".")


class AudioTrack:
    """The input's sound, copied or re-encoded into ``output`` (an open PyAV container)."""

    def __init__(self, source: Any, stream: Any, output: Any, encoding: Encoding,
                 offset: float, name: str) -> None:
        self.name = name
        self.input = source
        self.stream = stream
        self.offset = offset  # the video's start, seconds of the input's clock
        self.warnings: list[str] = []
        codec = stream.codec_context.codec.canonical_name  # mp3, not its decoder mp3float
        copy = encoding.audio_copy
        self.copied = codec in output.supported_codecs and (copy is None or codec in copy)
        if self.copied:
            self.out = output.add_stream_from_template(stream)
            self.describe = f"{codec} (copied)"
        else:
            target = encoding.audio_codec
            rate = stream.rate if target == "aac" else 48000  # Opus and MP3 at 48 kHz
            self.out = output.add_stream(target, rate=rate)
            self.out.layout = "stereo" if stream.layout.nb_channels >= 2 else "mono"
            self.describe = f"{self.out.codec_context.codec.canonical_name} (re-encoded from " \
                f"{codec})"
        self._packets = source.demux(stream)
        self._pending: Any = None  # a packet read but not yet due
        self._done = False
        self.written = 0.0  # seconds of sound written (the end of the last packet)

    def _seconds(self, pts: int | None) -> float | None:
        if pts is None:
            return None
        return float(pts * self.stream.time_base) - self.offset

    def until(self, end: float, mux: Any) -> None:
        """Write the sound that starts before ``end`` seconds (of the output's clock).
        Copied packets keep an encoder's priming (negative times: the muxer's edit list
        hides it, as ffmpeg's does)."""
        while not self._done:
            packet = self._pending or self._next()
            if packet is None:
                return
            start = self._seconds(packet.pts)
            if start is not None and start >= end:
                self._pending = packet
                return
            self._pending = None
            if start is None:
                continue  # untimed: nowhere to put it
            try:
                self._write(packet, mux)
            except _Undecodable as e:
                self._stop(f"its sound cannot be decoded after {self.written:.1f} s ({e})")
            except Exception as e:  # noqa: BLE001 - the sound stops, the video goes on
                self._stop(f"cannot write its sound after {self.written:.1f} s "
                           f"({_reason(e)})")

    def _next(self) -> Any:
        try:
            while True:
                packet = next(self._packets)
                if packet.size:  # the demuxer's final empty packet carries nothing
                    return packet
        except StopIteration:
            self._done = True
        except Exception as e:  # noqa: BLE001 - a damaged sound track
            self._stop(f"its sound cannot be read after {self.written:.1f} s ({_reason(e)})")
        return None

    def _write(self, packet: Any, mux: Any) -> None:
        start = self._seconds(packet.pts) or 0.0
        if self.copied:
            shift = round(self.offset / self.stream.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self.out
            mux(packet)
        else:
            try:
                frames = packet.decode()
            except Exception as e:  # noqa: BLE001 - a damaged packet
                raise _Undecodable(_reason(e)) from None
            for frame in frames:
                if frame.pts is not None:
                    t = float(frame.pts * frame.time_base) - self.offset
                    if t + frame.samples / frame.sample_rate <= 0:
                        continue  # wholly before the first frame (an encoder's priming)
                    frame.time_base = Fraction(1, frame.sample_rate)
                    frame.pts = max(round(t * frame.sample_rate), 0)
                for out in self.out.encode(frame):
                    mux(out)
        self.written = max(self.written, start + float((packet.duration or 0)
                                                       * self.stream.time_base))

    def finish(self, end: float, mux: Any) -> None:
        """The sound up to ``end`` seconds, the encoder flushed; the input closed."""
        self.until(end, mux)
        if not self.copied:
            try:
                for out in self.out.encode(None):
                    mux(out)
            except Exception as e:  # noqa: BLE001
                self._stop(f"cannot finish its sound ({_reason(e)})")
        self.close()

    def _stop(self, why: str) -> None:
        self._done = True
        self.warnings.append(f"{self.name}: {why}; the video goes on without it")

    def close(self) -> None:
        self._done = True
        try:
            self.input.close()
        except Exception:  # noqa: BLE001, S110 - closing a reader never matters
            pass
