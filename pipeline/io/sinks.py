"""Frame sinks behind one protocol, chosen by the output's extension.

``open(shape, fps)`` sizes the sink from the chain's declared output and raises
OutputError before the first frame if it cannot work; ``write(frame)`` never fails
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
from .base import FrameSink, Shape, SinkResult, StreamSink
from .destination import Destination

CONTAINERS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}


class _FileSink:
    wants = "uint8"

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


class VideoFileSink(_FileSink):
    """``.mp4`` (mp4v), ``.avi`` (MJPG), ``.mkv`` (FFV1, lossless) through cv2.VideoWriter."""

    def __init__(self, path: str | os.PathLike[str], force: bool = False,
                 inputs: list[str] | None = None, token: str | None = None) -> None:
        super().__init__(path, force, inputs, token)
        self.codec = CONTAINERS[self.final.suffix.lower()]
        self._writer: cv2.VideoWriter | None = None
        self._expect: Shape | None = None
        self._pad = (0, 0)

    def open(self, shape: Shape, fps: float) -> None:
        h, w, c = shape
        if c not in (1, 3):
            raise OutputError(f"{self.final}: video frames need 1 or 3 channels, got {c}")
        self._expect = shape
        # Every OpenCV/FFmpeg encoder here rounds odd sizes down, silently: pad instead.
        self._pad = (max(2, h + h % 2) - h, max(2, w + w % 2) - w)
        if any(self._pad):
            self.warnings.append(
                f"{self.final}: {w}x{h} padded to {w + self._pad[1]}x{h + self._pad[0]} "
                "(the encoder needs an even size; the edge pixels are repeated)")
        self.dest.claim()
        size = (w + self._pad[1], h + self._pad[0])
        # Gray results go in as gray: no BGR copy, and the encoder's colour conversion is
        # skipped (FFV1 at 720p: 24 ms a frame instead of 41; mp4v 9.7 instead of 12.5).
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.codec),
                                       float(fps), size, isColor=c == 3)
        if not self._writer.isOpened():
            self.abort()
            raise OutputError(f"{self.final}: OpenCV cannot write {self.codec} into "
                              f"{self.final.suffix} at {size[0]}x{size[1]}, {fps:g} fps")
        self.size = size

    def write(self, frame: np.ndarray) -> None:
        assert self._writer is not None and self._expect is not None
        if frame.shape != self._expect or frame.dtype != np.uint8:
            raise OutputError(f"{self.final}: frame {frame.shape} {frame.dtype} does not "
                              f"match the writer's {self._expect} uint8")
        if frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if any(self._pad):
            frame = cv2.copyMakeBorder(frame, 0, self._pad[0], 0, self._pad[1],
                                       cv2.BORDER_REPLICATE)
        if self._writer.write(frame) is False:
            raise OutputError(f"{self.final}: write failed after {self.frames} frames "
                              f"({_why_write_failed(self.tmp)})")
        self.frames += 1

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def close(self) -> SinkResult:
        self._release()
        if self.frames == 0:
            self.abort()
            return SinkResult(self.name, 0, "no frames written; no file left",
                              self.warnings)
        self._verify()
        self.dest.commit()
        w, h = self.size
        return SinkResult(self.name, self.frames, f"{self.codec}, {w}x{h}", self.warnings)

    def keep(self) -> Path | None:
        """Finalise the writer but leave the file at its .partial name (a failed run's frames)."""
        self._release()
        if self.frames == 0:
            self.abort()
            return None
        return self.dest.keep()

    def _verify(self) -> None:
        """Reopen what was written: it decodes, at the size written, with every frame.

        MP4 and AVI index their frames exactly; Matroska's count is estimated from its
        duration, so there it may be off by one.
        """
        assert self.tmp is not None
        cap = cv2.VideoCapture(str(self.tmp), cv2.CAP_FFMPEG)
        try:
            ok, first = cap.read()
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        slack = 1 if self.final.suffix.lower() == ".mkv" else 0
        if not ok or (first.shape[1], first.shape[0]) != self.size:
            problem = "the file does not decode at the size written"
        elif abs(count - self.frames) > slack:
            problem = f"{count} frames readable, {self.frames} written"
        else:
            return
        kept = self.dest.keep()  # what was written stays, for a look, under the name given
        raise OutputError(f"{self.final}: output verification failed: {problem}; "
                          f"kept as {kept}")


def _why_write_failed(path: Path | None) -> str:
    """Best guess at why a write failed: OpenCV returns only False."""
    import resource
    import shutil

    try:
        if path is not None and shutil.disk_usage(path.parent).free < (1 << 20):
            return "no space left on device"
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if path is not None and soft != resource.RLIM_INFINITY and \
                path.stat().st_size >= soft - (1 << 20):
            return "file size limit reached"
    except OSError:
        pass
    return "the encoder refused the frame"


class ImageSink(_FileSink):
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

    def open(self, shape: Shape, fps: float) -> None:
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

    def write(self, frame: np.ndarray) -> None:
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


class NpySink(_FileSink):
    """``.npy`` of the float results ``(N, H', W', C)``, written frame by frame.

    The header reserves room for N, so the file streams to disk and is rewritten once
    at the end with the true count; numpy.load reads it like any other.
    """

    wants = "float"
    _RESERVED = 10**15  # the placeholder N, wider than any real one

    def open(self, shape: Shape, fps: float) -> None:
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

    def write(self, frame: np.ndarray) -> None:
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

    def open(self, shape: Shape, fps: float) -> None:
        pass

    def write(self, frame: np.ndarray) -> None:
        self.frames += 1

    def close(self) -> SinkResult:
        return SinkResult(self.name, self.frames)


class MemorySink(StreamSink):
    """Keeps every frame in a list (tests, notebooks); ``wants`` float or uint8."""

    name = "memory"

    def __init__(self, wants: str = "float") -> None:
        self.wants = wants
        self.frames: list[np.ndarray] = []

    def open(self, shape: Shape, fps: float) -> None:
        self.shape, self.fps = shape, fps

    def write(self, frame: np.ndarray) -> None:
        self.frames.append(np.array(frame))

    def close(self) -> SinkResult:
        return SinkResult(self.name, len(self.frames))


def open_sink(spec: str | None, force: bool = False, inputs: list[str] | None = None,
              token: str | None = None) -> FrameSink:
    """The sink an ``--output`` value names (not opened yet); ``token`` names its
    temporary file (destination.py), else a random one."""
    if spec is None or spec in ("null", "-"):
        return NullSink()
    suffix = Path(spec).suffix.lower()
    if suffix in CONTAINERS:
        return VideoFileSink(spec, force, inputs, token)
    if suffix == ".npy":
        return NpySink(spec, force, inputs, token)
    if "%" in spec or spec.endswith(("/", os.sep)) or \
            (os.path.exists(spec) and stat.S_ISDIR(os.stat(spec).st_mode)):
        return ImageSink(spec, force, inputs, token)
    raise OutputError(f"{spec}: unknown output type {suffix or '(no extension)'!r}; "
                      "expected .mp4 .avi .mkv .npy, a folder/ or a pattern like f_%05d.png")
