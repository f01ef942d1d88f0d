"""Frame sinks behind one protocol, chosen by the output's extension.

``open(shape, fps, origin)`` sizes the sink from the chain's declared output and raises
OutputError before the first frame if it cannot work; ``write(frame, pts)`` never fails
silently; ``close()`` finalises (release, verify, rename) and returns what was written;
``abort()`` removes anything partial. Files are written under a temporary name of this
run's own in the destination folder (destination.py: ``<stem>.<token>.partial<ext>``,
the destination locked meanwhile) and only renamed once complete: the final path never
holds half a file, and no one else's file is ever touched.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from ..options import OptionError
from .base import FrameSink, Shape, SinkResult, StreamSink
from .codecs import VideoSettings, is_video, resolve, video_extensions
from .video import FileSink, VideoFileSink


class ImageSink(FileSink):
    """One image per frame: a folder (``00000.png`` …) or a printf pattern (``f_%05d.jpg``).

    The images go to a temporary folder of this run's own beside them and move into
    place when the run ends well: a run that fails (disk full) leaves none of its images,
    and a folder it made for them goes too.
    """

    def __init__(self, spec: str, force: bool = False, inputs: list[str] | None = None,
                 token: str | None = None) -> None:
        self.spec = spec  # as written: Path() would drop a trailing "/" (= "make this folder")
        if "%" in spec:
            self.pattern = spec
        else:
            self.pattern = os.path.join(spec, "%05d.png")
        self.folder = Path(self.pattern).parent
        super().__init__(self.pattern, force, inputs, token)
        self._made: Path | None = None  # the output folder, when this run created it

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        if not self.folder.exists() and self.spec.endswith(("/", os.sep)):
            try:
                self.folder.mkdir(parents=True)
            except OSError as e:
                raise OutputError(f"cannot create {self.folder}: {e.strerror}") from None
            self._made = self.folder
        if not self.folder.is_dir():
            raise OutputError(f"cannot create {self.pattern}: no such directory {self.folder}")
        first = Path(self.pattern % 0)
        if first.exists() and not self.dest.force:
            raise OutputError(f"{first}: exists (use --force to replace it)")
        if not os.access(self.folder, os.W_OK):
            raise OutputError(f"cannot create {self.pattern}: permission denied")
        ext = Path(self.pattern).suffix.lower()
        if not cv2.haveImageWriter(f"x{ext}"):
            raise OutputError(f"{self.pattern}: OpenCV cannot write {ext} images")
        self.dest.claim(folder=True)

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        assert self.tmp is not None
        name = os.path.basename(self.pattern % self.frames)
        ok, data = cv2.imencode(Path(name).suffix, frame)
        if not ok:
            raise OutputError(f"{name}: cannot encode {Path(name).suffix}")
        try:
            (self.tmp / name).write_bytes(data.tobytes())
        except OSError as e:
            raise OutputError(f"{self.pattern}: write failed after {self.frames} images: "
                              f"{e.strerror}") from None
        self.frames += 1

    def close(self) -> SinkResult:
        assert self.tmp is not None
        for i in range(self.frames):
            name = os.path.basename(self.pattern % i)
            os.replace(self.tmp / name, self.folder / name)
        self.dest.discard()  # the emptied temporary folder
        return SinkResult(self.pattern, self.frames, "images", self.warnings)

    def keep(self) -> Path | None:
        """A failed source: the images so far stay in the temporary folder, named."""
        if self.frames == 0:
            self.abort()
            return None
        return self.dest.keep()

    def abort(self) -> None:
        self.dest.discard()
        if self._made is not None:
            try:
                self._made.rmdir()  # only if still empty: nothing else is ever removed
            except OSError:
                pass
            self._made = None


class NpySink(FileSink):
    """``.npy`` of the float results ``(N, H', W', C)``, written frame by frame.

    The header reserves room for N, so the file streams to disk and is rewritten once
    at the end with the true count; numpy.load reads it like any other.
    """

    wants = "float"
    _RESERVED = 10**15  # the placeholder N, wider than any real one

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        self.shape = shape
        self._file = open(self.dest.claim(), "r+b")  # noqa: SIM115 - closed in close()/abort()
        self._dtype: np.dtype | None = None
        self._header_len = 0

    def _header(self, n: int) -> bytes:
        assert self._dtype is not None
        d = {"descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False,
             "shape": (n, *self.shape)}
        text = repr(d)
        if self._header_len:  # the rewrite pads to exactly the reserved length
            body = text.ljust(self._header_len - 10 - 1) + "\n"
        else:
            body = text.ljust(((len(text) + 11 + 63) // 64) * 64 - 10 - 1) + "\n"
        assert ast.literal_eval(body.strip()) == d
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        if frame.shape != self.shape:
            raise OutputError(f"{self.final}: frame {frame.shape} does not match {self.shape}")
        if self._dtype is None:
            self._dtype = frame.dtype
            header = self._header(self._RESERVED)
            self._header_len = len(header)
            self._file.write(header)
        try:
            self._file.write(np.ascontiguousarray(frame, dtype=self._dtype).data)
        except OSError as e:
            raise OutputError(f"{self.final}: write failed after {self.frames} frames: "
                              f"{e.strerror}") from None
        self.frames += 1

    def _release(self) -> None:
        if getattr(self, "_file", None) is not None and not self._file.closed:
            self._file.close()

    def _finalise(self) -> bool:
        """The true frame count into the header; False (file removed) if there are none."""
        if self.frames == 0:
            self.abort()
            return False
        self._file.seek(0)
        self._file.write(self._header(self.frames))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._release()
        return True

    def close(self) -> SinkResult:
        if not self._finalise():
            return SinkResult(self.name, 0, "no frames written; no file left", self.warnings)
        self.dest.commit()
        return SinkResult(self.name, self.frames, f"{self._dtype} {self.shape}", self.warnings)

    def keep(self) -> Path | None:
        """A readable .npy of the frames so far, left at its .partial name."""
        if not self._finalise():
            return None
        return self.dest.keep()


class NullSink(StreamSink):
    """Discards everything (timing runs)."""

    name = "null"

    def __init__(self) -> None:
        self.frames = 0

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        pass

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        self.frames += 1

    def close(self) -> SinkResult:
        return SinkResult(self.name, self.frames)


class MemorySink(StreamSink):
    """Keeps every frame in a list (tests, notebooks); ``wants`` float or uint8."""

    name = "memory"

    def __init__(self, wants: str = "float") -> None:
        self.wants = wants
        self.frames: list[np.ndarray] = []

    def open(self, shape: Shape, fps: float, origin: str | None = None) -> None:
        self.shape, self.fps = shape, fps

    def write(self, frame: np.ndarray, pts: float | None = None) -> None:
        self.frames.append(np.array(frame))

    def close(self) -> SinkResult:
        return SinkResult(self.name, len(self.frames))


def open_sink(spec: str | None, force: bool = False, inputs: list[str] | None = None,
              token: str | None = None, settings: VideoSettings | None = None) -> FrameSink:
    """The sink an ``--output`` value names (not opened yet); ``token`` names its
    temporary file (destination.py), else a random one; ``settings`` (codec, CRF, preset,
    sound) are checked here, before anything is opened (OptionError, exit 2)."""
    if spec is None or spec in ("null", "-"):
        if settings is not None and settings.chosen():
            name = sorted(settings.given or {"codec"})[0]
            raise OptionError(f"{settings.label(name)}: there is no video output to apply "
                              "it to (add -o FILE.mp4)", name)
        return NullSink()
    suffix = Path(spec).suffix.lower()
    if is_video(spec):
        return VideoFileSink(spec, force, inputs, token, settings)
    if settings is not None and settings.chosen():
        resolve(spec, settings)  # raises: codec settings on a file that is not a video
    if suffix == ".npy":
        return NpySink(spec, force, inputs, token)
    if "%" in spec or spec.endswith(("/", os.sep)) or \
            (os.path.exists(spec) and stat.S_ISDIR(os.stat(spec).st_mode)):
        return ImageSink(spec, force, inputs, token)
    raise OutputError(f"{spec}: unknown output type {suffix or '(no extension)'!r}; expected "
                      f"{' '.join(video_extensions())} .npy, a folder/ or a pattern like "
                      "f_%05d.png")
