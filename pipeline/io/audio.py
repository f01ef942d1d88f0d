"""An input's sound track carried into a video output, kept in step with the frames written.

The first audio stream of the input file is copied packet for packet when the output's
container takes its codec and a browser plays it there (MP4: AAC, MP3, Opus, FLAC; WebM:
Opus, Vorbis; Matroska: anything; ``codecs.CONTAINERS``), or always where the container
takes it with ``--audio copy``; otherwise it is decoded, resampled to what the encoder
takes (rate, sample format, layout: Opus only takes 48 kHz, and 44.1 kHz AAC into WebM
wrote 0.07 s of 6 s before) and re-encoded (AAC for MP4/MOV, Opus for WebM and Matroska,
MP3 for AVI). It is interleaved as the video is written: ``until(t)`` writes the sound up
to ``t`` seconds of the output's clock, so a run cut short (``--max-frames``, a signal, a
lost source) keeps its sound up to its last frame and no further. Times are the video
stream's: sound is shifted by the video's start time, as OpenCV's frame times are.

Sound never vanishes silently: a packet the decoder refuses is skipped and counted (a
truncated first AC-3 packet left a WebM with no sound at all before), like a corrupt
video frame; sound that cannot be read or written stops with a warning and the video goes
on; and the summary says what was written, in seconds and packets.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .codecs import Encoding
from .libav import libav


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
        self.codec = stream.codec_context.codec.canonical_name  # mp3, not its decoder mp3float
        held = self.codec in output.supported_codecs
        self.copied = held and (encoding.audio_copy is None or self.codec in encoding.audio_copy)
        if self.copied:
            self.out = output.add_stream_from_template(stream)
            self.how = f"{self.codec} (copied)"
        else:
            if encoding.audio_forced:
                self.warnings.append(f"{name}: --audio copy: {self.codec} cannot be copied "
                                     f"into this container; re-encoded")
            self.out, self._resampler = _encoder(output, encoding.audio_codec, stream)
            self.how = f"{self.out.codec_context.codec.canonical_name} (re-encoded from " \
                f"{self.codec})"
        self._packets = source.demux(stream)
        self._pending: Any = None  # a packet read but not yet due
        self._done = False
        self._next_pts: int | None = None  # the encoder's next sample (re-encoding)
        self.written = 0.0  # seconds of the input's sound read and passed on
        self.packets = 0  # packets muxed into the output
        self.seconds = 0.0  # the end of the last of them, seconds of the output's clock
        self.skipped = 0  # undecodable packets
        self.skipped_s = 0.0  # their seconds
        self.read_s = 0.0  # seconds of the packets given to the decoder, and ...
        self.decoded_s = 0.0  # ... of the samples it gave back (a packet may give none)

    @property
    def describe(self) -> str:
        """What was written: the codec and how, its seconds and packets (none: why)."""
        if not self.packets:
            return f"none written ({self.how} gave no sound)"
        return f"{self.how}, {self.seconds:.2f} s in {self.packets} packets"

    @property
    def losses(self) -> list[str]:
        """Sound lost on the way in (``--strict``): packets the decoder refused, and
        seconds of packets that gave it no samples (a damaged packet it took silently)."""
        lost = [f"{self.skipped} undecodable sound packet{'s' * (self.skipped != 1)} "
                f"skipped ({self.skipped_s:.2f} s)"] if self.skipped else []
        silent = self.read_s - self.skipped_s - self.decoded_s
        if silent > 0.1:  # more than the few milliseconds a decoder may hold back
            lost.append(f"{silent:.2f} s of sound packets decoded to nothing")
        return lost

    def _seconds(self, pts: int | None) -> float | None:
        if pts is None:
            return None
        return float(pts * self.stream.time_base) - self.offset

    def until(self, end: float, mux: Any) -> None:
        """Write the sound that starts before ``end`` seconds (of the output's clock).
        Copied packets keep an encoder's priming (negative times: the muxer's edit list
        hides it, as ffmpeg's does)."""
        counted = lambda p: self._mux(p, mux)  # noqa: E731 - each packet written is counted
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
                self._write(packet, counted)
            except Exception as e:  # noqa: BLE001 - the sound stops, the video goes on
                self._stop(f"cannot write its sound after {self.written:.1f} s "
                           f"({_reason(e)})")

    def _mux(self, packet: Any, mux: Any) -> None:
        mux(packet)
        self.packets += 1
        if packet.pts is not None:
            self.seconds = max(self.seconds, float((packet.pts + (packet.duration or 0))
                                                   * packet.time_base))

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
        length = float((packet.duration or 0) * self.stream.time_base)
        if self.copied:
            shift = round(self.offset / self.stream.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self.out
            mux(packet)
        else:
            self.read_s += length
            try:
                frames = packet.decode()
            except Exception:  # noqa: BLE001 - a damaged packet: skipped, counted
                self.skipped += 1
                self.skipped_s += length
                return
            for frame in frames:
                self.decoded_s += frame.samples / frame.sample_rate
                self._encode(frame, mux)
        self.written = max(self.written, start + length)

    def _encode(self, frame: Any, mux: Any) -> None:
        """One decoded frame resampled for the encoder, timed on the output's clock: the
        samples follow one another, and where the input's times jump ahead (a packet
        skipped) so do the output's, keeping the sound in step with the frames."""
        if frame.pts is not None:
            t = float(frame.pts * frame.time_base) - self.offset
            if t + frame.samples / frame.sample_rate <= 0:
                return  # wholly before the first frame (an encoder's priming)
            due = max(round(t * self.out.rate), 0)
            if self._next_pts is None or due - self._next_pts > self.out.rate // 50:
                self._next_pts = due  # the start, or a gap of more than 20 ms
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._send(out, mux)

    def _send(self, frame: Any, mux: Any) -> None:
        frame.pts = self._next_pts or 0
        frame.time_base = Fraction(1, self.out.rate)
        self._next_pts = frame.pts + frame.samples
        for out in self.out.encode(frame):
            mux(out)

    def finish(self, end: float, mux: Any) -> None:
        """The sound up to ``end`` seconds, the encoder flushed; the input closed."""
        self.until(end, mux)
        if not self.copied:
            try:
                for frame in self._resampler.resample(None):
                    self._send(frame, lambda p: self._mux(p, mux))
                for out in self.out.encode(None):
                    self._mux(out, mux)
            except Exception as e:  # noqa: BLE001
                self._stop(f"cannot finish its sound ({_reason(e)})")
        for loss in self.losses:
            self.warnings.append(f"{self.name}: {loss}; the rest of its sound kept")
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


def _encoder(output: Any, codec: str, stream: Any) -> tuple[Any, Any]:
    """An output stream of ``codec`` for ``stream``'s sound, and the resampler that makes
    decoded frames what it takes: the input's rate where the encoder has it (else 48 kHz,
    or the nearest it has), its first sample format, mono or stereo."""
    av = libav()

    encoder = av.codec.Codec(codec, "w")
    rates = list(encoder.audio_rates or [])
    rate = stream.rate if not rates or stream.rate in rates else \
        48000 if 48000 in rates else min(rates, key=lambda r: abs(r - stream.rate))
    layout = "stereo" if stream.layout.nb_channels >= 2 else "mono"
    out = output.add_stream(codec, rate=rate)
    out.layout = layout
    sample_format = encoder.audio_formats[0].name if encoder.audio_formats else None
    if sample_format is not None:
        out.format = sample_format
    return out, av.AudioResampler(format=sample_format, layout=layout, rate=rate)
