"""What a video output is encoded as: the one declaration of ``codec``, ``crf``, ``preset``
and ``audio`` (``--codec``/``--crf``/``--preset``/``--no-audio``, YAML ``output:``), the
defaults by extension, and the checks a choice must pass before anything is opened.

Defaults are the ones a user of ffmpeg expects of an extension: ``.mp4``/``.mov`` H.264
(yuv420p, the index at the front), ``.webm`` VP9 (+ Opus), ``.mkv`` FFV1 (lossless),
``.avi`` MJPEG. Quality and speed defaults, and why: README "Video files".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import PurePath

from ..options import OptionError
from .libav import libav

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class Codec:
    """One codec a user may name: the FFmpeg encoder behind it and what it accepts.

    ``quality`` is what ``--crf`` sets: ``crf`` (constant rate factor, x264/x265/VP9/
    SVT-AV1) or ``qscale`` (the fixed quantiser of ``-q:v``, MPEG-4 Part 2 and MJPEG), or
    None for a lossless codec. ``presets`` map a preset name to the encoder's options.
    """

    name: str
    encoder: str
    what: str
    quality: str | None = None
    crf_range: tuple[int, int] | None = None
    crf: int | None = None
    presets: dict[str, dict[str, str]] | None = None
    preset: str | None = None
    pix_fmt: str = "yuv420p"  # colour frames (gray ones: ``gray_fmt`` where there is one)
    gray_fmt: str | None = None
    max_time_base: int | None = None  # the largest time-base denominator it takes
    # encoder options it always gets (x265 kept off stderr, FFV1's version and slices)
    fixed: tuple[tuple[str, str], ...] = ()
    thread_type: str = "AUTO"  # libavcodec's threading: frames and slices, or slices only
    # threads: 0 lets the encoder size its own pool. x264 then runs 3 frame threads and
    # lookahead on 2 cores: 300 720p frames, veryfast, in 1.81 s wall and 3.35 s CPU where
    # 2 threads took 2.19 s and 3.70 s (it overlaps better and waits less). Others: a thread
    # a core (libavcodec's own slice and frame threads).
    own_threads: bool = False

    @property
    def subsampled(self) -> bool:
        """4:2:0 chroma: the frame needs an even width and height."""
        return self.pix_fmt.endswith("420p")


CODECS = {c.name: c for c in (
    Codec("h264", "libx264", "H.264 (x264): plays everywhere, browsers included", "crf",
          (0, 51), 23, {p: {"preset": p} for p in X26X_PRESETS}, "veryfast",
          own_threads=True),
    Codec("hevc", "libx265", "H.265 (x265): smaller files, slower, fewer browsers", "crf",
          (0, 51), 28, {p: {"preset": p} for p in X26X_PRESETS}, "veryfast",
          fixed=(("x265-params", "log-level=error"),), own_threads=True),
    Codec("vp9", "libvpx-vp9", "VP9 (libvpx): WebM for browsers", "crf", (0, 63), 31,
          {"realtime": {"deadline": "realtime", "cpu-used": "8"},
           "good": {"deadline": "good", "cpu-used": "4"},
           "best": {"deadline": "best", "cpu-used": "0"}}, "realtime"),
    Codec("av1", "libsvtav1", "AV1 (SVT-AV1): smallest files", "crf", (0, 63), 35,
          {str(p): {"preset": str(p)} for p in range(14)}, "10"),
    Codec("ffv1", "ffv1", "FFV1: lossless, every pixel exactly as computed",
          pix_fmt="bgr0", gray_fmt="gray", fixed=(("level", "3"), ("slices", "4")),
          thread_type="SLICE"),
    Codec("mpeg4", "mpeg4", "MPEG-4 Part 2: old players (--crf is its quantiser, -q:v)",
          "qscale", (1, 31), 5, max_time_base=65535),
    Codec("mjpeg", "mjpeg", "Motion JPEG: every frame a JPEG (--crf is its quantiser)",
          "qscale", (2, 31), 3, pix_fmt="yuvj420p"),
)}

# extension -> (FFmpeg muxer, default video codec, audio codec when the input's cannot be
# copied, audio codecs copied as they are (None: whatever the muxer takes)). An .mp4 is
# handed on to browsers: it copies only what they play there (AC-3 copied into an .mp4
# played silent in Chromium); ``--audio copy`` copies whatever the muxer takes.
CONTAINERS = {
    ".mp4": ("mp4", "h264", "aac", {"aac", "mp3", "flac", "opus"}),
    ".mov": ("mov", "h264", "aac", {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le",
                                    "pcm_s24le"}),
    ".webm": ("webm", "vp9", "libopus", {"opus", "vorbis"}),
    ".mkv": ("matroska", "ffv1", "libopus", None),
    ".avi": ("avi", "mjpeg", "libmp3lame", {"mp3", "ac3", "pcm_s16le", "pcm_u8"}),
}
FLAGS = {"codec": "--codec", "crf": "--crf", "preset": "--preset", "audio": "--audio"}
AUDIO = ("auto", "copy", "none")  # --audio: copied where browsers play it, always, never


@dataclass(frozen=True)
class VideoSettings:
    """What the user chose for a video output; None leaves the default of the extension.

    ``given`` names the fields that came from the command line (their errors name the
    flag); the others came from the config (their errors name ``output.<field>``).
    """

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    audio: bool | str | None = None  # None/True: auto, False: none, "copy"
    given: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.codec is not None and not isinstance(self.codec, str):
            raise OptionError(f"{self.label('codec')}: expected a codec name, got "
                              f"{self.codec!r}", "codec", self.codec)
        if self.crf is not None and (isinstance(self.crf, bool) or
                                     not isinstance(self.crf, int)):
            raise OptionError(f"{self.label('crf')}: expected a whole number, got "
                              f"{self.crf!r}", "crf", self.crf)
        if isinstance(self.preset, int) and not isinstance(self.preset, bool):
            object.__setattr__(self, "preset", str(self.preset))  # SVT-AV1's presets: 0..13
        if self.preset is not None and not isinstance(self.preset, str):
            raise OptionError(f"{self.label('preset')}: expected a preset name, got "
                              f"{self.preset!r}", "preset", self.preset)
        if isinstance(self.audio, str) and self.audio in AUDIO:  # the words of --audio
            object.__setattr__(self, "audio", {"auto": None, "copy": "copy",
                                               "none": False}[self.audio])
        if self.audio is not None and not isinstance(self.audio, bool) and \
                self.audio != "copy":
            raise OptionError(f"{self.label('audio')}: expected {' | '.join(AUDIO)} (or true, "
                              f"false), got {self.audio!r}", "audio", self.audio)

    @classmethod
    def from_flags(cls, codec: str | None = None, crf: int | None = None,
                   preset: str | None = None, audio: bool | str | None = None
                   ) -> VideoSettings:
        """Settings from the command line: each one given is named by its flag."""
        values = {"codec": codec, "crf": crf, "preset": preset, "audio": audio}
        return cls(**values, given=frozenset(k for k, v in values.items() if v is not None))

    def over(self, base: VideoSettings | None) -> VideoSettings:
        """These settings, with ``base``'s where these leave one unset."""
        if base is None:
            return self
        chosen = {f.name: getattr(self, f.name) if getattr(self, f.name) is not None
                  else getattr(base, f.name) for f in fields(self) if f.name != "given"}
        return replace(self, **chosen, given=self.given)

    def chosen(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self) if f.name != "given")

    def label(self, name: str) -> str:
        return FLAGS[name] if name in self.given else f"output.{name}"


@dataclass(frozen=True)
class OutputTarget:
    """A config's ``output:``: a path, and the codec settings of its mapping form
    ``{path, codec, crf, preset, audio}`` (checked against the path's container)."""

    path: str
    settings: VideoSettings

    @classmethod
    def parse(cls, value: dict) -> OutputTarget:
        names = {f.name for f in fields(VideoSettings)} - {"given"}
        unknown = sorted(set(map(str, value)) - names - {"path"})
        if unknown:
            raise OptionError(f"output.{unknown[0]}: unknown field; expected path, "
                              f"{', '.join(sorted(names))}", unknown[0])
        path = value.get("path")
        if not isinstance(path, str) or not path:
            raise OptionError("output.path: a mapping output needs path: FILE", "path", path)
        settings = VideoSettings(**{k: v for k, v in value.items() if k != "path"})
        if settings.chosen():
            resolve(path, settings)
        return cls(path, settings)


@dataclass(frozen=True)
class Encoding:
    """A checked choice for one output file."""

    container: str  # FFmpeg's muxer name
    codec: Codec
    crf: int | None
    preset: str | None
    audio: bool
    audio_codec: str  # when the input's sound must be re-encoded
    audio_copy: frozenset[str] | None  # codecs copied (None: whatever the muxer takes)
    audio_forced: bool = False  # --audio copy

    def options(self) -> dict[str, str]:
        """The encoder's private options (libx264's crf and preset, ...)."""
        out: dict[str, str] = dict(self.codec.fixed)
        if self.codec.quality == "crf" and self.crf is not None:
            out["crf"] = str(self.crf)
            if self.codec.name == "vp9":
                out["b"] = "0"  # constant quality: CRF alone, no bit-rate target
        if self.codec.presets and self.preset is not None:
            out.update(self.codec.presets[self.preset])
        if self.codec.name == "vp9":
            out["row-mt"] = "1"
        return out

    def describe(self) -> str:
        parts = [self.codec.name]
        if self.crf is not None:
            parts.append(f"{'crf' if self.codec.quality == 'crf' else 'q'} {self.crf}")
        if self.preset is not None:
            parts.append(f"preset {self.preset}")
        return " ".join(parts)


def video_extensions() -> tuple[str, ...]:
    return tuple(CONTAINERS)


def is_video(path: str) -> bool:
    return PurePath(str(path)).suffix.lower() in CONTAINERS


def resolve(path: str, settings: VideoSettings | None = None) -> Encoding:
    """The encoding of a video output at ``path``; OptionError (exit 2) naming the flag or
    field for an unknown codec, one the container cannot hold or this machine cannot
    encode, a CRF out of range, or an unknown preset."""
    settings = settings or VideoSettings()
    ext = PurePath(str(path)).suffix.lower()
    if ext not in CONTAINERS:
        given = sorted(settings.given) or ["codec"]
        raise OptionError(f"{settings.label(given[0])}: {path} is not a video file; codec "
                          f"settings apply to {' '.join(CONTAINERS)}", given[0])
    muxer, default, audio_codec, copy = CONTAINERS[ext]
    name = (settings.codec or default).lower()
    if name not in CODECS:
        raise OptionError(f"{settings.label('codec')}: unknown codec {settings.codec!r}; "
                          f"expected one of {', '.join(CODECS)}", "codec", settings.codec)
    codec = CODECS[name]
    if codec.encoder not in encoders_here():
        raise OptionError(f"{settings.label('codec')}: {name} ({codec.encoder}) cannot be "
                          "encoded by this machine's PyAV (see `pipeline codecs`)", "codec",
                          name)
    if codec.encoder not in muxer_codecs(muxer) and name not in muxer_codecs(muxer):
        holds = [c for c, spec in CODECS.items()
                 if spec.encoder in muxer_codecs(muxer) or c in muxer_codecs(muxer)]
        raise OptionError(f"{settings.label('codec')}: {ext} cannot hold {name}; it takes "
                          f"{', '.join(holds)}", "codec", name)
    crf = settings.crf
    if crf is not None:
        if codec.crf_range is None:
            raise OptionError(f"{settings.label('crf')}: {name} is lossless and takes no "
                              "CRF", "crf", crf)
        lo, hi = codec.crf_range
        if not lo <= crf <= hi:
            raise OptionError(f"{settings.label('crf')}: {crf} is out of {name}'s range "
                              f"{lo}..{hi}", "crf", crf)
    preset = settings.preset
    if preset is not None:
        if not codec.presets:
            raise OptionError(f"{settings.label('preset')}: {name} takes no preset", "preset",
                              preset)
        if str(preset) not in codec.presets:
            raise OptionError(f"{settings.label('preset')}: unknown preset {preset!r} for "
                              f"{name}; expected one of {', '.join(codec.presets)}", "preset",
                              preset)
    forced = settings.audio == "copy"
    return Encoding(muxer, codec, codec.crf if crf is None else crf,
                    codec.preset if preset is None else str(preset),
                    settings.audio is not False, audio_codec,
                    None if copy is None or forced else frozenset(copy), forced)


@cache
def encoders_here() -> frozenset[str]:
    """The encoders this machine's PyAV (its FFmpeg libraries) has."""
    av = libav()

    return frozenset(av.codecs_available)


@cache
def muxer_codecs(muxer: str) -> frozenset[str]:
    """The codecs FFmpeg's ``muxer`` can hold (avformat_query_codec), asked of an
    in-memory container: no file is touched."""
    av = libav()

    with av.open(io.BytesIO(), "w", format=muxer) as probe:
        return frozenset(probe.supported_codecs)


def listing() -> list[tuple[str, str, str, str, str, str]]:
    """``pipeline codecs``: name, encoder (and whether this machine has it), containers,
    CRF range and default, presets and default, what it is."""
    rows = []
    for name, codec in CODECS.items():
        here = codec.encoder in encoders_here()
        holds = [ext for ext, (muxer, *_) in CONTAINERS.items()
                 if codec.encoder in muxer_codecs(muxer) or name in muxer_codecs(muxer)]
        crf = "lossless" if codec.crf_range is None else \
            f"{codec.crf_range[0]}..{codec.crf_range[1]} ({codec.crf})"
        if codec.presets and len(codec.presets) > 4:
            presets = f"{next(iter(codec.presets))}..{list(codec.presets)[-1]} ({codec.preset})"
        elif codec.presets:
            presets = f"{', '.join(codec.presets)} ({codec.preset})"
        else:
            presets = "-"
        rows.append((name, codec.encoder + ("" if here else " (missing here)"),
                     " ".join(holds), crf, presets, codec.what))
    return rows
